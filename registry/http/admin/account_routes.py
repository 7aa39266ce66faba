"""The ``/admin/v1/accounts/`` endpoints: users, groups, permission rules, robot tokens and
public pull patterns. Every change is written to the audit log by the service."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import TypeVar

from anyio import to_thread
from starlette.responses import Response

from auth.accounts import RuleInfo
from auth.robots import RobotInfo
from registry.domain.errors import REQUEST_INVALID, RegistryError
from registry.http.admin import account_schemas as a
from registry.http.admin.framework import Call, Endpoint, json_response
from registry.services.admin_accounts import AccountAdmin, GroupView, UserView, robot_state

MAX_ID = 2**31 - 1
ID = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
USERNAME = {"type": "string", "pattern": a.USERNAME_PATTERN, "maxLength": 64}
GROUP = {"type": "string", "pattern": a.GROUP_PATTERN}
LOGIN = {"type": "string", "pattern": a.ROBOT_LOGIN_PATTERN, "maxLength": 129}
T = TypeVar("T")


_PATH_GRAMMARS = {
    "username": ("username", re.compile(a.USERNAME_PATTERN), 64),
    "group": ("group name", re.compile(a.GROUP_PATTERN), 64),
    "login": ("robot login (owner+name)", re.compile(a.ROBOT_LOGIN_PATTERN), 129),
}


def _param(call: Call, param: str) -> str:
    """A name from the path, checked before it reaches a query (PostgreSQL refuses NUL)."""
    raw = call.params[param]
    what, grammar, limit = _PATH_GRAMMARS[param]
    if len(raw) > limit or not grammar.fullmatch(raw):
        raise RegistryError(REQUEST_INVALID, f"invalid {what}: {raw[:80]!r}")
    return raw


def _id(call: Call, param: str) -> int:
    raw = call.params[param]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 12 or not 1 <= int(raw) <= MAX_ID:
        raise RegistryError(REQUEST_INVALID, f"invalid id: {raw[:50]!r}")
    return int(raw)


def _user(view: UserView) -> a.UserOut:
    return a.UserOut(
        username=view.username,
        admin=view.admin,
        disabled=view.disabled,
        created_at=view.created_at,
        groups=list(view.groups),
        robots=list(view.robots),
    )


def _group(view: GroupView) -> a.GroupOut:
    return a.GroupOut(name=view.name, members=list(view.members))


def _rule(rule: RuleInfo) -> a.RuleOut:
    return a.RuleOut(
        id=rule.id,
        subject_type=rule.subject_type,
        subject=rule.subject,
        repository_pattern=rule.repository_pattern,
        actions=sorted(rule.actions),
    )


def _robot_fields(info: RobotInfo) -> dict[str, object]:
    return {
        "login": info.login,
        "owner": info.owner,
        "name": info.name,
        "admin": info.admin,
        "scopes": [
            a.RobotScopeOut(repository_pattern=p, actions=sorted(actions))
            for p, actions in info.scopes
        ],
        "state": robot_state(info, dt.datetime.now(dt.UTC)),
        "created_at": info.created_at,
        "expires_at": info.expires_at,
        "revoked_at": info.revoked_at,
        "last_used_at": info.last_used_at,
    }


def _robot(info: RobotInfo) -> a.RobotOut:
    return a.RobotOut.model_validate(_robot_fields(info))


async def _as_caller(call: Call, change: Callable[..., T], *args: object) -> T:
    """Run an account change in a worker thread; the service audits it as the caller's."""
    return await to_thread.run_sync(change, call.principal.subject, *args)


