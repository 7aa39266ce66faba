"""Pushes, tag moves and deletions racing an aggressive online GC, over HTTP against
``lading serve --workers 2`` (two collectors) plus a ``lading gc`` loop: afterwards
every tagged image pulls intact, and one more GC leaves nothing to collect or repair."""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import httpx
import pytest
from httpreg import Image, make_image, push_image, sha256, verify_image
from serverenv import database_env, fsck, gc, lading
from support.server import RegistryFactory

PUSHERS = 4
DURATION = 14.0  # with a 3 s review delay: several review cycles race the pushers
SHARED_LAYERS = [f"shared layer {i}\n".encode() * (200 + i) for i in range(5)]


def _pusher(
    url: str,
    index: int,
    stop: threading.Event,
    state: dict[tuple[str, str], Image],
    lock: threading.Lock,
    errors: list[BaseException],
) -> None:
    rng = random.Random(index)
    repo = f"race/r{index % 2}"
    own: list[str] = []
    n = 0
    try:
        with httpx.Client(base_url=url, timeout=60) as client:
            while not stop.is_set():
                n += 1
                roll = rng.random()
                if own and roll < 0.25:  # delete a tag
                    tag = own.pop(rng.randrange(len(own)))
                    with lock:
                        state.pop((repo, tag))
                    assert client.delete(f"/v2/{repo}/manifests/{tag}").status_code == 202
                    continue
                if own and roll < 0.35:  # delete a manifest by digest (and so its tag)
                    tag = own.pop(rng.randrange(len(own)))
                    with lock:
                        image = state.pop((repo, tag))
                    response = client.delete(f"/v2/{repo}/manifests/{image.digest}")
                    assert response.status_code == 202, response.text
                    continue
                layers = [*rng.sample(SHARED_LAYERS, 2), f"own {index}-{n}".encode() * 50]
                image = make_image(f"{index}-{n}", layers)
                tag = own[rng.randrange(len(own))] if own and roll < 0.5 else f"t{index}-{n}"
                push_image(client, repo, tag, image)  # a new tag, or a moved one
                if tag not in own:
                    own.append(tag)
                with lock:
                    state[(repo, tag)] = image
    except BaseException as exc:
        errors.append(exc)
        stop.set()


@pytest.mark.timeout(180)
def test_pushes_racing_online_gc_lose_nothing(
    backend: str,
    storage_env: dict[str, str],
    tmp_path: Path,
    lading_factory: RegistryFactory,
) -> None:
    env = {
        **database_env(backend, tmp_path),
        **storage_env,
        "LADING_GC_REVIEW_DELAY": "3.0",
        "LADING_GC_INTERVAL_SECONDS": "0.05",
    }
    server = lading_factory(env=env, args=["--workers", "2"])
    state: dict[tuple[str, str], Image] = {}
    lock = threading.Lock()
    errors: list[BaseException] = []
    stop = threading.Event()
    threads = [
        threading.Thread(target=_pusher, args=(server.url, i, stop, state, lock, errors))
        for i in range(PUSHERS)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + DURATION
    gc_runs = 0
    while time.monotonic() < deadline and not stop.is_set():
        gc(server, "--quiet", delay=None)  # a third collector, as another process
        gc_runs += 1
    stop.set()
    for thread in threads:
        thread.join(60)
    print(
        f"pushed {len(state)} live tags, {gc_runs} cli gc runs, {time.monotonic() - deadline:.1f}s"
    )
    assert not errors, errors
    # A few pushes suffice to race the collector; a busy machine (parallel tests) pushes fewer.
    assert len(state) > 4 and gc_runs > 0

    with server.client() as client:
        for (repo, tag), image in sorted(state.items()):
            verify_image(client, repo, tag, image)
    # Everything untagged is now collectable; collect it and compare with the survivors.
    print(f"verified {time.monotonic() - deadline:.1f}s")
    time.sleep(3.1)
    gc(server, "--quiet")
    report = fsck(server)
    assert report["clean"], report
    assert report["pending_deletions"] == [], report
    usage = lading(server, "usage").stdout
    expected_blobs = {sha256(b) for image in state.values() for b in image.blobs}
    with server.client() as client:
        for (repo, tag), image in sorted(state.items()):
            verify_image(client, repo, tag, image)
        # Blobs of deleted images are gone from every repository that no longer needs them.
        for repo in ("race/r0", "race/r1"):
            needed = {sha256(b) for (r, _), i in state.items() if r == repo for b in i.blobs}
            for layer in SHARED_LAYERS:
                status = client.head(f"/v2/{repo}/blobs/{sha256(layer)}").status_code
                assert status == (200 if sha256(layer) in needed else 404), (repo, usage)
    print(f"done {time.monotonic() - deadline:.1f}s")
    total_line = usage.splitlines()[1]
    assert f"blobs: {len(expected_blobs)} " in total_line, (usage, len(expected_blobs))
