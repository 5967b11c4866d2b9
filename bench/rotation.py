"""KEK rotation while serving: the rewrap rate, and GetCase throughput during a rotation against without one.

    python -m bench.rotation [--borrowers 60000] [--cases 1000] [--rounds 3] [--seconds 6]

Set-up (embedded store): `bench.run.setup` (a lender, an agency, `--cases`
cases mandated to it), then more synthetic cases imported so the data
directory holds `--borrowers` borrowers, each with its own data key. Then per
round, alternating, each on a freshly started gateway (the shipped policies,
per-organisation rate out of the way; the rewrap at its shipped pace, batches
of 256 with 5 ms between them):

- **baseline**: the agency's GetCase load (bench/load.py, 2 processes, 64 in
  flight, rotating over the mandated cases) for `--seconds`;
- **rotation**: `custos keys rotate`, then, once the gateway's rewrap has
  started, the same load for the same time; at the end of the window the
  data keys already moved are counted (`custos keys status`), which gives
  the rewrap rate while serving. A window that outlasts the rewrap is
  reported (the figure then covers part of the window only).

Prints both throughputs per round, the ratio of the medians (design target
during / without >= 0.8 x) and the rewrap rate; writes bench/results/rotation.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.load import run_load
from bench.run import (
    GETCASE_METHOD,
    LENDER,
    RESULTS,
    Server,
    bench_policies,
    custos_cmd,
    server_env,
    setup,
)

TARGET = 0.8


def _status(data: Path) -> dict[str, Any]:
    out = subprocess.run([*custos_cmd(), "keys", "status", str(data), "--json"], check=True, env=server_env(),
                         capture_output=True).stdout
    return dict(json.loads(out))


def _fill(work: Path, data: Path, ids: Path, first: int, borrowers: int) -> None:
    """Import cases first..borrowers (one borrower each), unmandated: they only give the rewrap work."""
    from custos_client import CustosClient

    from gateway import synth

    gw = Server("gateway (fill)", [*custos_cmd(), "serve", str(data), "--listen", "127.0.0.1:0", "--processes", "1", "--policies",
                                   str(bench_policies(work))], work / "fill.log", None)
    try:
        target = gw.wait_listening()
        with CustosClient(target, ids / LENDER, timeout=3600) as lender:
            step = 20000
            for start in range(first, borrowers + 1, step):
                end = min(borrowers, start + step - 1)
                lines = synth.jsonl([synth.case_line(i) for i in range(start, end + 1)]).splitlines()
                got = lender.import_lines(lines)
                if got.imported != end - start + 1:
                    raise RuntimeError(f"import: {got.imported} of {end - start + 1}")
    finally:
        gw.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.rotation", description=__doc__.split("\n\n")[0])
    ap.add_argument("--borrowers", type=int, default=60000)
    ap.add_argument("--cases", type=int, default=1000, help="of them mandated to the agency and read")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=6.0)
    args = ap.parse_args(argv)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="custos-bench-rotation-") as tmp:
        work = Path(tmp)
        t0 = time.perf_counter()
        data, agency, requests, _size = setup(work, args.cases)
        _fill(work, data, agency.parent, args.cases + 1, args.borrowers)
        print(f"set-up: {args.borrowers} borrowers ({args.cases} mandated) in {time.perf_counter() - t0:.0f} s")
        for rnd in range(1, args.rounds + 1):
            for kind in ("baseline", "rotation"):
                gw = Server(kind, [*custos_cmd(), "serve", str(data), "--listen", "127.0.0.1:0", "--processes", "1", "--policies",
                                   str(bench_policies(work))], work / f"{kind}-{rnd}.log", None)
                try:
                    target = gw.wait_listening()
                    row: dict[str, Any] = {"round": rnd, "kind": kind}
                    if kind == "rotation":
                        before = _status(data)
                        subprocess.run([*custos_cmd(), "keys", "rotate", str(data)], check=True, env=server_env(),
                                       stdout=subprocess.DEVNULL)
                        started = time.perf_counter()
                        time.sleep(1.5)  # the gateway notices the new version within a second
                    res = run_load(target, agency, GETCASE_METHOD, requests, warmup=1.0, seconds=args.seconds)
                    row |= {"throughput": res.throughput, "p50_ms": res.p50_ms, "p99_ms": res.p99_ms,
                            "errors": sum(res.errors.values())}
                    if kind == "rotation":
                        elapsed = time.perf_counter() - started
                        after = _status(data)
                        moved = before["to_rewrap"] + args.borrowers - after["to_rewrap"]
                        row |= {"rewrapped": moved, "rewrap_per_s": moved / elapsed,
                                "outlasted": after["to_rewrap"] == 0}
                        while _status(data)["to_rewrap"]:  # finish it here, not in the next baseline
                            if gw.proc.poll() is not None:
                                raise RuntimeError(f"the gateway exited ({gw.proc.returncode}) during the rewrap")
                            time.sleep(0.5)
                    if res.errors:
                        raise RuntimeError(f"{kind}: {res.errors} errors, e.g. {res.error_sample}")
                finally:
                    gw.stop()
                rows.append(row)
                extra = (f"; {row['rewrapped']} data keys rewrapped, {row['rewrap_per_s']:.0f}/s while serving"
                         + (" (the rewrap ended inside the window)" if row["outlasted"] else "")
                         if kind == "rotation" else "")
                print(f"round {rnd} {kind:<9} {row['throughput']:7.0f} GetCase/s  p50 {row['p50_ms']:.1f} ms"
                      f"  p99 {row['p99_ms']:.1f} ms{extra}", flush=True)
    base = statistics.median(r["throughput"] for r in rows if r["kind"] == "baseline")
    during = statistics.median(r["throughput"] for r in rows if r["kind"] == "rotation")
    rate = statistics.median(r["rewrap_per_s"] for r in rows if r["kind"] == "rotation")
    ratio = during / base
    print(f"GetCase during a rotation {during:.0f}/s against {base:.0f}/s without: {ratio:.2f} x "
          f"(target >= {TARGET} x); rewrap {rate:.0f} data keys/s while serving")
    RESULTS.parent.mkdir(exist_ok=True)
    (RESULTS.parent / "rotation.json").write_text(json.dumps({"rows": rows, "ratio": ratio, "rewrap_per_s": rate}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
