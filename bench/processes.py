"""Every core: the gateway with N processes against the echo with N processes, and against itself with one.

    python -m bench.processes [--rounds 3] [--seconds 8] [--cases 1000] [--load node|python]
    python -m bench.processes --compare-load        # only: what each load generator costs per call

Set-up (`bench.run.setup`, embedded store): `--cases` cases mandated to one
agency. Then per round, for N = 1 and N = 2: the echo as N processes sharing
one port (`bench/echo_server.py --reuse-port`), then `custos serve
--processes N`; each driven by the same load: `GetCase` rotating over every
case, `--inflight` calls over `--connections` mTLS connections (several, so
the kernel spreads them over the processes). With N = 1 the server is pinned
to CPU 0 and the load to CPU 1; with N = 2 the servers may use both cores and
so does the load, for echo and gateway alike. Server CPU is the whole process
tree's (the supervisor and its processes).

The figures that matter (issue 13): the gateway/echo ratio with 2 processes
against the ratio with 1 (target: not lower: sharing the log costs nothing),
and the gateway with 2 against 1. Each run also reports the load
generator's CPU per call. Writes bench/results/processes.json.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.echo_server import ECHO_METHOD
from bench.load import LoadResult, proc_cpu_seconds, run_load
from bench.nodeload import run_node_load
from bench.run import GETCASE_METHOD, RESULTS, Server, bench_policies, check_call, custos_cmd, pinned, setup
from gateway.transport.processes import reserve_port


def tree_cpu(root: int) -> float:
    """CPU seconds of `root` and its children (one level: the supervisor's processes)."""
    total = proc_cpu_seconds(root)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == root:
                total += proc_cpu_seconds(int(entry.name))
    return total


class Echoes:
    """N echo processes on one port: the baseline for `custos serve --processes N`."""

    def __init__(self, data: Path, n: int, size: int, work: Path, cpus: set[int] | None, tag: str) -> None:
        self._sock = reserve_port("127.0.0.1", 0)
        port = self._sock.getsockname()[1]
        flags = ["--reuse-port"] if n > 1 else []
        if n == 1:
            self._sock.close()  # one echo binds the port alone, as the gateway with one process does
        self.servers = [Server(f"echo-{k}", [sys.executable, "-m", "bench.echo_server", str(data), "--listen",
                                             f"127.0.0.1:{port}", "--size", str(size), *flags],
                               work / f"echo{n}-{k}-{tag}.log", cpus) for k in range(n)]
        self.target = ""

    def start(self) -> str:
        for s in self.servers:
            self.target = s.wait_listening()
        return self.target

    def cpu(self) -> float:
        return sum(s.cpu_seconds() for s in self.servers)

    def stop(self) -> None:
        for s in self.servers:
            s.stop()
        self._sock.close()


def drive(load: str, target: str, agency: Path, method: str, requests: list[bytes], args: argparse.Namespace,
          cpu: Callable[[], float], cpus: set[int] | None) -> LoadResult:
    with pinned(cpus):
        if load == "node":
            return run_node_load(target, agency, method, requests, procs=args.load_procs, inflight=args.inflight,
                                 connections=args.connections, warmup=args.warmup, seconds=args.seconds,
                                 server_cpu=cpu)
        return run_load(target, agency, method, requests, procs=max(args.load_procs, 2), inflight=args.inflight,
                        warmup=args.warmup, seconds=args.seconds, server_cpu=cpu, connections=args.connections)


# (processes, layout): "split" pins the servers to CPU 0 and the load to CPU 1 (with 2 processes: both
# on CPU 0, which isolates what sharing the log costs); "shared": servers and load on both cores.
LAYOUTS = [(1, "split"), (2, "split"), (2, "shared")]


def row(kind: str, n: int, rnd: int, load: str, res: LoadResult, layout: str = "split") -> dict[str, Any]:
    calls = max(res.calls, 1)
    if res.errors:
        raise RuntimeError(f"{kind} x{n}: {res.errors}, e.g. {res.error_sample}")
    return {"round": rnd, "server": kind, "processes": n, "layout": layout, "load": load,
            "throughput": res.throughput,
            "p50_ms": res.p50_ms, "p99_ms": res.p99_ms,
            "server_cpu_us_per_call": (res.server_cpu_s or 0.0) / calls * 1e6,
            "load_cpu_us_per_call": res.load_cpu_s / calls * 1e6}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.processes", description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--cases", type=int, default=1000)
    ap.add_argument("--inflight", type=int, default=64)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--load", choices=("node", "python"), default="python")
    ap.add_argument("--load-procs", type=int, default=1, help="load processes (Node: 1 is enough; Python: >= 2)")
    ap.add_argument("--compare-load", action="store_true",
                    help="only measure each load generator's CPU per call against one echo")
    args = ap.parse_args(argv)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="custos-bench-processes-") as tmp:
        work = Path(tmp)
        data, agency, requests, size = setup(work, args.cases)
        for rnd in range(1, args.rounds + 1):
            if args.compare_load:
                for load in ("python", "node"):
                    echo = Echoes(data, 1, size, work, {0}, f"{load}-{rnd}")
                    try:
                        target = echo.start()
                        rows.append(row("echo", 1, rnd, load, drive(load, target, agency, ECHO_METHOD, requests,
                                                                     args, echo.cpu, {1})))
                    finally:
                        echo.stop()
                    print(_fmt(rows[-1]), flush=True)
                continue
            for n, layout in LAYOUTS:
                server_cpus, load_cpus = ({0}, {1}) if layout == "split" else (None, None)
                echo = Echoes(data, n, size, work, server_cpus, f"{rnd}")
                try:
                    target = echo.start()
                    rows.append(row("echo", n, rnd, args.load, drive(args.load, target, agency, ECHO_METHOD,
                                                                     requests, args, echo.cpu, load_cpus), layout))
                finally:
                    echo.stop()
                print(_fmt(rows[-1]), flush=True)
                gw = Server(f"gateway x{n}", [*custos_cmd(), "serve", str(data), "--listen", "127.0.0.1:0",
                                              "--processes", str(n), "--policies", str(bench_policies(work))],
                            work / f"gw{n}-{rnd}.log", server_cpus)
                try:
                    target = gw.wait_listening()
                    check_call(target, agency, GETCASE_METHOD, requests[0])
                    time.sleep(0.5 * n)  # every process up (the supervisor prints once all listen)
                    rows.append(row("gateway", n, rnd, args.load,
                                    drive(args.load, target, agency, GETCASE_METHOD, requests, args,
                                          functools.partial(tree_cpu, gw.proc.pid), load_cpus), layout))
                finally:
                    gw.stop()
                    _wait_gone(gw.proc)
                print(_fmt(rows[-1]), flush=True)
    summary = summarise(rows)
    print(json.dumps(summary, indent=2))
    out = RESULTS.parent / "processes.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "rows": rows, "summary": summary}, indent=2) + "\n")
    return 0


