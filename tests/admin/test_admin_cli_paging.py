"""``lading audit`` and ``lading gc-remote history`` page through the admin API (its
cursors are bound to the filter, which every page repeats) for more entries than
one page holds, and refuse a --limit that is not a positive number."""

from __future__ import annotations

from admin_support import errors_of
from support.server import RegistryServer
from test_admin_cli import as_json, lading

A = "/admin/v1"
PAGE_MAX = 1000


def test_audit_pages_past_the_api_page_size(admin_server: RegistryServer, repo: str) -> None:
    with admin_server.client() as client:
        body = {"name": f"paging-{repo[-10:]}", "repository_pattern": repo, "keep_newest": 1}
        created = client.post(f"{A}/retention/policies", json=body)
        assert created.status_code == 201, created.text
        url = f"{A}/retention/policies/{created.json()['id']}"
        for n in range(PAGE_MAX + 1):  # one audit entry each
            assert client.put(url, json={**body, "keep_newest": n + 2}).status_code == 200
        too_many = client.get(f"{A}/audit", params={"limit": PAGE_MAX + 1})
        assert too_many.status_code == 422 and errors_of(too_many)
        assert client.delete(url).status_code == 204
    action = "retention.policy.update"
    entries = as_json(admin_server, "audit", "--action", action, "--limit", str(PAGE_MAX + 1))
    assert len(entries) == PAGE_MAX + 1
    assert {e["action"] for e in entries} == {action}
    ids = [e["id"] for e in entries]
    assert ids == sorted(set(ids), reverse=True)  # newest first, none twice
    assert len(as_json(admin_server, "audit", "--action", action, "--limit", "3")) == 3

    runs = as_json(admin_server, "gc-remote", "history", "--limit", "5000")
    assert isinstance(runs, list)
    for bad in ("0", "-3", "many"):
        refused = lading(admin_server, "audit", "--limit", bad, check=False)
        assert refused.returncode == 2 and "positive whole number" in refused.stderr
