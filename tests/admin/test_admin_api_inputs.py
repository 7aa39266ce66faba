"""Admin API bodies with the wrong JSON types, non-finite numbers or too many bytes: a clear
error with the right status, and nothing stored."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from admin_support import errors_of, push_image

A = "/admin/v1"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize(
    ("field", "value"),
    [("keep_newest", "3"), ("keep_newest", 3.0), ("delete_untagged", "yes"),
     ("delete_untagged", 1)],
)  # fmt: skip
def test_policy_fields_take_json_types_only(
    client: httpx.Client, field: str, value: object
) -> None:
    """docs/admin.md: bodies are strict; a string is not a number, 1 is not true."""
    name = unique("typed")
    body = {"name": name, "repository_pattern": "nothing/*", "keep_newest": 1, field: value}
    response = client.post(f"{A}/retention/policies", json=body)
    assert response.status_code == 422, response.text
    error = errors_of(response)[0]
    assert error["code"] == "VALIDATION_FAILED" and field in error["message"]
    stored = client.get(f"{A}/retention/policies").json()["items"]
    assert name not in {p["name"] for p in stored}


def test_account_and_run_flags_take_json_types_only(client: httpx.Client) -> None:
    user = unique("typed")
    made = client.post(
        f"{A}/accounts/users", json={"username": user, "password": "long-enough-1", "admin": "yes"}
    )
    assert made.status_code == 422, made.text
    assert "admin" in errors_of(made)[0]["message"]
    assert client.get(f"{A}/accounts/users/{user}").status_code == 404
    for path, body in (("/gc/runs", {"dry_run": "false"}), ("/retention/preview", {"all": 1})):
        response = client.post(A + path, json=body)
        assert response.status_code == 422, response.text
        assert errors_of(response)[0]["code"] == "VALIDATION_FAILED"


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_days_are_named_as_such(client: httpx.Client, number: str) -> None:
    name = unique("nan")
    raw = f'{{"name":"{name}","repository_pattern":"x","delete_older_than_days":{number}}}'
    response = client.post(
        f"{A}/retention/policies", content=raw, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert "finite" in errors_of(response)[0]["message"]


def test_an_oversized_body_is_413_and_says_what(client: httpx.Client) -> None:
    name = unique("big")
    body = {"name": name, "repository_pattern": "x" * 2_000_000, "keep_newest": 1}
    response = client.post(f"{A}/retention/policies", content=json.dumps(body).encode())
    assert response.status_code == 413, response.text
    message = errors_of(response)[0]["message"]
    assert "manifest" not in message and "body" in message and "1048576" in message
    assert name not in {p["name"] for p in client.get(f"{A}/retention/policies").json()["items"]}


def test_deleting_what_is_not_there_names_it(client: httpx.Client, repo: str) -> None:
    """404 that says which tag or manifest of which repository was not found."""
    digest = "sha256:" + "0" * 64
    for path, what in (
        (f"{repo}/-/tags/nosuch", "nosuch"),
        (f"{repo}/-/manifests/{digest}", digest),
    ):
        response = client.delete(f"{A}/repositories/{path}")
        assert response.status_code == 404, response.text
        error = errors_of(response)[0]
        assert error["code"] == "MANIFEST_UNKNOWN"
        assert what in error["message"] and repo in error["message"], error
    gone = client.delete(f"{A}/repositories/{repo}")
    assert gone.status_code == 404 and errors_of(gone)[0]["code"] == "NAME_UNKNOWN"


def test_an_untagged_only_policy_does_not_veto_tag_rules(client: httpx.Client, repo: str) -> None:
    """A policy that only deletes untagged manifests says nothing about tags: with it, a
    keep-newest policy on the same repositories still trims them."""
    for i in range(3):
        push_image(client, repo, f"v{i}", 96 + i)
    bodies = [
        {"name": unique("untagged"), "repository_pattern": repo, "delete_untagged": True},
        {"name": unique("trim"), "repository_pattern": repo, "keep_newest": 1},
    ]
    ids = [client.post(f"{A}/retention/policies", json=b).json()["id"] for b in bodies]
    try:
        alone = client.post(f"{A}/retention/preview", json={"policy_ids": ids[1:]}).json()
        both = client.post(f"{A}/retention/preview", json={"policy_ids": ids}).json()
    finally:
        for policy_id in ids:
            client.delete(f"{A}/retention/policies/{policy_id}")
    assert alone["tags"] == 2
    assert both["tags"] == 2 and both["manifests"] == alone["manifests"] == 2


def test_inspecting_an_image_for_another_platform_is_404(client: httpx.Client, repo: str) -> None:
    """Like ``docker pull --platform``: an amd64 image is no answer to linux/arm64."""
    push_image(client, repo, "amd", 99)
    url = f"{A}/repositories/{repo}/-/inspect/amd"
    assert client.get(url, params={"platform": "linux/amd64"}).status_code == 200
    other = client.get(url, params={"platform": "linux/arm64"})
    assert other.status_code == 404, other.text
    error = errors_of(other)[0]
    assert error["code"] == "MANIFEST_UNKNOWN" and "linux/amd64" in error["message"]


@pytest.mark.parametrize("path", ["/repositories/a/-/inspect/v1?platform=", "/audit?action="])
def test_an_empty_filter_is_a_validation_error(client: httpx.Client, path: str) -> None:
    """``?action=`` matched nothing and ``?platform=`` looked for a platform named ''."""
    response = client.get(A + path)
    assert response.status_code == 422, response.text
    assert errors_of(response)[0]["code"] == "VALIDATION_FAILED"
