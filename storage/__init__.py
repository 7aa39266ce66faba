"""Byte storage behind one driver contract (see ``storage.driver``)."""

from storage.driver import (
    Driver,
    InvalidKey,
    ObjectInfo,
    ObjectNotFound,
    ObjectTooLarge,
    StorageError,
    StorageFull,
    StorageUnavailable,
    UploadState,
    UploadStateInvalid,
    UploadWriter,
)

__all__ = [
    "Driver",
    "InvalidKey",
    "ObjectInfo",
    "ObjectNotFound",
    "ObjectTooLarge",
    "StorageError",
    "StorageFull",
    "StorageUnavailable",
    "UploadState",
    "UploadStateInvalid",
    "UploadWriter",
]
