"""Versioned schema migrations on the embedded store: recorded, applied once, and from the released layout.

The released layout (version 1) differs from today's by the per-case import
digest. A real data directory made by `custos init`, with cases imported
through a gateway, is taken back to that layout (the column dropped, the
version set to 1), then opened by today's code: the migration runs once, is
recorded, nothing stored is lost, and the gateway serves the old cases.
(PostgreSQL's migrations: tests/test_postgres.py.)
"""

from __future__ import annotations

from pathlib import Path

import pytest
from custos_client import PullRecord

from gateway import synth
from gateway.transport.server import build
from tests.conftest import Env
from vault.crypto import read_key_file
from vault.sqlite import SqliteVault, db

pytestmark = pytest.mark.sqlite_only


def _case_db(data: Path) -> db.Connection:
    return db.connect(data / "custos.db", read_key_file(data / "keys" / "db.key"))


def test_a_released_layout_is_migrated_once_and_keeps_its_data(env: Env) -> None:
    assert env.import_cases("lender-a", [synth.case_line(1), synth.case_line(2)]).imported == 2
    env.client("lender-a").assign("C-1", "agency-1", "collection", "2026-12-31")
    before = env.client("lender-a").get_case("C-1", "servicing").fields
    env.close()
    conn = _case_db(env.data)
    assert db.schema_version(conn) == db.CASE_VERSION
    conn.execute("ALTER TABLE cases DROP COLUMN import_digest")  # the layout the first releases wrote
    conn.execute("DROP TABLE furnished")  # (version 3 added the bureau feed's table)
    for trigger in ("cases_insert_feed", "cases_update_feed", "mandates_insert_feed", "mandates_update_feed",
                    "borrowers_update_feed", "loans_update_feed"):  # (version 8: the work lists' change feed)
        conn.execute(f"DROP TRIGGER {trigger}")
    conn.execute("DROP TABLE case_feed")
    conn.execute("DROP TABLE feed_counter")
    conn.execute("DROP INDEX mandates_open_until")
    conn.execute("ALTER TABLE mandates DROP COLUMN lapsed_at")
    conn.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    conn.close()

    vault = SqliteVault(env.data)
    try:
        conn = _case_db(env.data)
        assert db.schema_version(conn) == db.CASE_VERSION
        assert "import_digest" in {row[1] for row in conn.execute("PRAGMA table_info(cases)")}
        assert conn.execute("SELECT count(*) FROM furnished").fetchone()[0] == 0
        assert db.migrate(conn, db.CASE_MIGRATIONS) == []  # applied once: nothing the second time
        conn.close()
    finally:
        vault.close()
    gw = build(env.data, "127.0.0.1:0", clock=env.clock)
    try:
        from custos_client import CustosClient

        with CustosClient(f"127.0.0.1:{gw.port}", env.identity("lender-a")) as lender:
            assert lender.get_case("C-1", "servicing").fields == before
            # A case stored before digests existed is reported as existing, not taken for a repeat.
            again = lender.import_lines(synth.jsonl([synth.case_line(1)]).splitlines())
            assert [r.code for r in again.rejected] == ["CASE_EXISTS"]
            assert lender.import_lines(synth.jsonl([synth.case_line(3)]).splitlines()).imported == 1
            assert lender.import_lines(synth.jsonl([synth.case_line(3)]).splitlines()).already_imported == 1
            # the migrated mandates table holds the records a CN mandate names (issue 26)
            lender.assign("C-2", "bureau-1", "credit_reporting", "2026-12-31", agreement="AG-1", pia="PIA-1")
            assert lender.list_mandates("C-2")[0].agreement == "AG-1"
            lender.record_notice("C-2", "2026-11-01")
        with CustosClient(f"127.0.0.1:{gw.port}", env.identity("agency-1")) as agency:
            assert agency.get_case("C-1", "collection").case_id == "C-1"
            # Every case stored before the change feed is in it: the work list holds the old mandate.
            pulled = list(agency.pull_cases("collection"))
            assert [i.record.case_id for i in pulled if isinstance(i, PullRecord)] == ["C-1"]
        with CustosClient(f"127.0.0.1:{gw.port}", env.identity("bureau-1")) as bureau:
            assert bureau.pull_feed("").cursor == "f1"  # the feed works on the upgraded file
    finally:
        gw.stop(0)


