"""One command for the side-by-side benchmark: `.venv/bin/python -m bench.run [--quick]`.

Starts the reference registry (CNCF distribution, `docker-registry serve`) and Lading
(`lading serve`, defaults) one after the other on 127.0.0.1, runs the same workloads on
each, prints a table with ratios (>1 = Lading better) and PASS/FAIL per target, and
writes JSON. Everything it starts is stopped by PID and its temp dirs removed.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from bench import disk, images, loadgen, report, workloads
from bench.servers import REPO_ROOT, Postgres, Server, start_lading, start_reference

WORKLOADS = [
    "big_blobs",
    "blob_head",
    "manifest_get",
    "manifest_head",
    "v2_root",
    "small_blobs",
    "tags",
    "skopeo",
    "docker",
]
# Image round trips run once: a second copy would mount or skip the blobs already there.
ONCE = {"skopeo", "docker"}
DEFAULT_JSON = REPO_ROOT / "bench" / "results" / "latest.json"


@dataclass(frozen=True)
class Params:
    big_mib: int = 1024
    head_n: int = 2000
    load_seconds: int = 10
    small_count: int = 500
    small_kib: int = 64
    concurrency: int = 16
    tag_count: int = 5000
    list_reps: int = 10
    page: int = 100
    skopeo_layers: int = 20
    skopeo_layer_mib: int = 8
    docker_layers: int = 4
    docker_layer_mib: int = 16
    budget_s: int = 420  # per server and repetition, added up
    repeat: int = 1


QUICK = Params(
    big_mib=256,
    head_n=300,
    load_seconds=3,
    small_count=200,
    tag_count=500,
    list_reps=3,
    skopeo_layers=5,
    docker_layers=2,
    docker_layer_mib=8,
    budget_s=75,
)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Fixtures:
    """Test data made once and shared by every server (never inside a timed section)."""

    def __init__(self, p: Params, selected: list[str], tmp: Path) -> None:
        self.docker: images.DockerEngine | None = None
        self.docker_error = ""
        self.layout: Path | None = None
        if "big_blobs" in selected or "blob_head" in selected:
            t0 = time.perf_counter()
            base = os.urandom(workloads.CHUNK)
            size = p.big_mib * workloads.MiB
            # One distinct pair per repetition: a re-push of a known digest is not a push.
            self.big = [
                (
                    workloads.make_big_blob(size, b"mono%d" % rep, base),
                    workloads.make_big_blob(size, b"chunked%d" % rep, base),
                )
                for rep in range(p.repeat)
            ]
            self.head_blob, self.head_digest = workloads.make_big_blob(workloads.MiB, b"head")
            log(f"generated 2 x {p.big_mib} MiB blob streams in {time.perf_counter() - t0:.1f}s")
        if "skopeo" in selected:
            t0 = time.perf_counter()
            self.layout = images.build_oci_layout(tmp / "oci", p.skopeo_layers, p.skopeo_layer_mib)
            log(
                f"built OCI layout ({p.skopeo_layers} x {p.skopeo_layer_mib} MiB) "
                f"in {time.perf_counter() - t0:.1f}s"
            )
        if "docker" in selected:
            t0 = time.perf_counter()
            try:
                self.docker = images.DockerEngine.start()
                self.docker.build_image(p.docker_layers, p.docker_layer_mib)
                log(f"docker engine + image ready in {time.perf_counter() - t0:.1f}s")
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as exc:
                self.docker_error = str(exc).splitlines()[0][:200]
                log(f"docker workload will be skipped: {self.docker_error}")
                if self.docker is not None:
                    self.docker.stop()
                    self.docker = None

    def close(self) -> None:
        if self.docker is not None:
            self.docker.stop()
            self.docker = None


def run_workload(
    name: str, server: Server, p: Params, fx: Fixtures, rep: int = 0
) -> dict[str, Any]:
    if name == "big_blobs":
        (mono, mono_digest), (chunked, chunked_digest) = fx.big[rep]
        # Each push then lands on just-freed blocks, whatever ran before (bench/disk.py).
        fills: list[float] = []

        def level() -> None:
            fills.append(disk.level(server.workdir, mib=p.big_mib + 256)["disk_fill_mbs"])

        res = workloads.big_blobs(server, mono, mono_digest, chunked, chunked_digest, level)
        return {**res, "disk_fill_mbs": min(fills)}
    if name == "blob_head":
        workloads.push_monolithic(server, "bench/big", fx.head_blob, fx.head_digest)
        return workloads.blob_head_latency(server, fx.head_digest, p.head_n)
    if name in ("manifest_get", "manifest_head"):
        path = workloads.setup_manifest(server)
        if name == "manifest_get":
            return loadgen.wrk(server.base + path, p.load_seconds, p.concurrency * 2)
        return loadgen.hey(server.base + path, p.load_seconds, p.concurrency * 2)
    if name == "v2_root":
        return loadgen.wrk(server.base + "/v2/", p.load_seconds, p.concurrency * 2)
    if name == "small_blobs":
        return workloads.small_blobs(
            server, p.small_count, p.small_kib * 1024, p.concurrency, budget=120
        )
    if name == "tags":
        return workloads.tags(
            server, p.tag_count, p.concurrency, p.list_reps, p.page, 240, f"bench/tags{rep}"
        )
    if name == "skopeo":
        assert fx.layout is not None
        return images.skopeo_round_trip(server, fx.layout)
    if name == "docker":
        if fx.docker is None:
            return {"skipped": fx.docker_error or "no docker engine"}
        return fx.docker.round_trip(server)
    raise ValueError(name)


def median_of(reps: list[dict[str, Any]]) -> dict[str, Any]:
    """Median of each numeric field over the repetitions; raw runs kept under `reps`."""
    if len(reps) == 1:
        return reps[0]
    ok = [r for r in reps if "error" not in r and "skipped" not in r]
    if not ok:
        return reps[-1]
    out: dict[str, Any] = {"reps": reps, "runs": len(ok)}
    for key, val in ok[0].items():
        vals = [r[key] for r in ok if isinstance(r.get(key), int | float)]
        out[key] = statistics.median(vals) if isinstance(val, int | float) and vals else val
    if len(ok) < len(reps):
        out["failed_runs"] = len(reps) - len(ok)
    return out


def bench_all(
    targets: list[tuple[str, Callable[[], Server]]],
    selected: list[str],
    p: Params,
    fx: Fixtures,
    results: report.Results,
    save: Callable[[], None],
) -> None:
    """Start every server, then run each workload on each server back to back.

    Interleaving keeps the servers' results for one workload close in time, so a busy
    moment on a shared machine hits them alike rather than one server's whole run.
    """
    servers: list[tuple[str, Server]] = []
    try:
        for label, start in targets:
            results[label] = {}
            try:
                server = start()
            except (RuntimeError, OSError) as exc:
                msg = str(exc).splitlines()[0][:300]
                log(f"{label}: could not start: {msg}")
                results[label] = {w: {"skipped": f"server did not start: {msg}"} for w in selected}
                continue
            servers.append((label, server))
            log(f"{label}: up on {server.base} (pid {server.pid})")
        save()
        deadline = time.monotonic() + p.budget_s * max(1, len(servers)) * p.repeat
        runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for rep in range(p.repeat):
            for name in selected:
                if rep > 0 and name in ONCE:
                    continue
                for label, server in servers:
                    if time.monotonic() > deadline:
                        results[label].setdefault(name, {"skipped": "time budget exhausted"})
                        continue
                    load = os.getloadavg()[0]
                    t0 = time.perf_counter()
                    try:
                        res = run_workload(name, server, p, fx, rep)
                    except Exception as exc:  # recorded; the run goes on
                        res = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
                    res["elapsed_s"] = round(time.perf_counter() - t0, 2)
                    res["host_load"] = round(max(load, os.getloadavg()[0]), 2)
                    runs.setdefault((label, name), []).append(res)
                    results[label][name] = median_of(runs[(label, name)])
                    shown = {k: round(v, 2) if isinstance(v, float) else v for k, v in res.items()}
                    log(f"{label}/{name}#{rep}: {shown}")
                    save()
    finally:
        for label, server in servers:
            t0 = time.perf_counter()
            server.stop()
            log(f"{label}: stopped in {time.perf_counter() - t0:.1f}s")


def machine_meta(args: argparse.Namespace, p: Params) -> dict[str, Any]:
    def out(cmd: list[str]) -> str:
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""

    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "mem_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "reference": out(["docker-registry", "--version"]),
        "git_commit": out(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"]),
        "quick": args.quick,
        "params": p.__dict__,
        "candidate_impl": args.candidate_impl,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--quick", action="store_true", help="small smoke run (< 2 minutes)")
    ap.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="WORKLOAD",
        help=f"run only these (repeat or comma-separate): {', '.join(WORKLOADS)}",
    )
    ap.add_argument("--json", type=Path, default=DEFAULT_JSON, help="results file")
    ap.add_argument(
        "--database",
        choices=["sqlite", "postgres", "both"],
        default="sqlite",
        help="Lading metadata DB; postgres starts a throwaway cluster",
    )
    ap.add_argument(
        "--lading-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for lading serve (e.g. LADING_DATABASE_URL=...)",
    )
    ap.add_argument("--skip-lading", action="store_true", help="reference registry only")
    ap.add_argument(
        "--candidate-impl",
        choices=["lading", "reference"],
        default="lading",
        help="'reference' runs a second distribution as the candidate "
        "(harness self-test while Lading is not ready)",
    )
    ap.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="run each HTTP workload N times per server (interleaved) and report medians",
    )
    ap.add_argument("--markdown", action="store_true", help="also print a markdown table")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    p = dataclasses.replace(QUICK if args.quick else Params(), repeat=max(1, args.repeat))
    selected = [
        w for w in WORKLOADS if not args.only or w in {x for o in args.only for x in o.split(",")}
    ]
    unknown = {x for o in args.only for x in o.split(",")} - set(WORKLOADS)
    if unknown:
        print(f"unknown workload(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    for tool in ("docker-registry", "wrk", "hey", "skopeo"):
        if shutil.which(tool) is None:
            log(f"warning: {tool} not found (apt-get install it)")
    extra_env = dict(kv.split("=", 1) for kv in args.lading_env)

    # SIGTERM behaves like Ctrl-C so the finally blocks stop every process we started.
    def _term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)
    t_start = time.monotonic()
    results: report.Results = {"meta": machine_meta(args, p)}

    def save() -> None:
        report.write_json(args.json, results)

    candidates: list[tuple[str, Callable[[], Server]]] = []
    pg: Postgres | None = None
    tmp = Path(tempfile.mkdtemp(prefix="bench-fixtures-"))
    fx: Fixtures | None = None
    try:
        if not args.skip_lading:
            if args.candidate_impl == "reference":
                candidates.append(("lading", lambda: start_reference("candidate")))
            else:
                if args.database in ("sqlite", "both"):
                    candidates.append(("lading", lambda: start_lading("lading", extra_env)))
                if args.database in ("postgres", "both"):
                    pg = Postgres().start()
                    log(f"postgres up on 127.0.0.1:{pg.port} (pid {pg.pid})")
                    pg_env = {**extra_env, "LADING_DATABASE_URL": pg.url}
                    candidates.append(
                        ("lading-postgres", lambda: start_lading("lading-pg", pg_env))
                    )
        fx = Fixtures(p, selected, tmp)
        bench_all([("reference", start_reference), *candidates], selected, p, fx, results, save)
    except KeyboardInterrupt:
        log("interrupted: cleaning up")
        return 130
    finally:
        if fx is not None:
            fx.close()
        if pg is not None:
            pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)
        results["meta"]["wall_s"] = round(time.monotonic() - t_start, 1)
        save()
    names = [c for c, _ in candidates] or ["lading"]
    print(report.table(results, names))
    print()
    print(report.verdict_text(results, names))
    for note in report.notes(results):
        print(f"note: {note}")
    if args.markdown:
        print()
        print(report.table(results, names, markdown=True))
    print(f"\nJSON: {args.json}  (total {results['meta']['wall_s']}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
