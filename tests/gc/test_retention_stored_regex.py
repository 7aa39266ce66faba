"""A retention policy stored before keep_regex was matched with RE2, whose pattern RE2
cannot compile, deletes nothing: preview and apply refuse it by name."""

from __future__ import annotations

import pytest
from gcenv import Env

from registry.domain.errors import REQUEST_INVALID, RegistryError
from registry.services.admin_catalog import CatalogService
from registry.services.admin_content import ContentReader
from registry.services.admin_usage import UsageService
from registry.services.audit import AuditService
from registry.services.retention import RetentionService, Rules


def test_stored_policy_that_re2_refuses_deletes_nothing(env: Env) -> None:
    env.push_image("app/x", "v1", [b"one"])
    env.push_image("app/x", "old", [b"two"])
    catalog = CatalogService(
        env.db, env.driver, ContentReader(env.db, env.driver, env.manifests), UsageService(env.db)
    )
    retention = RetentionService(env.db, env.driver, catalog, AuditService(env.db))
    # The service stores what it is given; only the API validates (as before RE2).
    stored = retention.save(Rules("lookahead", "app/*", keep_regex=r"(?=v)v[0-9]+"), "tester")
    for run in (
        lambda: retention.plan([stored.rules]),
        lambda: retention.apply([stored.rules], "t"),
    ):
        with pytest.raises(RegistryError) as refused:
            run()
        assert refused.value.code is REQUEST_INVALID
        assert "'lookahead'" in refused.value.message and "RE2 syntax" in refused.value.message
    assert env.manifest_digests("app/x") and len(env.manifest_digests("app/x")) == 2
    plan = retention.plan([Rules("re2", "app/*", keep_regex=r"v[0-9]+")])
    assert [t.name for p in plan.repositories for t in p.tags] == ["old"]