def test_a_new_data_directory_starts_at_the_latest_versions(env: Env) -> None:
    conn = _case_db(env.data)
    audit = db.connect(env.data / "audit.db", read_key_file(env.data / "keys" / "db.key"))
    try:
        assert db.schema_version(conn) == db.CASE_VERSION
        assert db.schema_version(audit) == db.AUDIT_VERSION
    finally:
        conn.close()
        audit.close()


def _loan_update_steps(conn: db.Connection) -> int:
    """SQLite VM steps (in hundreds) of one loan update: what its triggers cost, whatever the machine."""
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    conn.set_progress_handler(count, 100)
    conn.execute("UPDATE loans SET negative_notice_on = '2026-03-01' WHERE lender_id = 'L' AND loan_id = 'LN-7'")
    conn.set_progress_handler(None, 0)
    return steps[0]


def test_a_loans_update_finds_its_cases_by_index_not_by_scanning_the_lenders(tmp_path: Path) -> None:
    """The change feed's and the cache scope's loan triggers cost the same at 200 and at 20,000 cases (issue 24:
    matching the loan alone scanned every case of the lender, 27 ms per update at 10^5)."""
    costs = []
    for n in (200, 20_000):
        conn = db.connect(tmp_path / f"{n}.db", b"\x01" * 32)
        db.create_schema(conn, db.SCHEMA + db.CASE_UPGRADE + db.CACHE_SCOPE, db.CASE_VERSION)
        conn.executemany("INSERT INTO loans(lender_id, loan_id, borrower_id, currency) VALUES ('L', ?, ?, 'CNY')",
                         [(f"LN-{i}", f"B-{i}") for i in range(n)])
        conn.executemany("INSERT INTO cases(lender_id, case_id, borrower_id, loan_id, jurisdiction, timezone, stage,"
                         " created_at, updated_at) VALUES ('L', ?, ?, ?, 'CN', 'Asia/Shanghai', 'reminder', 't', 't')",
                         [(f"C-{i}", f"B-{i}", f"LN-{i}") for i in range(n)])
        costs.append(_loan_update_steps(conn))
        generation = conn.execute("SELECT n FROM generation").fetchone()[0]
        assert conn.execute("SELECT seq > 0 FROM case_feed WHERE case_id = 'C-7'").fetchone() == (1,)
        assert conn.execute("SELECT n FROM cache_scope WHERE case_id = 'C-7'").fetchone() == (generation,)
        conn.close()
    assert costs[1] <= costs[0] + 5, costs


def test_a_version_10_file_gets_per_case_cache_scopes_once_upgraded(env: Env) -> None:
    """Version 11: the counter's triggers also record each change's case (or ('', '') for no one case's)."""
    assert env.import_cases("lender-a", [synth.case_line(1), synth.case_line(2)]).imported == 2
    env.close()
    conn = _case_db(env.data)
    conn.execute("DROP TABLE cache_scope")
    for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE '%_gen'").fetchall():
        conn.execute(f"DROP TRIGGER {row[0]}")
    conn.executescript(db.CASE_UPGRADE)  # version 10's triggers: the counter only
    conn.execute("DROP TRIGGER loans_update_feed")
    conn.execute("CREATE TRIGGER loans_update_feed AFTER UPDATE OF negative_notice_on ON loans BEGIN"
                 " UPDATE feed_counter SET n = n + 1 WHERE id = 1; END")
    conn.execute("UPDATE meta SET value = '10' WHERE key = 'schema_version'")
    conn.close()
    vault = SqliteVault(env.data)
    try:
        conn = _case_db(env.data)
        assert db.schema_version(conn) == db.CASE_VERSION  # 11 and every later step
        generation = conn.execute("SELECT n FROM generation").fetchone()[0]
        assert conn.execute("SELECT lender_id, case_id, n FROM cache_scope").fetchall() == [("", "", generation)]
        conn.execute("UPDATE cases SET stage = 'field_visit' WHERE case_id = 'C-2'")
        conn.execute("UPDATE loans SET negative_notice_on = '2026-11-01' WHERE loan_id ="
                     " (SELECT loan_id FROM cases WHERE case_id = 'C-1')")
        scopes = dict((r[0], r[1]) for r in conn.execute("SELECT case_id, n FROM cache_scope"))
        assert scopes["C-2"] == generation + 1 and scopes["C-1"] == generation + 2 and scopes[""] == generation
        assert "borrower_id = new.borrower_id" in conn.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'loans_update_feed'").fetchone()[0]
        conn.close()
    finally:
        vault.close()
