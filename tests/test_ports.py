"""One contract for the storage ports (gateway/core/ports.py), run against every backend.

No gateway and no gRPC: the core's view of storage only. Each test runs on
the embedded SQLCipher store and on PostgreSQL (the `env_dir` fixture), so a
backend that breaks a promise the core relies on fails here first.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from gateway import synth
from gateway.core.errors import Code, CustosError
from gateway.core.importer import parse_line
from gateway.core.model import JURISDICTIONS, EventDraft, ImportOutcome, LoanRow, Repayment
from gateway.core.ports import UnitOfWork
from gateway.tlog.merkle import Frontier, leaf_hash
from vault.backends import open_vault

NOW = "2026-11-30T02:00:00.000000Z"


@pytest.fixture
def vault(env_dir: Path) -> Iterator[Any]:
    v = open_vault(env_dir / "data", "sha256:contract")
    try:
        yield v
    finally:
        v.close()


def event(tag: str, case: str = "", borrower: str = "") -> EventDraft:
    return EventDraft(org="lender-a", method="Contract", purpose="", case_id=case, borrower_id=borrower,
                      decision="allow", code=Code.OK, rule=tag, time=NOW, trace_id="0" * 32)


def imported(vault: Any, *numbers: int, **kw: Any) -> None:
    cases = [parse_line(synth.jsonl([synth.case_line(n, **kw)]).strip(), jurisdictions=JURISDICTIONS) for n in numbers]

    def work(store: UnitOfWork) -> tuple[None, list[EventDraft]]:
        assert store.import_cases("lender-a", cases, NOW) == [ImportOutcome.STORED] * len(cases)
        return None, [event("import", c.case_id, c.borrower_id) for c in cases]

    vault.audit.run(work)


def test_an_imported_case_reads_back_typed_and_sealed_fields_open(vault: Any) -> None:
    imported(vault, 1, 2, borrower=7)
    reader = vault.reader()
    reader.refresh()
    case = reader.get_case("lender-a", "C-1")
    assert case is not None and case.borrower_id == "B-7" and case.stage == "reminder" and case.status == "open"
    assert reader.get_case("lender-b", "C-1") is None
    line = synth.case_line(1, borrower=7)
    loan = reader.loan_values(case)
    assert isinstance(loan, LoanRow) and loan.loan_id == line["loan"]["loan_id"]
    assert loan.amount_due == line["loan"]["amount_due"]
    assert loan.value("repayments") == line["loan"]["repayments"]
    values = reader.borrower_values(case, ["full_name", "phone", "contract_text", "emergency_contacts"])
    assert values["full_name"] == line["borrower"]["full_name"] and values["phone"] == line["borrower"]["phone"]
    assert values["contract_text"] == line["loan"]["contract_text"]
    assert json.loads(values["emergency_contacts"])[0]["phone"] == line["borrower"]["emergency_contacts"][0]["phone"]
    unseal = reader.unsealer(case, ["national_id", "no_such_field"])
    assert unseal.fields == ("national_id",) and unseal() == {"national_id": line["borrower"]["national_id"]}
    # Two cases of one borrower; the blind index finds both, for this lender only.
    found = reader.cases_by_index("lender-a", "national_id", line["borrower"]["national_id"])
    assert [c.case_id for c in found] == ["C-1", "C-2"]
    assert reader.cases_by_index("lender-b", "national_id", line["borrower"]["national_id"]) == []
    assert [c.case_id for c in reader.cases_of_lender("lender-a")] == ["C-1", "C-2"]


def _line(n: int, **changes: Any) -> Any:
    doc = synth.case_line(n, borrower=changes.pop("borrower", None))
    for key, value in changes.items():
        target, _, name = key.rpartition("__")
        (doc[target] if target else doc)[name] = value
    return parse_line(synth.jsonl([doc]).strip(), jurisdictions=JURISDICTIONS)


def test_import_cases_tells_each_outcome_and_a_later_case_sees_the_earlier_ones(vault: Any) -> None:
    imported(vault, 3, 6)
    vault.audit.run(lambda store: (store.erase_borrower("lender-a", "B-6", NOW), []))
    taken_loan = synth.case_line(3)["loan"]["loan_id"]
    batch = [
        _line(3),  # as imported before
        _line(3, stage="letter"),  # the same case with other values
        _line(4),  # new, with a new borrower
        _line(7, loan__loan_id=taken_loan),  # a loan another case holds
        _line(4),  # again, as just imported in this batch
        _line(4, stage="letter"),  # and changed
        _line(8, borrower=4, borrower__full_name="Joined Later"),  # joins the borrower made in this batch
        _line(9, borrower=6),  # an erased borrower
        _line(10, loan__loan_id=synth.case_line(4)["loan"]["loan_id"]),  # a loan taken in this batch
    ]

    def work(store: UnitOfWork) -> tuple[list[ImportOutcome], list[EventDraft]]:
        return store.import_cases("lender-a", batch, NOW), []

    outcomes = vault.audit.run(work)
    io = ImportOutcome
    assert outcomes == [io.SAME, io.OTHER, io.STORED, io.LOAN_EXISTS, io.SAME, io.OTHER, io.STORED, io.ERASED,
                        io.LOAN_EXISTS]
    # The vocabulary's members, not bare text that happens to equal them (and the text each stands for is unchanged).
    assert all(type(o) is ImportOutcome for o in outcomes)
    assert [o.value for o in outcomes] == ["same", "other", "", "loan_exists", "same", "other", "", "erased",
                                           "loan_exists"]
    reader = vault.reader()
    reader.refresh()
    assert reader.get_case("lender-a", "C-7") is None and reader.get_case("lender-a", "C-9") is None
    assert reader.get_case("lender-a", "C-10") is None
    first, joined = reader.get_case("lender-a", "C-4"), reader.get_case("lender-a", "C-8")
    assert first is not None and joined is not None and first.borrower_id == joined.borrower_id == "B-4"
    assert first.stage == "reminder"
    # One borrower, one data key: the later line's values are the borrower's, read through either case.
    assert reader.borrower_values(first, ["full_name"]) == {"full_name": "Joined Later"}
    assert reader.borrower_values(joined, ["full_name"]) == {"full_name": "Joined Later"}


def test_units_change_state_with_their_events_and_a_failing_unit_is_undone_alone(vault: Any) -> None:
    imported(vault, 5)
    size0 = vault.audit.head()[0]
    barrier = threading.Barrier(2)
    errors: list[str] = []

    def good(store: UnitOfWork) -> tuple[str, list[EventDraft]]:
        store.set_case_fields("lender-a", "C-5", {"stage": "letter", "disputed": True}, NOW)
        return "ok", [event("good", "C-5")]

    def bad(store: UnitOfWork) -> tuple[str, list[EventDraft]]:
        store.set_case_fields("lender-a", "C-5", {"cease_contact": True}, NOW)
        raise CustosError(Code.STAGE_NOT_ALLOWED)

    def run(work: Any) -> None:
        barrier.wait()
        try:
            vault.audit.run(work)
        except CustosError as err:
            errors.append(err.code)

    threads = [threading.Thread(target=run, args=(w,)) for w in (good, bad)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == ["STAGE_NOT_ALLOWED"]
    reader = vault.reader()
    reader.refresh()
    case = reader.get_case("lender-a", "C-5")
    assert case is not None and (case.stage, case.disputed, case.cease_contact) == ("letter", True, False)
    assert vault.audit.head()[0] == size0 + 1  # the good unit's event only


def test_a_lone_writing_unit_that_fails_is_undone_and_the_readers_of_its_batch_are_stored(vault: Any) -> None:
    """The embedded store runs a batch's only writing unit without a savepoint: its failure must still undo it."""
    from vault.groupcommit import Queued

    imported(vault, 11)
    size0 = vault.audit.head()[0]

    def bad(store: UnitOfWork) -> tuple[str, list[EventDraft]]:
        store.set_case_fields("lender-a", "C-11", {"cease_contact": True, "stage": "letter"}, NOW)
        raise CustosError(Code.STAGE_NOT_ALLOWED)

    with pytest.raises(CustosError) as err:  # alone in its batch
        vault.audit.run(bad)
    assert err.value.code == Code.STAGE_NOT_ALLOWED
    # In one batch with two units that only append events: the writer is undone, their events are stored.
    items: list[Queued[Any]] = [Queued(bad, writes=True),
                               *(Queued(lambda _s, i=i: (i, [event(f"read-{i}", "C-11")]), writes=False)
                                 for i in range(2))]
    for item in items:
        item.wake.acquire()
    vault.audit._pending, vault.audit._leading = list(items), True
    vault.audit._lead(items[0])
    assert getattr(items[0].error, "code", None) == Code.STAGE_NOT_ALLOWED
    assert [(item.result, item.error) for item in items[1:]] == [(0, None), (1, None)]
    assert vault.audit.head()[0] == size0 + 2  # the readers' two events, nothing of the writer
    reader = vault.reader()
    reader.refresh()
    case = reader.get_case("lender-a", "C-11")
    assert case is not None and (case.stage, case.cease_contact) == ("reminder", False)
    # The store is left with no transaction open: the next unit commits.
    vault.audit.run(lambda store: (store.set_case_fields("lender-a", "C-11", {"stage": "letter"}, NOW),
                                   [event("good", "C-11")]))
    reader.refresh()
    after = reader.get_case("lender-a", "C-11")
    assert after is not None and (after.stage, after.cease_contact) == ("letter", False)
    assert vault.audit.head()[0] == size0 + 3


