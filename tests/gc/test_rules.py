"""GC rules on real services: what is collected and what is kept."""

from __future__ import annotations

from gcenv import OCI_INDEX, Env


def test_untagged_manifest_collected_only_after_grace(env: Env) -> None:
    image = env.push_image("app", "v1", [b"layer-a", b"layer-b"])
    env.manifests.delete("app", "v1")
    report = env.collector(delay=3600).run()
    assert report.manifests_deleted == 0 and image["digest"] in env.manifest_digests("app")
    report = env.collector().run()
    assert report.manifests_deleted == 1
    assert env.manifest_digests("app") == set()
    assert report.blobs_deleted == 3  # config + two layers
    assert env.blob_rows() == set()
    assert list(env.driver.list("blobs")) == [] and list(env.driver.list("manifests")) == []


def test_tagged_manifest_and_its_blobs_kept(env: Env) -> None:
    image = env.push_image("app", "v1", [b"layer-a"])
    report = env.collector().run()
    assert report.objects_freed == 0
    assert env.manifest_digests("app") == {image["digest"]}
    assert len(env.linked_blobs("app")) == 2


def test_index_children_kept_then_collected_with_index(env: Env) -> None:
    amd = env.push_image("app", None, [b"amd64"])
    arm = env.push_image("app", None, [b"arm64"])
    index = env.put_manifest(
        "app",
        "multi",
        OCI_INDEX,
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [amd, arm]},
    )
    env.collector().run()
    assert env.manifest_digests("app") == {amd["digest"], arm["digest"], index["digest"]}
    env.manifests.delete("app", "multi")
    report = env.collector().run()
    assert env.manifest_digests("app") == set()
    assert report.manifests_deleted == 3 and env.blob_rows() == set()


def test_referrers_go_with_their_subject(env: Env) -> None:
    image = env.push_image("app", "v1", [b"layer"])
    signature = env.push_image("app", None, [b"signature"], subject=image)
    env.collector().run()
    assert signature["digest"] in env.manifest_digests("app")
    env.manifests.delete("app", "v1")
    env.collector().run()
    assert env.manifest_digests("app") == set()
    assert env.blob_rows() == set()


def test_shared_blob_kept_until_both_repositories_drop_it(env: Env) -> None:
    env.push_image("one", "v1", [b"shared", b"only-one"])
    env.push_image("two", "v1", [b"shared"])
    shared = "sha256:" + __import__("hashlib").sha256(b"shared").hexdigest()
    env.manifests.delete("one", "v1")
    env.collector().run()
    assert shared in env.blob_rows()
    assert shared not in env.linked_blobs("one") and shared in env.linked_blobs("two")
    env.manifests.delete("two", "v1")
    env.collector().run()
    assert env.blob_rows() == set()


def test_unreferenced_layer_link_ages_out(env: Env) -> None:
    layer = env.push_blob("app", b"pushed but never referenced")
    env.collector(delay=3600).run()
    assert layer["digest"] in env.linked_blobs("app")
    report = env.collector().run()
    assert report.links_deleted == 1 and report.blobs_deleted == 1
    assert env.blob_rows() == set()


def test_dry_run_changes_nothing(env: Env) -> None:
    env.push_image("app", "v1", [b"layer"])
    env.manifests.delete("app", "v1")
    dry = env.collector().run(dry_run=True)
    assert dry.manifests_deleted == 1 and dry.blobs_deleted == 2 and dry.bytes_freed > 0
    assert len(env.manifest_digests("app")) == 1
    real = env.collector().run()
    assert (real.manifests_deleted, real.blobs_deleted, real.bytes_freed) == (
        dry.manifests_deleted,
        dry.blobs_deleted,
        dry.bytes_freed,
    )


def test_re_pushing_a_blob_renews_its_grace(env: Env) -> None:
    layer = env.push_blob("app", b"layer a client is about to reference")
    __import__("time").sleep(1.2)
    env.push_blob("app", b"layer a client is about to reference")  # existing blob: relinked
    report = env.collector(delay=1.0).run()
    assert report.links_deleted == 0 and layer["digest"] in env.linked_blobs("app")


def test_blobs_listed_in_an_index_are_kept_with_it(env: Env) -> None:
    """A BuildKit cache index lists layer blobs (and its config) as entries, not manifests."""
    layers = [env.push_blob("app", b"cache-layer-a"), env.push_blob("app", b"cache-layer-b")]
    config = env.push_blob("app", b'{"records":[]}')
    config["mediaType"] = "application/vnd.buildkit.cacheconfig.v0"
    env.put_manifest(
        "app",
        "buildcache",
        OCI_INDEX,
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [*layers, config]},
    )
    env.collector().run()
    wanted = {layers[0]["digest"], layers[1]["digest"], config["digest"]}
    assert env.linked_blobs("app") == wanted and env.blob_rows() == wanted
    env.manifests.delete("app", "buildcache")
    env.collector().run()
    assert env.manifest_digests("app") == set() and env.blob_rows() == set()


def test_re_pushing_a_manifest_by_digest_renews_its_grace(env: Env) -> None:
    """A multi-platform push sends its images by digest, then the index. An image already
    stored untagged, its review due, was collected right after its re-push was answered
    201, and the index that followed failed with MANIFEST_BLOB_UNKNOWN."""
    image = env.push_image("app", None, [b"an image an index is about to list"])
    __import__("time").sleep(1.2)
    again = env.push_image("app", None, [b"an image an index is about to list"])  # 201 again
    assert again == image
    report = env.collector(delay=1.0).run()
    assert report.manifests_deleted == 0 and image["digest"] in env.manifest_digests("app")
    __import__("time").sleep(1.2)
    report = env.collector(delay=1.0).run()  # the renewed grace ends like any other
    assert report.manifests_deleted == 1 and env.manifest_digests("app") == set()
