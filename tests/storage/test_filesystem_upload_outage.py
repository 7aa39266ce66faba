"""An upload the filesystem driver cannot open right now is an outage, not a lost upload,
and a directory it cannot read fails a listing instead of being skipped.

Only ENOENT/ENOTDIR mean the upload is gone (404 BLOB_UPLOAD_UNKNOWN for the
client, which then restarts its push); anything else, such as running out of file
descriptors, is StorageUnavailable (503), so the client retries and the session
with its acknowledged bytes is kept. The tests run as root, which ignores file
permissions, so the real condition used is EMFILE: a child process lowers its
RLIMIT_NOFILE, takes every descriptor left, and calls the driver directly. A
listing that silently skipped what it could not read would make ``lading fsck
--repair`` take the objects there for missing and remove their blobs' rows.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import storage.filesystem
from storage.driver import UploadState, UploadStateInvalid
from storage.filesystem import FilesystemDriver

_CHILD = """
import json, os, resource, sys
from storage.driver import UploadState
from storage.filesystem import FilesystemDriver

root, token, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
driver = FilesystemDriver(root)
state = UploadState(token, size)
calls = {
    "resume_upload": lambda: driver.resume_upload(state),
    "read_upload": lambda: driver.read_upload(state),
    "list": lambda: list(driver.list("")),
    "list_uploads": lambda: list(driver.list_uploads()),
}
resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
held = []
try:
    while True:
        held.append(os.open(os.devnull, os.O_RDONLY))
except OSError:
    pass
results = {}
for name, call in calls.items():
    try:
        call()
        results[name] = "no error"
    except Exception as exc:
        results[name] = type(exc).__name__
for fd in held:
    os.close(fd)
print(json.dumps(results))
"""


def _in_child_without_descriptors(root: Path, state: UploadState) -> dict[str, str]:
    source_root = Path(storage.filesystem.__file__).resolve().parents[1]  # the code under test
    done = subprocess.run(
        [sys.executable, "-c", _CHILD, str(root), state.token, str(state.size)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(source_root), "PATH": "/usr/bin:/bin"},
        check=True,
    )
    results: dict[str, str] = json.loads(done.stdout)
    return results


def test_no_file_descriptors_is_an_outage_and_nothing_is_lost(tmp_path: Path) -> None:
    fs = FilesystemDriver(tmp_path / "store")
    fs.check()
    writer = fs.resume_upload(fs.start_upload("emfile"))
    writer.write(b"acknowledged")
    state = writer.close()
    fs.put("blobs/present", b"listed")

    assert _in_child_without_descriptors(fs.root, state) == {
        "resume_upload": "StorageUnavailable",
        "read_upload": "StorageUnavailable",
        "list": "StorageUnavailable",
        "list_uploads": "StorageUnavailable",
    }
    assert list(fs.list("")) == ["blobs/present"]
    fs.delete("blobs/present")

    # Once descriptors are free again the upload continues from its durable state.
    writer = fs.resume_upload(state)
    writer.write(b" and more")
    state = writer.close(final=True)
    assert fs.get(fs.commit_upload(state, "blobs/emfile")) == b"acknowledged and more"
    fs.delete("blobs/emfile")


def test_a_removed_upload_is_still_gone(tmp_path: Path) -> None:
    fs = FilesystemDriver(tmp_path / "store")
    fs.check()
    state = fs.start_upload("removed")
    (fs.root / "_uploads" / "removed").unlink()
    for call in (lambda: fs.resume_upload(state), lambda: fs.read_upload(state)):
        try:
            call()
        except UploadStateInvalid:
            continue
        raise AssertionError("a removed upload must be UploadStateInvalid")
