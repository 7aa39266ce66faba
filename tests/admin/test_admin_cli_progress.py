"""Long admin commands show progress to people: with stderr on a terminal (a real
pseudo-terminal here) ``retention apply`` draws a bar over the repositories it applies
to, ``gc-remote run`` a running count and ``repo rm`` a seconds count; when stderr is not
a terminal (a log, a script) only the one-line summary is written."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
from collections.abc import Iterator

import pytest
from admin_support import push_image
from conftest import GC_ENV, ONE_WORKER, READY_TIMEOUT
from support.server import RegistryServer, lading_command, start_lading
from test_admin_cli import as_json, lading


def lading_on_tty(server: RegistryServer, *args: str) -> tuple[str, str]:
    """Run the CLI with stderr on a pseudo-terminal; return (stdout, what the terminal got)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LADING_")}
    leader, follower = pty.openpty()
    with subprocess.Popen(
        [*lading_command(), *args, "--url", server.url],
        stdout=subprocess.PIPE,
        stderr=follower,
        stdin=subprocess.DEVNULL,
        env=env,
    ) as process:
        os.close(follower)
        terminal = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            terminal += chunk
        stdout = process.stdout.read() if process.stdout else b""
        assert process.wait(timeout=120) == 0, terminal.decode(errors="replace")
    os.close(leader)
    return stdout.decode(), terminal.decode()


def test_retention_apply_draws_a_bar_per_repository(
    admin_server: RegistryServer, repo: str
) -> None:
    names = [f"{repo}/r{i}" for i in range(3)]
    with admin_server.client() as client:
        for n, name in enumerate(names):
            for i in range(3):
                push_image(client, name, f"v{i}", 300 + 10 * n + i)
    preview = as_json(
        admin_server, "retention", "preview", "--repo-pattern", f"{repo}/*", "--keep-newest", "1"
    )
    stdout, terminal = lading_on_tty(
        admin_server, "retention", "apply", "--repo-pattern", f"{repo}/*", "--keep-newest", "1",
        "--yes", "-o", "json",
    )  # fmt: skip
    bars = re.findall(r"retention apply +\[([#-]{30})\] (\d)/3 repositories, (\d) tags", terminal)
    assert [(done, tags) for _, done, tags in bars] == [
        ("0", "0"), ("1", "2"), ("2", "4"), ("3", "6")
    ], terminal  # fmt: skip
    assert bars[-1][0] == "#" * 30
    assert "deleted 6 tags and 6 manifests" in terminal
    # The steps add up to what one apply would have done, as the preview predicted.
    applied = json.loads(stdout)
    assert applied["applied"] is True
    assert (applied["tags"], applied["manifests"], applied["bytes_freed"]) == (
        preview["tags"], preview["manifests"], preview["bytes_freed"]
    )  # fmt: skip
    assert sorted(r["repository"] for r in applied["repositories"]) == names
    for name in names:
        assert [t["name"] for t in as_json(admin_server, "tag", "ls", name)] == ["v2"]
    # One audit entry per step, each naming its repository.
    entries = as_json(admin_server, "audit", "--action", "retention.apply", "--limit", "3")
    assert sorted(e["target"] for e in entries) == names


@pytest.fixture
def slow_gc_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    """One review per transaction: a pass over a few dozen objects outlasts a poll."""
    server = start_lading(
        tmp_path_factory.mktemp("admin-slow-gc"),
        env={**GC_ENV, "LADING_GC_BATCH_SIZE": "1"},
        args=ONE_WORKER,
        ready_timeout=READY_TIMEOUT,
    )
    yield server
    server.stop()


def test_gc_remote_and_repo_rm_count_on_a_terminal(
    slow_gc_server: RegistryServer, repo: str
) -> None:
    with slow_gc_server.client() as client:
        for i in range(20):
            push_image(client, repo, f"v{i}", 400 + i)
    _, terminal = lading_on_tty(slow_gc_server, "repo", "rm", repo, "--yes")
    assert re.search(rf"repo rm {re.escape(repo)}: deleting \d+s", terminal), terminal
    assert "deleted repository" not in terminal  # the table is on stdout
    _, terminal = lading_on_tty(slow_gc_server, "gc-remote", "run", "--poll", "0.05")
    assert re.search(r"gc run \d+: \d+s, \d+ reviews pending", terminal), terminal
    assert re.search(r"gc run \d+: ok, freed \d", terminal), terminal


def test_no_bar_when_stderr_is_not_a_terminal(admin_server: RegistryServer, repo: str) -> None:
    with admin_server.client() as client:
        for i in range(3):
            push_image(client, repo, f"v{i}", 500 + i)
    result = lading(
        admin_server, "retention", "apply", "--repo-pattern", repo, "--keep-newest", "1",
        "--yes",
    )  # fmt: skip
    assert result.stderr == (
        "deleted 2 tags and 2 manifests; garbage collection frees their blobs once"
        " unreferenced for gc_review_delay (lading gc-remote status)\n"
    )
    assert "\r" not in result.stderr and "[" not in result.stderr


def test_nothing_to_apply_still_records_the_run(admin_server: RegistryServer, repo: str) -> None:
    plan = as_json(
        admin_server, "retention", "apply", "--repo-pattern", f"{repo}-none", "--keep-newest",
        "1", "--yes",
    )  # fmt: skip
    assert (plan["applied"], plan["tags"], plan["repositories"]) == (True, 0, [])
    entries = as_json(admin_server, "audit", "--action", "retention.apply", "--limit", "1")
    assert entries[0]["target"] == "-"
