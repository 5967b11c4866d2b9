"""Where a read's CPU goes, in-process: the read path hot and cold, and the audit append by batch size.

`make bench` measures the gateway against the echo over gRPC. These figures explain it and are in
bench/README.md:

- **Read path.** `Core.get_case` without the audit append, on a warm grant, is timed two ways. *Hot* is
  back to back. *Cold* runs after touching 16 MB between calls. In the server, gRPC, TLS and the kernel
  run between two reads on the one core, so a read there costs about what *cold* shows.
- **Append.** `AuditLog.append` of 1, 8 and 32 events is timed in thread CPU. The figure covers one
  group commit: leaves, the Merkle frontier, one INSERT and its fsync.
- **BLOB binding.** A multi-row INSERT of two BLOBs per row into an in-memory database, the values
  passed as `bytes` (the sqlite3 module's adaptation path) and as `bytearray` (bound directly, what
  `vault.sqlite.db.blob` makes).
- **Append on a grown log.** A fresh log is grown to `--log-events` events (1,000 per commit), reopened,
  then batches of 8 are appended: thread CPU per event, WAL frames (encrypted pages) per event and the
  slowest commit. This is where the query index's upkeep shows: it must not grow with the log.

    python -m bench.breakdown [--cases 1000] [--calls 3000] [--log-events 200000]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.run import AGENCY, PURPOSE, setup


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.breakdown", description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=1000)
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--log-events", type=int, default=200_000, help="size of the grown log (0: skip that part)")
    args = ap.parse_args(argv)

    from gateway.core.model import Caller
    from gateway.transport.server import build

    work = Path(tempfile.mkdtemp(prefix="custos-breakdown-"))
    try:
        data, _agency, _requests, _size = setup(work, args.cases)
        gw = build(data, "127.0.0.1:0")
        try:
            core = gw.core
            caller = Caller(org_id=AGENCY, method="GetCase", trace_id="0" * 32)
            ids = [f"C-{i}" for i in range(1, args.cases + 1)]
            append = core.audit.append
            core.audit.append = lambda events, fresh_as=None: None  # type: ignore[method-assign,misc]
            for i in range(len(ids) * 2):
                core.get_case(caller, ids[i % len(ids)], PURPOSE)  # every grant decided, caches warm
            scratch = bytearray(16 * 1024 * 1024)
            print(f"read path (Core.get_case without the audit append, warm grants, {args.calls} calls):")
            for mode in ("hot", "cold"):
                total = 0.0
                for i in range(args.calls):
                    if mode == "cold":
                        scratch[::64] = bytes(len(scratch) // 64)  # one write per cache line of 16 MB
                    t = time.thread_time()
                    core.get_case(caller, ids[i % len(ids)], PURPOSE)
                    total += time.thread_time() - t
                print(f"  {mode:5} {total / args.calls * 1e6:6.0f} µs CPU per read")
            core.audit.append = append  # type: ignore[method-assign]

            def event(i: int) -> object:
                return core._event(caller, "allow", "OK", "bench", purpose=PURPOSE, case_id=f"C-{i}",
                                   borrower_id=f"B-{i}", fields=["amount_due", "full_name", "phone"])

            print("audit append (one group commit: leaves, frontier, one INSERT + fsync), thread CPU:")
            for batch in (1, 8, 32):
                rounds = max(20, 2400 // batch)
                events = [[event(i) for i in range(batch)] for _ in range(rounds)]
                t = time.thread_time()
                for evs in events:
                    core.audit.append(evs)  # type: ignore[arg-type]
                per_batch = (time.thread_time() - t) / rounds * 1e6
                print(f"  batch {batch:2}: {per_batch:6.0f} µs per batch, {per_batch / batch:5.0f} µs per event")
        finally:
            gw.stop()
        blob_binding()
        if args.log_events:
            grown_log(work / "grown", args.log_events)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def blob_binding(rows: int = 100, rounds: int = 300) -> None:
    import os

    import sqlcipher3

    from vault.sqlite import db

    conn = sqlcipher3.connect(":memory:", isolation_level=None)
    conn.execute("CREATE TABLE t(a BLOB, b BLOB)")
    sql = "INSERT INTO t VALUES " + ",".join(["(?,?)"] * rows)
    leaf, digest = os.urandom(450), os.urandom(32)
    print(f"binding two BLOBs per row ({rows} rows per INSERT), wall time per row:")
    for name, values in (("bytes", [leaf, digest] * rows), ("bytearray", [db.blob(leaf), db.blob(digest)] * rows)):
        t = time.perf_counter()
        for _ in range(rounds):
            conn.execute(sql, values)
        print(f"  {name:9} {(time.perf_counter() - t) / (rows * rounds) * 1e6:5.2f} µs")
    conn.close()


def grown_log(root: Path, size: int, appended: int = 16_000, batch: int = 8) -> None:
    from gateway.core.model import EventDraft
    from vault.backends import create
    from vault.sqlite import SqliteVault as Vault

    def draft(i: int) -> EventDraft:  # 10,000 cases and borrowers, keys spread as real traffic would
        return EventDraft(org=f"agency-{i % 3}", method="GetCase", purpose=PURPOSE, case_id=f"C-{i * 7919 % 9973}",
                          borrower_id=f"B-{i * 104729 % 9967}", decision="allow", code="OK", rule="bench",
                          time="2026-11-30T00:00:00.000000Z", trace_id="0" * 32, fields=["amount_due", "phone"],
                          policy_revision="sha256:" + "0" * 64)

    create(root)
    vault = Vault(root)
    try:
        for i in range(0, size, 1000):
            vault.audit.append([draft(j) for j in range(i, min(i + 1000, size))])
    finally:
        vault.close()
    vault = Vault(root)  # reopened: cold page cache, as after a restart
    try:
        conn = vault.audit.tables.audit_conn
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA wal_autocheckpoint = 0")  # so the WAL's growth counts the pages written
        page = int(conn.execute("PRAGMA page_size").fetchone()[0])
        wal = root / "audit.db-wal"
        before = wal.stat().st_size if wal.exists() else 0
        worst = 0.0
        t = time.thread_time()
        for i in range(size, size + appended, batch):
            events = [draft(j) for j in range(i, i + batch)]
            w = time.perf_counter()
            vault.audit.append(events)
            worst = max(worst, time.perf_counter() - w)
        cpu = (time.thread_time() - t) / appended * 1e6
        frames = (wal.stat().st_size - before) / (page + 24) / appended
        conn.execute("PRAGMA wal_autocheckpoint = 1000")
    finally:
        vault.close()
    print(f"audit append on a grown log ({size} events, then {appended} in batches of {batch}):")
    print(f"  {cpu:6.0f} µs CPU per event, {frames:.2f} encrypted pages written per event, "
          f"slowest commit {worst * 1e3:.0f} ms")


if __name__ == "__main__":
    sys.exit(main())
