"""Malformed input at every endpoint: never a 5xx, and every error has the JSON error body.

Requests go out on raw connections exactly as written (``..`` segments, percent escapes and
odd headers are not normalised away by the client).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx
import pytest
from support.server import RegistryServer
from v2client import Image, check_error_body, push_image, raw_request, start_upload

GOOD = "sha256:" + "a" * 64
BAD_DIGESTS = [
    "sha256:",
    ":",
    "a:b",
    "sha256:" + "a" * 63,
    "sha256:" + "a" * 65,
    "sha256:" + "a" * 5000,
    "SHA256:" + "a" * 64,
    "sha512:" + "a" * 64,
    "sha256:..%2F..%2Fetc",
    "sha256:%00" + "a" * 61,
    "sha256:" + "%C3%A9" * 32,
    "sha256+b64:" + "A" * 43,
]
BAD_NAMES = [
    "..",
    "../etc",
    "a/../b",
    "a/./b",
    "%2e%2e/x",
    "a%2F..%2Fb",
    "a%00b",
    "%C3%A9t%C3%A9",
    "a%20b",
    "a" * 300,
    "/".join(["a"] * 200),
    "a//b",
    "_",
]
BAD_UPLOAD_IDS = ["..", "%2e%2e", "..%2F..%2Fx", "a" * 65, "a" * 2000, "%00", "%F0%9F%99%82", "0"]
BAD_N = ["99999999999999999999999999", "-1", "1e5", "%00", "", "10001", "n", "%C3%A9"]
BAD_LAST = ["%00", "%FF%FE", "a" * 5000, "%C3%A9", "..%2F.."]


@dataclass(frozen=True)
class Case:
    method: str
    target: str
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None

    @property
    def label(self) -> str:
        return f"{self.method} {self.target[:90]}"


def _cases() -> list[Case]:
    cases: list[Case] = []
    for digest in BAD_DIGESTS:
        cases += [
            Case("GET", f"/v2/repo/blobs/{digest}"),
            Case("HEAD", f"/v2/repo/blobs/{digest}"),
            Case("DELETE", f"/v2/repo/blobs/{digest}"),
            Case("GET", f"/v2/repo/manifests/{digest}"),
            Case("PUT", f"/v2/repo/manifests/{digest}", body=b"{}"),
            Case("DELETE", f"/v2/repo/manifests/{digest}"),
            Case("GET", f"/v2/repo/referrers/{digest}"),
            Case("POST", f"/v2/repo/blobs/uploads/?digest={digest}", body=b"x"),
            Case("POST", f"/v2/repo/blobs/uploads/?mount={digest}&from=src"),
        ]
    for name in BAD_NAMES:
        cases += [
            Case("GET", f"/v2/{name}/blobs/{GOOD}"),
            Case("GET", f"/v2/{name}/manifests/latest"),
            Case("PUT", f"/v2/{name}/manifests/latest", body=b"{}"),
            Case("GET", f"/v2/{name}/tags/list"),
            Case("GET", f"/v2/{name}/referrers/{GOOD}"),
            Case("POST", f"/v2/{name}/blobs/uploads/"),
            Case("POST", f"/v2/repo/blobs/uploads/?mount={GOOD}&from={name}"),
        ]
    for upload_id in BAD_UPLOAD_IDS:
        for method in ("GET", "HEAD", "PATCH", "PUT", "DELETE"):
            cases.append(
                Case(method, f"/v2/repo/blobs/uploads/{upload_id}?digest={GOOD}", body=b"x")
            )
    for n in BAD_N:
        cases += [Case("GET", f"/v2/repo/tags/list?n={n}"), Case("GET", f"/v2/_catalog?n={n}")]
    for last in BAD_LAST:
        cases += [
            Case("GET", f"/v2/repo/tags/list?last={last}"),
            Case("GET", f"/v2/_catalog?n=5&last={last}"),
        ]
    cases += [
        Case("GET", "/v2/repo/manifests/" + "t" * 5000),
        Case("GET", "/v2/repo/manifests/a%00b"),
        Case("GET", "/v2/" + "x/" * 3000 + "tags/list"),
        Case("GET", "/v2/_catalog?n=1&n=2&last=a&last=b"),
        Case("GET", f"/v2/repo/referrers/{GOOD}?artifactType=%00%FF"),
        Case("POST", "/v2/repo/blobs/uploads/?digest=a&digest=b", body=b"x"),
        Case("PUT", "/v2/repo/manifests/latest", {"Content-Type": "a" * 5000}, b"{}"),
        Case("GET", "/v2/repo/blobs/uploads/", {"Content-Range": "garbage"}),
    ]
    return cases


CASES = _cases()


def check(server: RegistryServer, case: Case) -> None:
    response = raw_request(
        server.url, case.method, case.target, headers=case.headers, body=case.body
    )
    assert response.status < 500, f"{case.label}: {response.status} {response.body[:300]!r}"
    if response.status >= 400 and case.method != "HEAD":
        check_error_body(response.body)


def test_malformed_requests_never_fail_the_server(api_server: RegistryServer) -> None:
    failures: list[str] = []
    for case in CASES:
        try:
            check(api_server, case)
        except AssertionError as exc:
            failures.append(str(exc).splitlines()[0])
        except (ValueError, OSError) as exc:
            failures.append(f"{case.label}: {exc!r}")
    assert not failures, f"{len(failures)} of {len(CASES)} failed:\n" + "\n".join(failures)


@pytest.fixture
def image(client: httpx.Client, repo: str) -> Image:
    return push_image(client, repo, "v1", seed=90)


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000,
        b'{"a":' * 100_000,
        b'{"schemaVersion": 2, "config": ' + b"[" * 50_000,
        b"\xff\xfe\xfd",
        b"\x00" * 100,
        b'{"schemaVersion": 2, "layers": [' + b"1" * 5000 + b"]}",
        b'{"schemaVersion": 2, "mediaType": ["x"], "layers": []}',
        b'{"schemaVersion": 2, "manifests": {"a": 1}}',
        b'{"schemaVersion": 2, "config": {"mediaType": "a", "digest": "'
        + GOOD.encode()
        + b'", "size": 100000000000000000000000000000}, "layers": []}',
        b'{"schemaVersion": 2, "subject": "not a descriptor", "config": {}, "layers": []}',
        b'{"schemaVersion": 2, "annotations": [1, 2], "manifests": []}',
        b'{"schemaVersion": 2.0, "manifests": []}',
        b'{"schemaVersion": true, "manifests": []}',
    ],
    ids=lambda body: repr(body[:24]),
)
@pytest.mark.parametrize(
    "content_type",
    ["application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.index.v1+json"],
)
def test_malformed_manifest_bodies(
    api_server: RegistryServer, repo: str, image: Image, body: bytes, content_type: str
) -> None:
    case = Case("PUT", f"/v2/{repo}/manifests/junk", {"Content-Type": content_type}, body)
    check(api_server, case)
    response = raw_request(
        api_server.url, case.method, case.target, headers=case.headers, body=body
    )
    assert 400 <= response.status < 500, response.status


@pytest.mark.parametrize(
    "content_range",
    [
        "bytes=0-",
        "0-",
        "-",
        "",
        "99999999999999999999999999-99999999999999999999999999",
        "0-99999999999999999999999999",
        "10-5",
        "0-3/2",
        "bytes 0-3/*",
        "0--3",
    ],
)
def test_bad_content_range_on_patch(
    api_server: RegistryServer, client: httpx.Client, repo: str, content_range: str
) -> None:
    url = httpx.URL(start_upload(client, repo))
    headers = {"Content-Range": content_range, "Content-Type": "application/octet-stream"}
    check(api_server, Case("PATCH", url.raw_path.decode(), headers, b"abcd"))
    # Whatever happened, the session still reports a well-formed state.
    status = client.get(url)
    assert status.status_code in (204, 404), status.text


@pytest.mark.parametrize(
    "range_header",
    [
        "bytes=abc",
        "bytes=5-1",
        "bytes=99999999999999999999999-",
        "bytes=-99999999999999999999999",
        "items=0-1",
        "bytes=0-1,2-3",
        "bytes=",
        "bytes=--1",
    ],
)
def test_bad_range_on_blob_get(
    api_server: RegistryServer, client: httpx.Client, repo: str, image: Image, range_header: str
) -> None:
    target = f"/v2/{repo}/blobs/{image.layers[0].digest}"
    for method in ("GET", "HEAD"):
        check(api_server, Case(method, target, {"Range": range_header}))
