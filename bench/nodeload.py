"""The Node load generator (bench/node/load.js, @grpc/grpc-js): the same timeline and result as bench/load.py.

A Python generator costs about 190-250 µs of CPU per call here, so on two
cores it takes much of the core a second server process needs. grpc-js
speaks mTLS and costs less; each run measures its CPU per call
(`LoadResult.load_cpu_s / calls`) so the figure is in every report. Its
packages are installed on first use into bench/node/node_modules (npm, from
package-lock.json); it never runs in the test suite.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from bench.load import CALL_TIMEOUT, LoadResult, merged, proc_cpu_seconds

NODE_DIR = Path(__file__).resolve().parent / "node"
READY_TIMEOUT = 40.0


def node_command() -> list[str]:
    """`node load.js`, installing grpc-js first if it is not there; RuntimeError without Node."""
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("the Node load generator needs node and npm (Debian: nodejs npm)")
    if not (NODE_DIR / "node_modules" / "@grpc" / "grpc-js").is_dir():
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("npm is needed once to install @grpc/grpc-js into bench/node")
        subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=NODE_DIR, check=True,
                       timeout=600)
    return [node, str(NODE_DIR / "load.js")]


def run_node_load(target: str | list[str], identity_dir: Path, method: str, requests: list[bytes], *,
                  procs: int = 1, inflight: int = 64, connections: int = 8, warmup: float = 2.0,
                  seconds: float = 10.0, max_calls: int = 2_000_000,
                  server_cpu: Callable[[], float] | None = None) -> LoadResult:
    """`procs` Node processes, `connections` mTLS connections and `inflight` calls among them, against loopback."""
    targets = [target] if isinstance(target, str) else list(target)
    for t in targets:
        if t.rsplit(":", 1)[0] not in ("127.0.0.1", "localhost", "[::1]"):
            raise ValueError("the load generator only targets loopback")
    cmd = node_command()
    with tempfile.TemporaryDirectory(prefix="custos-nodeload-") as tmp:
        req_path = Path(tmp) / "requests.bin"
        req_path.write_bytes(b"".join(len(r).to_bytes(4, "big") + r for r in requests))
        procs_list: list[subprocess.Popen[bytes]] = []
        try:
            for k in range(procs):
                cfg = {
                    "target": targets[k % len(targets)], "method": method, "requests": str(req_path),
                    "ca": str(identity_dir / "ca.crt"), "cert": str(identity_dir / "client.crt"),
                    "key": str(identity_dir / "client.key"),
                    "inflight": max(1, inflight // procs + (1 if k < inflight % procs else 0)),
                    "connections": max(1, connections // procs), "offset": k * len(requests) // procs,
                    "max_calls": max_calls,
                }
                cfg_path = Path(tmp) / f"load-{k}.json"
                cfg_path.write_text(json.dumps(cfg))
                procs_list.append(subprocess.Popen([*cmd, str(cfg_path)], stdin=subprocess.PIPE,
                                                   stdout=subprocess.PIPE, cwd=NODE_DIR))
            for p in procs_list:
                line = _line(p, READY_TIMEOUT)
                if line != "ready":
                    raise RuntimeError(f"node load process did not start: {line[:300]}")
            cpus = [set(os.sched_getaffinity(p.pid)) for p in procs_list]
            t_start = time.monotonic() + 0.05
            t_meas, t_end = t_start + warmup, t_start + warmup + seconds
            times = " ".join(str(int(t * 1e9)) for t in (t_start, t_meas, t_end)) + "\n"
            for p in procs_list:
                assert p.stdin is not None
                p.stdin.write(times.encode())
                p.stdin.flush()

            def sample() -> tuple[float, float | None]:
                return (sum(proc_cpu_seconds(p.pid) for p in procs_list),
                        server_cpu() if server_cpu else None)

            time.sleep(max(0.0, t_meas - time.monotonic()))
            load0, srv0 = sample()
            time.sleep(max(0.0, t_end - time.monotonic()))
            load1, srv1 = sample()
            lat: list[float] = []
            errors: Counter[str] = Counter()
            err_sample, resp = "", b""
            capped = False
            for p in procs_list:
                doc = json.loads(_line(p, CALL_TIMEOUT + 10))
                lat.extend(doc["lat"])
                errors.update(doc["errors"])
                err_sample = err_sample or doc["err_sample"]
                resp = resp or base64.b64decode(doc["sample"])
                capped = capped or doc["capped"]
                p.wait(timeout=10)
        finally:
            for p in procs_list:
                if p.poll() is None:
                    p.kill()
                    p.wait(timeout=5)
    return merged(lat, errors, seconds, (load0, load1), (srv0, srv1), err_sample, resp, capped, cpus)


def _line(p: subprocess.Popen[bytes], timeout: float) -> str:
    assert p.stdout is not None
    ready, _, _ = select.select([p.stdout], [], [], timeout)
    if not ready:
        raise RuntimeError("node load process did not answer in time")
    return p.stdout.readline().decode(errors="replace").strip()
