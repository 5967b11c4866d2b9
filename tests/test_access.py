"""Invariants 2 and 4: deny by default, and every denial audited with its code."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
from custos_client import CustosClientError

from gateway import cli
from tests.conftest import Env, store_sql

REMINDER = {"full_name", "phone", "amount_due", "days_past_due", "due_on", "product", "lender_name", "national_id"}
LETTER = REMINDER | {"home_address"}
FIELD_VISIT = LETTER | {"work_address", "employer"}


def denied(env: Env, org: str, case: str, purpose: str = "collection") -> CustosClientError:
    with pytest.raises(CustosClientError) as info:
        env.client(org).get_case(case, purpose)
    return info.value


def last_event(env: Env, **filters: Any) -> dict[str, Any]:
    events = [e for e in env.events(**filters) if e.method != "QueryAudit"]
    return events[-1]


def test_agency_reads_exactly_the_stage_field_set(seeded: Env) -> None:
    lender, agency = seeded.client("lender-a"), seeded.client("agency-1")
    full = lender.get_case("C-1", "servicing").fields
    for stage, expected in (("reminder", REMINDER), ("letter", LETTER), ("field_visit", FIELD_VISIT)):
        lender.set_stage("C-1", stage)
        rec = agency.get_case("C-1", "collection")
        assert set(rec.fields) == expected, stage
        f = rec.fields
        assert f["phone"] == full["phone"][:6] + "****" + full["phone"][-4:]
        assert f["national_id"] == full["national_id"][-4:]
        assert f["full_name"] == full["full_name"]
        for never in ("bank_account", "emergency_contacts", "date_of_birth", "email", "contract_text"):
            assert never not in f
        ev = last_event(seeded, case_id="C-1", org="agency-1")
        assert ev.decision == "allow" and sorted(ev.data["fields"]) == sorted(expected)


def test_stage_change_takes_effect_immediately(seeded: Env) -> None:
    seeded.client("lender-a").set_stage("C-1", "early_warning")
    err = denied(seeded, "agency-1", "C-1")
    assert err.code == "STAGE_NOT_ALLOWED" and err.status == "FAILED_PRECONDITION"
    seeded.client("lender-a").set_stage("C-1", "letter")
    assert "home_address" in seeded.client("agency-1").get_case("C-1", "collection").fields


@pytest.mark.parametrize(
    "setup, org, purpose, code, status",
    [
        ("none", "agency-2", "collection", "NO_MANDATE", "PERMISSION_DENIED"),
        ("none", "agency-1", "litigation", "PURPOSE_NOT_ALLOWED", "PERMISSION_DENIED"),
        ("none", "lawfirm-1", "litigation", "NO_MANDATE", "PERMISSION_DENIED"),
        ("expire", "agency-1", "collection", "MANDATE_EXPIRED", "PERMISSION_DENIED"),
        ("recall", "agency-1", "collection", "MANDATE_RECALLED", "PERMISSION_DENIED"),
        ("disable", "agency-1", "collection", "ORG_DISABLED", "PERMISSION_DENIED"),
        ("old", "agency-old", "collection", "LICENCE_EXPIRED", "PERMISSION_DENIED"),
        ("none", "agency-1", "servicing", "PURPOSE_NOT_ALLOWED", "PERMISSION_DENIED"),
        ("none", "agency-1", "harvest", "UNKNOWN_PURPOSE", "INVALID_ARGUMENT"),
        ("none", "regulator-1", "supervision", "PURPOSE_NOT_ALLOWED", "PERMISSION_DENIED"),
        ("none", "bureau-1", "credit_reporting", "NO_MANDATE", "PERMISSION_DENIED"),
    ],
)
def test_denials_release_nothing_and_are_audited(seeded: Env, setup: str, org: str, purpose: str, code: str,
                                                 status: str) -> None:
    if setup == "expire":
        seeded.clock.advance(days=40)  # mandate ran until 2026-12-31 local
    elif setup == "recall":
        assert seeded.client("lender-a").recall("C-1", "agency-1").recalled == 1
    elif setup == "disable":
        assert cli.main(["org", "disable", str(seeded.data), "--id", "agency-1"]) == 0
    elif setup == "old":
        # The lender may grant it, but the expired licence stops every request.
        seeded.client("lender-a").assign("C-1", "agency-old", "collection", "2026-12-31")
    err = denied(seeded, org, "C-1", purpose)
    assert (err.code, err.status) == (code, status)
    ev = last_event(seeded, org=org)
    assert ev.decision == "deny" and ev.code == code and ev.data["fields"] == []
    assert ev.method == "GetCase" and ev.data["rule"]


def test_mandate_ends_at_until_in_the_borrowers_local_day(seeded: Env) -> None:
    # Until 2026-12-31 in Asia/Shanghai: 2026-12-31T15:59Z is still that day there, 16:00Z is not.
    from datetime import datetime

    seeded.clock.current = datetime(2026, 12, 31, 15, 59, tzinfo=UTC)
    assert seeded.client("agency-1").get_case("C-1", "collection").fields
    seeded.clock.current = datetime(2026, 12, 31, 16, 0, tzinfo=UTC)
    assert denied(seeded, "agency-1", "C-1").code == "MANDATE_EXPIRED"


def test_cases_list_shows_only_active_mandates(seeded: Env) -> None:
    assert [c.case_id for c in seeded.client("agency-1").list_cases()] == ["C-1"]
    assert seeded.client("agency-2").list_cases() == []
    seeded.client("lender-a").recall("C-1", "agency-1")
    assert seeded.client("agency-1").list_cases() == []


def test_other_lenders_cases_are_invisible(seeded: Env) -> None:
    b = seeded.client("lender-b")
    assert {c.case_id for c in b.list_cases()} == {"BC-1", "BC-2"}
    missing = denied(seeded, "lender-b", "C-999", "servicing")
    foreign = denied(seeded, "lender-b", "C-1", "servicing")
    # Another lender's case looks exactly like a case that does not exist.
    assert (foreign.code, foreign.status, foreign.message) == (missing.code, missing.status, missing.message)
    assert foreign.code == "CASE_NOT_FOUND"
    for attempt in (lambda: b.assign("C-1", "agency-b", "collection", "2026-12-31"),
                    lambda: b.set_stage("C-1", "letter"), lambda: b.recall("C-1", "agency-1"),
                    lambda: b.get_case("lender-a/C-1", "servicing")):
        with pytest.raises(CustosClientError) as info:
            attempt()
        assert info.value.code == "CASE_NOT_FOUND"
    # lender-b's agency cannot reach lender-a's case either, even by qualifying it.
    assert denied(seeded, "agency-b", "C-1").code == "NO_MANDATE"
    assert denied(seeded, "agency-b", "lender-a/C-1").code == "NO_MANDATE"
    assert seeded.client("lender-a").get_case("C-1", "servicing").stage == "reminder"


def test_lender_reads_its_own_case_in_full(seeded: Env) -> None:
    rec = seeded.client("lender-a").get_case("C-1", "servicing")
    assert {"bank_account", "emergency_contacts", "national_id", "contract_text"} <= set(rec.fields)
    assert rec.rules == ["servicing.owner"]


def test_lender_finds_cases_by_blind_index(seeded: Env) -> None:
    lender = seeded.client("lender-a")
    nid = lender.get_case("C-1", "servicing").fields["national_id"]
    phone = lender.get_case("C-1", "servicing").fields["phone"]
    assert [c.case_id for c in lender.list_cases(national_id=nid)] == ["C-1", "C-2"]
    assert [c.case_id for c in lender.list_cases(phone=phone)] == ["C-1", "C-2"]
    assert seeded.client("lender-b").list_cases(national_id=nid) == []


def _warm(env: Env, org: str, case: str, purpose: str, times: int = 12) -> None:
    """Several reads, on whichever server threads take them, so the shared row cache holds the case."""
    for _ in range(times):
        assert env.client(org).get_case(case, purpose).fields


@pytest.mark.parametrize("change", ["disable-by-another-process", "mandate-edited-by-another-process",
                                    "recall-through-the-gateway"])
def test_a_change_applies_to_the_next_request_despite_the_row_cache(seeded: Env, change: str) -> None:
    _warm(seeded, "agency-1", "C-1", "collection")
    if change == "disable-by-another-process":
        assert cli.main(["org", "disable", str(seeded.data), "--id", "agency-1"]) == 0
        code = "ORG_DISABLED"
    elif change == "mandate-edited-by-another-process":
        # Any writer, not only ours: the trigger moves the change counter in the writer's own transaction.
        store_sql(seeded, "UPDATE mandates SET until = '2026-11-01' WHERE org_id = 'agency-1' AND case_id = 'C-1'")
        code = "MANDATE_EXPIRED"
    else:
        assert seeded.client("lender-a").recall("C-1", "agency-1").recalled == 1
        code = "MANDATE_RECALLED"
    for _ in range(6):  # every thread's next request, not just one
        assert denied(seeded, "agency-1", "C-1").code == code


def test_a_stage_change_changes_the_released_fields_at_once(seeded: Env) -> None:
    _warm(seeded, "agency-1", "C-1", "collection")
    before = set(seeded.client("agency-1").get_case("C-1", "collection").fields)
    seeded.client("lender-a").set_stage("C-1", "field_visit")
    after = seeded.client("agency-1").get_case("C-1", "collection")
    assert after.stage == "field_visit" and set(after.fields) != before


def test_row_cache_generations_only_move_forward() -> None:
    from vault.rowcache import RowCache

    cache = RowCache()  # no WAL-index watch: every request reads the counter
    first = cache.current(lambda: 1)
    assert first is not None
    first["k"] = "old row"
    second = cache.current(lambda: 2)
    assert second is not None and "k" not in second
    # A reader that saw the older generation gets no cache at all; a late insert into the
    # dict it held earlier lands in a dict nobody reads any more.
    assert cache.current(lambda: 1) is None
    first["late"] = "stale row"
    assert cache.current(lambda: 2) is second and "late" not in second


class _Watch:
    def __init__(self) -> None:
        self.value: bytes | None = b"s1"

    def stamp(self) -> bytes | None:
        return self.value


def test_row_cache_reads_the_counter_only_when_the_wal_index_moved() -> None:
    from vault.rowcache import RowCache

    watch = _Watch()
    cache = RowCache(watch)  # type: ignore[arg-type]
    reads: list[int] = []

    def counter(value: int) -> Callable[[], int]:
        return lambda: reads.append(value) or value

    rows = cache.current(counter(1))
    assert rows is not None and reads == [1]
    assert cache.current(counter(1)) is rows and reads == [1]  # same stamp: no SQL
    watch.value = b"s2"  # someone committed
    assert cache.current(counter(2)) is not rows and reads == [1, 2]
    watch.value = None  # header mid-update or no WAL index: always ask the database
    cache.current(counter(2))
    cache.current(counter(2))
    assert reads == [1, 2, 2, 2]


def test_commit_watch_sees_every_commit_of_any_connection(tmp_path: Path) -> None:
    from vault.backends import create
    from vault.crypto import read_key_file
    from vault.sqlite import db

    layout = create(tmp_path / "data")
    key = read_key_file(layout.keys / "db.key")
    ours = db.connect(layout.db, key)
    ours.execute("SELECT n FROM generation").fetchone()
    watch = db.CommitWatch(layout.db)
    try:
        first = watch.stamp()
        assert first is not None
        ours.execute("SELECT count(*) FROM cases").fetchone()
        assert watch.stamp() == first  # reads change nothing
        other = db.connect(layout.db, key)  # as another process would
        other.execute("INSERT INTO meta(key, value) VALUES ('probe', '1')")
        second = watch.stamp()
        assert second is not None and second != first
        other.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        other.execute("UPDATE meta SET value = '2' WHERE key = 'probe'")
        assert watch.stamp() not in (None, first, second)  # still moves after the WAL restarts
        other.close()
    finally:
        watch.close()
        ours.close()
    assert db.CommitWatch(tmp_path / "missing.db").stamp() is None


@pytest.mark.sqlite_only  # SQLite's own files or internals
def test_every_change_to_a_cached_table_moves_the_generation(seeded: Env) -> None:
    from vault.sqlite import db

    conn = seeded.gw.vault.writer.conn

    def gen() -> int:
        return int(conn.execute("SELECT n FROM generation").fetchone()[0])

    for table in db.CACHED_TABLES:
        triggers = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'"
                                               " AND tbl_name = ? AND name LIKE '%_gen'", (table,))}
        assert triggers == {f"{table}_{op}_gen" for op in ("insert", "update", "delete")}
    g = gen()
    conn.execute("UPDATE orgs SET name = name WHERE id = 'agency-1'")
    assert gen() == g + 1


def test_a_quiet_database_costs_readers_no_counter_read(tmp_path: Path) -> None:
    """The WAL-index watch is live in a real vault: with no commits, only the first refresh asks SQLite."""
    from vault.backends import create
    from vault.sqlite import SqliteVault as Vault

    create(tmp_path / "data")
    vault = Vault(tmp_path / "data")
    try:
        repo = vault.reader()
        reads: list[int] = []
        real = repo._generation
        repo._generation = lambda: reads.append(1) or real()  # type: ignore[method-assign]
        for _ in range(5):
            repo.refresh()
        assert len(reads) == 1
        vault.writer.conn.execute("UPDATE orgs SET name = name")  # no rows: no commit of pages
        vault.writer.conn.execute("INSERT INTO meta(key, value) VALUES ('probe', '1')")
        repo.refresh()
        assert len(reads) == 2
    finally:
        vault.close()


def test_a_remembered_grant_ends_with_the_licence_at_utc_midnight(seeded: Env, tmp_path: Path) -> None:
    from datetime import datetime

    ids = tmp_path / "agency-x"
    assert cli.main(["org", "add", str(seeded.data), "--id", "agency-x", "--kind", "agency", "--name", "X",
                     "--licence-no", "LX", "--licence-expires", "2026-12-01", "--out", str(ids)]) == 0
    seeded.client("lender-a").assign("C-1", "agency-x", "collection", "2026-12-31")
    from custos_client import CustosClient

    with CustosClient(seeded.addr, ids, timeout=20) as agency:
        seeded.clock.current = datetime(2026, 12, 1, 23, 59, tzinfo=UTC)  # the licence's last day
        for _ in range(8):
            assert agency.get_case("C-1", "collection").fields
        seeded.clock.current = datetime(2026, 12, 2, 0, 0, tzinfo=UTC)  # same rows, next UTC day
        for _ in range(4):
            with pytest.raises(CustosClientError) as info:
                agency.get_case("C-1", "collection")
            assert info.value.code == "LICENCE_EXPIRED"


def test_a_remembered_grant_follows_a_policy_reload(seeded: Env, tmp_path: Path) -> None:
    import shutil

    from policies import BUNDLE_DIR

    policies = tmp_path / "policies"
    shutil.copytree(BUNDLE_DIR, policies, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    seeded.gw.policy_dir = policies
    _warm(seeded, "agency-1", "C-1", "collection")
    assert "product" in seeded.client("agency-1").get_case("C-1", "collection").fields
    release = policies / "release.toml"
    release.write_text(release.read_text().replace('product = "plain"\n', "", 1))
    seeded.gw.reload_policies()
    for _ in range(6):
        assert "product" not in seeded.client("agency-1").get_case("C-1", "collection").fields


def test_a_standing_refusal_names_the_case_the_request_named(seeded: Env) -> None:
    """A regulator querying a case sees every attempt on it, also a disabled org's or an expired licence's."""
    seeded.client("lender-a").assign("C-3", "agency-old", "collection", "2026-12-31")
    assert cli.main(["org", "disable", str(seeded.data), "--id", "agency-1"]) == 0
    for org, case, code, borrower in (("agency-1", "C-1", "ORG_DISABLED", "B-1"),
                                      ("agency-old", "C-3", "LICENCE_EXPIRED", "B-3"),
                                      ("agency-1", "C-404", "ORG_DISABLED", "")):
        assert denied(seeded, org, case).code == code
        events = [e for e in seeded.events(case_id=case) if e.method == "GetCase" and e.org == org]
        assert [(e.decision, e.code, e.data["borrower_id"]) for e in events] == [("deny", code, borrower)], case
    # A request that names no valid case id is still refused and audited, without a case.
    assert denied(seeded, "agency-1", "bad id!").code == "ORG_DISABLED"


def test_row_cache_evicts_the_least_recently_used_entry_not_the_whole_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    from vault import rowcache

    monkeypatch.setattr(rowcache, "CACHE_ENTRIES", 3)
    cache = rowcache.RowCache()
    reads: list[int] = []

    class Store(rowcache.CachedView):
        def _generation(self) -> int:
            return 1

        @rowcache.cached
        def row(self, n: int) -> str:
            reads.append(n)
            return f"row {n}"

    store = Store()
    store._shared = cache
    store.refresh()
    for n in (1, 2, 3):
        store.row(n)
    store.row(1)  # a hit, and now the most recently used
    store.row(4)  # over the bound: row 2 (least recently used) goes, nothing else
    rows = cache.current(lambda: 1)
    assert rows is not None and len(rows) == 3 and [k[1] for k in rows] == [3, 1, 4]
    store.row(3)
    store.row(1)
    assert reads == [1, 2, 3, 4]  # every other read was a hit
    store.row(2)
    assert reads == [1, 2, 3, 4, 2] and len(rows) == 3


def test_remembered_values_are_bounded_apart_from_the_rows_and_go_with_their_generation(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from vault import rowcache

    monkeypatch.setattr(rowcache, "CACHE_ENTRIES", 2)
    monkeypatch.setattr(rowcache, "MEMO_ENTRIES", 3)
    cache = rowcache.RowCache()
    generation = [1]

    class Store(rowcache.CachedView):
        def _generation(self) -> int:
            return generation[0]

        @rowcache.cached
        def row(self, n: int) -> str:
            return f"row {n}"

    store = Store()
    store._shared = cache
    store.refresh()
    for n in (1, 2, 3):
        store.remember(("grant", n), f"grant {n}")
    for n in range(50):  # rows come and go past their own bound; no remembered value goes with them
        store.row(n)
    assert [store.memo(("grant", n)) for n in (1, 2, 3)] == ["grant 1", "grant 2", "grant 3"]
    rows = cache.current(lambda: 1)
    assert rows is not None and len(rows) == 2 and len(rows.memos) == 3
    store.memo(("grant", 1))  # now the most recently used
    store.remember(("grant", 4), "grant 4")  # over the bound: grant 2 (least recently used) goes, nothing else
    assert [store.memo(("grant", n)) for n in (1, 2, 3, 4)] == ["grant 1", None, "grant 3", "grant 4"]
    generation[0] = 2  # a change: the next request's view has neither the rows nor what was derived from them
    store.refresh()
    assert store.memo(("grant", 1)) is None and store.memo(("grant", 4)) is None


def test_a_grant_outlives_the_rows_it_was_decided_from_in_the_cache(seeded: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """A working set larger than the row cache is still read from its grants: no decision made again (issue 13)."""
    from vault import rowcache

    core = seeded.gw.core
    first = seeded.client("agency-1").get_case("C-1", "collection")
    monkeypatch.setattr(rowcache, "CACHE_ENTRIES", 2)
    for case in ("C-2", "C-3", "C-4", "C-5", "C-6"):  # the owner's reads fill the rows' cache many times over
        assert seeded.client("lender-a").get_case(case, "servicing").fields
    decided: list[str] = []
    decide = core._grant

    def counted(caller: Any, case_ref: str, purpose: str, now: Any) -> Any:
        decided.append(case_ref)
        return decide(caller, case_ref, purpose, now)

    monkeypatch.setattr(core, "_grant", counted)
    again = seeded.client("agency-1").get_case("C-1", "collection")
    assert decided == [] and again.fields == first.fields
    assert seeded.client("lender-a").get_case("C-1", "servicing").fields
    assert decided == ["C-1"]  # the check can fail: a read without a grant decides


def test_cache_misses_are_read_in_turn_on_one_connection_that_keeps_no_snapshot(tmp_path: Path) -> None:
    """Every reader thread's misses go through the vault's MissReader; none leaves a read open behind it."""
    import threading

    from vault.backends import create
    from vault.sqlite import SqliteVault as Vault

    create(tmp_path / "data")
    vault = Vault(tmp_path / "data")
    try:
        w = vault.writer.conn
        for i in range(40):
            w.execute("INSERT INTO borrowers(lender_id, borrower_id, kek_version, dek_version) VALUES ('L', ?, 1, 1)",
                      (f"B-{i}",))
            w.execute("INSERT INTO loans(lender_id, loan_id, borrower_id, currency) VALUES ('L', ?, ?, 'EUR')",
                      (f"N-{i}", f"B-{i}"))
            w.execute("INSERT INTO cases(lender_id, case_id, borrower_id, loan_id, jurisdiction, timezone, stage,"
                      " created_at, updated_at) VALUES ('L', ?, ?, ?, 'DE', 'UTC', 'reminder', 't', 't')",
                      (f"C-{i}", f"B-{i}", f"N-{i}"))
            for purpose in ("collection", "legal"):  # two rows per miss: the statement must be read to its end
                w.execute("INSERT INTO mandates(lender_id, case_id, org_id, purpose, label, granted_at, until)"
                          " VALUES ('L', ?, 'agency-x', ?, '', 't', '2099-01-01')", (f"C-{i}", purpose))
        shared: list[str] = []
        vault._misses._conn.set_trace_callback(shared.append)
        found: dict[int, tuple[Any, ...]] = {}

        def read(first: int) -> None:
            repo = vault.reader()
            for i in range(first, 40, 8):
                repo.refresh()
                mandates = repo.mandates_for("agency-x", f"C-{i}")
                found[i] = (tuple(sorted(m.purpose for m in mandates if m.case_id == f"C-{i}")),
                            repo.get_case("L", f"C-{i}"), repo.loan_values(repo.get_case("L", f"C-{i}")))

        threads = [threading.Thread(target=read, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for i in range(40):
            purposes, case, loan = found[i]
            assert purposes == ("collection", "legal")
            assert case is not None and (case.case_id, case.borrower_id) == (f"C-{i}", f"B-{i}")
            assert loan is not None and loan.loan_id == f"N-{i}"
        assert len(shared) == 40  # one statement per miss (mandates, case, borrower and loan together), all here
        assert vault.forget(attempts=1)  # no reader holds a snapshot: the WAL truncates at the first try
    finally:
        vault.close()


def test_a_warm_readers_standing_refusal_still_names_the_case(seeded: Env) -> None:
    """Admission on PostgreSQL may let a call through on a cached org row that a change elsewhere made stale; the
    refusal on the checked view then names the case as admission's would (issue 24: no write empties the cache)."""
    _warm(seeded, "agency-1", "C-1", "collection")
    assert cli.main(["org", "disable", str(seeded.data), "--id", "agency-1"]) == 0  # another process
    assert denied(seeded, "agency-1", "C-1").code == "ORG_DISABLED"
    events = [e for e in seeded.events(case_id="C-1") if e.method == "GetCase" and e.decision == "deny"]
    assert [(e.org, e.code, e.data["borrower_id"]) for e in events] == [("agency-1", "ORG_DISABLED", "B-1")]
