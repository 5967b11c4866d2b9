"""Divide the gateway's extra server CPU per `GetCase` among gRPC, the read path and the audit append.

Runs, per round and one after the other, the echo, then three variants of the gateway
(`bench.variant_server`): `fixed-record` (gRPC, mTLS, identity, servicer, protobuf),
`no-append` (plus authorisation, rows, decryption, minimisation) and `full` (plus the
audit append: the wait for a group commit and a share of it). Same set-up, pinning and
load as `bench.run`. Prints median server CPU per call of each and the differences,
and the average number of events per group commit in the `full` runs.

    python -m bench.decompose [--rounds 3] [--seconds 6]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from bench.run import Run, measure, setup

KINDS = ("echo", "fixed-record", "no-append", "full")
COMMITS_RE = re.compile(r"group commits: (\d+) commits, (\d+) events")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.decompose", description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--inflight", type=int, default=64)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--cases", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=16)
    args = ap.parse_args(argv)
    if args.rounds < 1 or args.seconds <= 0 or args.inflight < args.procs or args.cases < 1 or args.procs < 1:
        ap.error("need rounds >= 1, seconds > 0, procs >= 1, inflight >= procs, cases >= 1")
    cpus = os.sched_getaffinity(0)
    server_cpus, load_cpus = ({0}, {1}) if {0, 1} <= cpus else (None, None)
    work = Path(tempfile.mkdtemp(prefix="custos-decompose-"))
    runs: dict[str, list[Run]] = {k: [] for k in KINDS}
    batches: list[float] = []
    try:
        data, agency, requests, size = setup(work, args.cases)
        for rnd in range(1, args.rounds + 1):
            for kind in KINDS:
                run, _res, _aff = measure(kind, rnd, data, agency, requests, size, args, work, server_cpus, load_cpus)
                runs[kind].append(run)
                note = ""
                if kind == "full":
                    m = COMMITS_RE.search((work / f"{kind}-{rnd}.log").read_text(errors="replace"))
                    if m and int(m.group(1)):
                        batches.append(int(m.group(2)) / int(m.group(1)))
                        note = f"  {batches[-1]:.1f} events per group commit"
                errors = sum(run.errors.values())
                print(f"round {rnd} {kind:<13} {run.throughput:7.0f} calls/s {run.server_cpu_us_per_call:6.0f} µs "
                      f"server CPU per call{f'  {errors} errors' if errors else ''}{note}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    cpu = {k: statistics.median(r.server_cpu_us_per_call for r in rs) for k, rs in runs.items()}
    tput = {k: statistics.median(r.throughput for r in rs) for k, rs in runs.items()}
    print(f"\nmedians of {args.rounds} round(s): server CPU per call, and throughput against the echo")
    for k in KINDS:
        print(f"  {k:<13} {cpu[k]:6.0f} µs   {tput[k] / tput['echo']:.2f} x")
    print("where the gateway's extra CPU per call goes:")
    for label, hi, lo in (("gRPC, identity, servicer, protobuf", "fixed-record", "echo"),
                          ("read path: authorise, rows, decrypt, minimise", "no-append", "fixed-record"),
                          ("audit append: wait, wake-up, share of the group commit", "full", "no-append")):
        print(f"  {cpu[hi] - cpu[lo]:+6.0f} µs  {label}")
    if batches:
        print(f"events per group commit (full): {statistics.median(batches):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