def test_a_change_committed_through_the_log_is_seen_by_the_next_fresh_read(vault: Any) -> None:
    reader = vault.reader()
    reader.refresh()
    org = reader.get_org("agency-1")
    assert org is not None and not org.disabled
    vault.audit.run(lambda store: (store.set_org_disabled("agency-1"), [event("disable")]))
    reader.refresh()
    disabled = reader.get_org("agency-1")
    assert disabled is not None and disabled.disabled
    assert vault.reader().org_name("agency-1") == "Org agency-1"


def test_mandates_newest_first_and_recall(vault: Any) -> None:
    imported(vault, 6)
    until = date(2026, 12, 31)

    def grant(store: UnitOfWork) -> tuple[int, list[EventDraft]]:
        store.insert_mandate("lender-a", "C-6", "agency-1", "collection", "entrusted", until, NOW)
        store.insert_mandate("lender-a", "C-6", "agency-1", "litigation", "entrusted", until, NOW)
        return store.recall_mandates("lender-a", "C-6", "agency-1", NOW, "litigation"), [event("mandates", "C-6")]

    assert vault.audit.run(grant) == 1
    reader = vault.reader()
    reader.refresh()
    mandates = reader.mandates_for("agency-1", "C-6")
    assert [m.purpose for m in mandates] == ["litigation", "collection"]
    assert mandates[0].recalled_at == NOW and mandates[1].recalled_at is None and mandates[1].until == until
    assert [m.purpose for m in reader.mandates_of_org("agency-1")] == ["collection"]
    assert [(m.org_id, m.purpose) for m in reader.mandates_of_case("lender-a", "C-6")] == [
        ("agency-1", "litigation"), ("agency-1", "collection")]
    assert reader.mandates_of_case("lender-b", "C-6") == []


