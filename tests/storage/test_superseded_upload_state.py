"""A state of an upload that was aborted, after which a new upload started under the
same id with fewer bytes, is not a state of the new one (every driver).

The registry does this: a final PUT whose commit took effect but whose blob row the
database refused copies the acknowledged bytes into a fresh upload under the session's
id (``UploadService._restore``); if that copy fails half-way and its abort fails too,
the session is put back with its old state while a shorter file holds the id. The
filesystem driver used to extend that file with zeros up to the old state's size, and
the commit then recorded zeros under the digest of the saved hash state.
"""

from __future__ import annotations

import os

import pytest

from storage.driver import Driver, UploadState, UploadStateInvalid

MiB = 1024 * 1024


def _upload(driver: Driver, upload_id: str, data: bytes) -> UploadState:
    writer = driver.resume_upload(driver.start_upload(upload_id))
    writer.write(data)
    return writer.close()


@pytest.mark.parametrize("size", [1000, 6 * MiB + 5], ids=["tail", "part-and-tail"])
def test_an_older_larger_state_under_a_reused_id_is_refused(driver: Driver, size: int) -> None:
    acknowledged = os.urandom(size)
    old = _upload(driver, "reused", acknowledged)
    driver.abort_upload(old)
    fresh = _upload(driver, "reused", acknowledged[: size // 2])  # a copy cut short

    with pytest.raises(UploadStateInvalid):
        writer = driver.resume_upload(old)
        try:
            writer.write(b"last chunk")
            writer.close(final=True)
        finally:
            writer.abandon()
    with pytest.raises(UploadStateInvalid):
        driver.commit_upload(old, "blobs/reused")
    if size < MiB:  # S3 cannot read back an upload that has parts
        with pytest.raises(UploadStateInvalid):
            b"".join(driver.read_upload(old))

    # The new upload is untouched by all that.
    stored = driver.commit_upload(fresh, "blobs/reused")
    assert driver.get(stored) == acknowledged[: size // 2]
    driver.delete(stored)
