"""scripts/test runs every suite that starts ``lading`` on both metadata databases.

scripts/test lists the suites of its PostgreSQL pass (``postgres_suites``) and those that
run once (``single_pass_suites``). A new suite directory must be put in one of them, and a
suite whose servers follow ``LADING_TEST_DATABASE`` cannot be left out of the PostgreSQL
pass.
"""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
SCRIPT = TESTS.parent / "scripts" / "test"
# Starting servers through tests/support/server.py or the fixtures of tests/conftest.py:
# their database is the one LADING_TEST_DATABASE names.
FOLLOWS_TEST_DATABASE = re.compile(
    r"support\.server|\b(lading_factory|registry_factory|session_registry_factory"
    r"|lading_server|session_registry)\b|\bregistry: "
)
# A suite that sets the database of its servers itself (and so runs them on both, or on
# the one it needs).
CHOOSES_DATABASE = re.compile(r"LADING_DATABASE_URL|[\"']postgres[\"']")


def _listed(name: str) -> list[str]:
    match = re.search(rf"^{name}=\(([^)]*)\)$", SCRIPT.read_text(), re.MULTILINE)
    assert match, f"scripts/test has no line {name}=(...)"
    return match.group(1).split()


def _suites() -> set[str]:
    return {
        f"tests/{path.name}"
        for path in TESTS.iterdir()
        if path.is_dir() and any(path.glob("test_*.py"))
    }


def _sources(suite: str) -> str:
    return "\n".join(path.read_text() for path in sorted((TESTS.parent / suite).glob("*.py")))


def test_every_suite_is_in_exactly_one_list() -> None:
    twice, once = _listed("postgres_suites"), _listed("single_pass_suites")
    assert len(set(twice)) == len(twice) and len(set(once)) == len(once)
    assert not set(twice) & set(once), f"in both lists: {sorted(set(twice) & set(once))}"
    listed, present = set(twice) | set(once), _suites()
    assert not present - listed, f"add to scripts/test: {sorted(present - listed)}"
    assert not listed - present, f"scripts/test lists missing suites: {sorted(listed - present)}"


def test_suites_following_the_test_database_run_on_postgres() -> None:
    twice = set(_listed("postgres_suites"))
    missing = [
        suite
        for suite in sorted(_suites() - twice)
        if FOLLOWS_TEST_DATABASE.search(_sources(suite))
        and not CHOOSES_DATABASE.search(_sources(suite))
    ]
    assert not missing, f"start lading on the test database but skip the PostgreSQL pass: {missing}"


def test_the_checks_can_fail() -> None:
    """The patterns see what they look for: tests/ops/test_ops.py starts servers and sets
    no database (another file of its suite does, for a database on a full disk)."""
    ops = (TESTS / "ops" / "test_ops.py").read_text()
    assert FOLLOWS_TEST_DATABASE.search(ops)
    assert not CHOOSES_DATABASE.search(ops)
    assert not FOLLOWS_TEST_DATABASE.search(_sources("tests/storage"))
