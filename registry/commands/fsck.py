"""`lading fsck`: compare storage with the database; `--repair` fixes what it can."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from registry.commands.common import add_local_options, existing_registry


def cmd_fsck(args: argparse.Namespace) -> int:
    from registry.app import build_components, prepare
    from registry.services.fsck import FsckService

    settings = existing_registry(args)
    components = build_components(settings)
    try:
        prepare(components)
        report = FsckService(components.db, components.driver).check(
            repair=args.repair, grace_seconds=args.grace_seconds
        )
    finally:
        components.db.dispose()
    if args.json:
        print(json.dumps({"clean": report.clean, **asdict(report)}, indent=2))
    else:
        _print_text(report)
    return 0 if report.clean or args.repair else 1


def _print_text(report: Any) -> None:
    sections = [
        ("blob rows whose bytes are missing", report.missing_blobs),
        ("manifest rows whose bytes are missing", report.missing_manifests),
        ("storage objects no row points to", report.orphan_objects),
        ("uploads in storage without a session", report.orphan_uploads),
        ("objects queued for deletion by gc", report.pending_deletions),
        ("repaired: objects deleted", report.deleted_objects),
        ("repaired: uploads aborted", report.deleted_uploads),
        ("repaired: blob rows removed", report.removed_blobs),
        ("repaired: manifest rows removed", report.removed_manifests),
    ]
    for title, items in sections:
        if items:
            print(f"{title}: {len(items)}")
            for item in items[:50]:
                print(f"  {item}")
    print("clean" if report.clean else "inconsistent")


def register(sub: Any) -> None:
    fsck = sub.add_parser("fsck", help="check storage against the database")
    fsck.add_argument("--repair", action="store_true", help="delete orphans, drop broken rows")
    fsck.add_argument(
        "--grace-seconds",
        type=float,
        default=3600.0,
        help="delete orphans only once seen unreferenced this long (default 3600; on a"
        " live registry keep it above the longest request: a blob being committed is"
        " briefly an orphan)",
    )
    fsck.add_argument("--json", action="store_true", help="print the report as JSON")
    add_local_options(fsck)
    fsck.set_defaults(func=cmd_fsck)