def test_a_notice_date_is_stored_on_the_loan_and_read_back(vault: Any) -> None:
    imported(vault, 8)
    reader = vault.reader()
    reader.refresh()
    case = reader.get_case("lender-a", "C-8")
    assert reader.loan_values(case).negative_notice_on is None
    before = reader.loan_values(case)
    vault.audit.run(lambda store: (store.set_negative_notice(case, "2026-11-02"), [event("notice", "C-8")]))
    reader.refresh()
    after = reader.loan_values(case)
    assert after.negative_notice_on == "2026-11-02"
    assert after == LoanRow(**{**before.__dict__, "negative_notice_on": "2026-11-02"})  # nothing else changed


def test_an_account_update_sets_loan_figures_ledger_and_borrower_fields_and_numbers_the_case(vault: Any) -> None:
    imported(vault, 9, 10)
    vault.audit.run(lambda store: ([store.insert_mandate("lender-a", c, "agency-1", "collection", "entrusted",
                                                         date(2099, 1, 1), NOW) for c in ("C-9", "C-10")], []))
    reader = vault.reader()
    reader.refresh()
    case = reader.get_case("lender-a", "C-9")
    before = reader.loan_values(case)
    high = reader.feed_high_water()
    ledger = (*before.repayments, Repayment("2026-11-20", "100.00", "agency-1", "P-1"))
    assert reader.cases_by_index("lender-a", "phone", "+8613900000099") == []

    def work(store: UnitOfWork) -> tuple[None, list[EventDraft]]:
        assert store.last_update("lender-a", "C-9") is None
        store.update_loan(case, {"outstanding": "10.00", "interest": "1.50", "fees": "0.25", "repayments": ledger},
                          NOW)
        store.correct_borrower(case, {"phone": "+8613900000099", "home_address": "Corrected 1"}, NOW)
        store.set_last_update("lender-a", "C-9", "2026-11-30T01:00:00Z", b"digest", NOW)
        return None, [event("update", "C-9")]

    vault.audit.run(work)
    reader.refresh()
    after = reader.loan_values(case)
    assert after == LoanRow(**{**before.__dict__, "outstanding": "10.00", "interest": "1.50", "fees": "0.25",
                               "repayments": ledger})
    assert after.value("repayments")[-1] == {"on": "2026-11-20", "amount": "100.00", "by": "agency-1",
                                             "payment_id": "P-1"}
    assert reader.borrower_values(case, ["phone", "home_address"]) == {"phone": "+8613900000099",
                                                                      "home_address": "Corrected 1"}
    assert [c.case_id for c in reader.cases_by_index("lender-a", "phone", "+8613900000099")] == ["C-9"]
    changed = {c for _, _, c in _feed_all(reader, high)}
    assert "C-9" in changed and "C-10" not in changed
    assert vault.audit.run(lambda store: (store.last_update("lender-a", "C-9"), [])) == ("2026-11-30T01:00:00Z",
                                                                                        b"digest")


