"""Pushing a blob the way docker does: HEAD first, then POST and one ``PUT ?digest=``."""

from __future__ import annotations

import httpx

from support.oci import sha256_digest


def push_blob(client: httpx.Client, repo: str, data: bytes, *, skip_existing: bool = True) -> str:
    """Upload ``data`` to ``repo`` unless (with ``skip_existing``) it is already there.

    Skipping a blob the registry reports as present is what clients do, and it is the
    gap between a blob HEAD and the manifest PUT that online GC must respect.
    """
    digest = sha256_digest(data)
    if skip_existing and client.head(f"/v2/{repo}/blobs/{digest}").status_code == 200:
        return digest
    started = client.post(f"/v2/{repo}/blobs/uploads/")
    assert started.status_code == 202, started.text
    location = started.headers["Location"]
    sep = "&" if "?" in location else "?"
    done = client.put(
        f"{location}{sep}digest={digest}",
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    assert done.status_code == 201, done.text
    return digest
