"""Filesystem driver: objects are files under a root directory.

Durability: every object is written to a temporary file in its final
directory, fsynced, renamed into place and the directory fsynced, so a crash
leaves either the old object or the complete new one.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import json
import os
import stat
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from storage.driver import (
    InvalidKey,
    ObjectInfo,
    ObjectNotFound,
    StorageError,
    StorageFull,
    StorageUnavailable,
    UploadState,
    UploadStateInvalid,
)
from storage.keys import check_key, check_prefix, check_upload_id

READ_CHUNK = 4 * 1024 * 1024
# Start disk writeback every this many bytes so the final fsync has little left
# (2 MiB: a 16 MiB PATCH answered ~15 % sooner than with 8 MiB, and 1 MiB no faster).
WRITEBACK_EVERY = 2 * 1024 * 1024
_SYNC_FILE_RANGE_WRITE = 2


def _load_sync_file_range() -> Callable[[int, int, int], None] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        func = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    func.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]

    def start_writeback(fd: int, offset: int, length: int) -> None:
        # Only initiates writeback; errors surface at the fsync that follows.
        func(fd, offset, length, _SYNC_FILE_RANGE_WRITE)

    return start_writeback


_start_writeback = _load_sync_file_range()
_UPLOADS_DIR = "_uploads"
_TMP_PREFIX = ".tmp-"
_DIR_RACE_RETRIES = 10
_T = TypeVar("_T")


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dirs(directory: Path, root: Path) -> None:
    """Create ``directory`` and its missing parents, each made durable in its parent."""
    if directory.is_dir():
        return
    if directory != root:
        _make_dirs(directory.parent, root)
    try:
        directory.mkdir()
    except FileExistsError:
        return
    _fsync_dir(directory.parent)


def _retry_dir_race(root: Path, path: Path, action: Callable[[], _T]) -> _T:
    """Make ``path``'s directory and run ``action`` (which creates ``path``).

    A concurrent delete() removes empty parents, so the directory can vanish
    between mkdir and ``action``; retry a few times.
    """
    for attempt in range(_DIR_RACE_RETRIES):
        try:
            _make_dirs(path.parent, root)
            return action()
        except FileNotFoundError:
            if attempt == _DIR_RACE_RETRIES - 1:
                raise
    raise AssertionError("unreachable")


_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


def _failure(exc: OSError, what: str) -> StorageError:
    """A write that failed: a full disk or quota is StorageFull, anything else an outage."""
    if exc.errno in _NO_SPACE:
        return StorageFull(f"{what}: {exc.strerror}")
    return StorageUnavailable(f"{what}: {exc.strerror}")


def _upload_failure(exc: OSError) -> StorageError:
    """Only a missing file or directory means the upload is gone; EMFILE, EIO, EACCES
    and the like are outages, so the client retries and its session is kept."""
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return UploadStateInvalid(f"upload is gone: {exc.strerror}")
    return _failure(exc, "cannot open upload")


def _check_holds(fd: int, size: int) -> None:
    """Refuse an upload file shorter than its state: not the upload the state describes
    (another one started under the same id) or bytes lost. Extending it would fill the
    acknowledged bytes with zeros, which the saved hash state would not notice."""
    try:
        held = os.fstat(fd).st_size
    except OSError as exc:
        raise _failure(exc, "cannot open upload") from exc
    if held < size:
        raise UploadStateInvalid(f"upload holds {held} of the {size} bytes its state names")


def _listing_failed(exc: OSError) -> None:
    """os.walk's error hook: a directory removed meanwhile holds nothing, but one that
    cannot be read (EMFILE, EIO) must fail the listing; skipping it would make fsck
    take every object in it for missing."""
    if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
        raise _failure(exc, "cannot list storage") from exc


def _translate(exc: OSError, key: str) -> Exception:
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        return ObjectNotFound(key)
    if exc.errno in (errno.EISDIR,):
        return ObjectNotFound(key)
    return _failure(exc, f"filesystem error on {key!r}")


class FilesystemUploadWriter:
    """Appends to ``_uploads/<id>/data``; ``close`` fsyncs."""

    def __init__(self, path: Path, size: int, token: str, dirs_synced: bool = True) -> None:
        self._token = token
        self._path = path
        self._dirs_synced = dirs_synced
        try:
            self._fd = os.open(path, os.O_WRONLY)
        except OSError as exc:
            raise _upload_failure(exc) from exc
        try:
            _check_holds(self._fd, size)
            # Bytes past the durable size belong to an abandoned writer.
            os.ftruncate(self._fd, size)
            os.lseek(self._fd, size, os.SEEK_SET)
        except OSError as exc:
            os.close(self._fd)
            raise _failure(exc, "cannot resume upload") from exc
        except StorageError:
            os.close(self._fd)
            raise
        self._size = size
        self._durable = size
        self._synced_to = size
        self._closed = False

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                written = os.write(self._fd, view)
                view = view[written:]
                self._size += written
        except OSError as exc:
            if exc.errno in _NO_SPACE:
                # Give back the space this request took: none of it can be acknowledged.
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, self._durable)
            raise _failure(exc, "upload write failed") from exc
        if _start_writeback is not None and self._size - self._synced_to >= WRITEBACK_EVERY:
            _start_writeback(self._fd, self._synced_to, self._size - self._synced_to)
            self._synced_to = self._size

    def close(self, final: bool = False) -> UploadState:
        if not self._closed:
            self._closed = True
            try:
                os.fsync(self._fd)
                if not self._dirs_synced and not final:
                    # The upload's directory entries become durable with its first bytes.
                    _fsync_dir(self._path.parent)
                    self._dirs_synced = True
                    self._token = json.dumps({**json.loads(self._token), "dirs_synced": True})
            except OSError as exc:
                raise _failure(exc, "upload fsync failed") from exc
            finally:
                os.close(self._fd)
        return UploadState(token=self._token, size=self._size)

    def abandon(self) -> None:
        if not self._closed:
            self._closed = True
            os.close(self._fd)


class FilesystemDriver:
    """Stores objects as files below ``root``."""

    name = "filesystem"

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()

    # -- helpers -----------------------------------------------------------
    def _path(self, key: str) -> Path:
        check_key(key)
        if key.split("/", 1)[0] == _UPLOADS_DIR:
            raise InvalidKey(f"reserved key: {key!r}")
        return self.root / key

    def _upload_file(self, upload_id: str) -> Path:
        return self.root / _UPLOADS_DIR / check_upload_id(upload_id)

    def _upload_path(self, state: UploadState) -> Path:
        try:
            upload_id = json.loads(state.token)["id"]
        except (ValueError, KeyError, TypeError) as exc:
            raise UploadStateInvalid("malformed upload state") from exc
        if not isinstance(upload_id, str):
            raise UploadStateInvalid("malformed upload state")
        try:
            return self._upload_file(upload_id)
        except InvalidKey as exc:
            raise UploadStateInvalid("malformed upload state") from exc

    # -- contract ----------------------------------------------------------
    def check(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            probe = self.root / f"{_TMP_PREFIX}check-{uuid.uuid4().hex}"
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as exc:
            if exc.errno in _NO_SPACE:
                raise StorageFull(f"storage directory {self.root} is full") from exc
            raise StorageUnavailable(
                f"storage directory {self.root} is not writable: {exc.strerror}"
            ) from exc

    def stat(self, key: str) -> ObjectInfo:
        path = self._path(key)
        try:
            st = path.stat()
        except OSError as exc:
            raise _translate(exc, key) from exc
        if not path.is_file():
            raise ObjectNotFound(key)
        return ObjectInfo(key=key, size=st.st_size)

    def read(self, key: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        path = self._path(key)
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise _translate(exc, key) from exc
        try:
            regular = stat.S_ISREG(os.fstat(fd).st_mode)
        except OSError as exc:
            os.close(fd)
            raise _translate(exc, key) from exc
        # Opening a directory succeeds on Linux; it is not an object.
        if not regular:
            os.close(fd)
            raise ObjectNotFound(key)
        return self._read_fd(fd, offset, length, repr(key))

    @staticmethod
    def _read_fd(fd: int, offset: int, length: int | None, what: str) -> Iterator[bytes]:
        """Stream from an open file, closing it; a failed read (EIO) is an outage."""
        try:
            remaining = length
            position = offset
            while remaining is None or remaining > 0:
                want = READ_CHUNK if remaining is None else min(READ_CHUNK, remaining)
                try:
                    chunk = os.pread(fd, want, position)
                except OSError as exc:
                    raise StorageUnavailable(f"cannot read {what}: {exc.strerror}") from exc
                if not chunk:
                    return
                position += len(chunk)
                if remaining is not None:
                    remaining -= len(chunk)
                yield chunk
        finally:
            os.close(fd)

    def get(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except OSError as exc:
            raise _translate(exc, key) from exc

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        try:
            tmp = path.parent / f"{_TMP_PREFIX}{uuid.uuid4().hex}"
            fd = _retry_dir_race(
                self.root, tmp, lambda: os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            )
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
            _fsync_dir(path.parent)
        except OSError as exc:
            with contextlib.suppress(OSError, UnboundLocalError):
                tmp.unlink()
            raise _failure(exc, f"cannot write {key!r}") from exc

    def delete(self, key: str) -> None:
        path = self._path(key)
        try:
            if path.is_dir():
                raise ObjectNotFound(key)
            path.unlink()
        except OSError as exc:
            raise _translate(exc, key) from exc
        # Tidy empty parent directories; a concurrent writer may refill them.
        parent = path.parent
        while parent != self.root:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    def list(self, prefix: str) -> Iterator[str]:
        prefix = check_prefix(prefix)
        base = self.root / prefix if prefix else self.root
        if prefix and prefix.split("/", 1)[0] == _UPLOADS_DIR:
            return
        if base.is_file():
            yield prefix
            return
        for dirpath, dirnames, filenames in os.walk(base, onerror=_listing_failed):
            rel_dir = os.path.relpath(dirpath, self.root)
            if rel_dir == ".":
                dirnames[:] = [d for d in dirnames if d != _UPLOADS_DIR]
                rel_dir = ""
            for filename in filenames:
                if filename.startswith(_TMP_PREFIX):
                    continue
                yield f"{rel_dir}/{filename}" if rel_dir else filename

    def start_upload(self, upload_id: str) -> UploadState:
        path = self._upload_file(upload_id)
        try:
            _make_dirs(path.parent, self.root)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.close(fd)
            # The directory entry is fsynced by the first writer close: a
            # single-request upload that commits at once never pays for it.
        except FileExistsError as exc:
            raise UploadStateInvalid(f"upload {upload_id!r} already exists") from exc
        except OSError as exc:
            raise _failure(exc, "cannot start upload") from exc
        return UploadState(token=json.dumps({"id": upload_id, "dirs_synced": False}), size=0)

    def resume_upload(self, state: UploadState) -> FilesystemUploadWriter:
        path = self._upload_path(state)
        dirs_synced = bool(json.loads(state.token).get("dirs_synced", True))
        return FilesystemUploadWriter(path, state.size, state.token, dirs_synced)

    def read_upload(self, state: UploadState) -> Iterator[bytes]:
        path = self._upload_path(state)
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            raise _upload_failure(exc) from exc
        try:
            _check_holds(fd, state.size)
        except StorageError:
            os.close(fd)
            raise
        return self._read_fd(fd, 0, state.size, "upload")

    def commit_upload(self, state: UploadState, key: str) -> str:
        source = self._upload_path(state)
        target = self._path(key)
        try:
            if not source.exists() and self._committed(target, state.size):
                # A retried commit (the registry keeps a session whose commit
                # failed) after one that renamed: the object is under its own key.
                _fsync_dir(target.parent)
                return key
            held = source.stat().st_size
            if held < state.size:
                raise UploadStateInvalid(f"upload holds {held} of the {state.size} bytes")
            if held != state.size:
                # Trailing bytes of an abandoned writer must not become visible.
                os.truncate(source, state.size)
                fd = os.open(source, os.O_WRONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            _retry_dir_race(self.root, target, lambda: os.replace(source, target))
            try:
                _fsync_dir(target.parent)
            except OSError:
                # Not durably committed: put the upload back, as it was.
                with contextlib.suppress(OSError):
                    os.replace(target, source)
                raise
        except FileNotFoundError as exc:
            raise UploadStateInvalid("upload is gone") from exc
        except OSError as exc:
            raise _failure(exc, "cannot commit upload") from exc
        return key

    @staticmethod
    def _committed(target: Path, size: int) -> bool:
        try:
            return target.stat().st_size == size
        except OSError:
            return False

    def abort_upload(self, state: UploadState) -> None:
        path = self._upload_path(state)
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise _failure(exc, "cannot abort upload") from exc

    def list_uploads(self) -> Iterator[tuple[str, UploadState]]:
        base = self.root / _UPLOADS_DIR
        if not base.is_dir():
            return
        try:
            entries = sorted(base.iterdir())
        except FileNotFoundError:
            return
        except OSError as exc:
            raise _failure(exc, "cannot list uploads") from exc
        for entry in entries:
            try:
                size = entry.stat().st_size
            except OSError:
                size = 0
            yield entry.name, UploadState(token=json.dumps({"id": entry.name}), size=size)

    def redirect_url(self, key: str, expires_in: int) -> str | None:
        self._path(key)  # invalid keys fail here as in every other method
        return None