def _feed_all(reader: Any, after: int) -> list[tuple[int, str, str]]:
    """Every case the feed numbered after `after`, whoever holds it (the contract's mandates: agency-1's)."""
    upto = reader.feed_high_water()
    out = []
    for purpose in ("collection", "litigation"):
        out += reader.feed_changes("agency-1", purpose, (after + 1, "", ""), upto, 1000)
    return out


def test_contacts_round_trip_typed(vault: Any) -> None:
    imported(vault, 7)

    def open_two(store: UnitOfWork) -> tuple[tuple[str, str], list[EventDraft]]:
        store.lock_borrower("lender-a", "B-7")
        store.lock_borrower("lender-a", "B-7")  # re-entrant within the unit
        target = store.bidx("lender-a", "phone", "+8613900000007")
        a = store.insert_contact("lender-a", "C-7", "B-7", "agency-1", "call", "borrower", target, NOW)
        b = store.insert_contact("lender-a", "C-7", "B-7", "agency-2", "sms", "borrower", target,
                                 "2026-11-30T03:00:00.000000Z")
        store.set_contact_result(a, "connected", NOW)
        return (a, b), [event("contacts", "C-7", "B-7")]

    a, b = vault.audit.run(open_two)

    def read(store: UnitOfWork) -> tuple[Any, list[EventDraft]]:
        return (store.contacts_since("lender-a", "B-7", "2026-11-30T02:30:00.000000Z"), store.get_contact(a),
                store.get_contact("K-none")), []

    since, first, missing = vault.audit.run(read, writes=False)
    assert [c.contact_id for c in since] == [b] and since[0].target == vault.reader().bidx("lender-a", "phone",
                                                                                          "+8613900000007")
    assert first is not None and (first.org_id, first.channel, first.result) == ("agency-1", "call", "connected")
    assert missing is None
    reader = vault.reader()
    case = reader.get_case("lender-a", "C-7")
    assert case is not None
    history = reader.contact_history(case)
    assert [h.contact_id for h in history] == [a, b]
    assert "target" not in history[0].history_entry()


