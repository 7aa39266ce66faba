"""Numbers in queries, paths and cursors are ASCII digits: Unicode digits that
``str.isdigit`` accepts but ``int`` refuses (``²``) get 400, not 500 (a real
``lading serve``)."""

from __future__ import annotations

import base64

import httpx
from admin_support import errors_of

A = "/admin/v1"
SUPERSCRIPT_TWO = "\u00b2"


def _code(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    return str(errors_of(response)[0]["code"])


def test_a_cursor_with_a_unicode_digit_is_refused(client: httpx.Client) -> None:
    text = f"c1:{SUPERSCRIPT_TWO}:0123456789abcdef"
    cursor = base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")
    for path in ("/audit", "/gc/runs", "/repositories"):
        response = client.get(A + path, params={"cursor": cursor})
        assert _code(response, 400) == "BAD_REQUEST"
        assert "invalid cursor" in errors_of(response)[0]["message"]


def test_ids_and_page_sizes_with_a_unicode_digit_are_refused(client: httpx.Client) -> None:
    response = client.get(f"{A}/retention/policies/{SUPERSCRIPT_TWO}")
    assert _code(response, 400) == "BAD_REQUEST"
    for path in ("/accounts/permissions", "/accounts/public-repositories"):
        response = client.delete(f"{A}{path}/{SUPERSCRIPT_TWO}")
        assert _code(response, 400) == "BAD_REQUEST"
    for path in ("/v2/_catalog", "/v2/admin/unicode/tags/list"):
        response = client.get(path, params={"n": SUPERSCRIPT_TWO})
        assert _code(response, 400) == "PAGINATION_NUMBER_INVALID"
