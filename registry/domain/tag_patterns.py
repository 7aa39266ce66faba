"""Retention's ``keep_regex``: matched with RE2, in time linear in the tag's length.

The pattern comes from an administrator, and Python's ``re`` backtracks:
``(a+)+$`` against a 128-character tag takes longer than anyone can wait, and
holds the worker that evaluates it. RE2 never backtracks; it refuses what it
cannot match in linear time (backreferences, lookaround), so such a pattern is
refused when the policy is written, with RE2's reason.
"""

from __future__ import annotations

import re2  # type: ignore[import-untyped]

SYNTAX = "RE2 syntax: no backreferences or lookaround; \\z, not \\Z, for the end"


class TagPatternError(ValueError):
    """A keep_regex that RE2 cannot compile: invalid, or not matchable in linear time."""


class TagPattern:
    def __init__(self, pattern: str) -> None:
        options = re2.Options()
        options.log_errors = False  # refused patterns are reported to the caller instead
        try:
            self._compiled = re2.compile(pattern, options)
        except re2.error as exc:
            reason = exc.args[0] if exc.args else exc
            if isinstance(reason, bytes):
                reason = reason.decode("utf-8", "replace")
            raise TagPatternError(f"unsupported regular expression: {reason} ({SYNTAX})") from exc

    def fullmatch(self, tag: str) -> bool:
        return self._compiled.fullmatch(tag) is not None