class AccountApi:
    def __init__(self, service: AccountAdmin) -> None:
        self.service = service

    # -- users -------------------------------------------------------------------------------
    async def list_users(self, call: Call) -> Response:
        found = await to_thread.run_sync(self.service.user_list)
        return json_response(a.UserList(items=[_user(u) for u in found]))

    async def create_user(self, call: Call) -> Response:
        body: a.UserIn = call.body
        view = await _as_caller(
            call, self.service.create_user, body.username, body.password, body.admin
        )
        return json_response(_user(view), 201)

    async def show_user(self, call: Call) -> Response:
        view = await to_thread.run_sync(self.service.user, _param(call, "username"))
        return json_response(_user(view))

    async def update_user(self, call: Call) -> Response:
        body: a.UserPatch = call.body
        view = await to_thread.run_sync(
            lambda: self.service.update_user(
                call.principal.subject,
                _param(call, "username"),
                password=body.password,
                admin=body.admin,
                disabled=body.disabled,
            )
        )
        return json_response(_user(view))

    async def delete_user(self, call: Call) -> Response:
        await _as_caller(call, self.service.delete_user, _param(call, "username"))
        return Response(status_code=204)

    # -- groups ------------------------------------------------------------------------------
    async def list_groups(self, call: Call) -> Response:
        found = await to_thread.run_sync(self.service.group_list)
        return json_response(a.GroupList(items=[_group(g) for g in found]))

    async def create_group(self, call: Call) -> Response:
        body: a.GroupIn = call.body
        view = await _as_caller(call, self.service.create_group, body.name)
        return json_response(_group(view), 201)

    async def show_group(self, call: Call) -> Response:
        view = await to_thread.run_sync(self.service.group, _param(call, "group"))
        return json_response(_group(view))

    async def delete_group(self, call: Call) -> Response:
        await _as_caller(call, self.service.delete_group, _param(call, "group"))
        return Response(status_code=204)

    async def add_member(self, call: Call) -> Response:
        group, username = _param(call, "group"), _param(call, "username")
        view = await _as_caller(call, self.service.add_member, group, username)
        return json_response(_group(view))

    async def remove_member(self, call: Call) -> Response:
        group, username = _param(call, "group"), _param(call, "username")
        view = await _as_caller(call, self.service.remove_member, group, username)
        return json_response(_group(view))

    # -- permission rules --------------------------------------------------------------------
    async def list_rules(self, call: Call) -> Response:
        q: a.RuleQuery = call.query
        found = await to_thread.run_sync(self.service.rule_list, q.subject_type, q.subject)
        return json_response(a.RuleList(items=[_rule(r) for r in found]))

    async def create_rule(self, call: Call) -> Response:
        body: a.RuleIn = call.body
        rule = await _as_caller(
            call, self.service.create_rule, body.subject_type, body.subject,
            body.repository_pattern, body.actions,
        )  # fmt: skip
        return json_response(_rule(rule), 201)

    async def delete_rule(self, call: Call) -> Response:
        await _as_caller(call, self.service.delete_rule, _id(call, "rule_id"))
        return Response(status_code=204)

    # -- robots ------------------------------------------------------------------------------
    async def list_robots(self, call: Call) -> Response:
        q: a.RobotQuery = call.query
        found = await to_thread.run_sync(self.service.robot_list, q.owner)
        return json_response(a.RobotList(items=[_robot(r) for r in found]))

    async def create_robot(self, call: Call) -> Response:
        body: a.RobotIn = call.body
        expires = None
        if body.expires_in_days is not None:
            expires = dt.datetime.now(dt.UTC) + dt.timedelta(days=body.expires_in_days)
        info, secret = await to_thread.run_sync(
            lambda: self.service.create_robot(
                call.principal.subject,
                body.owner,
                body.name,
                [(s.repository_pattern, s.actions) for s in body.scopes],
                admin=body.admin,
                expires_at=expires,
            )
        )
        out = a.RobotCreatedOut.model_validate({**_robot_fields(info), "secret": secret})
        return json_response(out, 201)

    async def show_robot(self, call: Call) -> Response:
        info = await to_thread.run_sync(self.service.robot, _param(call, "login"))
        return json_response(_robot(info))

    async def revoke_robot(self, call: Call) -> Response:
        info = await _as_caller(call, self.service.revoke_robot, _param(call, "login"))
        return json_response(_robot(info))

    async def delete_robot(self, call: Call) -> Response:
        await _as_caller(call, self.service.delete_robot, _param(call, "login"))
        return Response(status_code=204)

    # -- public pull patterns -----------------------------------------------------------------
    async def list_public(self, call: Call) -> Response:
        found = await to_thread.run_sync(self.service.public_patterns)
        return json_response(
            a.PublicList(
                items=[a.PublicOut(id=p.id, pattern=p.pattern) for p in found],
                configured=list(self.service.configured_public),
            )
        )

    async def add_public(self, call: Call) -> Response:
        body: a.PublicIn = call.body
        stored = await _as_caller(call, self.service.add_public_pattern, body.pattern)
        return json_response(a.PublicOut(id=stored.id, pattern=stored.pattern), 201)

    async def remove_public(self, call: Call) -> Response:
        await _as_caller(call, self.service.remove_public_pattern, _id(call, "pattern_id"))
        return Response(status_code=204)

    # -- the table -------------------------------------------------------------------------
    def endpoints(self) -> list[Endpoint]:
        E = Endpoint
        users, user = "/accounts/users", "/accounts/users/{username}"
        groups, group = "/accounts/groups", "/accounts/groups/{group}"
        rules, robots = "/accounts/permissions", "/accounts/robots"
        robot, public = "/accounts/robots/{login}", "/accounts/public-repositories"
        return [
            E("GET", users, "listUsers", "List user accounts", self.list_users, "accounts",
              response=a.UserList),
            E("POST", users, "createUser", "Create a user account", self.create_user,
              "accounts", body=a.UserIn, response=a.UserOut, status=201),
            E("GET", user, "showUser", "Show a user account", self.show_user, "accounts",
              response=a.UserOut, param_schemas={"username": USERNAME}),
            E("PATCH", user, "updateUser",
              "Reset the password, set or clear admin, disable or enable a user",
              self.update_user, "accounts", body=a.UserPatch, response=a.UserOut,
              param_schemas={"username": USERNAME}),
            E("DELETE", user, "deleteUser",
              "Delete a user with its robots, memberships and rules", self.delete_user,
              "accounts", status=204, param_schemas={"username": USERNAME}),
            E("GET", groups, "listGroups", "List groups and their members", self.list_groups,
              "groups", response=a.GroupList),
            E("POST", groups, "createGroup", "Create a group", self.create_group, "groups",
              body=a.GroupIn, response=a.GroupOut, status=201),
            E("GET", group, "showGroup", "Show a group", self.show_group, "groups",
              response=a.GroupOut, param_schemas={"group": GROUP}),
            E("DELETE", group, "deleteGroup", "Delete a group and its rules",
              self.delete_group, "groups", status=204, param_schemas={"group": GROUP}),
            E("PUT", group + "/members/{username}", "addGroupMember",
              "Add a user to a group (idempotent)", self.add_member, "groups",
              response=a.GroupOut, param_schemas={"group": GROUP, "username": USERNAME}),
            E("DELETE", group + "/members/{username}", "removeGroupMember",
              "Remove a user from a group", self.remove_member, "groups",
              response=a.GroupOut, param_schemas={"group": GROUP, "username": USERNAME}),
            E("GET", rules, "listPermissionRules", "List permission rules", self.list_rules,
              "permissions", query=a.RuleQuery, response=a.RuleList),
            E("POST", rules, "createPermissionRule",
              "Grant actions on matching repositories to a user, group or robot",
              self.create_rule, "permissions", body=a.RuleIn, response=a.RuleOut,
              status=201),
            E("DELETE", rules + "/{rule_id}", "deletePermissionRule",
              "Delete a permission rule", self.delete_rule, "permissions", status=204,
              param_schemas={"rule_id": ID}),
            E("GET", robots, "listRobots", "List robot tokens (never their secrets)",
              self.list_robots, "robots", query=a.RobotQuery, response=a.RobotList),
            E("POST", robots, "createRobot",
              "Create a robot token; the answer holds its secret, shown only this once",
              self.create_robot, "robots", body=a.RobotIn, response=a.RobotCreatedOut,
              status=201),
            E("GET", robot, "showRobot", "Show a robot token", self.show_robot, "robots",
              response=a.RobotOut, param_schemas={"login": LOGIN}),
            E("POST", robot + "/revoke", "revokeRobot",
              "Revoke a robot token (kept for the record; idempotent)", self.revoke_robot,
              "robots", response=a.RobotOut, param_schemas={"login": LOGIN}),
            E("DELETE", robot, "deleteRobot", "Delete a robot token and its rules",
              self.delete_robot, "robots", status=204, param_schemas={"login": LOGIN}),
            E("GET", public, "listPublicRepositories",
              "Repository patterns anyone may pull, anonymous included", self.list_public,
              "public", response=a.PublicList),
            E("POST", public, "addPublicRepository", "Make matching repositories public",
              self.add_public, "public", body=a.PublicIn, response=a.PublicOut, status=201),
            E("DELETE", public + "/{pattern_id}", "removePublicRepository",
              "Stop a public pattern", self.remove_public, "public", status=204,
              param_schemas={"pattern_id": ID}),
        ]  # fmt: skip
