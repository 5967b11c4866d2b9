"""PostgreSQL sees only ciphertexts and blind indexes; `custos init --database` refuses what it must.

The scan reads every file of the test server's data directory (tables, WAL,
everything) after a CHECKPOINT, and a pg_dump of the database, for the raw
bytes of each imported personal value. The same scan is shown to find the
values in a plain table, so it can fail.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from gateway import cli, synth
from tests.conftest import Env
from tests.pg import PgServer

pytestmark = pytest.mark.postgresql_only

RECOVERY_S = 60.0  # the longest a test waits for the gateway to come back after the database did
OUTAGE_REFUSALS = {("UNAVAILABLE", "UNAVAILABLE"), ("AUDIT_UNAVAILABLE", "UNAVAILABLE")}  # (code, gRPC status)
LINES = [synth.case_line(200 + i, jurisdiction="CN" if i % 2 else "US", seed=4242) for i in range(1, 9)]
SECRETS = [v for line in LINES for v in synth.pi_values(line)] + [line["loan"]["contract_text"] for line in LINES]


_PATTERN = re.compile(b"|".join(re.escape(v.encode("utf-8")) for v in SECRETS))


def leaks(blob: bytes) -> set[str]:
    return {m.group(0).decode("utf-8") for m in _PATTERN.finditer(blob)}


def _server_files(server: PgServer, database: str) -> set[str]:
    """Leaks in the database's own files, the shared catalog and the whole WAL (every database writes there)."""
    import psycopg

    with psycopg.connect(server.url("postgres")) as conn:
        row = conn.execute("SELECT oid FROM pg_database WHERE datname = %s", (database,)).fetchone()
    assert row is not None
    found: set[str] = set()
    for directory in (server.data / "base" / str(row[0]), server.data / "global", server.data / "pg_wal"):
        for path in sorted(directory.rglob("*")):
            if path.is_file():
                found |= leaks(path.read_bytes())
    return found


def _database(env: Env) -> str:
    return str(json.loads((env.data / "config.json").read_text())["database"]).rsplit("/", 1)[1]


def test_postgresql_holds_no_personal_value_in_its_files_its_wal_or_a_dump(env: Env, pg_server: PgServer) -> None:
    assert env.import_cases("lender-a", LINES).imported == len(LINES)
    lender = env.client("lender-a")
    lender.assign("C-201", "agency-1", "collection", "2026-12-31")
    lender.set_stage("C-201", "field_visit")
    served = env.client("agency-1").get_case("C-201", "collection").fields
    assert any(v in served.values() for v in SECRETS)  # the values are there, and released to the right party
    record = lender.get_case("C-202", "servicing").fields
    assert record["contract_text"] == LINES[1]["loan"]["contract_text"]
    assert lender.list_cases(national_id=LINES[2]["borrower"]["national_id"])[0].case_id == "C-203"
    env.client("agency-1").open_contact("C-201", "call")
    pg_server.checkpoint()
    assert not _server_files(pg_server, _database(env))
    assert not leaks(pg_server.pg_dump(_database(env)))
    # The scan can fail: the same values in a plain table are found in the files and the dump.
    pg_server.sql("CREATE DATABASE custos_plain_control")
    pg_server.sql("CREATE TABLE t(v TEXT)", "custos_plain_control")
    for value in SECRETS:
        pg_server.sql(f"INSERT INTO t VALUES ('{value.replace(chr(39), chr(39) * 2)}')", "custos_plain_control")
    pg_server.checkpoint()
    try:
        assert _server_files(pg_server, "custos_plain_control") == set(SECRETS)
        assert leaks(pg_server.pg_dump("custos_plain_control")) == set(SECRETS)
    finally:
        pg_server.sql("DROP DATABASE custos_plain_control")


