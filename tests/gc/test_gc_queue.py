"""The GC event queues and run history stay bounded on a busy registry: reviewed
events are deleted, events inside the grace delay are compacted to one per object,
and only the newest ``gc_runs`` rows are kept."""

from __future__ import annotations

from gcenv import OCI_MANIFEST, Env

from registry.services.gc import GarbageCollector

ROUNDS = 6
TAGS = 5


def _queue_rows(env: Env) -> int:
    rows = env.db.fetch_all(
        "SELECT count(*) FROM gc_manifest_reviews UNION ALL SELECT count(*) FROM gc_blob_reviews",
        {},
    )
    return sum(int(r[0]) for r in rows)


def _queued_objects(env: Env) -> int:
    rows = env.db.fetch_all(
        "SELECT count(DISTINCT manifest_id) FROM gc_manifest_reviews"
        " UNION ALL SELECT count(DISTINCT digest) FROM gc_blob_reviews",
        {},
    )
    return sum(int(r[0]) for r in rows)


def _image(env: Env, n: int) -> dict[str, object]:
    layer = env.push_blob("busy/app", f"layer {n}\n".encode() * 20)
    config = env.push_blob("busy/app", f'{{"n": {n}}}'.encode())
    return {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": config, "layers": [layer]}


def test_busy_tags_inside_the_grace_delay_keep_one_event_per_object(env: Env) -> None:
    images = [_image(env, n) for n in range(2)]
    patient = GarbageCollector(env.db, env.driver, review_delay=3600, upload_purge_after=3600)
    sizes = []
    for round_ in range(ROUNDS):
        for t in range(TAGS):  # every tag moves back and forth: two events per move
            env.put_manifest("busy/app", f"t{t}", OCI_MANIFEST, images[(round_ + t) % 2])
        before = _queue_rows(env)
        report = patient.run()
        sizes.append(_queue_rows(env))
        assert report.manifests_deleted == report.blobs_deleted == 0  # nothing due yet
        assert report.events_compacted == before - sizes[-1]
        assert report.events_compacted > 0 or round_ == 0  # tags only move from round 1
        assert sizes[-1] == _queued_objects(env)  # one row per object
    assert len(set(sizes)) == 1, sizes  # the same objects every round: no growth
    assert sizes[0] <= 2 + 4  # two manifests; a layer and a config each

    # The surviving events still get every object reviewed once due.
    env.put_manifest("busy/app", "t0", OCI_MANIFEST, images[0])
    for t in range(1, TAGS):
        env.put_manifest("busy/app", f"t{t}", OCI_MANIFEST, images[0])
    report = env.collector().run()
    assert report.manifests_deleted == 1 and report.blobs_deleted == 2
    assert _queue_rows(env) == 0
    assert len(env.manifest_digests("busy/app")) == 1


def test_reviewed_events_leave_the_queue(env: Env) -> None:
    for n in range(4):
        env.push_image("done/app", f"v{n}", [f"own {n}\n".encode() * 10, b"shared\n" * 10])
    env.push_image("done/app", None, [b"untagged\n" * 10])
    assert _queue_rows(env) > 0
    report = env.collector().run()
    assert report.manifests_deleted == 1
    assert _queue_rows(env) == 0
    assert env.db.fetch_all("SELECT count(*) FROM gc_storage_deletions", {}) == [(0,)]


def test_only_the_newest_runs_are_kept(env: Env) -> None:
    collector = env.collector()
    collector.history.keep_runs = 3
    ids = [collector.run().run_id for _ in range(6)]
    kept = [r[0] for r in env.db.fetch_all("SELECT id FROM gc_runs ORDER BY id", {})]
    # Pruned before each new row: the 3 newest before the last one, and the last.
    assert kept == ids[-4:]
