"""One token-mode ``lading serve`` for the whole ``tests/authn`` directory.

Accounts are made with the real CLI (``lading user|perm|robot|public --data-dir``) on the
server's own database while it runs; tokens come from the real ``/token`` endpoint. Each test
module uses its own repository names and users, so tests do not depend on each other.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from authn_support import ADMIN, ADMIN_PASSWORD, Lading
from support.server import start_lading


@pytest.fixture(scope="session")
def authn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lading]:
    base = tmp_path_factory.mktemp("authn-")
    server = start_lading(
        base,
        env={
            "LADING_AUTH_MODE": "token",
            "LADING_AUTH_ADMIN_USERNAME": ADMIN,
            "LADING_AUTH_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "LADING_AUTH_PUBLIC_REPOSITORIES": "pub/*",
            "LADING_WORKERS": "2",
        },
        ready_statuses=(401,),
    )
    try:
        yield Lading(server)
    finally:
        server.stop()


@pytest.fixture(scope="session")
def data_dir(authn: Lading) -> Path:
    return authn.server.data_dir
