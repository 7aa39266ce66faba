"""wrk (GET) and hey (HEAD: wrk hangs on HEAD) runners with output parsing."""

from __future__ import annotations

import re
import resource
import subprocess
import tempfile
from pathlib import Path

from bench.httpc import ACCEPT_MANIFESTS

WRK_LUA = """\
wrk.method = "GET"
wrk.headers["Accept"] = "{accept}"
"""


def _run(cmd: list[str], seconds: int) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run a load tool; also return its CPU use as a share of one core over the run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return proc, cpu / max(seconds, 1)


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not m:
        raise ValueError(f"bad wrk duration {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out: str) -> dict[str, float]:
    res: dict[str, float] = {}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise ValueError(f"no Requests/sec in wrk output:\n{out}")
    res["rps"] = float(m.group(1))
    for q in ("50", "99"):
        mq = re.search(rf"^\s+{q}(?:\.000)?%\s+(\S+)", out, re.M)
        if mq:
            res[f"p{q}_ms"] = _ms(mq.group(1))
    m = re.search(r"(\d+) requests in", out)
    res["requests"] = float(m.group(1)) if m else 0.0
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    res["errors"] = float(m.group(1)) if m else 0.0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if m:
        res["errors"] += sum(float(x) for x in m.groups())
    return res


def wrk(
    url: str, seconds: int, connections: int = 32, threads: int = 2, accept: str = ACCEPT_MANIFESTS
) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        script = Path(tmp) / "accept.lua"
        script.write_text(WRK_LUA.format(accept=accept))
        cmd = [
            "wrk",
            "-t",
            str(threads),
            "-c",
            str(connections),
            "-d",
            f"{seconds}s",
            "--latency",
            "--timeout",
            "5s",
            "-s",
            str(script),
            url,
        ]
        proc, client_cpu = _run(cmd, seconds)
    if proc.returncode != 0:
        raise RuntimeError(f"wrk failed: {proc.stderr or proc.stdout}")
    return {**parse_wrk(proc.stdout), "client_cpu": round(client_cpu, 2)}


def parse_hey(out: str) -> dict[str, float]:
    res: dict[str, float] = {}
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not m:
        raise ValueError(f"no Requests/sec in hey output:\n{out}")
    res["rps"] = float(m.group(1))
    for q in ("50", "99"):
        mq = re.search(rf"{q}% in ([\d.]+) secs", out)
        if mq:
            res[f"p{q}_ms"] = float(mq.group(1)) * 1e3
    codes = dict(re.findall(r"\[(\d+)\]\s+(\d+) responses", out))
    res["requests"] = float(sum(int(v) for v in codes.values()))
    res["errors"] = float(sum(int(v) for k, v in codes.items() if not k.startswith("2")))
    m = re.search(r"Error distribution:\n((?:\s+\[\d+\].*\n?)+)", out)
    if m:
        res["errors"] += sum(float(x) for x in re.findall(r"\[(\d+)\]", m.group(1)))
    return res


def hey(
    url: str,
    seconds: int,
    connections: int = 32,
    method: str = "HEAD",
    accept: str = ACCEPT_MANIFESTS,
) -> dict[str, float]:
    cmd = [
        "hey",
        "-z",
        f"{seconds}s",
        "-c",
        str(connections),
        "-m",
        method,
        "-H",
        f"Accept: {accept}",
        url,
    ]
    proc, client_cpu = _run(cmd, seconds)
    if proc.returncode != 0:
        raise RuntimeError(f"hey failed: {proc.stderr or proc.stdout}")
    return {**parse_hey(proc.stdout), "client_cpu": round(client_cpu, 2)}
