"""Account updates (`lender update`) against the import of the same cases, in one run (issue 24: >= 1 x).

    python -m bench.updating [--cases 5000] [--rounds 3] [--store sqlite|postgresql]

Set-up: a fresh data directory and a gateway (`custos serve --processes 1`,
pinned to CPU 0; the client on CPU 1). Per round: `--cases` new synthetic
cases through `custos lender import`'s client stream (cases/s), then one
update line per case of that round through `custos lender update`'s stream
(lines/s): a new `outstanding` and `amount_due`, `interest` and `fees`, one
repayment appended, and every tenth line a corrected e-mail address (resealed
under the borrower's data key). Then the same update file again: every line
`unchanged` (the keyed digest is compared, nothing written but the events).

Both streams include what the issue names: validation, one audit event per
line, the change feed; the update also reads the loan, computes the ledger in
decimal and checks the order (`as_of`) per case. Writes
bench/results/updating.json (updating-postgresql.json with `--store postgresql`: a throwaway
PostgreSQL server, tests/pg.py; the gateway process's CPU only).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.run import LENDER, RESULTS, Server, bench_policies, custos_cmd, data_dir, pinned, throwaway_database


def update_lines(prefix: str, cases: int) -> list[bytes]:
    """One update line per synthetic case of the round: figures, a repayment, sometimes a correction."""
    out = []
    for i in range(1, cases + 1):
        doc: dict[str, Any] = {
            "case_id": f"{prefix}C-{i}", "as_of": "2026-11-29T18:00:00+08:00",
            "loan": {"outstanding": f"{400 + i % 97}.25", "amount_due": f"{40 + i % 13}.10", "interest": "12.34",
                     "fees": "5.00"},
            "repayments": [{"on": "2026-11-28", "amount": "50.00"}],
        }
        if i % 10 == 0:
            doc["borrower"] = {"email": f"corrected{i}@example.invalid"}
        out.append(json.dumps(doc, separators=(",", ":")).encode())
    return out


def main(argv: list[str] | None = None) -> int:
    from custos_client import CustosClient

    from gateway import synth

    ap = argparse.ArgumentParser(prog="python -m bench.updating", description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    args = ap.parse_args(argv)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="custos-bench-update-") as tmp, \
            throwaway_database(args.store, "bench_updating") as database:
        work = Path(tmp)
        data, ids = data_dir(work, database)
        gw = Server("gateway", [*custos_cmd(), "serve", str(data), "--listen", "127.0.0.1:0", "--processes", "1",
                                "--policies", str(bench_policies(work))], work / "gateway.log", {0})
        try:
            target = gw.wait_listening()
            for rnd in range(1, args.rounds + 1):
                prefix = f"R{rnd}"
                lines = synth.jsonl([synth.case_line(i, stage="reminder", lender_prefix=prefix)
                                     for i in range(1, args.cases + 1)]).splitlines()
                updates = update_lines(prefix, args.cases)
                with pinned({1}), CustosClient(target, ids / LENDER, timeout=3600) as lender:
                    cpu0, t0 = gw.cpu_seconds(), time.perf_counter()
                    imported = lender.import_lines(lines)
                    t_import, cpu_import = time.perf_counter() - t0, gw.cpu_seconds() - cpu0
                    cpu0, t0 = gw.cpu_seconds(), time.perf_counter()
                    updated = lender.update_lines(updates)
                    t_update, cpu_update = time.perf_counter() - t0, gw.cpu_seconds() - cpu0
                    t0 = time.perf_counter()
                    again = lender.update_lines(updates)
                    t_again = time.perf_counter() - t0
                if imported.imported != args.cases or updated.updated != args.cases:
                    raise RuntimeError(f"imported {imported.imported}, updated {updated.updated} of "
                                       f"{args.cases}: {(imported.rejected + updated.rejected)[:3]}")
                if again.unchanged != args.cases:
                    raise RuntimeError(f"the same file again: {again.unchanged} unchanged of {args.cases}")
                row = {"round": rnd, "import_cases_s": args.cases / t_import, "update_lines_s": args.cases / t_update,
                       "unchanged_lines_s": args.cases / t_again,
                       "server_us_per_import": cpu_import / args.cases * 1e6,
                       "server_us_per_update": cpu_update / args.cases * 1e6}
                row["ratio"] = row["update_lines_s"] / row["import_cases_s"]
                rows.append(row)
                print(json.dumps(row), flush=True)
        finally:
            gw.stop()
    summary = {"import cases/s": statistics.median(r["import_cases_s"] for r in rows),
               "update lines/s": statistics.median(r["update_lines_s"] for r in rows),
               "ratio (target >= 1)": statistics.median(r["ratio"] for r in rows),
               "ratio by round": [round(r["ratio"], 2) for r in rows],
               "the same file again, lines/s": statistics.median(r["unchanged_lines_s"] for r in rows),
               "server us per import": statistics.median(r["server_us_per_import"] for r in rows),
               "server us per update": statistics.median(r["server_us_per_update"] for r in rows)}
    print(json.dumps(summary, indent=2))
    out = RESULTS.parent / ("updating.json" if args.store == "sqlite" else f"updating-{args.store}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "rows": rows, "summary": summary}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
