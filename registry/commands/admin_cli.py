"""Admin commands against a running server: repo, tag, manifest, inspect, retention,
audit, usage-remote and gc-remote (``lading gc`` / ``lading usage`` work on local data),
and the account twins user-, group-, perm-, robot- and public-remote
(``admin_accounts_cli.py``)."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from registry.commands import admin_accounts_cli
from registry.commands.admin_client import (
    AdminClient,
    AdminCliError,
    add_connection_options,
    confirm,
    emit,
    one_line,
    repo_path,
    segment,
    split_reference,
    when,
)
from registry.commands.progress import ProgressBar, Ticker, human

Command = Callable[[AdminClient, argparse.Namespace], None]


def _run(command: Command) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            client = AdminClient(args)
            try:
                command(client, args)
            except KeyError as exc:  # another service, or a server of another version
                raise AdminCliError(f"{client.not_lading} (no {exc} in its answer)") from exc
        except AdminCliError as exc:
            print(f"lading: {exc}", file=sys.stderr)
            return exc.code
        except BrokenPipeError:
            # Output piped into `head` and the like: stop quietly.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0

    return run


# -- repositories, tags, manifests ---------------------------------------------------------
def repo_ls(client: AdminClient, args: argparse.Namespace) -> None:
    order = "desc" if args.desc else "asc"
    items = list(client.pages("/repositories", filter=args.filter, sort=args.sort, order=order))
    rows = [["NAME", "TAGS", "MANIFESTS", "SIZE", "EXCLUSIVE", "SHARED", "LAST PUSH"]]
    rows += [
        [r["name"], str(r["tag_count"]), str(r["manifest_count"]), human(r["size_bytes"]),
         human(r["exclusive_bytes"]), human(r["shared_bytes"]), when(r["last_push_at"])]
        for r in items
    ]  # fmt: skip
    emit(args, items, rows)


def repo_show(client: AdminClient, args: argparse.Namespace) -> None:
    repo = client.get(repo_path(args.name))
    rows = [["FIELD", "VALUE"]] + [[k, str(v)] for k, v in repo.items()]
    emit(args, repo, rows)


def repo_rm(client: AdminClient, args: argparse.Namespace) -> None:
    confirm(args, f"delete repository {args.name} with all its tags and manifests")
    bar = ProgressBar("repo rm", only_tty=True)
    with Ticker(bar, f"{args.name}: deleting"):
        try:
            result = client.request("DELETE", repo_path(args.name))
        finally:
            bar.close()
    details = result["details"]
    row = [result["deleted"], str(details["tags_deleted"]), str(details["manifests_deleted"])]
    emit(args, result, [["DELETED", "TAGS", "MANIFESTS"], row])


def tag_ls(client: AdminClient, args: argparse.Namespace) -> None:
    items = list(client.pages(repo_path(args.repository) + "/-/tags"))
    rows = [["TAG", "DIGEST", "PLATFORMS", "SIZE", "PUSHED", "LAST PULLED"]]
    rows += [
        [t["name"], t["digest"][:19], ",".join(t["platforms"]) or "-", human(t["size_bytes"]),
         when(t["pushed_at"]), when(t["last_pulled_at"])]
        for t in items
    ]  # fmt: skip
    emit(args, items, rows)


def tag_rm(client: AdminClient, args: argparse.Namespace) -> None:
    if "@" in args.reference:  # a tag may well start with "sha" (CI's sha-1a2b3c)
        raise AdminCliError("tag rm takes REPO:TAG; use manifest rm for REPO@DIGEST", 2)
    name, tag = split_reference(args.reference)
    result = client.request("DELETE", f"{repo_path(name)}/-/tags/{segment(tag)}")
    emit(args, result, [["DELETED"], [result["deleted"]]])


def manifest_ls(client: AdminClient, args: argparse.Namespace) -> None:
    untagged = "true" if args.untagged else None
    items = list(client.pages(repo_path(args.repository) + "/-/manifests", untagged=untagged))
    rows = [["DIGEST", "TYPE", "TAGS", "PLATFORMS", "SIZE", "PUSHED", "LAST PULLED"]]
    rows += [
        [m["digest"][:19], m["media_type"].rsplit(".", 2)[-2], ",".join(m["tags"]) or "-",
         ",".join(m["platforms"]) or "-", human(m["size_bytes"]), when(m["pushed_at"]),
         when(m["last_pulled_at"])]
        for m in items
    ]  # fmt: skip
    emit(args, items, rows)


def manifest_rm(client: AdminClient, args: argparse.Namespace) -> None:
    if "@" not in args.reference:
        raise AdminCliError("manifest rm takes REPO@DIGEST", 2)
    name, digest = split_reference(args.reference)
    result = client.request("DELETE", f"{repo_path(name)}/-/manifests/{segment(digest)}")
    emit(args, result, [["DELETED"], [result["deleted"]]])


def inspect(client: AdminClient, args: argparse.Namespace) -> None:
    name, reference = split_reference(args.reference)
    view = client.get(f"{repo_path(name)}/-/inspect/{segment(reference)}", platform=args.platform)
    rows = [["FIELD", "VALUE"], ["Digest", view["digest"]], ["MediaType", view["media_type"]]]
    if view["platforms"] is not None:
        rows += [[f"Platform {p['platform'] or '?'}", p["digest"]] for p in view["platforms"]]
    else:
        rows += [["Platform", view["platform"] or "-"], ["Created", view["created"] or "-"]]
        rows += [[k, json.dumps(v)] for k, v in view["config"].items()]
        rows += [[f"Layer {i}", f"{layer['digest']} {human(layer['size'])}"]
                 for i, layer in enumerate(view["layers"])]  # fmt: skip
    rows += [["Size", human(view["total_size"])], ["Referrers", str(len(view["referrers"]))]]
    emit(args, view, rows)


# -- retention -----------------------------------------------------------------------------
_RULE_FLAGS = ("keep_newest", "keep_regex", "older_than_days", "delete_untagged")


def _policy_from_flags(args: argparse.Namespace) -> dict[str, Any]:
    if not args.repo_pattern:
        raise AdminCliError("give --repo-pattern (or --policy-file, --policy-id, --all)", 2)
    policy: dict[str, Any] = {
        "name": args.name or "cli",
        "repository_pattern": args.repo_pattern,
        "delete_untagged": bool(args.delete_untagged),
    }
    if args.keep_newest is not None:
        policy["keep_newest"] = args.keep_newest
    if args.keep_regex is not None:
        policy["keep_regex"] = args.keep_regex
    if args.older_than_days is not None:
        policy["delete_older_than_days"] = args.older_than_days
    return policy


def _retention_body(args: argparse.Namespace) -> dict[str, Any]:
    # The API takes exactly one source; picking one here would run something else silently.
    flags = any(
        getattr(args, f) is not None and getattr(args, f) is not False  # 0 is a value
        for f in (*_RULE_FLAGS, "repo_pattern", "name")
    )
    given = [args.all, bool(args.policy_id), bool(args.policy_file), flags]
    if sum(given) > 1:
        raise AdminCliError(
            "give only one of --all, --policy-id, --policy-file or rule flags"
            " (--repo-pattern, --keep-newest, ...)",
            2,
        )
    if args.all:
        return {"all": True}
    if args.policy_id:
        return {"policy_ids": args.policy_id}
    if args.policy_file:
        return {"policy": _policy_file(args.policy_file)}
    return {"policy": _policy_from_flags(args)}


def _policy_file(path: str) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise AdminCliError(f"cannot read {path}: {one_line(exc)}", 2) from exc
    if loaded is None:
        raise AdminCliError(f"policy file {path} is empty", 2)
    if not isinstance(loaded, dict):
        raise AdminCliError(f"policy file {path} must hold a mapping of PolicyIn fields", 2)
    return loaded


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):  # NaN or infinity cannot be sent as JSON
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def _plan_rows(plan: dict[str, Any]) -> list[list[str]]:
    rows = [["REPOSITORY", "TAG / MANIFEST", "PUSHED / SIZE"]]
    for repo in plan["repositories"]:
        rows += [
            [repo["repository"], f"tag {t['name']}", when(t["pushed_at"])] for t in repo["tags"]
        ]
        rows += [[repo["repository"], f"manifest {m['digest'][:19]}", human(m["size"])]
                 for m in repo["manifests"]]  # fmt: skip
    verb = "freed" if plan["applied"] else "would free"
    rows.append(["TOTAL", f"{plan['tags']} tags, {plan['manifests']} manifests",
                 f"{verb} {human(plan['bytes_freed'])} ({plan['bytes_freed']} bytes)"])  # fmt: skip
    return rows


def retention_preview(client: AdminClient, args: argparse.Namespace) -> None:
    plan = client.request("POST", "/retention/preview", json=_retention_body(args))
    emit(args, plan, _plan_rows(plan))


def _apply_in_steps(client: AdminClient, body: dict[str, Any], bar: ProgressBar) -> Any:
    """Apply repository by repository (those the preview names), so the bar can move;
    each step plans afresh, as one apply would."""
    names = [r["repository"] for r in client.request("POST", "/retention/preview", json=body)
             ["repositories"]]  # fmt: skip
    if not names:  # nothing to delete: still one apply, so the audit log shows it ran
        return client.request("POST", "/retention/apply", json=body)
    total: dict[str, Any] = {"applied": True, "tags": 0, "manifests": 0, "bytes_freed": 0,
                             "repositories": []}  # fmt: skip
    for done, name in enumerate(names):
        bar("apply", done, len(names), f"repositories, {total['tags']} tags deleted; {name}")
        step = client.request("POST", "/retention/apply", json={**body, "repositories": [name]})
        for key in ("tags", "manifests", "bytes_freed", "repositories"):
            total[key] += step[key]
    bar("apply", len(names), len(names), f"repositories, {total['tags']} tags deleted")
    return total


def retention_apply(client: AdminClient, args: argparse.Namespace) -> None:
    body = _retention_body(args)
    confirm(args, "delete the tags and manifests the policy selects")
    bar = ProgressBar("retention", only_tty=True)
    try:
        plan = _apply_in_steps(client, body, bar)
    finally:
        bar.close()
    # Not "run gc now": on a default setup that pass frees nothing for a day.
    print(f"deleted {plan['tags']} tags and {plan['manifests']} manifests; garbage collection"
          " frees their blobs once unreferenced for gc_review_delay (lading gc-remote status)",
          file=sys.stderr)  # fmt: skip
    emit(args, plan, _plan_rows(plan))


def retention_ls(client: AdminClient, args: argparse.Namespace) -> None:
    items = client.get("/retention/policies")["items"]
    rows = [["ID", "NAME", "PATTERN", "KEEP NEWEST", "KEEP REGEX", "OLDER THAN", "UNTAGGED"]]
    rows += [[str(p["id"]), p["name"], p["repository_pattern"], str(p["keep_newest"] or "-"),
              p["keep_regex"] or "-", str(p["delete_older_than_days"] or "-"),
              "delete" if p["delete_untagged"] else "keep"] for p in items]  # fmt: skip
    emit(args, items, rows)


def retention_create(client: AdminClient, args: argparse.Namespace) -> None:
    body = _retention_body(args)
    if "policy" not in body:
        raise AdminCliError("create takes --policy-file or rule flags", 2)
    created = client.request("POST", "/retention/policies", json=body["policy"])
    emit(args, created, [["ID", "NAME"], [str(created["id"]), created["name"]]])


def retention_rm(client: AdminClient, args: argparse.Namespace) -> None:
    client.request("DELETE", f"/retention/policies/{args.id}")
    emit(args, {"deleted": args.id}, [["DELETED"], [str(args.id)]])


# -- garbage collection, usage, audit ----------------------------------------------------------
def _run_rows(runs: list[dict[str, Any]]) -> list[list[str]]:
    rows = [["ID", "STATUS", "TRIGGER", "DRY", "STARTED", "MANIFESTS", "BLOBS", "FREED"]]
    rows += [[str(r["id"]), r["status"], r["trigger"], "yes" if r["dry_run"] else "no",
              when(r["started_at"]), str(r["manifests_deleted"]), str(r["blobs_deleted"]),
              human(r["bytes_freed"])] for r in runs]  # fmt: skip
    return rows


def gc_run(client: AdminClient, args: argparse.Namespace) -> None:
    run = client.request("POST", "/gc/runs", json={"dry_run": args.dry_run, "wait": False})
    started = time.monotonic()
    bar = ProgressBar("gc", only_tty=True)
    while True:  # the count at least once, however quick the pass
        status = client.get("/gc/status")
        bar.note(f"run {run['id']}: {time.monotonic() - started:.0f}s,"
                 f" {status['pending_reviews']} reviews pending")  # fmt: skip
        if run["status"] != "running":
            break
        time.sleep(args.poll)
        found = [r for r in client.get("/gc/runs", limit=50)["items"] if r["id"] == run["id"]]
        if found:
            run = found[0]
    bar.close(f"gc run {run['id']}: {run['status']}, freed {human(run['bytes_freed'])}")
    emit(args, run, _run_rows([run]))
    if run["status"] != "ok":
        raise AdminCliError(f"gc run {run['id']} {run['status']}: {run.get('error')}")


def gc_status(client: AdminClient, args: argparse.Namespace) -> None:
    status = client.get("/gc/status")
    runs = [r for r in (status["running"], status["last"]) if r]
    print(f"reviews due now: {status['pending_reviews']} (an object is collected once"
          f" unreferenced for {status['review_delay_seconds']:g} s)", file=sys.stderr)  # fmt: skip
    emit(args, status, _run_rows(runs))


def gc_history(client: AdminClient, args: argparse.Namespace) -> None:
    runs = list(client.pages("/gc/runs", most=args.limit))
    emit(args, runs, _run_rows(runs))


def usage(client: AdminClient, args: argparse.Namespace) -> None:
    report = client.get("/usage")
    rows = [["REPOSITORY", "TOTAL", "EXCLUSIVE", "SHARED", "MANIFESTS"]]
    rows += [[r["name"], human(r["total_bytes"]), human(r["exclusive_bytes"]),
              human(r["shared_bytes"]), human(r["manifest_bytes"])]
             for r in report["repositories"]]  # fmt: skip
    rows.append(["(all storage)", human(report["total_bytes"]), "", "",
                 f"unreferenced blobs: {human(report['unreferenced_blob_bytes'])}"])  # fmt: skip
    emit(args, report, rows)


def audit(client: AdminClient, args: argparse.Namespace) -> None:
    items = list(client.pages("/audit", most=args.limit, action=args.action))
    rows = [["WHEN", "ACTOR", "ACTION", "TARGET"]]
    rows += [[when(e["at"]), e["actor"], e["action"], e["target"][:80]] for e in items]
    emit(args, items, rows)


# -- argparse ------------------------------------------------------------------------------
def _count(text: str) -> int:
    """A --limit: any positive number (pages of the API's largest size are fetched)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"not a positive whole number: {text!r}")
    return value


def _leaf(group: Any, name: str, command: Command, help_text: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = group.add_parser(name, help=help_text)
    add_connection_options(parser)
    parser.set_defaults(func=_run(command))
    return parser


def _retention_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--policy-file", help="YAML/JSON policy (the API's PolicyIn fields)")
    parser.add_argument("--policy-id", type=int, action="append", help="a stored policy")
    parser.add_argument("--all", action="store_true", help="every stored policy")
    parser.add_argument("--name", help="policy name (default: cli)")
    parser.add_argument("--repo-pattern", help="fnmatch pattern, e.g. 'team/*'")
    parser.add_argument("--keep-newest", type=int, help="keep the newest N tags")
    parser.add_argument("--keep-regex", help="keep tags fully matching this regex")
    parser.add_argument("--older-than-days", type=_finite, help="only delete tags older than D")
    parser.add_argument("--delete-untagged", action="store_true", help="also untagged manifests")


def register(sub: Any) -> None:
    repo = sub.add_parser("repo", help="repositories on a running server").add_subparsers(
        dest="repo_command", required=True
    )
    ls = _leaf(repo, "ls", repo_ls, "list repositories")
    ls.add_argument("--filter", help="substring or fnmatch pattern")
    ls.add_argument(
        "--sort", choices=["name", "size", "last_push"], default="name", help="default name"
    )
    ls.add_argument("--desc", action="store_true", help="descending order")
    _leaf(repo, "show", repo_show, "show one repository").add_argument("name")
    rm = _leaf(repo, "rm", repo_rm, "delete a repository (GC frees its blobs)")
    rm.add_argument("name")
    rm.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")

    tag = sub.add_parser("tag", help="tags on a running server").add_subparsers(
        dest="tag_command", required=True
    )
    _leaf(tag, "ls", tag_ls, "list tags").add_argument("repository")
    _leaf(tag, "rm", tag_rm, "delete a tag").add_argument("reference", metavar="REPO:TAG")

    manifest = sub.add_parser("manifest", help="manifests on a running server").add_subparsers(
        dest="manifest_command", required=True
    )
    mls = _leaf(manifest, "ls", manifest_ls, "list manifests")
    mls.add_argument("repository")
    mls.add_argument("--untagged", action="store_true", help="only manifests without a tag")
    mrm = _leaf(manifest, "rm", manifest_rm, "delete a manifest and its tags")
    mrm.add_argument("reference", metavar="REPO@DIGEST")

    ins = _leaf(sub, "inspect", inspect, "inspect an image like docker inspect")
    ins.add_argument("reference", metavar="REPO:TAG|REPO@DIGEST")
    ins.add_argument("--platform", help="os/arch[/variant] of an index")

    retention = sub.add_parser("retention", help="retention policies").add_subparsers(
        dest="retention_command", required=True
    )
    _retention_flags(_leaf(retention, "preview", retention_preview, "what would be deleted"))
    apply = _leaf(retention, "apply", retention_apply, "delete what the policy selects")
    _retention_flags(apply)
    apply.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    _leaf(retention, "ls", retention_ls, "list stored policies")
    _retention_flags(_leaf(retention, "create", retention_create, "store a policy"))
    _leaf(retention, "rm", retention_rm, "delete a stored policy").add_argument("id", type=int)

    gc = sub.add_parser("gc-remote", help="garbage collection on a running server")
    gcs = gc.add_subparsers(dest="gc_command", required=True)
    run = _leaf(gcs, "run", gc_run, "collect garbage now, with progress on stderr")
    run.add_argument("--dry-run", action="store_true", help="report what would be freed")
    run.add_argument("--poll", type=float, default=0.5, help=argparse.SUPPRESS)
    _leaf(gcs, "status", gc_status, "running pass and pending reviews")
    history = _leaf(gcs, "history", gc_history, "past passes")
    history.add_argument("--limit", type=_count, default=20, help="newest N passes (default 20)")

    _leaf(sub, "usage-remote", usage, "storage usage of a running server")
    aud = _leaf(sub, "audit", audit, "the audit log, newest first")
    aud.add_argument("--action", help="e.g. repository.delete, retention.apply, gc.trigger")
    aud.add_argument("--limit", type=_count, default=50, help="newest N entries (default 50)")

    admin_accounts_cli.register(sub, _leaf)
