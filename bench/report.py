"""Metric catalogue, ratios (>1 = Lading better), targets and the printed table."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Results = dict[str, dict[str, Any]]  # server -> workload -> metric -> value (or "skipped")


@dataclass(frozen=True)
class Metric:
    workload: str
    key: str
    label: str
    unit: str
    higher_better: bool


METRICS = [
    Metric("big_blobs", "push_mono_mbs", "1 GiB push, monolithic", "MB/s", True),
    Metric("big_blobs", "push_chunked_mbs", "1 GiB push, 16 MiB PATCHes", "MB/s", True),
    Metric("big_blobs", "pull_mbs", "1 GiB pull", "MB/s", True),
    # Not the registry's: the disk's own durable write rate just before its pushes.
    Metric("big_blobs", "disk_fill_mbs", "disk: write+fsync onto new blocks", "MB/s", True),
    Metric("big_blobs", "peak_rss_mib", "server peak RSS during 1 GiB pushes", "MiB", False),
    Metric("blob_head", "head_p50_ms", "blob HEAD p50 (sequential)", "ms", False),
    Metric("blob_head", "head_p99_ms", "blob HEAD p99 (sequential)", "ms", False),
    Metric("manifest_get", "rps", "manifest GET by tag (wrk -c32)", "req/s", True),
    Metric("manifest_get", "p99_ms", "manifest GET p99", "ms", False),
    Metric("manifest_head", "rps", "manifest HEAD by tag (hey -c32)", "req/s", True),
    Metric("manifest_head", "p99_ms", "manifest HEAD p99", "ms", False),
    Metric("v2_root", "rps", "GET /v2/ (wrk -c32)", "req/s", True),
    Metric("v2_root", "p99_ms", "GET /v2/ p99", "ms", False),
    Metric("small_blobs", "blobs_per_s", "64 KiB blob pushes, 16 at a time", "blobs/s", True),
    Metric("tags", "tags_per_s", "tag pushes, 16 at a time", "tags/s", True),
    Metric("tags", "list_full_p50_ms", "tags/list full, p50", "ms", False),
    Metric("tags", "list_paged_walk_ms", "tags/list walk n=100 via Link", "ms", False),
    Metric("tags", "list_paged_page_p50_ms", "tags/list one n=100 page, p50", "ms", False),
    Metric("skopeo", "copy_in_s", "skopeo copy oci: -> registry", "s", False),
    Metric("skopeo", "copy_out_s", "skopeo copy registry -> oci:", "s", False),
    Metric("docker", "push_s", "docker push", "s", False),
    Metric("docker", "pull_s", "docker pull", "s", False),
]


@dataclass(frozen=True)
class Target:
    workload: str
    key: str
    text: str
    min_ratio: float | None = None  # ratio oriented so that >1 = Lading better
    max_value: float | None = None  # absolute bound on Lading's own value


TARGETS = [
    Target("big_blobs", "push_mono_mbs", "blob push (monolithic) >= 2x", min_ratio=2.0),
    Target("big_blobs", "push_chunked_mbs", "blob push (chunked) >= 2x", min_ratio=2.0),
    Target("big_blobs", "pull_mbs", "blob pull >= 1x", min_ratio=1.0),
    Target("manifest_get", "rps", "manifest GET >= 2x", min_ratio=2.0),
    Target("manifest_head", "rps", "manifest HEAD >= 2x", min_ratio=2.0),
    Target("small_blobs", "blobs_per_s", "small blobs >= 1.5x", min_ratio=1.5),
    Target("tags", "tags_per_s", "tag pushes >= 2x", min_ratio=2.0),
    Target("tags", "list_full_p50_ms", "tags/list full no slower", min_ratio=1.0),
    # Per request: distribution 2.8 ignores `n` and answers every page request with
    # all tags, so its "page" is its full listing; the Link walk is reported, not judged.
    Target(
        "tags",
        "list_paged_page_p50_ms",
        "tags/list paginated (per request) no slower",
        min_ratio=1.0,
    ),
    Target("skopeo", "copy_in_s", "skopeo copy in no slower", min_ratio=1.0),
    Target("skopeo", "copy_out_s", "skopeo copy out no slower", min_ratio=1.0),
    Target("docker", "push_s", "docker push no slower", min_ratio=1.0),
    Target("docker", "pull_s", "docker pull no slower", min_ratio=1.0),
    Target("big_blobs", "peak_rss_mib", "Lading peak RSS in 1 GiB push < 150 MiB", max_value=150.0),
]


def value(results: Results, server: str, workload: str, key: str) -> float | str | None:
    wl = results.get(server, {}).get(workload)
    if wl is None:
        return None
    if isinstance(wl, dict):
        if "skipped" in wl:
            return f"skipped: {wl['skipped']}"
        v = wl.get(key)
        return float(v) if isinstance(v, int | float) else None
    return None


def ratio(
    metric_higher_better: bool, cand: float | str | None, ref: float | str | None
) -> float | None:
    if not isinstance(cand, float) or not isinstance(ref, float) or cand <= 0 or ref <= 0:
        return None
    return cand / ref if metric_higher_better else ref / cand


def fmt(v: float | str | None) -> str:
    if v is None:
        return "pending"
    if isinstance(v, str):
        return "skipped"
    if math.isnan(v):
        return "n/a"
    if v >= 1000:
        return f"{v:,.0f}"
    if v >= 100:
        return f"{v:.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def table(results: Results, candidates: list[str], markdown: bool = False) -> str:
    """One row per metric: reference, each candidate, and candidate/reference ratio."""
    head = ["metric", "unit", "reference"]
    for c in candidates:
        head += [c, f"ratio {c}"]
    rows: list[list[str]] = []
    for m in METRICS:
        if all(
            value(results, srv, m.workload, m.key) is None for srv in ["reference", *candidates]
        ):
            continue  # workload not selected (--only)
        ref = value(results, "reference", m.workload, m.key)
        row = [
            m.label,
            m.unit + (" (higher better)" if m.higher_better else " (lower better)"),
            fmt(ref),
        ]
        for c in candidates:
            cv = value(results, c, m.workload, m.key)
            r = ratio(m.higher_better, cv, ref)
            row += [fmt(cv), "pending" if r is None else f"{r:.2f}x"]
        rows.append(row)
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    out = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    out.append("  ".join("-" * w for w in widths))
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def verdicts(results: Results, candidate: str) -> list[tuple[str, str, str]]:
    """(target, PASS/FAIL/PENDING, detail) for one candidate against the reference."""
    higher = {(m.workload, m.key): m.higher_better for m in METRICS}
    out = []
    for t in TARGETS:
        cv = value(results, candidate, t.workload, t.key)
        if t.max_value is not None:
            if isinstance(cv, float):
                ok = cv < t.max_value
                out.append((t.text, "PASS" if ok else "FAIL", f"{cv:.1f} MiB"))
            else:
                out.append((t.text, "PENDING", fmt(cv)))
            continue
        ref = value(results, "reference", t.workload, t.key)
        r = ratio(higher[(t.workload, t.key)], cv, ref)
        if r is None:
            detail = fmt(cv) if isinstance(cv, str) else "no result"
            out.append((t.text, "PENDING", detail))
        else:
            out.append((t.text, "PASS" if r >= (t.min_ratio or 0) else "FAIL", f"{r:.2f}x"))
    return out


def verdict_text(results: Results, candidates: list[str]) -> str:
    lines = []
    for c in candidates:
        lines.append(f"Targets for {c}:")
        for text, status, detail in verdicts(results, c):
            lines.append(f"  {status:<7} {text}  ({detail})")
    return "\n".join(lines)


def notes(results: Results) -> list[str]:
    """Skips, errors and client-side saturation, so nobody misreads the table."""
    out = []
    cores = results.get("meta", {}).get("cores") or 1
    for server, wls in results.items():
        loads = [d.get("host_load", 0.0) for d in wls.values() if isinstance(d, dict)]
        if server != "meta" and loads and max(loads) > 0.5 * cores:
            out.append(
                f"{server}: host load average up to {max(loads):.1f} on {cores} cores during "
                "its workloads (other processes were busy): numbers are noisy"
            )
    ref_push = value(results, "reference", "big_blobs", "push_chunked_mbs")
    fills = [value(results, srv, "big_blobs", "disk_fill_mbs") for srv in results]
    slowest = min((f for f in fills if isinstance(f, float)), default=None)
    if slowest is not None and isinstance(ref_push, float) and slowest < 2 * ref_push:
        out.append(
            f"disk: new blocks took as little as {slowest:.0f} MB/s (write+fsync), under 2x "
            "the reference's chunked push, so on never-used blocks no durable push reaches "
            "2x here; the pushes above ran on just-freed blocks (bench/disk.py)"
        )
    for server, wls in results.items():
        if server == "meta":
            continue
        for wl, data in wls.items():
            if not isinstance(data, dict):
                continue
            if "skipped" in data:
                out.append(f"{server}/{wl}: skipped: {data['skipped']}")
            if "error" in data:
                out.append(f"{server}/{wl}: error: {data['error']}")
            pages, count = data.get("list_paged_pages"), data.get("count", 0)
            if wl == "tags" and pages == 1 and count > 100:
                out.append(f"{server}/tags: ignored n=100 (all {count:.0f} tags in one page)")
            if data.get("errors"):
                out.append(f"{server}/{wl}: {data['errors']:.0f} failed requests")
            for k, v in data.items():
                limit = 1.6 if wl in ("manifest_get", "manifest_head", "v2_root") else 0.9
                if k.endswith("client_cpu") and isinstance(v, float) and v > limit:
                    out.append(f"{server}/{wl}: client used {v:.0%} of a core (may be the limit)")
    return out


def write_json(path: Path, results: Results) -> None:
    text = json.dumps(results, indent=2, sort_keys=True)
    if path.exists() and not path.is_file():
        # A device or pipe (--json /dev/null): write into it, never rename over it.
        path.write_text(text)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(path)