def _wait_gone(proc: subprocess.Popen[bytes]) -> None:
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def _fmt(r: dict[str, Any]) -> str:
    return (f"round {r['round']} {r['server']:>7} x{r['processes']} {r['layout']:>6} ({r['load']} load): "
            f"{r['throughput']:8.0f} calls/s  p50 {r['p50_ms']:6.2f} ms  p99 {r['p99_ms']:6.2f} ms  "
            f"server {r['server_cpu_us_per_call']:6.0f} us/call  load {r['load_cpu_us_per_call']:5.0f} us/call")


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    def med(kind: str, n: int, key: str = "throughput", load: str | None = None, layout: str = "split") -> float:
        values = [r[key] for r in rows if r["server"] == kind and r["processes"] == n
                  and (load is None or r["load"] == load) and r.get("layout", "split") == layout]
        return statistics.median(values) if values else float("nan")

    if all(r["processes"] == 1 and r["server"] == "echo" for r in rows):
        return {f"{load} load: CPU us per call": med("echo", 1, "load_cpu_us_per_call", load)
                for load in ("python", "node")} | {
                f"{load} load: echo calls/s": med("echo", 1, "throughput", load) for load in ("python", "node")}
    out: dict[str, Any] = {}
    for n, layout in LAYOUTS:
        tag = f"x{n} {layout}"
        out[f"echo {tag} calls/s"] = med("echo", n, layout=layout)
        out[f"gateway {tag} calls/s"] = med("gateway", n, layout=layout)
        out[f"gateway/echo {tag}"] = med("gateway", n, layout=layout) / med("echo", n, layout=layout)
        out[f"gateway {tag} server us/call"] = med("gateway", n, "server_cpu_us_per_call", layout=layout)
        out[f"load us/call {tag}"] = med("gateway", n, "load_cpu_us_per_call", layout=layout)
    for layout in ("split", "shared"):
        out[f"gateway x2 {layout} / gateway x1"] = med("gateway", 2, layout=layout) / med("gateway", 1)
        out[f"ratio x2 {layout} / ratio x1 (target >= 1)"] = out[f"gateway/echo x2 {layout}"] / out[
            "gateway/echo x1 split"]
    return out


if __name__ == "__main__":
    sys.exit(main())
