"""The admin CLI as a subprocess against a real server."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from admin_support import push_image
from conftest import ADMIN_TOKEN
from support.server import RegistryServer, lading_command


def lading(
    server: RegistryServer, *args: str, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("LADING_")}
    full_env.update(env or {})
    result = subprocess.run(
        [*lading_command(), *args, "--url", server.url],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


def as_json(server: RegistryServer, *args: str) -> Any:
    return json.loads(lading(server, *args, "-o", "json").stdout)


def test_cli_lists_inspects_and_deletes(admin_server: RegistryServer, repo: str) -> None:
    with admin_server.client() as client:
        one = push_image(client, repo, "one", 70)
        push_image(client, repo, "two", 71)
    repos = as_json(admin_server, "repo", "ls", "--filter", repo)
    assert [r["name"] for r in repos] == [repo]
    table = lading(admin_server, "repo", "ls", "--filter", repo).stdout
    assert table.splitlines()[0].split()[:3] == ["NAME", "TAGS", "MANIFESTS"]
    assert repo in table
    tags = as_json(admin_server, "tag", "ls", repo)
    assert {t["name"] for t in tags} == {"one", "two"}
    view = as_json(admin_server, "inspect", f"{repo}:one")
    assert view["digest"] == one.digest and view["config"]["cmd"] == ["echo hello"]
    assert "SEED=70" in lading(admin_server, "inspect", f"{repo}@{one.digest}").stdout
    lading(admin_server, "tag", "rm", f"{repo}:two")
    lading(admin_server, "manifest", "rm", f"{repo}@{one.digest}")
    assert as_json(admin_server, "tag", "ls", repo) == []
    missing = lading(admin_server, "tag", "rm", f"{repo}:two", check=False)
    assert missing.returncode == 1 and "MANIFEST_UNKNOWN" in missing.stderr
    refused = lading(admin_server, "repo", "rm", repo, check=False)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    lading(admin_server, "repo", "rm", repo, "--yes")
    gone = lading(admin_server, "repo", "show", repo, check=False)
    assert gone.returncode == 1 and "404" in gone.stderr
    actions = {e["action"] for e in as_json(admin_server, "audit", "--limit", "20")}
    assert {"tag.delete", "manifest.delete", "repository.delete"} <= actions


def test_cli_retention_from_flags_and_file_then_gc(
    admin_server: RegistryServer, repo: str, tmp_path: Path
) -> None:
    with admin_server.client() as client:
        for i in range(6):
            push_image(client, repo, f"v{i}", 80 + i)
    pattern = f"{repo}*"
    plan = as_json(
        admin_server, "retention", "preview", "--repo-pattern", pattern, "--keep-newest", "2"
    )
    assert plan["tags"] == 4 and plan["applied"] is False
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"name: file\nrepository_pattern: '{pattern}'\nkeep_regex: 'v[0-4]'\n")
    from_file = as_json(admin_server, "retention", "preview", "--policy-file", str(policy))
    assert [t["name"] for t in from_file["repositories"][0]["tags"]] == ["v5"]
    applied = as_json(
        admin_server, "retention", "apply", "--repo-pattern", pattern, "--keep-newest", "2",
        "--yes",
    )  # fmt: skip
    assert applied["applied"] is True and applied["tags"] == 4
    assert {t["name"] for t in as_json(admin_server, "tag", "ls", repo)} == {"v4", "v5"}
    run = lading(admin_server, "gc-remote", "run", "-o", "json")
    assert json.loads(run.stdout)["status"] == "ok"
    assert "gc run" in run.stderr
    history = as_json(admin_server, "gc-remote", "history")
    assert history[0]["id"] == json.loads(run.stdout)["id"]
    usage = as_json(admin_server, "usage-remote")
    assert any(r["name"] == repo for r in usage["repositories"])


def test_cli_sends_the_admin_token(guarded_server: RegistryServer) -> None:
    denied = lading(guarded_server, "usage-remote", check=False)
    assert denied.returncode == 1 and "401" in denied.stderr
    allowed = lading(guarded_server, "usage-remote", env={"LADING_ADMIN_TOKEN": ADMIN_TOKEN})
    assert "(all storage)" in allowed.stdout
