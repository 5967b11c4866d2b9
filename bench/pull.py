"""Streamed work lists: `cases pull` records/s against `GetCase` calls/s, in one run (issue 13: >= 5 x).

    python -m bench.pull [--cases 5000] [--rounds 3] [--seconds 8] [--changed 0.01] [--change-with update|stage]

Set-up (`bench.run.setup`, embedded store): `--cases` cases mandated to one
agency. Per round, on one gateway (`custos serve --processes 1`, pinned to
CPU 0; clients on CPU 1):

- GetCase: the agency's load (bench/load.py, 2 Python processes, 64 in flight)
  over every case for `--seconds`: calls/s and server CPU per call;
- full pull: one client pulls the whole work list again and again for
  `--seconds` (raw bytes, no parsing: as the GetCase load); records/s and
  server CPU per record; every record is audited with its own event as a
  GetCase is;
- incremental pull: `--changed` of the cases change (by default a day's
  `lender update`: new figures and a repayment per changed case, issue 24;
  `--change-with stage`: a stage change each, as issue 13 measured), then a
  pull `--since` the cursor of a full pull: its time and server CPU against
  the full pull's, and that it carries exactly the changed cases. Cost in
  proportion to what changed: the time ratio near the `--changed` share.

Writes bench/results/pull.json.
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

from bench.load import run_load
from bench.run import GETCASE_METHOD, LENDER, RESULTS, Server, bench_policies, custos_cmd, pinned, setup

PULL_METHOD = "/custos.v1.CaseService/PullCases"


def _channel(target: str, identity: Path) -> Any:
    import grpc

    creds = grpc.ssl_channel_credentials((identity / "ca.crt").read_bytes(), (identity / "client.key").read_bytes(),
                                         (identity / "client.crt").read_bytes())
    return grpc.secure_channel(target, creds, options=[("grpc.max_receive_message_length", 64 << 20)])


def pull_once(stub: Any, since: str = "") -> tuple[int, str]:
    """(records, last cursor) of one pull (parsed as any client must: messages carry many cases)."""
    from custos_client.v1 import custos_pb2 as pb

    n, cursor = 0, ""
    for raw in stub(pb.PullCasesRequest(purpose="collection", since=since).SerializeToString(), timeout=600):
        message = pb.PulledCases.FromString(raw)
        n += len(message.items)
        cursor = message.cursor
    return n, cursor


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.pull", description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--changed", type=float, default=0.01, help="share of cases changed before the incremental pull")
    ap.add_argument("--change-with", choices=("update", "stage"), default="update")
    args = ap.parse_args(argv)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="custos-bench-pull-") as tmp:
        work = Path(tmp)
        data, agency, requests, _size = setup(work, args.cases)
        lender = agency.parent / LENDER
        for rnd in range(1, args.rounds + 1):
            gw = Server(f"gateway {rnd}", [*custos_cmd(), "serve", str(data), "--listen", "127.0.0.1:0",
                                           "--processes", "1", "--policies", str(bench_policies(work))],
                        work / f"pull-{rnd}.log", {0})
            try:
                target = gw.wait_listening()
                with pinned({1}):
                    res = run_load(target, agency, GETCASE_METHOD, requests, warmup=2.0, seconds=args.seconds,
                                   server_cpu=gw.cpu_seconds)
                if res.errors:
                    raise RuntimeError(f"GetCase: {res.errors}, e.g. {res.error_sample}")
                row: dict[str, Any] = {"round": rnd, "getcase_calls_s": res.throughput,
                                       "getcase_server_us": (res.server_cpu_s or 0) / max(res.calls, 1) * 1e6}
                with pinned({1}):
                    channel = _channel(target, agency)
                    stub = channel.unary_stream(PULL_METHOD, request_serializer=None, response_deserializer=None)
                    pull_once(stub)  # warm
                    t0, c0, total, pulls = time.monotonic(), gw.cpu_seconds(), 0, 0
                    cursor = ""
                    while time.monotonic() - t0 < args.seconds:
                        n, cursor = pull_once(stub)
                        if n != args.cases:
                            raise RuntimeError(f"a full pull carried {n} records, not {args.cases}")
                        total, pulls = total + n, pulls + 1
                    elapsed, cpu = time.monotonic() - t0, gw.cpu_seconds() - c0
                    row |= {"pull_records_s": total / elapsed, "pull_server_us": cpu / total * 1e6,
                            "full_pull_s": elapsed / pulls}
                    change = _update_accounts if args.change_with == "update" else _change_stages
                    changed = change(target, lender, max(1, int(args.cases * args.changed)), rnd)
                    t1, c1 = time.monotonic(), gw.cpu_seconds()
                    n, _ = pull_once(stub, cursor)
                    row |= {"incremental_s": time.monotonic() - t1, "incremental_server_s": gw.cpu_seconds() - c1,
                            "incremental_records": n, "changed": changed}
                    row["incremental_over_full"] = row["incremental_s"] / row["full_pull_s"]
                    if n != changed:
                        raise RuntimeError(f"the incremental pull carried {n} records, {changed} changed")
                    channel.close()
                row["ratio"] = row["pull_records_s"] / row["getcase_calls_s"]
                rows.append(row)
                print(json.dumps(row), flush=True)
            finally:
                gw.stop()
    summary = {
        "getcase calls/s": statistics.median(r["getcase_calls_s"] for r in rows),
        "pull records/s": statistics.median(r["pull_records_s"] for r in rows),
        "ratio (target >= 5)": statistics.median(r["ratio"] for r in rows),
        "server us per GetCase / per pulled record": (statistics.median(r["getcase_server_us"] for r in rows),
                                                      statistics.median(r["pull_server_us"] for r in rows)),
        "full pull s / incremental pull s": (statistics.median(r["full_pull_s"] for r in rows),
                                             statistics.median(r["incremental_s"] for r in rows)),
        f"incremental / full pull time (changed share {args.changed})": statistics.median(
            r["incremental_over_full"] for r in rows),
    }
    print(json.dumps(summary, indent=2))
    out = RESULTS.parent / "pull.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "rows": rows, "summary": summary}, indent=2) + "\n")
    return 0


def _update_accounts(target: str, lender: Path, n: int, rnd: int) -> int:
    """A day's `lender update` to n cases: new figures and a repayment each (as_of moves on by round)."""
    from custos_client import CustosClient

    lines = [json.dumps({"case_id": f"C-{i}", "as_of": f"2026-11-{rnd:02d}T18:00:00+08:00",
                         "loan": {"outstanding": f"{900 - rnd}.50", "amount_due": f"{90 - rnd}.25"},
                         "repayments": [{"on": f"2026-11-{rnd:02d}", "amount": "10.00"}]}).encode()
             for i in range(1, n + 1)]
    with CustosClient(target, lender, timeout=600) as c:
        result = c.update_lines(lines)
    if result.updated != n:
        raise RuntimeError(f"updated {result.updated} of {n}: {result.rejected[:3]}")
    return n


def _change_stages(target: str, lender: Path, n: int, rnd: int) -> int:
    """Move n cases to the next stage and back on alternate rounds (letter <-> reminder): each is a change."""
    from custos_client import CustosClient

    stage = "letter" if rnd % 2 else "reminder"
    with CustosClient(target, lender, timeout=60) as c:
        for i in range(1, n + 1):
            c.set_stage(f"C-{i}", stage)
    return n


if __name__ == "__main__":
    sys.exit(main())
