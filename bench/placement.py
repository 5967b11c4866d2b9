"""Bulk placement against one `assign` at a time, in the same run on the same gateway.

    python -m bench.placement [--cases 3000] [--single 400] [--rounds 3] [--store sqlite|postgresql]

Set-up: a fresh data directory (`custos init`, a lender, an agency), a gateway
(`custos serve`, the shipped policies with the per-organisation rate raised
out of the way, see bench.run.bench_policies), `--cases` synthetic cases
imported. Then per round, alternating: `--single` cases mandated one
`AssignCase` call at a time (each waits for its answer, as a lender's script
would), and every case mandated from one placement file (`AssignCases`, the
`lender assign --file` path). Both write the same rows and one audit event per
mandate. Prints placements/s of each, their ratio (design target >= 20 x) and
the server's CPU per placement; writes bench/results/placement.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from bench.run import AGENCY, LENDER, RESULTS, Server, bench_policies, custos_cmd, data_dir, throwaway_database

TARGET = 20.0


def setup(work: Path, n_cases: int, database: str | None) -> tuple[Server, Path]:
    from custos_client import CustosClient

    from gateway import synth

    data, ids = data_dir(work, database)
    gw = Server("gateway", [*custos_cmd(), "serve", str(data), "--listen", "127.0.0.1:0", "--processes", "1", "--policies",
                            str(bench_policies(work))], work / "gateway.log", None)
    target = gw.wait_listening()
    with CustosClient(target, ids / LENDER, timeout=600) as lender:
        lines = synth.jsonl([synth.case_line(i, stage="reminder") for i in range(1, n_cases + 1)]).splitlines()
        result = lender.import_lines(lines)
        if result.imported != n_cases:
            raise RuntimeError(f"import: {result.imported} of {n_cases}")
    return gw, ids / LENDER


def measure(gw: Server, lender_ids: Path, n_cases: int, n_single: int, rnd: int) -> dict[str, Any]:
    from custos_client import CustosClient

    until = (date.today() + timedelta(days=300 + rnd)).isoformat()  # a new mandate every round
    with CustosClient(gw.target, lender_ids, timeout=600) as lender:
        lender.assign("C-1", AGENCY, "collection", until, agreement="AG-1", pia="PIA-1")  # warm: channel, handshake, caches
        cpu0, t0 = gw.cpu_seconds(), time.perf_counter()
        for i in range(1, n_single + 1):
            lender.assign(f"C-{i}", AGENCY, "collection", until, agreement="AG-1", pia="PIA-1")
        single_s, single_cpu = time.perf_counter() - t0, gw.cpu_seconds() - cpu0
        lines = [json.dumps({"case_id": f"C-{i}", "to": AGENCY, "purpose": "collection", "until": until,
                             "agreement": "AG-1", "pia": "PIA-1"}).encode()
                 for i in range(1, n_cases + 1)]
        cpu0, t0 = gw.cpu_seconds(), time.perf_counter()
        result = lender.assign_lines(lines)
        bulk_s, bulk_cpu = time.perf_counter() - t0, gw.cpu_seconds() - cpu0
    if result.assigned != n_cases or result.rejected_total:
        raise RuntimeError(f"bulk placement: {result.assigned} of {n_cases}, {result.rejected[:3]}")
    return {"round": rnd, "single_per_s": n_single / single_s, "bulk_per_s": n_cases / bulk_s,
            "single_cpu_us": single_cpu / n_single * 1e6, "bulk_cpu_us": bulk_cpu / n_cases * 1e6}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", type=int, default=3000)
    p.add_argument("--single", type=int, default=400)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="custos-bench-placement-") as tmp, \
            throwaway_database(args.store, "bench_placement") as database:
        work = Path(tmp)
        gw, lender_ids = setup(work, args.cases, database)
        try:
            rounds = [measure(gw, lender_ids, args.cases, args.single, r) for r in range(1, args.rounds + 1)]
        finally:
            gw.stop()
    print(f"custos bench placement: store {args.store}, {args.cases} cases in the file, {args.single} single assigns")
    print("  round  single/s   bulk/s   ratio  single µs/placement  bulk µs/placement (server CPU)")
    for r in rounds:
        print(f"  {r['round']:>5} {r['single_per_s']:>9.0f} {r['bulk_per_s']:>8.0f} {r['bulk_per_s'] / r['single_per_s']:>7.1f}"
              f" {r['single_cpu_us']:>20.0f} {r['bulk_cpu_us']:>18.0f}")
    single = statistics.median(r["single_per_s"] for r in rounds)
    bulk = statistics.median(r["bulk_per_s"] for r in rounds)
    ratio = statistics.median(r["bulk_per_s"] / r["single_per_s"] for r in rounds)
    verdict = "meets it" if ratio >= TARGET else "is BELOW it"
    print(f"medians: one at a time {single:.0f}/s, from a file {bulk:.0f}/s: {ratio:.1f} x "
          f"(target >= {TARGET:.0f} x: {verdict})")
    out = RESULTS.parent / "placement.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"store": args.store, "cases": args.cases, "single": args.single, "rounds": rounds,
                               "median_ratio": ratio}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
