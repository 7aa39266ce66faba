"""If-None-Match is evaluated after authorization: a conditional read of a repository the
caller may not pull gets the same 401/403 as an unconditional one, never a 304 that would
confirm which manifest or blob the repository holds."""

from __future__ import annotations

import pytest
from authn_support import Lading, SmallImage, bearer, challenge_params

REPO = "cond/app"
USER, OUTSIDER, PASSWORD = "cond-user", "cond-outsider", "conditional-pw-1"


@pytest.fixture(scope="module")
def image(authn: Lading) -> SmallImage:
    authn.add_user(USER, PASSWORD)
    authn.add_user(OUTSIDER, PASSWORD)
    authn.grant("user", USER, "cond/*", "pull")
    token = authn.admin_token(f"repository:{REPO}:pull,push")
    return authn.push_small_image(token, REPO, "v1", 51)


def _paths(image: SmallImage) -> list[str]:
    return [
        f"/v2/{REPO}/manifests/v1",
        f"/v2/{REPO}/manifests/{image.manifest_digest}",
        f"/v2/{REPO}/blobs/{image.layer_digest}",
    ]


def _conditions(image: SmallImage, path: str) -> list[str]:
    digest = image.layer_digest if "/blobs/" in path else image.manifest_digest
    return ["*", f'"{digest}"', f'W/"{digest}"']


def test_conditional_reads_need_pull(authn: Lading, image: SmallImage) -> None:
    scope = f"repository:{REPO}:pull"
    outsider = authn.token(OUTSIDER, PASSWORD, scope)
    user = authn.token(USER, PASSWORD, scope)
    with authn.client() as client:
        for path in _paths(image):
            for field in _conditions(image, path):
                for method in ("GET", "HEAD"):
                    condition = {"If-None-Match": field}
                    anonymous = client.request(method, path, headers=condition)
                    assert anonymous.status_code == 401, (method, path, field)
                    params = challenge_params(anonymous.headers["WWW-Authenticate"])
                    assert params["scope"] == scope
                    assert "ETag" not in anonymous.headers
                    denied = client.request(method, path, headers={**condition, **bearer(outsider)})
                    assert denied.status_code == 403, (method, path, field, denied.status_code)
                    assert "ETag" not in denied.headers
                    allowed = client.request(method, path, headers={**condition, **bearer(user)})
                    assert allowed.status_code == 304, (method, path, field, allowed.status_code)
                    assert allowed.content == b""
