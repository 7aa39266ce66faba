"""Lading on S3 versus boto3 on the same S3 server: `.venv/bin/python -m bench.s3_bench [--quick]`.

Starts one S3-compatible server on 127.0.0.1 per ``--server`` (rclone and/or moto, through
tests/s3servers.py), then, against a fresh bucket of that server and in the same run:

- boto3 alone: ``upload_fileobj`` (multipart, ``TransferConfig``) and ``download_fileobj``
  of the blob's bytes; this is what the S3 server and the client can do at all;
- Lading (``lading serve``, one worker, ``LADING_STORAGE=s3``): a chunked push of the same
  bytes (16 MiB PATCHes, then PUT ?digest=) and a pull of the blob.

It prints MB/s, Lading/boto3 ratios (target >= 0.80) and Lading's peak RSS during a small
and a full-size push and pull (it must not grow with the blob size: the full size may peak
at most one request's parts higher, (s3_max_concurrency + 1) * part size, which allocator
timing alone can add). Each push is split in phases: sending the parts
(Lading: the PATCHes, and the median wait between a PATCH's last byte and its 202) and
completing (boto3: CompleteMultipartUpload; Lading: the PUT ?digest=). ``--repeat N``
interleaves N rounds and reports medians. Everything it starts is stopped by PID.

Fairness: both sides use the same part size (``--part-mib``, default 8 MiB, boto3's
default chunk size). boto3 keeps its default 10 threads (``--boto3-threads``); Lading uses
its ``s3_max_concurrency`` (``--concurrency``, default: Lading's own default) per request.
Both sign payloads with SigV4 over plain HTTP (botocore always does on http://). Every timed
operation starts after ``os.sync()``, so none pays for the write-back of the one before, and
every push after a disk fill-and-free (bench/disk.py), so each stores onto just-freed blocks.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import disk
from bench.servers import REPO_ROOT, ClientCpu, ProcSampler, Server, start_lading
from bench.workloads import (
    CHUNK,
    BigBlob,
    make_big_blob,
    pull,
    push_chunked,
    push_monolithic,
)

sys.path.insert(0, str(REPO_ROOT / "tests"))
from s3servers import S3Server, start_moto, start_rclone

MiB = 1024 * 1024
GiB = 1024 * MiB
TARGET = 0.80
LADING_DEFAULT_CONCURRENCY = 4
DEFAULT_JSON = REPO_ROOT / "bench" / "results" / "s3_latest.json"


class BlobReader(io.RawIOBase):
    """A file-like view of a BigBlob for boto3 (no copy of the whole blob)."""

    def __init__(self, blob: BigBlob) -> None:
        self._chunks = blob.chunks()
        self._index = 0
        self._offset = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        written = 0
        while written < len(view) and self._index < len(self._chunks):
            pre, rest = self._chunks[self._index]
            whole_len = len(pre) + len(rest)
            pos = self._offset
            if pos < len(pre):
                n = min(len(pre) - pos, len(view) - written)
                view[written : written + n] = pre[pos : pos + n]
            else:
                n = min(whole_len - pos, len(view) - written)
                view[written : written + n] = rest[pos - len(pre) : pos - len(pre) + n]
            written += n
            self._offset += n
            if self._offset == whole_len:
                self._index += 1
                self._offset = 0
        return written


class Sink(io.RawIOBase):
    """Discards what boto3 downloads; seekable, so boto3 writes parts as they arrive."""

    def __init__(self) -> None:
        self.size = 0
        self._pos = 0

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._pos = offset if whence == io.SEEK_SET else self._pos + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def write(self, data: Any) -> int:
        n = len(memoryview(data).cast("B"))
        self.size += n
        self._pos += n
        return n


def settle(level_mib: int = 0) -> dict[str, float]:
    """Flush dirty pages first: rclone writes each object to disk, and a push timed while
    the previous one is still being written back pays for it (seen: +2 s per GiB).

    With ``level_mib``, first write and free that much on the temporary directory's disk,
    so that every push (boto3's and Lading's) stores onto just-freed blocks (bench/disk.py:
    on this machine's thin-provisioned disk, never-used blocks are several times slower).
    """
    leveled = disk.level(Path(tempfile.gettempdir()), level_mib) if level_mib else {}
    os.sync()
    return leveled


def level_mib(size: int) -> int:
    # rclone stores the parts, then writes the whole object again on completion.
    return 2 * size // MiB + 256


def boto3_round(
    server: S3Server, bucket: str, blob: BigBlob, part_mib: int, threads: int, fill_mib: int
) -> dict[str, float]:
    from boto3.s3.transfer import TransferConfig

    client = server.client()
    config = TransferConfig(
        multipart_chunksize=part_mib * MiB,
        multipart_threshold=part_mib * MiB,
        max_concurrency=threads,
    )
    key = f"boto3/{time.monotonic_ns()}"
    # When boto3 starts CompleteMultipartUpload: the parts phase ends there.
    marks: dict[str, float] = {}

    def mark_complete(**_: Any) -> None:  # a value returned here would replace the call
        marks.setdefault("complete", time.perf_counter())

    client.meta.events.register("before-call.s3.CompleteMultipartUpload", mark_complete)
    leveled = settle(fill_mib)
    started = time.perf_counter()
    with ClientCpu() as up:
        client.upload_fileobj(BlobReader(blob), bucket, key, Config=config)
    complete_s = started + up.wall - marks.get("complete", started + up.wall)
    sink = Sink()
    settle()
    with ClientCpu() as down:
        client.download_fileobj(bucket, key, sink, Config=config)
    if sink.size != blob.size:
        raise RuntimeError(f"boto3 downloaded {sink.size} bytes, expected {blob.size}")
    client.delete_object(Bucket=bucket, Key=key)
    return {
        "push_mbs": blob.size / MiB / up.wall,
        "pull_mbs": blob.size / MiB / down.wall,
        "parts_s": up.wall - complete_s,
        "complete_s": complete_s,
        **leveled,
    }


def lading_round(
    lading: Server, blob: BigBlob, digest: str, repo: str, fill_mib: int = 0
) -> dict[str, float]:
    leveled = settle(fill_mib)
    with ProcSampler(lading.pid) as mem, ClientCpu() as up:
        phases = push_chunked(lading, repo, blob, digest)
    settle()
    with ProcSampler(lading.pid) as pull_mem, ClientCpu() as down:
        pull(lading, repo, digest, blob.size)
    return {
        "push_mbs": blob.size / MiB / up.wall,
        "pull_mbs": blob.size / MiB / down.wall,
        "peak_rss_mib": mem.peak_rss / MiB,
        "pull_peak_rss_mib": pull_mem.peak_rss / MiB,
        "idle_rss_mib": mem.base_rss / MiB,
        # Lading's CPU seconds per GiB: steadier than MB/s on a busy machine.
        "push_cpu_s_per_gib": mem.cpu_seconds / (blob.size / GiB),
        "pull_cpu_s_per_gib": pull_mem.cpu_seconds / (blob.size / GiB),
        **phases,
        **leveled,
    }


def lading_env(
    server: S3Server, bucket: str, part_mib: int, concurrency: int | None
) -> dict[str, str]:
    env = {
        "LADING_STORAGE": "s3",
        "LADING_S3_BUCKET": bucket,
        "LADING_S3_ENDPOINT_URL": server.endpoint_url,
        "LADING_S3_REGION": server.region,
        "LADING_S3_PATH_STYLE": "true",
        "LADING_S3_ACCESS_KEY": server.access_key,
        "LADING_S3_SECRET_KEY": server.secret_key,
        "LADING_S3_PREFIX": "bench",
        "LADING_WORKERS": "1",
        "LADING_GC_INTERVAL_SECONDS": "0",
        "LADING_LOG_LEVEL": "warning",
        "LADING_S3_PART_SIZE": str(part_mib * MiB),
    }
    if concurrency is not None:
        env["LADING_S3_MAX_CONCURRENCY"] = str(concurrency)
    return env


def median(rounds: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rounds)


def bench_server(
    name: str, start: Callable[[], S3Server], size: int, small: int, args: argparse.Namespace
) -> dict[str, Any]:
    repeat = max(args.repeat, 1)
    print(f"== {name}: starting", flush=True)
    s3 = start()
    lading: Server | None = None
    try:
        bucket = f"bench-{os.getpid()}"
        s3.create_bucket(bucket)
        env = lading_env(s3, bucket, args.part_mib, args.concurrency)
        lading = start_lading(f"lading-s3-{name}", env)
        base = os.urandom(CHUNK)
        small_blob, small_digest = make_big_blob(small, b"small", base)
        small_round = lading_round(lading, small_blob, small_digest, "bench/small")
        fill = level_mib(size) if args.level else 0
        boto, ours = [], []
        for i in range(repeat):
            blob, digest = make_big_blob(size, f"{name}-{i}".encode(), base)
            boto.append(boto3_round(s3, bucket, blob, args.part_mib, args.boto3_threads, fill))
            print(f"   boto3  round {i + 1}: {boto[-1]}", flush=True)
            ours.append(lading_round(lading, blob, digest, f"bench/big{i}", fill))
            if args.monolithic:
                # The same size in one PUT: no 202 (and so no wait for S3) between chunks.
                mono, mono_digest = make_big_blob(size, f"{name}-{i}-mono".encode(), base)
                settle(fill)
                with ClientCpu() as whole:
                    push_monolithic(lading, f"bench/mono{i}", mono, mono_digest)
                ours[-1]["monolithic_push_mbs"] = size / MiB / whole.wall
            print(f"   lading round {i + 1}: {ours[-1]}", flush=True)
        return {
            "server": name,
            "size_mib": size // MiB,
            "small_mib": small // MiB,
            "boto3_push_mbs": median(boto, "push_mbs"),
            "boto3_pull_mbs": median(boto, "pull_mbs"),
            "lading_push_mbs": median(ours, "push_mbs"),
            "lading_pull_mbs": median(ours, "pull_mbs"),
            "lading_peak_rss_mib": max(r["peak_rss_mib"] for r in ours),
            "lading_pull_peak_rss_mib": max(r["pull_peak_rss_mib"] for r in ours),
            "lading_push_cpu_s_per_gib": median(ours, "push_cpu_s_per_gib"),
            "lading_pull_cpu_s_per_gib": median(ours, "pull_cpu_s_per_gib"),
            "boto3_parts_s": median(boto, "parts_s"),
            "boto3_complete_s": median(boto, "complete_s"),
            "lading_patches_s": median(ours, "patches_s"),
            "lading_commit_s": median(ours, "commit_s"),
            "lading_patch_wait_ms": median(ours, "patch_wait_ms"),
            "part_mib": args.part_mib,
            "lading_concurrency": args.concurrency,
            "boto3_threads": args.boto3_threads,
            "lading_idle_rss_mib": small_round["idle_rss_mib"],
            "lading_peak_rss_small_mib": small_round["peak_rss_mib"],
            "lading_pull_peak_rss_small_mib": small_round["pull_peak_rss_mib"],
            "rounds": {"boto3": boto, "lading": ours},
            "lading_monolithic_push_mbs": (
                median(ours, "monolithic_push_mbs") if args.monolithic else None
            ),
            "load": os.getloadavg()[0],
        }
    finally:
        if lading is not None:
            lading.stop()
        s3.stop()


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        f"{'S3 server':<10} {'op':<5} {'boto3 MB/s':>11} {'Lading MB/s':>12} {'ratio':>6}  verdict",
    ]
    for r in results:
        for op in ("push", "pull"):
            b, ours = r[f"boto3_{op}_mbs"], r[f"lading_{op}_mbs"]
            ratio = ours / b if b else float("nan")
            verdict = "PASS" if ratio >= TARGET else "FAIL"
            lines.append(
                f"{r['server']:<10} {op:<5} {b:>11.1f} {ours:>12.1f} {ratio:>6.2f}  {verdict}"
            )
        if r.get("lading_monolithic_push_mbs"):
            b, ours = r["boto3_push_mbs"], r["lading_monolithic_push_mbs"]
            lines.append(
                f"{r['server']:<10} {'push1':<5} {b:>11.1f} {ours:>12.1f} {ours / b:>6.2f}  "
                "(one monolithic PUT, for comparison)"
            )
        lines.append(
            f"{'':<10} Lading RSS: idle {r['lading_idle_rss_mib']:.0f} MiB, peak "
            f"{r['lading_peak_rss_small_mib']:.0f}/{r['lading_pull_peak_rss_small_mib']:.0f} MiB "
            f"pushing/pulling {r['small_mib']} MiB, peak "
            f"{r['lading_peak_rss_mib']:.0f} MiB pushing and "
            f"{r['lading_pull_peak_rss_mib']:.0f} MiB pulling {r['size_mib']} MiB "
            f"(load {r['load']:.1f})"
        )
        lines.append(
            f"{'':<10} Lading CPU: push {r['lading_push_cpu_s_per_gib']:.2f} s/GiB, "
            f"pull {r['lading_pull_cpu_s_per_gib']:.2f} s/GiB"
        )
        lines.append(
            f"{'':<10} push phases: boto3 parts {r['boto3_parts_s']:.2f} s + complete "
            f"{r['boto3_complete_s']:.2f} s; Lading PATCHes {r['lading_patches_s']:.2f} s "
            f"(median {r['lading_patch_wait_ms']:.0f} ms from a PATCH's last byte to its 202) "
            f"+ PUT ?digest= {r['lading_commit_s']:.2f} s"
        )
        growth, limit = rss_growth_mib(r), rss_limit_mib(r)
        verdict = "PASS" if growth < limit else "FAIL"
        lines.append(
            f"{'':<10} RSS growth from {r['small_mib']} MiB to {r['size_mib']} MiB: "
            f"{growth:.0f} MiB (limit {limit} MiB, one request's parts)  {verdict}"
        )
    return "\n".join(lines)


def rss_limit_mib(r: dict[str, Any]) -> int:
    """(s3_max_concurrency + 1) parts: what one more request in flight may hold."""
    concurrency = r["lading_concurrency"] or LADING_DEFAULT_CONCURRENCY
    return int((concurrency + 1) * r["part_mib"])


def rss_growth_mib(r: dict[str, Any]) -> float:
    """How much higher the full-size push or pull peaked than the small one."""
    push = r["lading_peak_rss_mib"] - r["lading_peak_rss_small_mib"]
    pull = r["lading_pull_peak_rss_mib"] - r["lading_pull_peak_rss_small_mib"]
    return float(max(push, pull))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.s3_bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="256 MiB instead of 1 GiB")
    parser.add_argument("--size-mib", type=int, help="blob size (default 1024, quick 256)")
    parser.add_argument("--server", choices=["rclone", "moto", "both"], default="rclone")
    parser.add_argument("--repeat", type=int, default=1, help="rounds per server (median)")
    parser.add_argument("--part-mib", type=int, default=8, help="part size, boto3 and Lading")
    parser.add_argument("--boto3-threads", type=int, default=10, help="boto3 max_concurrency")
    parser.add_argument(
        "--concurrency", type=int, help="Lading s3_max_concurrency (default: Lading's)"
    )
    parser.add_argument(
        "--monolithic", action="store_true", help="also time a monolithic push (one PUT)"
    )
    parser.add_argument(
        "--level",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="fill and free the disk before each push (bench/disk.py)",
    )
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write results")
    args = parser.parse_args(argv)

    # SIGTERM behaves like Ctrl-C, so bench_server's finally stops the servers it started.
    def _term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)
    size = (args.size_mib or (256 if args.quick else 1024)) * MiB
    small = min(64 * MiB, size)
    starts: dict[str, Callable[[], S3Server]] = {"rclone": start_rclone, "moto": start_moto}
    names = ["rclone", "moto"] if args.server == "both" else [args.server]
    results = [bench_server(n, starts[n], size, small, args) for n in names]
    print()
    print(table(results))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2, sort_keys=True))
    print(f"\nresults written to {args.json}")
    ops = ("push", "pull")
    failed = any(r[f"lading_{o}_mbs"] < TARGET * r[f"boto3_{o}_mbs"] for r in results for o in ops)
    failed |= any(rss_growth_mib(r) >= rss_limit_mib(r) for r in results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
