"""Admin API pagination cursors are bound to the query that issued them: replayed with
other filters, on another endpoint, or tampered with, they answer 400 (a real
``lading serve``); the same query continues with any page size."""

from __future__ import annotations

from typing import Any

import httpx
from admin_support import errors_of, push_image

A = "/admin/v1"


def _cursor(client: httpx.Client, path: str, **params: Any) -> str:
    page = client.get(A + path, params={**params, "limit": 1})
    assert page.status_code == 200, page.text
    cursor = page.json()["next_cursor"]
    assert cursor
    return str(cursor)


def _refused(client: httpx.Client, path: str, **params: Any) -> str:
    response = client.get(A + path, params=params)
    assert response.status_code == 400, response.text
    error = errors_of(response)[0]
    assert error["code"] == "BAD_REQUEST"
    return str(error["message"])


def _continues(client: httpx.Client, path: str, **params: Any) -> list[Any]:
    response = client.get(A + path, params=params)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


def test_repository_cursor_is_bound_to_filter_sort_and_order(
    client: httpx.Client, repo: str
) -> None:
    for seed, name in enumerate(("a", "b", "c")):
        push_image(client, f"{repo}/{name}", "v1", 40 + seed)
    query = {"filter": f"{repo}/*", "sort": "name", "order": "asc"}
    cursor = _cursor(client, "/repositories", **query)
    rest = _continues(client, "/repositories", **query, cursor=cursor, limit=10)
    assert [r["name"] for r in rest] == [f"{repo}/b", f"{repo}/c"]
    for changed in (
        {"filter": f"{repo}/b*"},
        {"filter": None},
        {"sort": "size"},
        {"order": "desc"},
    ):
        message = _refused(client, "/repositories", **{**query, **changed, "cursor": cursor})
        assert "does not match this query" in message and "filter" in message


def test_tag_and_manifest_cursors_are_bound_to_repository_and_untagged(
    client: httpx.Client, repo: str
) -> None:
    for seed, tag in enumerate(("t1", "t2")):
        push_image(client, f"{repo}/one", tag, 50 + seed)
        push_image(client, f"{repo}/two", tag, 60 + seed)
    push_image(client, f"{repo}/one", None, 70)  # untagged
    push_image(client, f"{repo}/one", None, 71)
    tags = _cursor(client, f"/repositories/{repo}/one/-/tags")
    assert len(_continues(client, f"/repositories/{repo}/one/-/tags", cursor=tags)) == 1
    _refused(client, f"/repositories/{repo}/two/-/tags", cursor=tags)
    _refused(client, f"/repositories/{repo}/one/-/manifests", cursor=tags)  # another endpoint

    untagged = _cursor(client, f"/repositories/{repo}/one/-/manifests", untagged="true")
    path = f"/repositories/{repo}/one/-/manifests"
    assert len(_continues(client, path, untagged="true", cursor=untagged)) == 1
    _refused(client, path, untagged="false", cursor=untagged)
    _refused(client, path, cursor=untagged)


def test_audit_and_gc_run_cursors_are_bound(client: httpx.Client, repo: str) -> None:
    for seed, tag in enumerate(("x1", "x2", "x3")):
        push_image(client, repo, tag, 80 + seed)
        assert client.delete(f"{A}/repositories/{repo}/-/tags/{tag}").status_code == 200
    for _ in range(2):
        assert client.post(f"{A}/gc/runs", json={"wait": True}).status_code == 200
    audit = _cursor(client, "/audit", action="tag.delete")
    assert _continues(client, "/audit", action="tag.delete", cursor=audit)
    _refused(client, "/audit", action="gc.run", cursor=audit)
    _refused(client, "/audit", cursor=audit)
    _refused(client, "/gc/runs", cursor=audit)

    runs = _cursor(client, "/gc/runs")
    assert _continues(client, "/gc/runs", cursor=runs)
    _refused(client, "/audit", cursor=runs)


def test_malformed_and_tampered_cursors_are_refused(client: httpx.Client, repo: str) -> None:
    for seed, name in enumerate(("a", "b")):
        push_image(client, f"{repo}/{name}", "v1", 90 + seed)
    cursor = _cursor(client, "/repositories", filter=f"{repo}/*")
    tampered = cursor[:-2] + ("AA" if cursor[-2:] != "AA" else "BB")
    for bad in ("zzz", "5", "b2:1", tampered, "=" * 10):
        message = _refused(client, "/repositories", filter=f"{repo}/*", cursor=bad)
        assert "cursor" in message
    assert "invalid cursor" in _refused(client, "/audit", cursor="12")