def test_one_sequence_and_a_head_that_is_the_tree_of_the_stored_leaves(vault: Any) -> None:
    for i in range(5):
        vault.audit.append([event(f"e{i}", f"C-{i % 2}"), event(f"f{i}", borrower="B-9")])
    entries = list(vault.audit.reads().audit_query())
    assert [e.seq for e in entries] == list(range(len(entries)))
    rebuilt = Frontier()
    for e in entries:
        assert json.loads(e.leaf)["seq"] == e.seq
        rebuilt.append(leaf_hash(e.leaf))
    assert vault.audit.head() == (rebuilt.size, rebuilt.root())
    everything = [json.loads(e.leaf) for e in entries]
    for filters, key, value in ((("case_id", "C-1"),), "case_id", "C-1"), ((("borrower_id", "B-9"),), "borrower_id",
                                                                          "B-9"):
        got = [e.seq for e in vault.audit.reads().audit_query(**dict(filters))]
        assert got == [ev["seq"] for ev in everything if ev[key] == value] and got
    assert [e.seq for e in vault.audit.reads().audit_query(from_seq=3)][:1] == [3]


def test_a_closed_log_takes_no_more_work(vault: Any) -> None:
    assert vault.audit.close(1.0) is True
    with pytest.raises(CustosError) as info:
        vault.audit.append([event("late")])
    assert info.value.code == "SHUTTING_DOWN"


def test_events_decided_on_an_unchecked_view_are_stored_only_while_it_is_current(vault: Any) -> None:
    """`assume` + `append(fresh_as=...)`: a view older than the latest change gets StaleView and stores nothing."""
    from gateway.core.ports import StaleView

    imported(vault, 1)
    reader = vault.reader()
    reader.refresh()
    assert reader.get_case("lender-a", "C-1") is not None
    generation = reader._generation()  # the store's counter as it is now (what `assume` hands out at best)
    size = vault.audit.head()[0]
    vault.audit.append([event("current")], fresh_as=generation)
    assert vault.audit.head()[0] == size + 1

    def change(store: UnitOfWork) -> tuple[None, list[EventDraft]]:
        store.set_case_fields("lender-a", "C-1", {"stage": "field_visit"}, NOW)
        return None, [event("stage", "C-1")]

    vault.audit.run(change)
    with pytest.raises(StaleView):
        vault.audit.append([event("stale")], fresh_as=generation)
    assert vault.audit.head()[0] == size + 2  # the stale event is not in the log
    assert [json.loads(e.leaf)["rule"] for e in vault.audit.reads().audit_query(from_seq=size)] == ["current", "stage"]
    # The view the reader assumes now is either checked (None) or the current generation.
    view = reader.assume()
    assert view in (None, reader._generation())
    assert reader.get_case("lender-a", "C-1").stage == "field_visit"
    vault.audit.append([event("fresh")], fresh_as=view)
    assert vault.audit.head()[0] == size + 3


def test_many_mandates_granted_at_once_replace_the_same_purposes_live_ones(vault: Any) -> None:
    imported(vault, 9, 10)
    until, later = date(2026, 12, 31), date(2027, 3, 31)

    def first(store: UnitOfWork) -> tuple[None, list[EventDraft]]:
        store.insert_mandate("lender-a", "C-9", "agency-1", "collection", "entrusted", until, NOW)
        store.insert_mandate("lender-a", "C-9", "agency-1", "litigation", "entrusted", until, NOW)
        return None, [event("first", "C-9")]

    vault.audit.run(first)

    def bulk(store: UnitOfWork) -> tuple[dict[str, Any], list[EventDraft]]:
        found = store.cases_by_id("lender-a", ["C-9", "C-10", "C-404"])
        store.grant_mandates("lender-a", [("C-9", "agency-1", "collection", "provided", later, None),
                                          ("C-10", "agency-2", "collection", "entrusted", until, "0.18")], NOW)
        return found, [event("bulk", "C-9")]

    found = vault.audit.run(bulk)
    assert sorted(found) == ["C-10", "C-9"] and found["C-9"].borrower_id == "B-9"
    reader = vault.reader()
    reader.refresh()
    c9 = reader.mandates_for("agency-1", "C-9")
    live = [(m.purpose, m.label, m.until) for m in c9 if m.recalled_at is None]
    assert sorted(live) == [("collection", "provided", later), ("litigation", "entrusted", until)]
    assert [(m.purpose, m.recalled_at) for m in c9 if m.recalled_at is not None] == [("collection", NOW)]
    assert [(m.org_id, m.commission) for m in reader.mandates_of_case("lender-a", "C-10")] == [("agency-2", "0.18")]
    assert {m.commission for m in c9} == {None}  # no fee term given: none stored


