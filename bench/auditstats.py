"""`audit stats` on large logs: the cost follows the range, not the log; and what deriving the facts costs the append.

    python -m bench.auditstats [--events 1000000] [--small 10000] [--rounds 5] [--append 20000]
                               [--store sqlite|postgresql]

- **Stats.** Two data directories (`custos init`, a regulator), their logs
  grown in-process (1,000 events per commit, as the gateway writes them, one
  second apart, keys spread over 20 organisations, 5 lenders, 3 methods, 3
  codes, 4 channels): a *small* log of `--small` events and a *large* one of
  `--events`. Each is asked, by the regulator over mTLS on loopback (as
  `custos audit stats` asks; the gateway audits the call and signs a
  checkpoint for it), for figures by `org,code` and by `day,org,channel`:
  over the whole small log, over the whole large log, and over a range of the
  large log holding as many events as the small log. Medians of `--rounds`.
  Design targets: the whole 10^6-event log <= 2 s; the 10^4-event range in
  it <= 2 x the whole 10^4-event log.
- **Append.** On the large log, `--append` events in batches of 8 (the
  group commit's usual size under load), alternately with the facts derived
  at each index mark and without (derived data, so a fair baseline), three
  runs each; events/s. Design target: with facts >= 0.9 x without.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.proofs import _grow as grow
from bench.run import Server, bench_policies, custos_cmd, server_env, throwaway_database

T0 = datetime(2026, 1, 1, tzinfo=UTC)
METHODS = (("GetCase", ""), ("OpenContact", "call"), ("RecordOutcome", "sms"), ("OpenContact", "visit"),
           ("OpenContact", "letter"))
CODES = ("OK", "OK", "OK", "NO_MANDATE", "CONTACT_CAP_REACHED")
KEYSETS = (("org", "code"), ("day", "org", "channel"))


def _events(n: int, start: int) -> list[Any]:
    from gateway.core.model import EventDraft, rfc3339

    out = []
    for i in range(start, start + n):
        method, channel = METHODS[i % len(METHODS)]
        code = CODES[i % 7 % len(CODES)]
        out.append(EventDraft(
            org=f"agency-{i % 20}", method=method, purpose="collection", case_id=f"C-{i % 9973}",
            borrower_id=f"B-{i % 9967}", decision="allow" if code == "OK" else "deny", code=code,
            rule="collection.reminder" if code == "OK" else code, time=rfc3339(T0 + timedelta(seconds=i)),
            trace_id="0" * 32, fields=["full_name", "phone"] if code == "OK" else [], lender=f"lender-{i % 5}",
            channel=channel))
    return out


def _data_dir(work: Path, database: str | None) -> tuple[Path, Path]:
    data, ids, cmd, env = work / "data", work / "ids", custos_cmd(), server_env()
    subprocess.run([*cmd, "init", str(data), *(["--database", database] if database else [])], check=True,
                   env=env, stdout=subprocess.DEVNULL)
    subprocess.run([*cmd, "org", "add", str(data), "--id", "regulator-1", "--kind", "regulator", "--name", "R",
                    "--out", str(ids / "regulator-1")], check=True, env=env, stdout=subprocess.DEVNULL)
    return data, ids / "regulator-1"


@contextmanager
def _served(work: Path, data: Path) -> Iterator[str]:
    gw = Server("gateway", [*custos_cmd(), "serve", str(data), "--listen", "127.0.0.1:0", "--processes", "1",
                            "--policies", str(bench_policies(work))], work / "gw.log", None)
    try:
        yield gw.wait_listening()
    finally:
        gw.stop()


def _stats_times(target: str, identity: Path, start: datetime, end: datetime, rounds: int,
                 expect: int) -> dict[tuple[str, ...], float]:
    from custos_client import CustosClient

    from gateway.core.model import rfc3339

    out: dict[tuple[str, ...], float] = {}
    with CustosClient(target, identity, timeout=120) as c:
        c.checkpoint()  # warms the channel
        for by in KEYSETS:
            times = []
            for _ in range(rounds):
                t = time.perf_counter()
                doc = c.audit_stats(rfc3339(start), rfc3339(end), by)
                times.append(time.perf_counter() - t)
                assert doc.total == expect, (doc.total, expect)
            out[by] = statistics.median(times)
    return out


def _grown(work: Path, database: str | None, events: int) -> tuple[Path, Path, int, float]:
    """The data directory grown to `events` (event i timed T0 + i s), its regulator, how many events were there
    before (the organisation's registration), the time taken."""
    from vault.backends import open_vault

    data, identity = _data_dir(work, database)
    vault: Any = open_vault(data)
    try:
        before = vault.audit.size
        t = time.perf_counter()
        grow(vault, events, _events)
        return data, identity, before, time.perf_counter() - t
    finally:
        vault.close()


def _append_rates(vault: Any, n: int, toggle: Callable[[bool], None]) -> tuple[list[float], list[float]]:
    on: list[float] = []
    off: list[float] = []
    start = vault.audit.size
    for i in range(0, n, 8):  # a warm-up, not timed: the first run after opening the log pays for its cache
        vault.audit.append(_events(8, start + i))
    for _ in range(3):
        for facts, out in ((True, on), (False, off)):
            toggle(facts)
            start = vault.audit.size
            t = time.perf_counter()
            for i in range(0, n, 8):
                vault.audit.append(_events(8, start + i))
            out.append(n / (time.perf_counter() - t))
    toggle(True)
    return on, off


def _facts_toggle(vault: Any) -> Callable[[bool], None]:
    """Switch the facts' derivation at the index marks on or off (the baseline)."""
    if hasattr(vault.audit, "tables"):  # the embedded store: derived in mark_audit
        from vault.sqlite import auditstore

        derive = auditstore.DERIVE_FACTS  # type: ignore[attr-defined]

        def sqlite(on: bool) -> None:
            auditstore.DERIVE_FACTS = derive if on else "SELECT ?, ?"  # type: ignore[attr-defined]
        return sqlite
    from vault.postgres.auditstore import PgAuditStore

    method = PgAuditStore.derive_facts

    def no_facts(self: PgAuditStore, old_size: int, new_size: int) -> None:
        """The baseline: the commit without the facts derived."""

    def pg(on: bool) -> None:
        PgAuditStore.derive_facts = method if on else no_facts  # type: ignore[method-assign]
    return pg


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.auditstats", description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--small", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--append", type=int, default=20_000)
    ap.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    args = ap.parse_args(argv)
    from vault.backends import open_vault

    with tempfile.TemporaryDirectory(prefix="custos-bench-stats-") as tmp, \
            throwaway_database(args.store, "stats_small") as small_db, \
            throwaway_database(args.store, "stats_large") as large_db:
        work = Path(tmp)
        (work / "small").mkdir()
        (work / "large").mkdir()
        small, small_id, small_first, small_grown = _grown(work / "small", small_db, args.small)
        large, large_id, large_first, large_grown = _grown(work / "large", large_db, args.events)
        print(f"logs grown in-process ({args.store}): {args.small} events in {small_grown:.1f} s, "
              f"{args.events} in {large_grown:.1f} s")
        end_small, end_large = T0 + timedelta(seconds=args.small), T0 + timedelta(seconds=args.events)
        mid = T0 + timedelta(seconds=args.events // 2)
        with _served(work / "small", small) as target:
            whole_small = _stats_times(target, small_id, T0, end_small, args.rounds, args.small - small_first)
        with _served(work / "large", large) as target:
            whole_large = _stats_times(target, large_id, T0, end_large, args.rounds, args.events - large_first)
            range_large = _stats_times(target, large_id, mid, mid + timedelta(seconds=args.small), args.rounds,
                                       args.small)
        print(f"audit stats, served (regulator over mTLS, audited, checkpoint signed), median of {args.rounds}:")
        print("  by                 whole small log   whole large log   small range in large   range / small")
        for by in KEYSETS:
            print(f"  {','.join(by):<18} {whole_small[by] * 1e3:>12.1f} ms {whole_large[by] * 1e3:>14.1f} ms"
                  f" {range_large[by] * 1e3:>18.1f} ms {range_large[by] / whole_small[by]:>13.2f} x")
        worst = max(whole_large.values())
        ratio = max(range_large[by] / whole_small[by] for by in KEYSETS)
        print(f"whole {args.events}-event log: at most {worst:.2f} s (target <= 2 s); {args.small} events in it "
              f"against a whole {args.small}-event log: at most {ratio:.2f} x (target <= 2 x)")
        vault = open_vault(large)
        try:
            on, off = _append_rates(vault, args.append, _facts_toggle(vault))
        finally:
            vault.close()
        rate = statistics.median(on) / statistics.median(off)
        print(f"append on the {args.events}-event log, batches of 8: with facts {statistics.median(on):.0f} "
              f"events/s, without {statistics.median(off):.0f} events/s: {rate:.2f} x (target >= 0.9 x); "
              f"per run {[round(x) for x in on]} / {[round(x) for x in off]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
