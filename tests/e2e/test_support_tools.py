"""The test helpers' own contract: a missing tool fails under CI=true and skips elsewhere."""

from __future__ import annotations

import pytest
from support.server import target_kind
from support.tools import in_ci, require_tool

MISSING = "lading-no-such-tool-7f3a"


def test_missing_tool_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    assert in_ci()
    with pytest.raises(pytest.fail.Exception, match=MISSING):
        require_tool(MISSING, "some-package")


def test_missing_tool_skips_outside_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    assert not in_ci()
    with pytest.raises(pytest.skip.Exception, match="apt-get install some-package"):
        require_tool(MISSING, "some-package")


def test_target_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LADING_TEST_TARGET", raising=False)
    assert target_kind() == "lading"
    monkeypatch.setenv("LADING_TEST_TARGET", "reference")
    assert target_kind() == "reference"
    monkeypatch.setenv("LADING_TEST_TARGET", "quay")
    with pytest.raises(ValueError, match="LADING_TEST_TARGET"):
        target_kind()
