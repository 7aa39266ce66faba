"""Brace counts that Python's ``re`` reads as repetition and RE2 as literal text
(``{,n}``, ``{,}``, leading zeros): a policy stored before RE2 with one would keep
fewer tags, so retention would delete tags the policy kept. Such patterns are refused,
as the ones RE2 cannot compile are: nothing is deleted."""

from __future__ import annotations

import re

import pytest
from gcenv import Env

from registry.domain.errors import REQUEST_INVALID, RegistryError
from registry.domain.tag_patterns import TagPattern, TagPatternError
from registry.services.admin_catalog import CatalogService
from registry.services.admin_content import ContentReader
from registry.services.admin_usage import UsageService
from registry.services.audit import AuditService
from registry.services.retention import RetentionService, Rules

# (pattern, a tag Python's re fully matches)
PYTHON_REPEATS = [
    (r"v[0-9]{,3}", "v12"),
    (r"v{,}1", "vvv1"),
    (r"v[0-9]{01,2}", "v1"),
    (r"v[0-9]{1,02}", "v12"),
    (r"v[0-9]{02}", "v12"),
    (r"(rc|v)[0-9]{,2}|latest", "rc1"),
]


@pytest.mark.parametrize(("pattern", "tag"), PYTHON_REPEATS)
def test_counts_re2_reads_as_text_are_refused(pattern: str, tag: str) -> None:
    assert re.fullmatch(pattern, tag)  # what a policy stored before RE2 kept
    with pytest.raises(TagPatternError, match="RE2 reads"):
        TagPattern(pattern)


@pytest.mark.parametrize(
    "pattern",
    [
        r"v[0-9]{0,3}",
        r"v{1,}",
        r"v{2}",
        r"v{0}",
        r"\{,2}",
        r"[{,2}]",
        r"[]{,2}]",
        r"[^]{,}]",
        "v{}",
        "a{,",
    ],
)
def test_counts_both_read_alike_are_accepted(pattern: str) -> None:
    TagPattern(pattern)


def test_stored_policy_with_a_python_only_count_deletes_nothing(env: Env) -> None:
    env.push_image("app/y", "v12", [b"kept by the stored policy"])
    env.push_image("app/y", "old", [b"two"])
    catalog = CatalogService(
        env.db, env.driver, ContentReader(env.db, env.driver, env.manifests), UsageService(env.db)
    )
    retention = RetentionService(env.db, env.driver, catalog, AuditService(env.db))
    # The service stores what it is given; only the API validates (as before RE2).
    stored = retention.save(Rules("counts", "app/*", keep_regex=r"v[0-9]{,3}"), "tester")
    with pytest.raises(RegistryError) as refused:
        retention.apply([stored.rules], "t")
    assert refused.value.code is REQUEST_INVALID
    assert "'counts'" in refused.value.message and "{0,n}" in refused.value.message
    assert len(env.manifest_digests("app/y")) == 2
