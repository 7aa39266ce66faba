"""The ``lading`` CLI given bad input: a one-line ``lading: ...`` on stderr, a non-zero exit,
no traceback, and nothing changed on the server or on disk."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import pty
import select
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from admin_support import push_image
from support.server import RegistryServer, lading_command
from support.tools import free_port

A = "/admin/v1"


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("LADING_")}
    full_env.update(env or {})
    return subprocess.run(
        [*lading_command(), *args], capture_output=True, text=True, env=full_env, timeout=120,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


def refused(result: subprocess.CompletedProcess[str], code: int, *words: str) -> str:
    """The command failed with ``code`` and one ``lading:`` line naming ``words``."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == code, result.stderr
    assert len(lines) == 1 and lines[0].startswith("lading: "), result.stderr
    for word in words:
        assert word in lines[0], result.stderr
    return lines[0]


def tags_of(client: httpx.Client, repo: str) -> set[str]:
    return {t["name"] for t in client.get(f"{A}/repositories/{repo}/-/tags").json()["items"]}


def test_a_repository_name_never_addresses_another_endpoint(
    admin_server: RegistryServer, repo: str
) -> None:
    """``/-/`` ends a name in admin URLs: a name holding it must not reach a tag route."""
    url = ["--url", admin_server.url]
    with admin_server.client() as client:
        push_image(client, repo, "v1", 90)
        result = run("repo", "rm", f"{repo}/-/tags/v1", "--yes", *url)
        refused(result, 2, "invalid repository name")
        result = run("manifest", "ls", f"{repo}/-/tags", *url)
        refused(result, 2, "invalid repository name")
        refused(run("repo", "show", "", *url), 2, "invalid repository name")
        refused(run("tag", "rm", ":v1", *url), 2, "invalid repository name")
        assert tags_of(client, repo) == {"v1"}


def test_a_tag_is_sent_as_typed(admin_server: RegistryServer, repo: str) -> None:
    """``#`` or ``?`` in a reference must not cut it short or add query parameters."""
    url = ["--url", admin_server.url]
    with admin_server.client() as client:
        push_image(client, repo, "v1", 91)
        push_image(client, repo, "sha-1a2b3c", 93)
        refused(run("tag", "rm", f"{repo}:v1#old", *url), 1, "TAG_INVALID")
        refused(run("inspect", f"{repo}:v1?platform=x", *url), 1, "TAG_INVALID")
        refused(run("tag", "rm", f"{repo}:", *url), 2, "REPO:TAG")
        refused(run("tag", "rm", f"{repo}@sha256:{'0' * 64}", *url), 2, "manifest rm")
        # CI tags such as docker/metadata-action's sha-<commit> are tags like any other.
        assert run("tag", "rm", f"{repo}:sha-1a2b3c", *url).returncode == 0
        assert tags_of(client, repo) == {"v1"}


def test_retention_takes_exactly_one_policy_source(
    admin_server: RegistryServer, repo: str, tmp_path: Path
) -> None:
    """Like the API's ``give exactly one of policy_ids, policy or all``: no silent choice."""
    url = ["--url", admin_server.url]
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"name: f\nrepository_pattern: '{repo}'\nkeep_newest: 0\n")
    flags = ["--repo-pattern", repo, "--keep-newest", "0"]
    with admin_server.client() as client:
        push_image(client, repo, "v1", 92)
        for source in (
            ["--all", *flags],
            ["--all", "--policy-id", "1"],
            ["--all", "--keep-newest", "0"],
            ["--policy-id", "1", *flags],
            ["--policy-file", str(policy), *flags],
            ["--policy-file", str(policy), "--all"],
        ):
            result = run("retention", "apply", *source, "--yes", *url)
            refused(result, 2, "only one of")
        assert tags_of(client, repo) == {"v1"}


