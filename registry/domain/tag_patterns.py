"""Retention's ``keep_regex``: matched with RE2, in time linear in the tag's length.

The pattern comes from an administrator, and Python's ``re`` backtracks:
``(a+)+$`` against a 128-character tag takes longer than anyone can wait, and
holds the worker that evaluates it. RE2 never backtracks; it refuses what it
cannot match in linear time (backreferences, lookaround), so such a pattern is
refused when the policy is written, with RE2's reason.

Policies written before RE2 were checked with Python's ``re``. The brace counts it
reads as repetition but RE2 as literal text (``{,n}``, ``{,}``, leading zeros) would
silently keep fewer tags, so they are refused too.
"""

from __future__ import annotations

import re

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
        _refuse_python_only_counts(pattern)

    def fullmatch(self, tag: str) -> bool:
        return self._compiled.fullmatch(tag) is not None


# Python's repetition braces (sre_parse): digits, optionally a comma and digits.
_PYTHON_COUNT = re.compile(r"\{(\d*)(,?)(\d*)\}")
# RE2's (re2/parse.cc): a number without leading zeros, then nothing, a comma, or both.
_RE2_NUMBER = re.compile(r"0|[1-9]\d*")


def _refuse_python_only_counts(pattern: str) -> None:
    """Refuse a brace Python's ``re`` reads as a count and RE2 as literal text."""
    at, in_class = 0, False
    while at < len(pattern):
        char = pattern[at]
        if char == "\\":
            at += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            at += 2 if pattern.startswith("^", at + 1) else 1
            if pattern.startswith("]", at):
                at += 1  # a "]" first in a class (after an optional "^") is a character
            in_class = True
            continue
        elif char == "{":
            _check_count(_PYTHON_COUNT.match(pattern, at))
        at += 1


def _check_count(count: re.Match[str] | None) -> None:
    if count is None:
        return
    low, comma, high = count.groups()
    if not low and not comma:
        return  # "{}": literal for both
    if low and _RE2_NUMBER.fullmatch(low) and (not high or _RE2_NUMBER.fullmatch(high)):
        return
    raise TagPatternError(
        f"unsupported count {count.group()}: Python's re read it as a repetition, RE2 reads"
        " it as literal text; write {0,n} for {,n}, * for {,}, numbers without leading zeros,"
        f" or \\{{ for a literal brace ({SYNTAX})"
    )
