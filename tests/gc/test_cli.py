"""``lading gc`` on demand: a progress bar, ``--dry-run`` reporting what a real pass
then frees (objects, bytes); ``lading fsck`` exit codes."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from httpreg import make_image, push_image
from serverenv import database_env, lading
from support.server import RegistryFactory

SUMMARY = re.compile(
    r"(would free|freed) (\d+) objects, .* \((\d+) bytes\): (\d+) manifests, (\d+) blobs"
)


def test_gc_dry_run_then_real_run_report_the_same(
    backend: str, tmp_path: Path, lading_factory: RegistryFactory
) -> None:
    server = lading_factory(
        env={**database_env(backend, tmp_path), "LADING_GC_INTERVAL_SECONDS": "0"}
    )
    image = make_image("gone", [b"doomed layer\n" * 300])
    with httpx.Client(base_url=server.url, timeout=60) as client:
        push_image(client, "cli/app", "kept", make_image("kept", [b"kept layer\n" * 300]))
        push_image(client, "cli/app", "gone", image)
        assert client.delete("/v2/cli/app/manifests/gone").status_code == 202

    dry = lading(server, "gc", "--dry-run", "--delay", "0")
    assert dry.returncode == 0, dry.stderr
    assert re.search(r"gc manifests \[#+-*\] \d+/\d+", dry.stderr), dry.stderr  # the bar
    would = SUMMARY.search(dry.stdout)
    assert would is not None and would[1] == "would free", dry.stdout
    # The untagged manifest, its config and its layer.
    expected_bytes = len(image.manifest()) + len(image.config) + len(image.layers[0])
    assert would.groups()[1:] == ("3", str(expected_bytes), "1", "2"), dry.stdout

    real = lading(server, "gc", "--delay", "0", "--quiet")
    assert real.returncode == 0 and real.stderr == "", real.stderr  # --quiet: no bar
    freed = SUMMARY.search(real.stdout)
    assert freed is not None and freed[1] == "freed"
    assert freed.groups()[1:] == would.groups()[1:], (dry.stdout, real.stdout)
    again = SUMMARY.search(lading(server, "gc", "--delay", "0", "--quiet").stdout)
    assert again is not None and again.groups()[1:] == ("0", "0", "0", "0")

    assert lading(server, "fsck").returncode == 0
    # An object no row points to: fsck reports it and exits 1 until repaired.
    orphan = server.data_dir / "storage" / "blobs" / "orphan-object"
    orphan.parent.mkdir(parents=True, exist_ok=True)
    orphan.write_bytes(b"stray")
    found = lading(server, "fsck")
    assert found.returncode == 1 and "storage objects no row points to: 1" in found.stdout
    repaired = lading(server, "fsck", "--repair", "--grace-seconds", "0")
    assert repaired.returncode == 0 and "repaired: objects deleted: 1" in repaired.stdout
    assert not orphan.exists()
    assert lading(server, "fsck").returncode == 0