def test_init_refuses_a_password_a_used_database_and_an_unreachable_one(tmp_path: Path, pg_server: PgServer,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    def init(target: Path, url: str) -> tuple[int, str]:
        capsys.readouterr()
        rc = cli.main(["init", str(target), "--database", url, "--json"])
        out = capsys.readouterr()
        assert "Traceback" not in out.err
        return rc, json.loads(out.out.strip().splitlines()[-1]).get("error", {}).get("code", "")

    url = pg_server.create_database("custos_init_checks")
    with_password = url.replace("custos_admin@", "custos_admin:s3cret@")
    assert init(tmp_path / "a", with_password) == (2, "INVALID_ARGUMENT")  # exit 2: the command line's mistake
    assert not (tmp_path / "a").exists()
    assert init(tmp_path / "b", "mysql://x@127.0.0.1/db") == (2, "INVALID_ARGUMENT")
    assert init(tmp_path / "c", "postgresql://custos_admin@127.0.0.1:1/nowhere") == (4, "UNAVAILABLE")  # exit 4: unreachable
    assert not (tmp_path / "c").exists()
    rc, _ = init(tmp_path / "first", url)
    assert rc == 0
    config = json.loads((tmp_path / "first" / "config.json").read_text())
    assert config["database"] == url and "s3cret" not in (tmp_path / "first" / "config.json").read_text()
    # A second init on the same database would start a second log: refused, nothing written.
    assert init(tmp_path / "second", url) == (1, "DATA_DIR_EXISTS")
    assert not (tmp_path / "second").exists()


def test_migrations_are_recorded_and_applied_once(pg_server: PgServer) -> None:
    import psycopg

    from vault.postgres import schema

    url = pg_server.create_database("custos_migrations")
    with psycopg.connect(url) as conn:
        assert schema.version(conn) == 0
        assert schema.migrate(conn) == [v for v, _, _ in schema.MIGRATIONS]
        assert schema.migrate(conn) == []  # nothing twice
        assert schema.version(conn) == schema.LATEST
        rows = conn.execute("SELECT version, description FROM schema_version ORDER BY version").fetchall()
    assert [r[0] for r in rows] == [v for v, _, _ in schema.MIGRATIONS]


def test_the_first_released_layout_upgrades_to_the_change_counter_with_its_data(pg_server: PgServer) -> None:
    """A database left at version 1 (the layout the first PostgreSQL release created) gains version 2 in place."""
    import psycopg

    from vault.postgres import schema

    url = pg_server.create_database("custos_upgrade")
    with psycopg.connect(url) as conn:
        first = schema.MIGRATIONS[:1]
        real = schema.MIGRATIONS
        schema.MIGRATIONS = first
        try:
            assert schema.migrate(conn) == [1]
        finally:
            schema.MIGRATIONS = real
        conn.execute("INSERT INTO orgs(id, kind, name, jurisdiction, created_at) VALUES ('o-1', 'agency', 'O', 'US', 't')")
        conn.commit()
        assert schema.version(conn) == 1
        assert schema.migrate(conn) == [v for v, _, _ in schema.MIGRATIONS[1:]]
        assert conn.execute("SELECT count(*) FROM orgs").fetchone() == (1,)
        before = conn.execute("SELECT n FROM generation").fetchone()[0]
        for table in schema.CACHED_TABLES:  # every cached table moves the counter, in its own transaction
            conn.execute(f"DELETE FROM {table} WHERE false")
            conn.commit()
        after = conn.execute("SELECT n FROM generation").fetchone()[0]
        assert after == before + len(schema.CACHED_TABLES)
        conn.execute("DELETE FROM contacts WHERE false")  # not cached: no move
        assert conn.execute("SELECT n FROM generation").fetchone()[0] == after


def test_the_change_feed_migration_numbers_every_existing_case_and_later_changes_after_them(
        pg_server: PgServer) -> None:
    """Version 10 on a database with cases: each case is in the feed once, and a later change is numbered above."""
    import psycopg

    from vault.postgres import schema

    url = pg_server.create_database("custos_feed_upgrade")
    with psycopg.connect(url) as conn:
        real = schema.MIGRATIONS
        schema.MIGRATIONS = [m for m in real if m[0] < 10]
        try:
            assert schema.migrate(conn)[-1] == 9
        finally:
            schema.MIGRATIONS = real
        for i in (1, 2, 3):
            conn.execute("INSERT INTO cases(lender_id, case_id, borrower_id, loan_id, jurisdiction, timezone, stage,"
                         " created_at, updated_at) VALUES ('l-1', %s, 'b', %s, 'CN', 'Asia/Shanghai', 'reminder',"
                         " 't', 't')", (f"C-{i}", f"L-{i}"))
        conn.commit()
        assert schema.migrate(conn) == [v for v, *_ in schema.MIGRATIONS if v >= 10]  # 10 and any later
        feed = conn.execute("SELECT case_id, seq FROM case_feed ORDER BY seq").fetchall()
        assert [c for c, _ in feed] == ["C-1", "C-2", "C-3"] and [n for _, n in feed] == [1, 2, 3]
        assert conn.execute("SELECT n FROM feed_counter").fetchone() == (3,)
        # A change marks its case pending; the writing batch numbers it after the head lock (FEED_NUMBER).
        conn.execute("UPDATE cases SET stage = 'letter' WHERE case_id = 'C-1'")
        assert conn.execute("SELECT seq FROM case_feed WHERE case_id = 'C-1'").fetchone() == (schema.PENDING,)
        conn.execute(schema.FEED_NUMBER)
        conn.commit()
        assert conn.execute("SELECT seq FROM case_feed WHERE case_id = 'C-1'").fetchone() == (4,)
        conn.execute("UPDATE cases SET stage = 'letter' WHERE case_id = 'C-1'")  # the same value: no change
        assert conn.execute("SELECT seq FROM case_feed WHERE case_id = 'C-1'").fetchone() == (4,)
        conn.rollback()


def test_an_outage_refuses_service_with_a_stable_code_and_the_gateway_recovers_by_itself(env: Env,
                                                                                       pg_server: PgServer) -> None:
    from custos_client import CustosClientError

    assert env.import_cases("lender-a", [synth.case_line(1)]).imported == 1
    lender = env.client("lender-a")
    lender.timeout = 30
    assert lender.get_case("C-1", "servicing").case_id == "C-1"
    size = env.gw.vault.audit.head()[0]
    pg_server.pause()
    try:
        for _ in range(2):
            with pytest.raises(CustosClientError) as info:
                lender.get_case("C-1", "servicing")
            assert (info.value.code, info.value.status) in OUTAGE_REFUSALS
    finally:
        pg_server.resume()
    # Back without a restart: the pool reconnects on its own schedule (psycopg_pool retries with a doubling
    # delay, so after a slow stop and start the first reads may still be refused: bounded here), and nothing
    # was released or logged while the log could not be written.
    deadline = time.monotonic() + RECOVERY_S
    while True:
        try:
            assert lender.get_case("C-1", "servicing").case_id == "C-1"
            break
        except CustosClientError as err:
            assert (err.code, err.status) in OUTAGE_REFUSALS
            assert time.monotonic() < deadline, f"not recovered {RECOVERY_S} s after the database came back"
            time.sleep(0.5)
    reads = [lender.get_case("C-1", "servicing").case_id for _ in range(2)]
    assert reads == ["C-1"] * 2
    assert env.gw.vault.audit.head()[0] == size + 3
