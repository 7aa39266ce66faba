"""`lading gc` (one online collection pass) and `lading usage` (space accounting)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from registry.commands.common import add_local_options, existing_registry
from registry.commands.progress import ProgressBar, human

# Test-only: seconds to pause after each deleting commit, so crash tests can kill mid-run.
TASK_PAUSE_ENV = "LADING_GC_TEST_TASK_PAUSE"
# Test-only: the run's lease (default 60 s), so tests see a killed run abandoned soon.
LEASE_ENV = "LADING_GC_TEST_LEASE_SECONDS"


def cmd_gc(args: argparse.Namespace) -> int:
    from registry.app import build_components, prepare
    from registry.services.gc import GarbageCollector

    settings = existing_registry(args)
    components = build_components(settings)
    try:
        prepare(components)
        collector = GarbageCollector(
            components.db,
            components.driver,
            review_delay=settings.gc_review_delay if args.delay is None else args.delay,
            upload_purge_after=settings.upload_purge_after_hours * 3600,
            task_pause=float(os.environ.get(TASK_PAUSE_ENV, "0") or 0),
            batch_size=args.batch_size or settings.gc_batch_size,
            lease_seconds=float(os.environ.get(LEASE_ENV, "60") or 60),
        )
        bar = ProgressBar("gc") if not args.quiet else None
        try:
            report = collector.run(dry_run=args.dry_run, trigger="cli", progress=bar)
        finally:
            if bar is not None:
                bar.close()
    finally:
        components.db.dispose()
    verb = "would free" if args.dry_run else "freed"
    print(
        f"gc run {report.run_id}{' (dry run)' if args.dry_run else ''}: {verb}"
        f" {report.objects_freed} objects, {human(report.bytes_freed)}"
        f" ({report.bytes_freed} bytes): {report.manifests_deleted} manifests,"
        f" {report.blobs_deleted} blobs, {report.links_deleted} repository links,"
        f" {report.uploads_deleted} stale uploads"
    )
    return 0


def cmd_usage(args: argparse.Namespace) -> int:
    from registry.app import build_components
    from registry.services.usage import space_report

    settings = existing_registry(args)
    components = build_components(settings)
    try:
        report = space_report(components.db)
    finally:
        components.db.dispose()
    print(f"total: {human(report.total_bytes)} ({report.total_bytes} bytes)")
    print(f"  blobs: {report.blob_count} ({report.blob_bytes} bytes)")
    print(f"  manifests: {report.manifest_count} ({report.manifest_bytes} bytes)")
    print(f"{'repository':<40} {'exclusive':>14} {'shared':>14} {'manifests':>12}")
    for repo in report.repositories:
        print(
            f"{repo.name:<40} {repo.exclusive_bytes:>14} {repo.shared_bytes:>14}"
            f" {repo.manifest_bytes:>12}"
        )
    return 0


def register(sub: Any) -> None:
    gc = sub.add_parser("gc", help="collect garbage now (online: pushes may continue)")
    gc.add_argument("--dry-run", action="store_true", help="report what would be freed")
    gc.add_argument(
        "--delay", type=float, default=None, help="grace seconds (default gc_review_delay)"
    )
    gc.add_argument("--quiet", action="store_true", help="no progress bar")
    gc.add_argument(
        "--batch-size", type=int, default=None, help="reviews per transaction (gc_batch_size)"
    )
    add_local_options(gc)
    gc.set_defaults(func=cmd_gc)
    usage = sub.add_parser("usage", help="storage used in total and per repository")
    add_local_options(usage)
    usage.set_defaults(func=cmd_usage)
