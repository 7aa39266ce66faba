"""The admin API over HTTP against a real ``lading serve --workers 2``."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from admin_support import errors_of, push_image, push_index, sha256
from conftest import ADMIN_TOKEN
from support.server import RegistryServer

A = "/admin/v1"
VF = "VALIDATION_FAILED"
POLICY = {"name": "x", "repository_pattern": "*"}
NUL_POLICY = {**POLICY, "keep_newest": 1, "repository_pattern": "a\u0000"}


def test_openapi_document_lists_every_endpoint(client: httpx.Client) -> None:
    doc = client.get(f"{A}/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    paths = doc["paths"]
    assert set(paths[f"{A}/repositories/{{name}}"]) == {"get", "delete"}
    assert "post" in paths[f"{A}/retention/apply"]
    assert "post" in paths[f"{A}/gc/runs"] and "get" in paths[f"{A}/gc/runs"]
    schema = doc["components"]["schemas"]["PolicyIn"]
    assert schema["additionalProperties"] is False


def test_repositories_list_filter_sort_and_pages(client: httpx.Client, repo: str) -> None:
    push_image(client, f"{repo}/small", "v1", 1, layer_sizes=(100,))
    push_image(client, f"{repo}/big", "v1", 2, layer_sizes=(50_000,))
    push_image(client, f"{repo}/mid", "v1", 3, layer_sizes=(5_000,))
    listed = client.get(f"{A}/repositories", params={"filter": f"{repo}/*"}).json()
    assert [r["name"] for r in listed["items"]] == [f"{repo}/{n}" for n in ("big", "mid", "small")]
    by_size = client.get(
        f"{A}/repositories", params={"filter": repo, "sort": "size", "order": "desc"}
    ).json()
    assert [r["name"].rsplit("/", 1)[1] for r in by_size["items"]] == ["big", "mid", "small"]
    big = by_size["items"][0]
    assert big["tag_count"] == 1 and big["manifest_count"] == 1
    assert big["size_bytes"] == big["exclusive_bytes"] + big["shared_bytes"] + big["manifest_bytes"]
    first = client.get(f"{A}/repositories", params={"filter": repo, "limit": 2}).json()
    assert len(first["items"]) == 2 and first["next_cursor"]
    rest = client.get(
        f"{A}/repositories", params={"filter": repo, "limit": 2, "cursor": first["next_cursor"]}
    ).json()
    assert [r["name"] for r in rest["items"]] == [f"{repo}/small"] and rest["next_cursor"] is None
    shown = client.get(f"{A}/repositories/{repo}/big")
    assert shown.status_code == 200 and shown.json()["name"] == f"{repo}/big"
    encoded = client.get(f"{A}/repositories/{repo.replace('/', '%2F')}%2Fbig")
    assert encoded.status_code == 200


def test_tags_and_manifests_with_platforms_sizes_and_pull_times(
    client: httpx.Client, repo: str
) -> None:
    shared = b"shared layer" * 1000
    amd = push_image(client, repo, "amd", 10, shared_layer=shared)
    arm = push_image(client, repo, None, 11, shared_layer=shared, arch="arm64")
    index_digest = push_index(client, repo, "multi", [amd, arm])
    tags = {t["name"]: t for t in client.get(f"{A}/repositories/{repo}/-/tags").json()["items"]}
    assert set(tags) == {"amd", "multi"}
    assert tags["amd"]["platforms"] == ["linux/amd64"]
    assert tags["amd"]["size_bytes"] == amd.total_size
    assert tags["multi"]["platforms"] == ["linux/amd64", "linux/arm64"]
    assert tags["multi"]["digest"] == index_digest
    assert tags["amd"]["last_pulled_at"] is None
    assert client.get(f"/v2/{repo}/manifests/amd").status_code == 200
    # Recorded after the response, by whichever worker served it.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        tags = {t["name"]: t for t in client.get(f"{A}/repositories/{repo}/-/tags").json()["items"]}
        if tags["amd"]["last_pulled_at"]:
            break
        time.sleep(0.1)
    assert tags["amd"]["last_pulled_at"] is not None
    manifests = client.get(f"{A}/repositories/{repo}/-/manifests").json()["items"]
    assert {m["digest"] for m in manifests} == {amd.digest, arm.digest, index_digest}
    untagged = client.get(f"{A}/repositories/{repo}/-/manifests", params={"untagged": "true"})
    assert [m["digest"] for m in untagged.json()["items"]] == [arm.digest]


def test_a_pull_answered_not_modified_is_recorded(client: httpx.Client, repo: str) -> None:
    """A client revalidating its copy of a tag (If-None-Match, 304) is still pulling it."""
    image = push_image(client, repo, "v1", 12)
    revalidated = client.get(
        f"/v2/{repo}/manifests/v1", headers={"If-None-Match": f'"{image.digest}"'}
    )
    assert revalidated.status_code == 304
    deadline = time.monotonic() + 20
    pulled_at = None
    while pulled_at is None and time.monotonic() < deadline:
        time.sleep(0.1)
        tags = client.get(f"{A}/repositories/{repo}/-/tags").json()["items"]
        pulled_at = tags[0]["last_pulled_at"]
    assert pulled_at is not None


def test_inspect_image_index_and_platform(client: httpx.Client, repo: str) -> None:
    amd = push_image(client, repo, "amd", 20)
    arm = push_image(client, repo, None, 21, arch="arm64")
    push_index(client, repo, "multi", [amd, arm])
    image = client.get(f"{A}/repositories/{repo}/-/inspect/amd").json()
    assert image["platform"] == "linux/amd64"
    assert image["config"]["env"] == ["PATH=/usr/bin:/bin", "SEED=20"]
    assert image["config"]["entrypoint"] == ["/bin/sh", "-c"]
    assert image["config"]["labels"] == {"org.example.seed": "20"}
    assert image["created"] == "2026-01-02T03:04:05Z" and len(image["history"]) == 1
    assert [(layer["digest"], layer["size"]) for layer in image["layers"]] == list(amd.layers)
    assert image["total_size"] == amd.total_size
    index = client.get(f"{A}/repositories/{repo}/-/inspect/multi").json()
    assert [p["platform"] for p in index["platforms"]] == ["linux/amd64", "linux/arm64"]
    one = client.get(
        f"{A}/repositories/{repo}/-/inspect/multi", params={"platform": "linux/arm64"}
    ).json()
    assert one["digest"] == arm.digest and one["config"]["env"][1] == "SEED=21"
    missing = client.get(
        f"{A}/repositories/{repo}/-/inspect/multi", params={"platform": "linux/riscv64"}
    )
    assert missing.status_code == 404
    by_digest = client.get(f"{A}/repositories/{repo}/-/inspect/{amd.digest}")
    assert by_digest.json()["digest"] == amd.digest


def test_referrers_are_reported(client: httpx.Client, repo: str) -> None:
    subject = push_image(client, repo, "signed", 30)
    sig = b'{"sig":"x"}'
    from admin_support import OCI_MANIFEST, push_blob

    sig_digest = push_blob(client, repo, sig)
    empty = push_blob(client, repo, b"{}")
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/example.sig",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [
            {"mediaType": "application/octet-stream", "digest": sig_digest, "size": len(sig)}
        ],
        "subject": {
            "mediaType": OCI_MANIFEST,
            "digest": subject.digest,
            "size": subject.manifest_size,
        },
    }
    manifest = json.dumps(document).encode()
    put = client.put(
        f"/v2/{repo}/manifests/{sha256(manifest)}",
        content=manifest,
        headers={"Content-Type": OCI_MANIFEST},
    )
    assert put.status_code == 201, put.text
    image = client.get(f"{A}/repositories/{repo}/-/inspect/signed").json()
    assert [r["digest"] for r in image["referrers"]] == [sha256(manifest)]
    assert image["referrers"][0]["artifactType"] == "application/example.sig"


def test_deletions_are_audited(client: httpx.Client, repo: str) -> None:
    push_image(client, repo, "a", 40)
    b = push_image(client, repo, "b", 41)
    push_image(client, f"{repo}/gone", "x", 42)
    assert client.delete(f"{A}/repositories/{repo}/-/tags/a").status_code == 200
    assert client.get(f"/v2/{repo}/manifests/a").status_code == 404
    assert client.delete(f"{A}/repositories/{repo}/-/tags/a").status_code == 404
    assert client.delete(f"{A}/repositories/{repo}/-/manifests/{b.digest}").status_code == 200
    assert client.get(f"/v2/{repo}/manifests/b").status_code == 404
    gone = client.delete(f"{A}/repositories/{repo}/gone")
    assert gone.status_code == 200
    assert gone.json()["details"] == {"tags_deleted": 1, "manifests_deleted": 1}
    assert client.get(f"{A}/repositories/{repo}/gone").status_code == 404
    entries = client.get(f"{A}/audit", params={"limit": 50}).json()["items"]
    seen = {(e["action"], e["target"]) for e in entries}
    assert ("tag.delete", f"{repo}:a") in seen
    assert ("manifest.delete", f"{repo}@{b.digest}") in seen
    assert ("repository.delete", f"{repo}/gone") in seen
    assert all(e["actor"].startswith("anonymous@127.0.0.1") for e in entries)
    only = client.get(f"{A}/audit", params={"action": "repository.delete"}).json()["items"]
    assert only and {e["action"] for e in only} == {"repository.delete"}


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"),
    [
        ("POST", "/retention/preview", {"json": {"all": True, "surprise": 1}}, 422, VF),
        ("POST", "/retention/preview", {"json": {}}, 422, VF),
        ("POST", "/retention/preview", {"content": b"{not json"}, 400, "BAD_REQUEST"),
        ("POST", "/retention/policies", {"json": POLICY}, 422, VF),
        ("POST", "/retention/policies", {"json": {**POLICY, "keep_regex": "("}}, 422, VF),
        ("POST", "/gc/runs", {"json": {"dry_run": "maybe"}}, 422, VF),
        ("GET", "/repositories?limit=0", {}, 422, VF),
        ("GET", "/repositories?sort=color", {}, 422, VF),
        ("GET", "/repositories?unknown=1", {}, 422, VF),
        ("GET", "/repositories?cursor=zzz", {}, 400, "BAD_REQUEST"),
        ("GET", "/repositories/Bad..Name", {}, 400, "NAME_INVALID"),
        ("GET", "/repositories/no/such/repo", {}, 404, "NAME_UNKNOWN"),
        ("DELETE", "/repositories/a/-/manifests/sha256:nothex", {}, 400, "DIGEST_INVALID"),
        ("DELETE", "/repositories/a/-/tags/-bad", {}, 400, "TAG_INVALID"),
        ("GET", "/retention/policies/abc", {}, 400, "BAD_REQUEST"),
        ("GET", "/retention/policies/999999", {}, 404, "NOT_FOUND"),
        # Found by schemathesis on PostgreSQL: ids beyond 32 bits, NUL in text.
        ("GET", "/retention/policies/151971275639404", {}, 400, "BAD_REQUEST"),
        ("GET", "/audit?cursor=151971275639404", {}, 400, "BAD_REQUEST"),
        ("GET", "/audit?action=a%00b", {}, 422, VF),
        ("POST", "/retention/preview", {"json": {"policy_ids": [2**40]}}, 422, VF),
        ("POST", "/retention/preview", {"json": {"policy": NUL_POLICY}}, 422, VF),
        ("GET", "/nothing-here", {}, 404, "NOT_FOUND"),
        ("PATCH", "/usage", {}, 405, "UNSUPPORTED"),
    ],
)  # fmt: skip
def test_clear_client_errors(
    client: httpx.Client, method: str, path: str, kwargs: dict[str, object], status: int, code: str
) -> None:
    response = client.request(method, A + path, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == status, response.text
    error = errors_of(response)[0]
    assert error["code"] == code and error["message"]


def test_retention_policies_are_stored(client: httpx.Client, repo: str) -> None:
    body = {"name": f"p-{repo[-10:]}", "repository_pattern": f"{repo}/*", "keep_newest": 3}
    created = client.post(f"{A}/retention/policies", json=body)
    assert created.status_code == 201, created.text
    policy = created.json()
    assert policy["keep_newest"] == 3 and policy["delete_untagged"] is False
    assert client.post(f"{A}/retention/policies", json=body).status_code == 409
    url = f"{A}/retention/policies/{policy['id']}"
    replaced = client.put(url, json={**body, "keep_newest": 7, "delete_untagged": True})
    assert replaced.json()["keep_newest"] == 7 and replaced.json()["delete_untagged"] is True
    listed = client.get(f"{A}/retention/policies").json()["items"]
    assert policy["id"] in {p["id"] for p in listed}
    assert client.delete(url).status_code == 204
    assert client.get(url).status_code == 404


def test_gc_trigger_status_and_history(client: httpx.Client, repo: str) -> None:
    pushed = push_image(client, repo, "doomed", 50, layer_sizes=(7777,))
    assert client.delete(f"{A}/repositories/{repo}").status_code == 200
    run = client.post(f"{A}/gc/runs", json={"wait": True})
    assert run.status_code == 200, run.text
    result = run.json()
    assert result["status"] == "ok" and result["blobs_deleted"] >= 2
    assert result["bytes_freed"] >= pushed.config_size + 7777
    history = client.get(f"{A}/gc/runs").json()["items"]
    assert history[0]["id"] == result["id"]
    status = client.get(f"{A}/gc/status").json()
    assert status["running"] is None and status["last"]["id"] >= result["id"]
    started = client.post(f"{A}/gc/runs", json={"dry_run": True})
    assert started.status_code in (202, 409)
    triggers = client.get(f"{A}/audit", params={"action": "gc.trigger"}).json()["items"]
    assert triggers


def test_usage_reports_exclusive_and_shared(client: httpx.Client, repo: str) -> None:
    shared = b"common base layer" * 500
    one = push_image(client, f"{repo}/one", "v1", 60, shared_layer=shared)
    push_image(client, f"{repo}/two", "v1", 61, shared_layer=shared)
    usage = client.get(f"{A}/usage").json()
    mine = {r["name"]: r for r in usage["repositories"] if r["name"].startswith(repo)}
    assert mine[f"{repo}/one"]["shared_bytes"] == len(shared)
    exclusive = one.total_size - one.manifest_size - len(shared)
    assert mine[f"{repo}/one"]["exclusive_bytes"] == exclusive
    assert mine[f"{repo}/one"]["manifest_bytes"] == one.manifest_size
    assert usage["total_bytes"] == usage["blob_bytes"] + usage["manifest_bytes"]


def test_admin_token_is_required_when_configured(guarded_server: RegistryServer) -> None:
    with guarded_server.client() as client:
        assert client.get(f"{A}/openapi.json").status_code == 200
        missing = client.get(f"{A}/usage")
        assert missing.status_code == 401
        assert errors_of(missing)[0]["code"] == "UNAUTHORIZED"
        assert missing.headers["www-authenticate"].startswith("Bearer ")
        wrong = client.get(f"{A}/usage", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        basic = client.get(f"{A}/usage", auth=("admin", ADMIN_TOKEN))
        assert basic.status_code == 401
        good = client.get(f"{A}/usage", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert good.status_code == 200
        # The registry API itself is unaffected.
        assert client.get("/v2/").status_code == 200
