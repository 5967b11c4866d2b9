"""GetCase throughput as the working set grows past the row cache: a few cases read in turn against many.

    python -m bench.workingset [--cases 100000] [--small 1000] [--rounds 3] [--seconds 8] [--warm] [--alternate K]

Set-up (`bench.run.setup`, embedded store): `--cases` synthetic cases, all
mandated to one agency. Then per round, alternating, each on a freshly
started gateway (`custos serve`, the shipped policies with the rate out of the
way): the agency's GetCase load (bench/load.py: 2 Python processes, 64 in
flight) rotating over the first `--small` cases, and over all `--cases`.
Prints calls/s, server CPU per call and the server's peak RSS of each, and
the ratio of the medians (issue 13's target, at 10^6 against 10^3: >= 0.9 x).
With `--warm`, each gateway first reads every case of its set once (two load
processes, half the set each), so the window measures a working set in the
cache (the grants, `vault.rowcache.MEMO_ENTRIES`), not its first reading.
With `--alternate K`, the gateway of the large set then measures K more
windows of each set, small and large in turn: both sets on one warmed
gateway, one after the other, so the ratio does not depend on what else the
machine did between two gateways (its small set's grants are among the
large set's). Writes bench/results/workingset.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.load import run_load
from bench.run import GETCASE_METHOD, RESULTS, Server, bench_policies, custos_cmd, setup

WARM_PROCS = 2  # load processes of the warm pass; each reads its share of the set once


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _switches(pid: int) -> int:
    """Context switches of all the server's threads so far (voluntary and not): a GIL hand-off is one."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            for line in (task / "status").read_text().splitlines():
                if "ctxt_switches" in line:
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


class _Probe:
    """The server's CPU seconds (for run_load), and its context switches between the first and last sample."""

    def __init__(self, server: Server) -> None:
        self._server = server
        self._first: int | None = None
        self.switches = 0

    def sample(self) -> float:
        now = _switches(self._server.proc.pid)
        if self._first is None:
            self._first = now
        self.switches = now - self._first
        return self._server.cpu_seconds()


def _window(gw: Server, target: str, agency: Path, reqs: list[bytes], args: argparse.Namespace, rnd: int,
            label: str, gateway: str) -> dict[str, Any]:
    """One measured window of GetCase over `reqs` in turn on a started gateway; printed and returned."""
    probe = _Probe(gw)
    res = run_load(target, agency, GETCASE_METHOD, reqs, warmup=2.0, seconds=args.seconds, server_cpu=probe.sample)
    rss = _peak_rss_mib(gw.proc.pid)
    if res.errors:
        raise RuntimeError(f"{label}: {res.errors}, e.g. {res.error_sample}")
    row = {"round": rnd, "cases": int(label), "gateway": gateway, "throughput": res.throughput, "p50_ms": res.p50_ms,
           "cpu_us_per_call": (res.server_cpu_s or 0.0) / max(res.calls, 1) * 1e6, "peak_rss_mib": rss,
           "switches_per_call": probe.switches / max(res.calls, 1)}
    print(f"round {rnd}  {label:>8} cases in turn ({gateway:6} gateway)  {row['throughput']:7.0f} GetCase/s  "
          f"{row['cpu_us_per_call']:5.0f} µs server CPU/call  {row['switches_per_call']:5.1f} context switches/call  "
          f"peak RSS {rss:5.0f} MiB", flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.workingset", description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--small", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--workers", type=int, default=128, help="custos serve --workers (its default: 128)")
    ap.add_argument("--warm", action="store_true",
                    help="read every case once before measuring: the steady state of a working set the cache holds")
    ap.add_argument("--alternate", type=int, default=0, metavar="K",
                    help="then K more windows of each set, alternating, on the large set's gateway")
    args = ap.parse_args(argv)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="custos-bench-workingset-") as tmp:
        work = Path(tmp)
        data, agency, requests, _size = setup(work, args.cases)
        for rnd in range(1, args.rounds + 1):
            for label, reqs in ((f"{args.small}", requests[:args.small]), (f"{args.cases}", requests)):
                gw = Server(label, [*custos_cmd(), "serve", str(data), "--listen", "127.0.0.1:0", "--processes", "1", "--workers",
                                    str(args.workers), "--policies", str(bench_policies(work))],
                            work / f"ws-{label}-{rnd}.log", None)
                try:
                    target = gw.wait_listening()
                    if args.warm:
                        t0 = time.monotonic()
                        run_load(target, agency, GETCASE_METHOD, reqs, procs=WARM_PROCS, warmup=0.0,
                                 seconds=3 * 3600.0, max_calls=-(-len(reqs) // WARM_PROCS), through=True)
                        print(f"round {rnd}  {label:>8} cases read once first in {time.monotonic() - t0:.0f} s",
                              flush=True)
                    rows.append(_window(gw, target, agency, reqs, args, rnd, label, "own"))
                    if args.alternate and reqs is requests:
                        # Each large window starts where no window read before (the load processes start at
                        # fixed offsets of the list they are given): the set is read in turn, not one stretch of it.
                        step = len(requests) // (2 * (args.alternate + 1))
                        for j in range(1, args.alternate + 1):
                            rows.append(_window(gw, target, agency, requests[:args.small], args, rnd,
                                                f"{args.small}", "shared"))
                            rows.append(_window(gw, target, agency, requests[j * step:] + requests[:j * step], args,
                                                rnd, label, "shared"))
                finally:
                    gw.stop()
    small = [r for r in rows if r["cases"] == args.small and r["gateway"] == "own"]
    large = [r for r in rows if r["cases"] == args.cases and r["gateway"] == "own"]
    ratio = statistics.median(r["throughput"] for r in large) / statistics.median(r["throughput"] for r in small)
    print(f"{args.cases} cases in turn against {args.small}: {ratio:.2f} x throughput "
          f"(issue 13's target at 10^6 against 10^3: >= 0.9 x); CPU/call "
          f"{statistics.median(r['cpu_us_per_call'] for r in large):.0f} against "
          f"{statistics.median(r['cpu_us_per_call'] for r in small):.0f} µs; peak RSS "
          f"{statistics.median(r['peak_rss_mib'] for r in large):.0f} against "
          f"{statistics.median(r['peak_rss_mib'] for r in small):.0f} MiB")
    result: dict[str, Any] = {"rows": rows, "ratio": ratio}
    shared = [r for r in rows if r["gateway"] == "shared"]
    if shared:
        s_small = statistics.median(r["throughput"] for r in shared if r["cases"] == args.small)
        s_large = statistics.median(r["throughput"] for r in shared if r["cases"] == args.cases)
        result["ratio_on_one_gateway"] = s_large / s_small
        print(f"on the large set's gateway, {args.alternate} windows of each, alternating: {s_large / s_small:.2f} x "
              f"({s_large:.0f} against {s_small:.0f} GetCase/s)")
    RESULTS.parent.mkdir(exist_ok=True)
    (RESULTS.parent / "workingset.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