def test_retention_rejects_bad_numbers_and_files(
    admin_server: RegistryServer, repo: str, tmp_path: Path
) -> None:
    url = ["--url", admin_server.url]
    for days in ("nan", "inf", "-inf"):
        result = run("retention", "preview", "--repo-pattern", repo, f"--older-than-days={days}",
                     *url)  # fmt: skip
        # An argparse usage error, like any other malformed number.
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        assert "argument --older-than-days: not a finite number" in result.stderr
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    refused(run("retention", "preview", "--policy-file", str(empty), *url), 2, "empty")
    listed = tmp_path / "list.yaml"
    listed.write_text("- name: x\n")
    refused(run("retention", "preview", "--policy-file", str(listed), *url), 2, "mapping")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [x\n")
    refused(run("retention", "preview", "--policy-file", str(broken), *url), 2, "line 2")


def test_local_commands_refuse_a_missing_data_dir(tmp_path: Path) -> None:
    """A mistyped ``--data-dir`` must not look like an empty, clean registry."""
    missing = tmp_path / "no-such-registry"
    for command in (["gc", "--quiet"], ["usage"], ["fsck"]):
        result = run(*command, "--data-dir", str(missing))
        refused(result, 2, str(missing))
        assert not missing.exists()


def test_local_commands_report_an_unreachable_database(tmp_path: Path) -> None:
    dead = f"postgresql+psycopg://lading:x@127.0.0.1:{free_port()}/lading"
    unusable = ("mysql://u:secret@h/db", "postgresql+psycopg://u:secret@h:notaport/db")
    for url in (dead, "nosuchdb://x", *unusable):
        result = run("usage", "--data-dir", str(tmp_path), env={"LADING_DATABASE_URL": url})
        refused(result, 2, "database")
        assert "secret" not in result.stderr
    for url in unusable:  # serve says the same, before it listens
        port = str(free_port())
        served = run("serve", "--port", port, "--data-dir", str(tmp_path),
                     env={"LADING_DATABASE_URL": url})  # fmt: skip
        refused(served, 2, "database_url is not usable")


def test_serve_reports_an_unusable_data_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    result = run("serve", "--port", str(free_port()), "--data-dir", str(blocker / "data"))
    refused(result, 2, str(blocker))


def test_unusable_credentials_and_urls_are_named(tmp_path: Path) -> None:
    """Checked before any request: no traceback, and not blamed on the network."""
    url = ["--url", f"http://127.0.0.1:{free_port()}"]
    for token in ("tökén", "two\nlines"):
        result = run("usage-remote", *url, env={"LADING_ADMIN_TOKEN": token})
        refused(result, 2, "admin token")
    config = tmp_path / "admin.yaml"
    config.write_text("token: 'ä-token'\n")
    refused(run("usage-remote", *url, "--admin-config", str(config)), 2, "admin token")
    for bad in ("http://[::1", "http://127.0.0.1:99999"):
        refused(run("usage-remote", "--url", bad), 2, "server URL", bad)


@pytest.fixture
def impostor() -> Iterator[tuple[str, list[tuple[int, bytes]]]]:
    """A real HTTP server that is not Lading: the status and body the test puts first."""
    bodies: list[tuple[int, bytes]] = [(200, b"")]

    class Answer(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = bodies[0]
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", bodies
    server.shutdown()
    server.server_close()


def test_a_server_that_is_not_lading_is_named(
    impostor: tuple[str, list[tuple[int, bytes]]],
) -> None:
    """A login page or another service at --url: say so, without a traceback."""
    url, bodies = impostor
    for body in (b"<html>sign in</html>", b'{"status": "ok"}', b"[]"):
        bodies[0] = (200, body)
        refused(run("usage-remote", "--url", url), 1, url, "Lading")
        refused(run("repo", "ls", "--url", url), 1, url, "Lading")
    # A proxy's HTML error page: its text, on one line.
    bodies[0] = (502, b"<html>\n<body>\n<h1>Bad Gateway</h1>\n</body>\n</html>\n")
    refused(run("usage-remote", "--url", url), 1, "502", "Bad Gateway")


def at_the_prompt(server: RegistryServer, repo: str, answer: Callable[[int, Any], None]) -> Any:
    """``repo rm`` on a terminal, stopped at its question by ``answer(master_fd, process)``."""
    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LADING_")}
    # A test run started in the background by a shell ignores SIGINT, and children
    # inherit that; a person at a terminal does not.
    process = subprocess.Popen(
        [*lading_command(), "repo", "rm", repo, "--url", server.url],
        stdin=slave, stdout=slave, stderr=subprocess.PIPE, env=env, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    os.close(slave)
    assert process.stderr is not None
    try:
        # Without the readline module Python asks on stderr.
        asked = ""
        deadline = time.monotonic() + 60
        while "[y/N]" not in asked and time.monotonic() < deadline:
            ready = select.select([master, process.stderr], [], [], 1)[0]
            if master in ready:
                os.read(master, 1024)
            if process.stderr in ready:
                asked += os.read(process.stderr.fileno(), 1024).decode()
        assert "[y/N]" in asked, asked
        answer(master, process)
        _, stderr = process.communicate(timeout=60)
    finally:
        os.close(master)
    return subprocess.CompletedProcess(process.args, process.returncode, "", stderr)


# read(2)'s number, to see a process sleep in it (/proc/PID/syscall).
READ_SYSCALL = {"x86_64": 0, "aarch64": 63}.get(platform.machine())


def interrupt_the_read(_: int, process: subprocess.Popen[str]) -> None:
    """SIGINT once the process sleeps reading its terminal.

    A signal that lands between the prompt and the read is handled before the read
    starts, and the read then waits for a key, as it would for a person.
    """
    deadline = time.monotonic() + 30
    while READ_SYSCALL is not None and time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):
            fields = Path(f"/proc/{process.pid}/syscall").read_text().split()
            if int(fields[0]) == READ_SYSCALL and int(fields[1], 16) == 0:
                break
        time.sleep(0.05)
    else:
        time.sleep(1)
    process.send_signal(signal.SIGINT)


def test_end_of_input_or_ctrl_c_at_a_question_cancels(
    admin_server: RegistryServer, repo: str
) -> None:
    with admin_server.client() as client:
        push_image(client, repo, "v1", 100)
        eof = at_the_prompt(admin_server, repo, lambda fd, _: os.write(fd, b"\x04"))
        refused(eof, 1, "cancelled")
        interrupted = at_the_prompt(admin_server, repo, interrupt_the_read)
        refused(interrupted, 130, "interrupted")
        assert tags_of(client, repo) == {"v1"}


def test_no_password_to_read_is_named(admin_server: RegistryServer, tmp_path: Path) -> None:
    """Without a terminal and without --password-stdin there is nobody to ask."""
    remote = run("user-remote", "add", "nopw", "--url", admin_server.url)
    refused(remote, 2, "--password-stdin")
    local = run("user", "add", "nopw", "--data-dir", str(tmp_path))
    refused(local, 1, "--password-stdin")
    short = subprocess.run(
        [*lading_command(), "user", "add", "shortpw", "--password-stdin", "--data-dir",
         str(tmp_path)],
        input="short\n", capture_output=True, text=True, timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith("LADING_")},
    )  # fmt: skip
    refused(short, 1, "8 characters")


def test_a_reader_that_stops_early_is_not_an_error(tmp_path: Path) -> None:
    """``lading usage | head -1``: the closed pipe ends the command quietly."""
    migrated = run("migrate", "upgrade", "--data-dir", str(tmp_path))
    assert migrated.returncode == 0, migrated.stderr
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first line is written
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LADING_")}
        result = subprocess.run(
            [*lading_command(), "usage", "--data-dir", str(tmp_path)],
            stdout=write_end, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
            env=env, text=True, timeout=120,
        )  # fmt: skip
    finally:
        os.close(write_end)
    assert result.stderr == ""
    assert result.returncode == 128 + signal.SIGPIPE


def test_local_account_commands_list_like_the_remote_ones(tmp_path: Path) -> None:
    """``-o``, a table with a header, and ``group ls``, as the ``*-remote`` commands have."""
    added = subprocess.run(
        [*lading_command(), "user", "add", "olivia", "--password-stdin", "--data-dir",
         str(tmp_path), "-o", "json"],
        input="a-long-password\n", capture_output=True, text=True, timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith("LADING_")},
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    listed = run("user", "ls", "--data-dir", str(tmp_path), "-o", "json")
    assert listed.returncode == 0, listed.stderr
    assert [user["user"] for user in json.loads(listed.stdout)] == ["olivia"]
    table = run("user", "ls", "--data-dir", str(tmp_path)).stdout.splitlines()
    assert table[0].split() == ["user", "admin", "disabled", "groups", "created"]
    assert table[1].split()[0] == "olivia"
    # Groups are listed locally too, as by group-remote ls.
    assert run("group", "add", "team", "--data-dir", str(tmp_path)).returncode == 0
    assert run("group", "member-add", "team", "olivia", "--data-dir", str(tmp_path)).returncode == 0
    groups = run("group", "ls", "--data-dir", str(tmp_path), "-o", "json")
    assert json.loads(groups.stdout) == [{"group": "team", "members": "olivia"}], groups.stderr
