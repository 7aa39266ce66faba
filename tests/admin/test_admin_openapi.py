"""The served OpenAPI document and the admin router agree: every described path answers
(never "no such admin endpoint"), and the methods the router takes on it are exactly the
described ones (a 405 names them in ``Allow``). Both come from one endpoint table; this
checks what a client sees."""

from __future__ import annotations

import re

import httpx

A = "/admin/v1"
METHODS = {"GET", "POST", "PUT", "DELETE", "PATCH"}
SAMPLES = {
    "name": "openapi/check",
    "tag": "t1",
    "digest": "sha256:" + "0" * 64,
    "reference": "t1",
}


def concrete(path: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: SAMPLES.get(m[1], "7"), path)


def test_every_described_path_routes_exactly_its_methods(client: httpx.Client) -> None:
    doc = client.get(f"{A}/openapi.json").json()
    assert len(doc["paths"]) >= 20
    for path, item in doc["paths"].items():
        assert path.startswith(A + "/"), path
        described = {m.upper() for m in item if m.upper() in METHODS}
        assert described, path
        for method, operation in item.items():
            if method.upper() in METHODS:
                assert operation.get("operationId") and operation.get("responses"), (path, method)
        url = concrete(path)
        if "GET" in described:
            answer = client.get(url)
            assert "no such admin endpoint" not in answer.text, (path, answer.text)
            assert answer.status_code != 405, (path, answer.text)
        for method in sorted(METHODS - described):
            answer = client.request(method, url)
            assert answer.status_code == 405, (path, method, answer.status_code, answer.text)
            assert set(answer.headers["Allow"].split(", ")) == described, (path, method)


def test_an_undescribed_path_is_not_routed(client: httpx.Client) -> None:
    doc = client.get(f"{A}/openapi.json").json()
    assert f"{A}/nothing-here" not in doc["paths"]
    answer = client.get(f"{A}/nothing-here")
    assert answer.status_code == 404 and "no such admin endpoint" in answer.text
