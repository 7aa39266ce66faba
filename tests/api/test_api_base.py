"""``GET /v2/``, unknown endpoints and methods: statuses, headers and the JSON error body."""

from __future__ import annotations

import httpx
import pytest
from support.server import RegistryServer
from v2client import expect_error, raw_request

API_VERSION = "registry/2.0"


def test_base_endpoint(client: httpx.Client) -> None:
    response = client.get("/v2/")
    assert response.status_code == 200
    assert response.headers["Docker-Distribution-API-Version"] == API_VERSION


def test_base_endpoint_head(client: httpx.Client) -> None:
    response = client.head("/v2/")
    assert response.status_code == 200
    assert response.headers["Docker-Distribution-API-Version"] == API_VERSION
    assert response.content == b""


@pytest.mark.parametrize(
    "path",
    [
        "/v2/nothing-here",
        "/v2/repo/unknown/endpoint",
        "/v2/repo/tags",
        "/v2/repo/tags/list/extra",
        "/v2/repo/referrers",
        "/nowhere",
        "/v3/",
    ],
)
def test_unknown_paths_are_404_with_json_errors(client: httpx.Client, path: str) -> None:
    response = client.get(path)
    expect_error(response, 404)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v2/repo/manifests/latest"),
        ("PATCH", "/v2/repo/manifests/latest"),
        ("PUT", "/v2/repo/blobs/sha256:" + "a" * 64),
        ("POST", "/v2/repo/tags/list"),
        ("DELETE", "/v2/repo/tags/list"),
        ("GET", "/v2/repo/blobs/uploads/"),
        ("PUT", "/v2/repo/referrers/sha256:" + "a" * 64),
    ],
)
def test_wrong_method_is_a_json_4xx(client: httpx.Client, method: str, path: str) -> None:
    response = client.request(method, path)
    assert response.status_code in (404, 405), response.text
    expect_error(response, response.status_code)


def test_errors_carry_api_version_header(client: httpx.Client) -> None:
    response = client.get("/v2/repo/manifests/latest")
    expect_error(response, 404, "MANIFEST_UNKNOWN")
    assert response.headers["Docker-Distribution-API-Version"] == API_VERSION
    assert response.headers["Content-Type"].startswith("application/json")


def test_head_error_has_no_body(api_server: RegistryServer) -> None:
    # A raw connection sees exactly what was sent: a HEAD answer carries no body bytes.
    response = raw_request(api_server.url, "HEAD", "/v2/repo/manifests/missing")
    assert response.status == 404
    assert response.body == b""
