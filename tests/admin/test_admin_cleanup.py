"""End-to-end cleanup: 30 tags, preview keep-newest-5, apply, collect garbage; usage
shrinks by exactly the predicted bytes, storage by those less the manifests' (which are in
the database), and the kept tags still pull.

This variant pushes over the v2 API (``test_admin_cleanup_docker.py`` does it with a
real Docker engine)."""

from __future__ import annotations

import httpx
from admin_support import Pushed, push_image, storage_bytes
from support.server import RegistryServer

A = "/admin/v1"
REPO = "team/cleanup"
POLICY = {"name": "keep-5", "repository_pattern": "team/*", "keep_newest": 5}


def pull_all(client: httpx.Client, image: Pushed) -> None:
    """Manifest, config and every layer, as a client pulling the tag would."""
    got = client.get(f"/v2/{REPO}/manifests/{image.tag}")
    assert got.status_code == 200 and got.headers["docker-content-digest"] == image.digest
    for digest in [image.config_digest, *(d for d, _ in image.layers)]:
        assert client.get(f"/v2/{REPO}/blobs/{digest}").status_code == 200, digest


def test_keep_newest_five_frees_exactly_the_predicted_bytes(
    cleanup_server: RegistryServer,
) -> None:
    with cleanup_server.client(timeout=120) as client:
        base = b"base layer shared by every tag" * 2000
        images = [
            push_image(client, REPO, f"build-{i:02d}", 1000 + i, layer_sizes=(20_000 + i,),
                       shared_layer=base)
            for i in range(30)
        ]  # fmt: skip
        # Another repository the policy does not match, sharing the base layer.
        other = push_image(client, "elsewhere/app", "v1", 5, shared_layer=base)
        before_usage = client.get(f"{A}/usage").json()["total_bytes"]
        before_disk = storage_bytes(cleanup_server.data_dir)

        preview = client.post(f"{A}/retention/preview", json={"policy": POLICY})
        assert preview.status_code == 200, preview.text
        plan = preview.json()
        doomed, kept = images[:25], images[25:]
        assert plan["applied"] is False and plan["tags"] == 25 and plan["manifests"] == 25
        [repo_plan] = plan["repositories"]
        assert {t["name"] for t in repo_plan["tags"]} == {i.tag for i in doomed}
        # The shared base layer stays: kept tags and another repository still use it.
        expected = sum(i.total_size - len(base) for i in doomed)
        assert plan["bytes_freed"] == expected
        # A preview changes nothing.
        assert client.get(f"{A}/usage").json()["total_bytes"] == before_usage

        applied = client.post(f"{A}/retention/apply", json={"policy": POLICY})
        assert applied.status_code == 200, applied.text
        assert applied.json()["applied"] is True
        assert applied.json()["bytes_freed"] == expected
        tags = client.get(f"{A}/repositories/{REPO}/-/tags").json()["items"]
        assert [t["name"] for t in tags] == [i.tag for i in kept]

        run = client.post(f"{A}/gc/runs", json={"wait": True})
        assert run.status_code == 200 and run.json()["status"] == "ok", run.text
        after_usage = client.get(f"{A}/usage").json()
        assert before_usage - after_usage["total_bytes"] == expected
        assert after_usage["unreferenced_blob_bytes"] == 0
        manifest_bytes = sum(i.manifest_size for i in doomed)  # freed in the database
        assert before_disk - storage_bytes(cleanup_server.data_dir) == expected - manifest_bytes

        for image in kept:
            pull_all(client, image)
        assert client.get(f"/v2/{REPO}/manifests/{doomed[0].tag}").status_code == 404
        other_tags = client.get(f"{A}/repositories/elsewhere/app/-/tags").json()["items"]
        assert [t["digest"] for t in other_tags] == [other.digest]

        audit = client.get(f"{A}/audit", params={"action": "retention.apply"}).json()["items"]
        assert audit[0]["details"]["tags_deleted"] == 25
        assert audit[0]["details"]["bytes_freed_expected"] == expected