# ------------------------------------------------------------ the AuditReader (AuditLog.reads)
def test_the_log_reads_are_the_audit_readers_and_not_the_case_readers(vault: Any) -> None:
    """The log's reads sit beside the log: every AuditReader method on `reads()`, none on a case reader."""
    from gateway.core.ports import AuditReader

    names = [n for n, v in vars(AuditReader).items() if callable(v) and not n.startswith("_")]
    assert {"audit_query", "audit_nodes", "cosigned", "latest_checkpoint"} <= set(names)
    reads = vault.audit.reads()
    assert all(callable(getattr(reads, n, None)) for n in names)
    assert not any(hasattr(vault.reader(), n) for n in names)


def test_the_log_reads_see_its_events_tiles_and_stored_tree_from_any_thread(vault: Any) -> None:
    from gateway.tlog import merkle
    from gateway.tlog.proofs import TILE, pyramid

    start = vault.audit.head()[0]
    for i in range(0, 2 * TILE + 10, 50):
        vault.audit.append([event(f"t{j}", f"C-{j % 3}") for j in range(i, min(i + 50, 2 * TILE + 10))])
    size, root = vault.audit.head()
    assert size == start + 2 * TILE + 10
    seen: dict[str, Any] = {}

    def read() -> None:  # another thread's reads: a backend may keep a connection per thread
        reads = vault.audit.reads()
        seen["leaves"] = reads.audit_leaf_hash_range(0, size)
        seen["events"] = [e.seq for e in reads.audit_query(from_seq=start)]

    t = threading.Thread(target=read)
    t.start()
    t.join()
    reads = vault.audit.reads()
    leaves = reads.audit_leaf_hash_range(0, size)
    assert seen["leaves"] == leaves and len(leaves) == size and merkle.root_of(leaves) == root
    assert seen["events"] == list(range(start, size))
    assert [leaf_hash(e.leaf) for e in reads.audit_query(from_seq=start)] == leaves[start:]
    assert reads.audit_leaf_hash_range(3, 5) == leaves[3:5] and reads.audit_leaf_hash_range(size, size + 9) == []
    # A level-1 entry per full tile of leaves, as far as they run; each full tile's interior, never the growing one's.
    full = size // TILE
    assert reads.audit_nodes(1, 0, full + 5) == [merkle.root_of(leaves[k * TILE:(k + 1) * TILE]) for k in range(full)]
    assert reads.audit_nodes(1, 1, 2) == [merkle.root_of(leaves[TILE:2 * TILE])]
    for k in range(full):
        assert reads.audit_tile_inner(0, k) == pyramid(leaves[k * TILE:(k + 1) * TILE])[1]
    assert reads.audit_tile_inner(0, full) is None


def test_checkpoints_and_cosignatures_written_by_units_are_read_through_the_log(vault: Any) -> None:
    reads = vault.audit.reads()
    assert reads.latest_checkpoint() is None and reads.published_checkpoint(1) is None and reads.cosigned() == []

    def publish(store: UnitOfWork) -> tuple[None, list[EventDraft]]:
        store.insert_checkpoint(3, "note 3\n", NOW)
        store.insert_checkpoint(7, "note 7\n", NOW)
        store.insert_checkpoint(7, "again\n", NOW)  # one size is stored once (replicas publish it alike)
        store.insert_cosignature("regulator-1", "reg-a", "reg-a+1+k1", 3, "note 3\n", "- reg-a sig1", NOW)
        store.insert_cosignature("regulator-2", "reg-b", "reg-b+1+k2", 3, "note 3\n", "- reg-b sig2", NOW)
        store.insert_cosignature("regulator-1", "reg-a", "reg-a+1+k1", 7, "note 7\n", "- reg-a sig3", NOW)
        return None, [event("published")]

    vault.audit.run(publish)
    assert reads.latest_checkpoint() == (7, "note 7\n")
    assert reads.published_checkpoint(3) == "note 3\n" and reads.published_checkpoint(7) == "note 7\n"
    assert reads.published_checkpoint(5) is None
    assert reads.cosigned() == [("reg-a", "reg-a+1+k1", 7, "note 7\n", "- reg-a sig3"),
                                ("reg-b", "reg-b+1+k2", 3, "note 3\n", "- reg-b sig2")]
