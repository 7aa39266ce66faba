"""Docker images built without any public registry.

The base image is ``docker import`` of a tarred busybox-static root filesystem; the
multi-layer image is a classic ``docker build`` FROM that base with RUN and COPY layers
whose content differs from layer to layer.
"""

from __future__ import annotations

import io
import json
import random
import re
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from support.dockerd import DockerEngine
from support.tools import require_tool

# Directories a minimal Linux image is expected to have.
_ROOT_DIRS = ("bin", "dev", "etc", "proc", "root", "sys", "tmp", "usr", "usr/bin", "var")


def _busybox_applets(busybox: str) -> list[str]:
    result = subprocess.run(
        [busybox, "--list"], capture_output=True, text=True, check=True, timeout=30
    )
    return sorted({name for name in result.stdout.split() if name and "/" not in name})


def _is_static_elf(path: str) -> bool:
    """A dynamically linked ELF has a PT_INTERP program header; this only reads headers."""
    data = Path(path).read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2:  # 64-bit only, enough for our hosts
        return False
    order: Literal["little", "big"] = "little" if data[5] == 1 else "big"
    phoff = int.from_bytes(data[0x20:0x28], order)
    phentsize = int.from_bytes(data[0x36:0x38], order)
    phnum = int.from_bytes(data[0x38:0x3A], order)
    for index in range(phnum):
        offset = phoff + index * phentsize
        if int.from_bytes(data[offset : offset + 4], order) == 3:  # PT_INTERP
            return False
    return True


def write_busybox_rootfs_tar(dest: Path) -> Path:
    """Write a root filesystem tar: /bin/busybox plus one symlink per applet."""
    busybox = require_tool("busybox", "busybox-static")
    if not _is_static_elf(busybox):
        busybox = "/bin/busybox"
        if not Path(busybox).exists() or not _is_static_elf(busybox):
            raise RuntimeError(
                "a statically linked busybox is needed (apt-get install busybox-static)"
            )
    with tarfile.open(dest, "w") as tar:
        for name in _ROOT_DIRS:
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if name == "tmp" else 0o755
            tar.addfile(info)
        tar.add(busybox, arcname="bin/busybox", recursive=False)
        for applet in _busybox_applets(busybox):
            if applet == "busybox":
                continue
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            link.mode = 0o777
            tar.addfile(link)
        passwd = b"root:x:0:0:root:/root:/bin/sh\n"
        info = tarfile.TarInfo("etc/passwd")
        info.size = len(passwd)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(passwd))
    return dest


def import_base_image(engine: DockerEngine, tag: str, workdir: Path) -> str:
    """``docker import`` the busybox rootfs as ``tag``; returns the image id."""
    workdir.mkdir(parents=True, exist_ok=True)
    rootfs = write_busybox_rootfs_tar(workdir / "rootfs.tar")
    engine.out("import", "--change", 'CMD ["/bin/sh"]', str(rootfs), tag)
    return engine.out("image", "inspect", "--format", "{{.Id}}", tag)


DOCKERFILE = """\
FROM {base}
RUN mkdir -p /app && echo "layer one, seed {seed}" > /app/one.txt
COPY payload-a.bin /app/payload-a.bin
RUN head -c 300000 /dev/urandom > /app/random.bin && echo {seed} > /app/seed
COPY notes.txt /app/notes/notes.txt
RUN ls -lR /app > /app/listing.txt
COPY payload-b.bin /app/payload-b.bin
LABEL org.opencontainers.image.title="lading e2e {seed}"
CMD ["/bin/sh", "-c", "cat /app/one.txt"]
"""


def build_multilayer_image(
    engine: DockerEngine, base: str, tag: str, workdir: Path, seed: int
) -> str:
    """``docker build`` a six-layer image FROM ``base`` as ``tag``; returns the image id."""
    workdir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    (workdir / "payload-a.bin").write_bytes(rng.randbytes(512 * 1024))
    (workdir / "payload-b.bin").write_bytes(rng.randbytes(2 * 1024 * 1024 + 17))
    (workdir / "notes.txt").write_text(f"notes for seed {seed}\n" * 100)
    (workdir / "Dockerfile").write_text(DOCKERFILE.format(base=base, seed=seed))
    engine.run("build", "--network=none", "--rm", "-t", tag, str(workdir))
    return engine.out("image", "inspect", "--format", "{{.Id}}", tag)


@dataclass(frozen=True)
class ImageFacts:
    """What ``docker image inspect`` says about one image."""

    id: str
    layers: tuple[str, ...]
    repo_digests: tuple[str, ...]
    repo_tags: tuple[str, ...]
    raw: dict[str, Any]

    def digest_for(self, repository: str) -> str | None:
        """The manifest digest recorded for ``repository`` (``host:port/name``), if any."""
        for item in self.repo_digests:
            name, _, digest = item.partition("@")
            if name == repository:
                return digest
        return None


def inspect_image(engine: DockerEngine, ref: str) -> ImageFacts:
    data = json.loads(engine.out("image", "inspect", ref))[0]
    return ImageFacts(
        id=data["Id"],
        layers=tuple(data["RootFS"]["Layers"]),
        repo_digests=tuple(data.get("RepoDigests") or ()),
        repo_tags=tuple(data.get("RepoTags") or ()),
        raw=data,
    )


def image_exists(engine: DockerEngine, ref: str) -> bool:
    return engine.run("image", "inspect", ref, check=False).returncode == 0


# The last line of `docker push`: "<tag>: digest: sha256:... size: N".
PUSHED_DIGEST = re.compile(r"digest: (sha256:[0-9a-f]{64}) size: \d+")


def push_image(engine: DockerEngine, ref: str) -> tuple[str, str]:
    """``docker push ref``; returns the pushed manifest digest and the push output."""
    output = engine.out("push", ref)
    match = PUSHED_DIGEST.search(output)
    assert match, f"no digest in docker push output:\n{output}"
    return match.group(1), output


def forget_images(engine: DockerEngine, *refs: str) -> None:
    """Remove images (and their now unused layers) from the engine."""
    for ref in refs:
        if image_exists(engine, ref):
            engine.run("image", "rm", "--force", ref)
