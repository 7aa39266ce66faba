"""Account commands against a running server: ``user-remote``, ``group-remote``,
``perm-remote``, ``robot-remote`` and ``public-remote``.

Each is the remote twin of the local command of the same name without ``-remote``
(``lading user`` etc. in ``users.py``, which open the database directly): same verbs and
arguments, but they call ``/admin/v1/accounts`` with the admin CLI's connection options
and credentials (see ``admin_client.py``), so the change is audited under the caller.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any
from urllib.parse import quote

from registry.commands.admin_client import AdminClient, AdminCliError, confirm, emit, when
from registry.commands.common import GRANT_HELP, NOBODY_TO_ASK, OFF_HELP

API = "/accounts"


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        if not sys.stdin.isatty():  # getpass would warn, then read an empty stdin
            raise AdminCliError(NOBODY_TO_ASK, 2)
        password = getpass.getpass("Password: ")
        if password != getpass.getpass("Repeat password: "):
            raise AdminCliError("passwords do not match", 2)
    if len(password) < 8:
        raise AdminCliError("a password needs at least 8 characters", 2)
    return password


def _q(segment: str) -> str:
    return quote(segment, safe="+")


# -- users ---------------------------------------------------------------------------------
def _user_rows(users: list[dict[str, Any]]) -> list[list[str]]:
    rows = [["USER", "ADMIN", "DISABLED", "GROUPS", "ROBOTS", "CREATED"]]
    rows += [[u["username"], "yes" if u["admin"] else "no", "yes" if u["disabled"] else "no",
              ",".join(u["groups"]) or "-", str(len(u["robots"])), when(u["created_at"])]
             for u in users]  # fmt: skip
    return rows


def user_ls(client: AdminClient, args: argparse.Namespace) -> None:
    users = client.get(f"{API}/users")["items"]
    emit(args, users, _user_rows(users))


def user_show(client: AdminClient, args: argparse.Namespace) -> None:
    user = client.get(f"{API}/users/{_q(args.name)}")
    emit(args, user, _user_rows([user]))


def user_add(client: AdminClient, args: argparse.Namespace) -> None:
    body = {"username": args.name, "password": _password(args), "admin": args.admin}
    user = client.request("POST", f"{API}/users", json=body)
    emit(args, user, _user_rows([user]))


def _patch_user(client: AdminClient, args: argparse.Namespace, body: dict[str, Any]) -> None:
    user = client.request("PATCH", f"{API}/users/{_q(args.name)}", json=body)
    emit(args, user, _user_rows([user]))


def user_passwd(client: AdminClient, args: argparse.Namespace) -> None:
    _patch_user(client, args, {"password": _password(args)})


def user_admin(client: AdminClient, args: argparse.Namespace) -> None:
    _patch_user(client, args, {"admin": args.on})


def user_disable(client: AdminClient, args: argparse.Namespace) -> None:
    _patch_user(client, args, {"disabled": args.on})


def user_rm(client: AdminClient, args: argparse.Namespace) -> None:
    confirm(args, f"delete user {args.name} with its robots, memberships and rules")
    client.request("DELETE", f"{API}/users/{_q(args.name)}")
    emit(args, {"deleted": args.name}, [["DELETED"], [args.name]])


# -- groups --------------------------------------------------------------------------------
def _group_rows(groups: list[dict[str, Any]]) -> list[list[str]]:
    return [["GROUP", "MEMBERS"]] + [[g["name"], ",".join(g["members"]) or "-"] for g in groups]


def group_ls(client: AdminClient, args: argparse.Namespace) -> None:
    groups = client.get(f"{API}/groups")["items"]
    emit(args, groups, _group_rows(groups))


def group_show(client: AdminClient, args: argparse.Namespace) -> None:
    group = client.get(f"{API}/groups/{_q(args.name)}")
    emit(args, group, _group_rows([group]))


def group_add(client: AdminClient, args: argparse.Namespace) -> None:
    group = client.request("POST", f"{API}/groups", json={"name": args.name})
    emit(args, group, _group_rows([group]))


def group_rm(client: AdminClient, args: argparse.Namespace) -> None:
    client.request("DELETE", f"{API}/groups/{_q(args.name)}")
    emit(args, {"deleted": args.name}, [["DELETED"], [args.name]])


def group_member_add(client: AdminClient, args: argparse.Namespace) -> None:
    group = client.request("PUT", f"{API}/groups/{_q(args.name)}/members/{_q(args.user)}")
    emit(args, group, _group_rows([group]))


def group_member_rm(client: AdminClient, args: argparse.Namespace) -> None:
    group = client.request("DELETE", f"{API}/groups/{_q(args.name)}/members/{_q(args.user)}")
    emit(args, group, _group_rows([group]))


# -- permission rules ----------------------------------------------------------------------
def _rule_rows(rules: list[dict[str, Any]]) -> list[list[str]]:
    rows = [["ID", "TYPE", "SUBJECT", "PATTERN", "ACTIONS"]]
    rows += [[str(r["id"]), r["subject_type"], r["subject"], r["repository_pattern"],
              ",".join(r["actions"])] for r in rules]  # fmt: skip
    return rows


def perm_ls(client: AdminClient, args: argparse.Namespace) -> None:
    rules = client.get(f"{API}/permissions", subject_type=args.subject_type, subject=args.subject)
    emit(args, rules["items"], _rule_rows(rules["items"]))


def perm_grant(client: AdminClient, args: argparse.Namespace) -> None:
    body = {
        "subject_type": args.subject_type,
        "subject": args.subject,
        "repository_pattern": args.pattern,
        "actions": [a.strip() for a in args.actions.split(",") if a.strip()],
    }
    rule = client.request("POST", f"{API}/permissions", json=body)
    emit(args, rule, _rule_rows([rule]))


def perm_revoke(client: AdminClient, args: argparse.Namespace) -> None:
    client.request("DELETE", f"{API}/permissions/{args.id}")
    emit(args, {"deleted": args.id}, [["DELETED"], [str(args.id)]])


# -- robots --------------------------------------------------------------------------------
def _robot_rows(robots: list[dict[str, Any]]) -> list[list[str]]:
    rows = [["LOGIN", "ADMIN", "SCOPES", "STATE", "EXPIRES", "LAST USED"]]
    for r in robots:
        scopes = " ".join(f"{s['repository_pattern']}:{','.join(s['actions'])}"
                          for s in r["scopes"])  # fmt: skip
        rows.append([r["login"], "yes" if r["admin"] else "no", scopes or "-", r["state"],
                     when(r["expires_at"]), when(r["last_used_at"])])  # fmt: skip
    return rows


def robot_ls(client: AdminClient, args: argparse.Namespace) -> None:
    robots = client.get(f"{API}/robots", owner=args.owner)["items"]
    emit(args, robots, _robot_rows(robots))


def robot_show(client: AdminClient, args: argparse.Namespace) -> None:
    robot = client.get(f"{API}/robots/{_q(args.login)}")
    emit(args, robot, _robot_rows([robot]))


def _scope(value: str) -> dict[str, Any]:
    pattern, sep, actions = value.rpartition(":")
    if not sep or not pattern:
        raise AdminCliError(f"--scope must look like PATTERN:ACTIONS, got {value!r}", 2)
    return {"repository_pattern": pattern, "actions": [a for a in actions.split(",") if a]}


def robot_create(client: AdminClient, args: argparse.Namespace) -> None:
    body: dict[str, Any] = {
        "owner": args.owner,
        "name": args.name,
        "scopes": [_scope(v) for v in args.scope or []],
        "admin": args.admin,
    }
    if args.expires_days is not None:
        body["expires_in_days"] = args.expires_days
    robot = client.request("POST", f"{API}/robots", json=body)
    print("the secret is shown only this once; log in as the LOGIN with it", file=sys.stderr)
    emit(args, robot, [["LOGIN", "SECRET"], [robot["login"], robot["secret"]]])


def robot_revoke(client: AdminClient, args: argparse.Namespace) -> None:
    robot = client.request("POST", f"{API}/robots/{_q(args.login)}/revoke")
    emit(args, robot, _robot_rows([robot]))


def robot_rm(client: AdminClient, args: argparse.Namespace) -> None:
    client.request("DELETE", f"{API}/robots/{_q(args.login)}")
    emit(args, {"deleted": args.login}, [["DELETED"], [args.login]])


# -- public pull patterns ------------------------------------------------------------------
def public_ls(client: AdminClient, args: argparse.Namespace) -> None:
    found = client.get(f"{API}/public-repositories")
    rows = [["ID", "PATTERN"]] + [[str(p["id"]), p["pattern"]] for p in found["items"]]
    rows += [["(settings)", p] for p in found["configured"]]
    emit(args, found, rows)


def public_add(client: AdminClient, args: argparse.Namespace) -> None:
    added = client.request("POST", f"{API}/public-repositories", json={"pattern": args.pattern})
    emit(args, added, [["ID", "PATTERN"], [str(added["id"]), added["pattern"]]])


def public_rm(client: AdminClient, args: argparse.Namespace) -> None:
    found = client.get(f"{API}/public-repositories")["items"]
    ids = [p["id"] for p in found if p["pattern"] == args.pattern]
    if not ids:
        raise AdminCliError(f"{args.pattern!r} is not a stored public pattern")
    client.request("DELETE", f"{API}/public-repositories/{ids[0]}")
    emit(args, {"deleted": args.pattern}, [["DELETED"], [args.pattern]])


# -- argparse ------------------------------------------------------------------------------
def register(sub: Any, leaf: Any) -> None:
    """``leaf(group, name, command, help)`` is admin_cli's: connection options and runner."""
    user = sub.add_parser("user-remote", help="user accounts on a running server")
    users = user.add_subparsers(dest="user_command", required=True)
    leaf(users, "ls", user_ls, "list users")
    leaf(users, "show", user_show, "show a user").add_argument("name")
    for name, command, text in (("add", user_add, "create a user"),
                                ("passwd", user_passwd, "reset a password")):  # fmt: skip
        p = leaf(users, name, command, text)
        p.add_argument("name")
        p.add_argument("--password-stdin", action="store_true", help="read it from stdin")
        if name == "add":
            p.add_argument("--admin", action="store_true", help="make the user an admin")
    for name, command, text in (("admin", user_admin, "make an admin (--off: no longer)"),
                                ("disable", user_disable, "disable (--off: enable)")):  # fmt: skip
        p = leaf(users, name, command, text)
        p.add_argument("name")
        p.add_argument("--off", dest="on", action="store_false", help=OFF_HELP[name])
    rm = leaf(users, "rm", user_rm, "delete a user with its robots and rules")
    rm.add_argument("name")
    rm.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")

    group = sub.add_parser("group-remote", help="groups on a running server")
    groups = group.add_subparsers(dest="group_command", required=True)
    leaf(groups, "ls", group_ls, "list groups")
    for name, command, text in (("show", group_show, "show a group and its members"),
                                ("add", group_add, "create a group"),
                                ("rm", group_rm, "delete a group and its rules")):  # fmt: skip
        leaf(groups, name, command, text).add_argument("name")
    members = (("member-add", group_member_add, "add a user to a group"),
               ("member-rm", group_member_rm, "remove a user from a group"))  # fmt: skip
    for name, command, text in members:
        p = leaf(groups, name, command, text)
        p.add_argument("name")
        p.add_argument("user")

    perm = sub.add_parser("perm-remote", help="permission rules on a running server")
    perms = perm.add_subparsers(dest="perm_command", required=True)
    ls = leaf(perms, "ls", perm_ls, "list rules")
    ls.add_argument("--subject-type", choices=["user", "group", "robot"], help="only this kind")
    ls.add_argument("--subject", help="only rules of this user, group or robot")
    p = leaf(perms, "grant", perm_grant, GRANT_HELP)
    p.add_argument("subject_type", choices=["user", "group", "robot"])
    p.add_argument("subject", help="username, group or robot login owner+name")
    p.add_argument("pattern")
    p.add_argument("actions", help="comma-separated: pull,push,delete")
    leaf(perms, "revoke", perm_revoke, "delete a rule").add_argument("id", type=int)

    robot = sub.add_parser("robot-remote", help="robot tokens on a running server")
    robots = robot.add_subparsers(dest="robot_command", required=True)
    leaf(robots, "ls", robot_ls, "list robots").add_argument("--owner", help="only this user's")
    leaf(robots, "show", robot_show, "show a robot").add_argument("login", help="owner+name")
    p = leaf(robots, "create", robot_create, "create a robot; prints its secret once")
    p.add_argument("owner")
    p.add_argument("name")
    p.add_argument("--scope", action="append", help="PATTERN:ACTIONS, repeatable")
    p.add_argument("--admin", action="store_true", help="the admin scope (owner must be admin)")
    p.add_argument("--expires-days", type=int, default=None, help="expire after N days")
    for name, command, text in (("revoke", robot_revoke, "revoke a robot (kept for the record)"),
                                ("rm", robot_rm, "delete a robot and its rules")):  # fmt: skip
        leaf(robots, name, command, text).add_argument("login", help="owner+name")

    public = sub.add_parser("public-remote", help="public pull patterns on a running server")
    publics = public.add_subparsers(dest="public_command", required=True)
    leaf(publics, "ls", public_ls, "list public patterns")
    leaf(publics, "add", public_add, "make matching repositories public").add_argument("pattern")
    leaf(publics, "rm", public_rm, "remove a public pattern").add_argument("pattern")
