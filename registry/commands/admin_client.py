"""HTTP client and output helpers for the admin commands (``lading repo``, ``tag``, ...).

They talk to a running server's ``/admin/v1/`` API. Credentials: ``LADING_ADMIN_TOKEN``
(bearer), else ``LADING_USERNAME`` + ``LADING_PASSWORD`` (basic), else the YAML file of
``--admin-config`` / ``LADING_ADMIN_CONFIG`` / ``~/.config/lading/admin.yaml`` with keys
``url``, ``token``, ``username``, ``password``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import yaml

from registry.domain.errors import RegistryError
from registry.domain.names import check_name

DEFAULT_URL = "http://127.0.0.1:5000"
API = "/admin/v1"
PAGE_MAX = 1000  # the largest `limit` the admin API accepts


class AdminCliError(Exception):
    """Shown to the user as ``lading: <message>``; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


def add_connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", help=f"server URL (LADING_URL, default {DEFAULT_URL})")
    parser.add_argument("--admin-config", help="YAML file with url/token/username/password")
    parser.add_argument(
        "-o", "--output", choices=["table", "json"], default="table", help="output format"
    )


def _file_settings(args: argparse.Namespace) -> dict[str, Any]:
    path = args.admin_config or os.environ.get("LADING_ADMIN_CONFIG")
    candidate = Path(path) if path else Path.home() / ".config" / "lading" / "admin.yaml"
    if not candidate.exists():
        if path:
            raise AdminCliError(f"admin config file {path} does not exist", 2)
        return {}
    try:
        loaded = yaml.safe_load(candidate.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise AdminCliError(f"cannot read {candidate}: {one_line(exc)}", 2) from exc
    if not isinstance(loaded, dict):
        raise AdminCliError(f"{candidate} must hold a mapping", 2)
    return loaded


def one_line(exc: BaseException) -> str:
    """An OS or YAML error in one line (PyYAML's own text draws the spot over several)."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"{exc.problem} (line {mark.line + 1}, column {mark.column + 1})"
    return " ".join(str(exc).split()) or type(exc).__name__


def _server_url(text: str) -> httpx.URL:
    problem = f"invalid server URL {text!r}: give http(s)://host[:port]"
    try:
        url = httpx.URL(text.rstrip("/"))
        port = url.port  # parsed lazily by some httpx versions
    except (httpx.InvalidURL, ValueError) as exc:
        raise AdminCliError(f"{problem} ({exc})", 2) from exc
    if url.scheme not in ("http", "https") or not url.host or not 0 < (port or 80) < 65536:
        raise AdminCliError(problem, 2)
    return url


class AdminClient:
    def __init__(self, args: argparse.Namespace) -> None:
        conf = _file_settings(args)
        url = args.url or os.environ.get("LADING_URL") or conf.get("url") or DEFAULT_URL
        headers: dict[str, str] = {}
        auth: httpx.BasicAuth | None = None
        token = os.environ.get("LADING_ADMIN_TOKEN") or conf.get("token")
        username = os.environ.get("LADING_USERNAME") or conf.get("username")
        password = os.environ.get("LADING_PASSWORD") or conf.get("password")
        if token:
            # A header carries printable ASCII only; anything else is a copy-paste slip.
            if not re.fullmatch(r"[\x21-\x7e]+", str(token)):
                raise AdminCliError("the admin token holds spaces or non-ASCII characters", 2)
            headers["Authorization"] = f"Bearer {token}"
        elif username and password:
            auth = httpx.BasicAuth(str(username), str(password))
        # Request lines would drown the output; errors are reported by us.
        logging.getLogger("httpx").setLevel(logging.WARNING)
        self.http = httpx.Client(
            base_url=_server_url(str(url)), headers=headers, auth=auth, timeout=600.0
        )

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.http.request(method, API + path, **kwargs)
        except httpx.HTTPError as exc:
            raise AdminCliError(f"cannot reach {self.http.base_url}: {exc}", 2) from exc
        if response.status_code >= 400:
            raise AdminCliError(_error_text(response))
        if response.status_code == 204 or not response.content:
            return None
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):  # every admin API answer is a JSON object
            raise AdminCliError(f"{self.not_lading} (its answer is not a JSON object)")
        return data

    @property
    def not_lading(self) -> str:
        return f"{self.http.base_url} does not answer like a Lading admin API"

    def get(self, path: str, **params: Any) -> Any:
        clean = {k: v for k, v in params.items() if v is not None}
        return self.request("GET", path, params=clean)

    def pages(self, path: str, most: int | None = None, **params: Any) -> Iterator[dict[str, Any]]:
        """Every item of a paginated list, or its first ``most``. Each page repeats
        ``params``: the server binds a cursor to them (not to the page size)."""
        cursor: str | None = None
        left = most
        while left is None or left > 0:
            limit = None if left is None else min(left, PAGE_MAX)
            page = self.get(path, cursor=cursor, limit=limit, **params)
            items = page["items"][:left]
            yield from items
            if left is not None:
                left -= len(items)
            cursor = page.get("next_cursor")
            if not cursor:
                return


def _error_text(response: httpx.Response) -> str:
    try:
        errors = response.json()["errors"]
        first = errors[0]
        text = f"{first['code']}: {first['message']}"
    except (ValueError, KeyError, IndexError, TypeError):
        text = " ".join(response.text.split())[:300]  # a proxy's HTML page, say
    return f"{response.status_code} {text}"


def repo_path(name: str) -> str:
    """A repository name in an admin URL (slashes stay; ``/-/`` ends the name).

    Checked here: the server decodes ``%2F`` before routing, so a name holding ``/-/``
    would reach another endpoint (``repo rm a/-/tags/v1`` would delete a tag).
    """
    try:
        check_name(name)
    except RegistryError as exc:
        raise AdminCliError(f"{exc.code.code}: {exc.message}", 2) from exc
    return "/repositories/" + quote(name, safe="/")


def segment(value: str) -> str:
    """A tag or digest as one path segment: ``#``, ``?`` or ``/`` reach the server as typed."""
    return quote(value, safe=":")


def split_reference(text: str) -> tuple[str, str]:
    """``repo:tag`` or ``repo@digest`` -> (repo, tag-or-digest)."""
    if "@" in text:
        name, _, reference = text.partition("@")
    else:
        name, sep, reference = text.rpartition(":")
        if not sep or "/" in reference:
            reference = ""
    if not reference:
        raise AdminCliError(f"expected REPO:TAG or REPO@DIGEST, not {text!r}", 2)
    return name, reference


def when(value: str | None) -> str:
    return value[:19].replace("T", " ") if value else "-"


def emit(args: argparse.Namespace, data: Any, table: Sequence[Sequence[str]] | None) -> None:
    """JSON for scripts, else an aligned table (first row is the header)."""
    if args.output == "json" or table is None:
        print(json.dumps(data, indent=2))
        return
    widths = [max(len(str(row[i])) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


def confirm(args: argparse.Namespace, what: str) -> None:
    """Ask before a destructive call unless --yes; refuse when nobody can answer."""
    if args.yes:
        return
    if not sys.stdin.isatty():
        raise AdminCliError(f"refusing to {what} without --yes", 2)
    try:
        answer = input(f"{what}? [y/N] ")
    except EOFError:  # Ctrl-D: no is the answer
        answer = ""
    if answer.strip().lower() not in ("y", "yes"):
        raise AdminCliError("cancelled", 1)
