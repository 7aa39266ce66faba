"""Retention ``keep_regex`` is matched in linear time (RE2), against a real ``lading serve``:
a pattern that backtracks catastrophically in Python's ``re`` is evaluated at once,
and patterns RE2 cannot match in linear time are refused when the policy is written."""

from __future__ import annotations

import httpx
import pytest
from admin_support import errors_of, push_image

A = "/admin/v1"
LONG_TAG = "a" * 126 + "-"  # 127 characters: (a+)+$ tries 2**126 splits in Python's re


def test_catastrophic_pattern_is_evaluated_at_once(client: httpx.Client, repo: str) -> None:
    push_image(client, repo, LONG_TAG, 1)
    push_image(client, repo, "aaaa", 2)
    policy = {"name": "evil", "repository_pattern": repo, "keep_regex": "(a+)+$"}
    # Python's re would hold the worker for ages: the request would time out.
    preview = client.post(f"{A}/retention/preview", json={"policy": policy}, timeout=30)
    assert preview.status_code == 200, preview.text
    [planned] = preview.json()["repositories"]
    assert [t["name"] for t in planned["tags"]] == [LONG_TAG]  # "aaaa" fully matches: kept
    created = client.post(f"{A}/retention/policies", json={**policy, "name": f"evil-{repo[-8:]}"})
    assert created.status_code == 201, created.text
    assert client.delete(f"{A}/retention/policies/{created.json()['id']}").status_code == 204


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        (r"(v)\1", "invalid escape sequence"),  # backreference
        (r"(?=v)v[0-9]+", "invalid perl operator"),  # lookahead
        (r"(?<!x)v", "invalid perl operator"),  # lookbehind
        (r"v1\Z", "invalid escape sequence"),
        ("(", "missing )"),
    ],
)
def test_patterns_without_a_linear_match_are_refused(
    client: httpx.Client, repo: str, pattern: str, reason: str
) -> None:
    policy = {"name": f"p-{repo[-8:]}", "repository_pattern": repo, "keep_regex": pattern}
    for path, body in (("/retention/policies", policy), ("/retention/preview", {"policy": policy})):
        response = client.post(A + path, json=body)
        assert response.status_code == 422, response.text
        error = errors_of(response)[0]
        assert error["code"] == "VALIDATION_FAILED"
        text = str(error["detail"])
        assert "keep_regex" in text and reason in text and "RE2 syntax" in text, text
    listed = client.get(f"{A}/retention/policies").json()["items"]
    assert policy["name"] not in {p["name"] for p in listed}
