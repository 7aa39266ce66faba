"""`lading user|group|perm|robot|public`: accounts and permissions, straight on the database.

These run where the server's configuration is (same --config / LADING_*), like
`lading migrate`; the admin REST API offers the same to remote operators.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import sys
from collections.abc import Callable
from typing import Any, cast

from registry.commands.admin_client import emit
from registry.commands.common import (
    GRANT_HELP,
    NOBODY_TO_ASK,
    OFF_HELP,
    add_local_options,
    settings_from_args,
)

# The account modules, the database and the server's composition root are imported
# where a command runs, not at module level: every `lading` invocation builds this
# parser, and the remote commands and --help then start without them (~0.7 s less).


def _read_password(args: argparse.Namespace) -> str:
    from auth.accounts import AccountError

    if getattr(args, "password_stdin", False):
        password = sys.stdin.readline().rstrip("\n")
    else:
        if not sys.stdin.isatty():  # getpass would warn, then read an empty stdin
            raise AccountError(NOBODY_TO_ASK)
        password = getpass.getpass("Password: ")
        if password != getpass.getpass("Repeat password: "):
            raise AccountError("passwords do not match")
    if len(password) < 8:
        raise AccountError("a password needs at least 8 characters")
    return password


def _with_session(args: argparse.Namespace, action: Callable[..., Any]) -> int:
    from auth.accounts import AccountError
    from auth.passwords import Passwords
    from registry.app import build_auth_settings
    from registry.db import migrate
    from registry.db.engine import Database

    settings = settings_from_args(args, data_dir=getattr(args, "data_dir", None))
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database(settings.resolved_database_url())
    try:
        migrate.upgrade(db)
        passwords = Passwords(build_auth_settings(settings).argon2)
        with db.write() as session:
            result = action(session, passwords)
    except (AccountError, ValueError) as exc:
        print(f"lading: {exc}", file=sys.stderr)
        return 1
    finally:
        db.dispose()
    if result is not None:
        rows = result if isinstance(result, list) else [result]
        if getattr(args, "output", "table") == "json":
            print(json.dumps(result, indent=2, default=str))
        elif rows and all(isinstance(row, dict) for row in rows):
            # The same aligned table, header first, as the *-remote commands print.
            header = list(rows[0])
            emit(args, result, [header, *[[str(row.get(k, "")) for k in header] for row in rows]])
        else:
            for row in rows:
                print(row)
    return 0


def cmd_user(args: argparse.Namespace) -> int:
    from auth import accounts
    from auth.accounts import AccountError

    action = args.action
    password = ""
    if action in ("add", "passwd"):
        try:
            password = _read_password(args)
        except AccountError as exc:  # read before any session: report it the same way
            print(f"lading: {exc}", file=sys.stderr)
            return 1
    if action == "add":
        return _with_session(
            args, lambda s, p: accounts.add_user(s, p, args.name, password, admin=args.admin)
            and None,
        )  # fmt: skip
    if action == "passwd":
        return _with_session(args, lambda s, p: accounts.set_password(s, p, args.name, password))
    if action == "rm":
        return _with_session(args, lambda s, p: accounts.remove_user(s, args.name))
    if action == "admin":
        return _with_session(args, lambda s, p: accounts.set_admin(s, args.name, args.on))
    if action == "disable":
        return _with_session(args, lambda s, p: accounts.set_disabled(s, args.name, args.on))
    return _with_session(
        args,
        lambda s, p: [
            {"user": u.username, "admin": u.is_admin, "disabled": u.disabled,
             "groups": ",".join(u.groups), "created": u.created_at.isoformat()}
            for u in accounts.list_users(s)
        ],
    )  # fmt: skip


def cmd_group(args: argparse.Namespace) -> int:
    from auth import accounts

    calls: dict[str, Callable[..., Any]] = {
        "add": lambda s, p: accounts.create_group(s, args.name) and None,
        "rm": lambda s, p: accounts.remove_group(s, args.name),
        "member-add": lambda s, p: accounts.add_member(s, args.name, args.user),
        "member-rm": lambda s, p: accounts.remove_member(s, args.name, args.user),
        "ls": lambda s, p: [
            {"group": name, "members": ",".join(members)}
            for name, members in accounts.list_groups(s)
        ],
    }
    return _with_session(args, calls[args.action])


def cmd_perm(args: argparse.Namespace) -> int:
    from auth import accounts

    if args.action == "grant":
        return _with_session(
            args,
            lambda s, p: {"rule": accounts.grant(s, args.subject_type, args.subject,
                                                 args.pattern, args.actions).id},
        )  # fmt: skip
    if args.action == "revoke":
        return _with_session(args, lambda s, p: accounts.revoke_rule(s, args.id))
    return _with_session(
        args,
        lambda s, p: [
            {"id": r.id, "type": r.subject_type, "subject": r.subject,
             "pattern": r.repository_pattern, "actions": ",".join(sorted(r.actions))}
            for r in accounts.list_rules(s)
        ],
    )  # fmt: skip


def _robot_scopes(values: list[str]) -> list[tuple[str, str]]:
    from auth.accounts import AccountError

    scopes = []
    for value in values:
        pattern, sep, actions = value.rpartition(":")
        if not sep or not pattern:
            raise AccountError(f"scope must look like PATTERN:ACTIONS, got {value!r}")
        scopes.append((pattern, actions))
    return scopes


def cmd_robot(args: argparse.Namespace) -> int:
    from auth import robots

    if args.action == "create":
        expires = None
        if args.expires_days is not None:
            # 0 used to mean "never expires" and negative values an already expired token.
            if args.expires_days < 1:
                print("lading: --expires-days must be at least 1", file=sys.stderr)
                return 2
            expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=args.expires_days)

        def create(s: Any, p: Any) -> dict[str, object]:
            info, secret = robots.create_robot(
                s, args.owner, args.name, _robot_scopes(args.scope), expires_at=expires,
                admin=args.admin,
            )  # fmt: skip
            return {"login": info.login, "admin": info.admin, "secret": secret}

        return _with_session(args, create)
    if args.action == "revoke":
        return _with_session(args, lambda s, p: robots.revoke_robot(s, args.login))
    if args.action == "rm":
        return _with_session(args, lambda s, p: robots.remove_robot(s, args.login))
    return _with_session(
        args,
        lambda s, p: [
            {"login": r.login, "scopes": " ".join(f"{pat}:{','.join(sorted(a))}"
                                                  for pat, a in r.scopes),
             "admin": r.admin, "expires": r.expires_at, "revoked": r.revoked_at,
             "last_used": r.last_used_at}
            for r in robots.list_robots(s)
        ],
    )  # fmt: skip


def cmd_public(args: argparse.Namespace) -> int:
    from auth import accounts

    calls: dict[str, Callable[..., Any]] = {
        "add": lambda s, p: accounts.add_public_pattern(s, args.pattern),
        "rm": lambda s, p: accounts.remove_public_pattern(s, args.pattern),
        "ls": lambda s, p: accounts.list_public_patterns(s),
    }
    return _with_session(args, calls[args.action])


def _common(parser: argparse.ArgumentParser) -> None:
    add_local_options(parser)
    parser.add_argument(
        "-o", "--output", choices=["table", "json"], default="table", help="output format"
    )


def _leaf(parent: Any, name: str, *positionals: str, **kwargs: Any) -> argparse.ArgumentParser:
    """A subcommand with its plain positional arguments and the common options."""
    parser: argparse.ArgumentParser = parent.add_parser(name, **kwargs)
    for positional in positionals:
        parser.add_argument(positional)
    _common(parser)
    return parser


def _local_accounts_only(func: Callable[[argparse.Namespace], int]) -> Callable[..., int]:
    """Refuse under auth_mode=external: the external issuer decides who may do what, and
    Lading would ignore what these commands write (the admin API answers 409 likewise)."""

    def run(args: argparse.Namespace) -> int:
        if settings_from_args(args).auth_mode == "external":
            print(EXTERNAL_REFUSAL, file=sys.stderr)
            return 2
        return func(args)

    return run


EXTERNAL_REFUSAL = (
    "lading: auth_mode is external: accounts, groups, permissions, robots and public"
    " repositories are managed by the external token issuer; Lading would ignore local ones"
)


def register(sub: Any) -> None:
    user = sub.add_parser("user", help="user accounts").add_subparsers(dest="action", required=True)
    for name, text in (("add", "create a user"), ("passwd", "set a user's password")):
        p = _leaf(user, name, "name", help=text)
        p.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
        if name == "add":
            p.add_argument("--admin", action="store_true", help="make the user an admin")
    _leaf(user, "rm", "name", help="delete a user with its robots and rules")
    for name, text in (("admin", "make a user an admin (--off: no longer)"),
                       ("disable", "disable a user (--off: enable)")):  # fmt: skip
        _leaf(user, name, "name", help=text).add_argument(
            "--off", dest="on", action="store_false", help=OFF_HELP[name]
        )
    _leaf(user, "ls", help="list users")

    group = sub.add_parser("group", help="groups (teams)").add_subparsers(
        dest="action", required=True
    )
    _leaf(group, "add", "name", help="create a group")
    _leaf(group, "rm", "name", help="delete a group and its rules")
    _leaf(group, "member-add", "name", "user", help="add a user to a group")
    _leaf(group, "member-rm", "name", "user", help="remove a user from a group")
    _leaf(group, "ls", help="list groups and their members")

    perm = sub.add_parser("perm", help="permission rules").add_subparsers(
        dest="action", required=True
    )
    p = _leaf(perm, "grant", help=GRANT_HELP)
    p.add_argument("subject_type", choices=["user", "group", "robot"])
    for positional in ("subject", "pattern", "actions"):
        p.add_argument(positional)
    _leaf(perm, "revoke", help="delete a rule by id").add_argument("id", type=int)
    _leaf(perm, "ls", help="list rules")

    robot = sub.add_parser("robot", help="robot accounts / access tokens").add_subparsers(
        dest="action", required=True
    )
    p = _leaf(robot, "create", "owner", "name", help="create a robot; prints its secret once")
    p.add_argument("--scope", action="append", default=[], help="PATTERN:ACTIONS, repeatable")
    p.add_argument(
        "--admin", action="store_true", help="admin scope (admin API); only for an admin's robot"
    )
    p.add_argument("--expires-days", type=int, default=None, help="expire after N days")
    for name, text in (("revoke", "revoke a robot (kept for the record)"),
                       ("rm", "delete a robot and its rules")):  # fmt: skip
        _leaf(robot, name, help=text).add_argument("login", help="owner+name")
    _leaf(robot, "ls", help="list robots")

    public = sub.add_parser("public", help="repositories anyone may pull").add_subparsers(
        dest="action", required=True
    )
    _leaf(public, "add", "pattern", help="let anyone pull repositories matching a pattern")
    _leaf(public, "rm", "pattern", help="remove a public pattern")
    _leaf(public, "ls", help="list public patterns")

    for parser, func in ((user, cmd_user), (group, cmd_group), (perm, cmd_perm),
                         (robot, cmd_robot), (public, cmd_public)):  # fmt: skip
        for choice in cast(dict[str, argparse.ArgumentParser], parser.choices).values():
            choice.set_defaults(func=_local_accounts_only(func))
