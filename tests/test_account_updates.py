"""Account updates from the lender (`lender update FILE.jsonl`, issue 24): the living account, on both backends."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from custos_client import Code, CustosClientError, PullEnd, PullRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.importer import LineError
from gateway.core.model import LoanRow
from gateway.core.updates import parse_update
from tests.conftest import Env
from tests.test_cli import Run, conn


def line(case: str = "C-1", as_of: str = "2026-11-29T12:00:00+08:00", **kw: Any) -> bytes:
    return json.dumps({"case_id": case, "as_of": as_of, **kw}, ensure_ascii=False).encode()


def update(env: Env, lines: list[bytes], org: str = "lender-a") -> dict[str, Any]:
    return env.client(org).update_lines(lines)


def loan(env: Env, case_id: str, lender: str = "lender-a") -> LoanRow:
    reader = env.gw.vault.reader()
    reader.refresh()
    case = reader.get_case(lender, case_id)
    assert case is not None
    found = reader.loan_values(case)
    assert found is not None
    return found


def servicing(env: Env, case_id: str) -> dict[str, str]:
    return env.client("lender-a").get_case(case_id, "servicing").fields


def update_events(env: Env, decision: str = "") -> list[dict[str, Any]]:
    return [e for e in env.events(org="lender-a") if e.method == "UpdateAccounts"
            and (not decision or e.decision == decision)]


def pull(env: Env, org: str, since: str = "") -> tuple[list[dict[str, Any]], str]:
    items = list(env.client(org).pull_cases("collection", since))
    assert isinstance(items[-1], PullEnd)
    return items[:-1], items[-1].cursor


# ------------------------------------------------------------------ parsing (pure)

_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
                     max_leaves=12)
_keys = st.sampled_from(["case_id", "as_of", "loan", "repayments", "status", "borrower", "outstanding", "amount",
                         "on", "phone", "emergency_contacts", "full_name", "date_of_birth", "x"])
_shaped = st.recursive(_json, lambda inner: st.dictionaries(_keys, inner, max_size=6), max_leaves=20)


@settings(max_examples=400, deadline=None)
@given(doc=_shaped)
def test_any_json_line_parses_or_gets_a_stable_code_never_anything_else(doc: Any) -> None:
    raw = json.dumps(doc).encode()
    try:
        parsed = parse_update(raw)
    except LineError as err:
        assert err.code in Code.__members__.values() and err.code != "INTERNAL"
        return
    assert parsed.loan or parsed.repayments or parsed.status or parsed.borrower


def test_a_line_in_another_spelling_of_the_same_content_has_the_same_canonical_text() -> None:
    a = parse_update(line("C-1", "2026-11-29T12:00:00+08:00", loan={"outstanding": "1.00", "fees": "2.00"}))
    b = parse_update(json.dumps({"loan": {"fees": "2.00", "outstanding": "1.00"}, "as_of": "2026-11-29T04:00:00Z",
                                 "case_id": "C-1"}).encode())
    assert a.canonical == b.canonical and a.as_of == b.as_of == "2026-11-29T04:00:00.000000Z"


# ------------------------------------------------------------------ applying


def test_figures_and_repayments_apply_and_one_event_names_the_changed_fields_only(seeded: Env) -> None:
    before = servicing(seeded, "C-1")
    result = update(seeded, [
        line("C-1", loan={"interest": "120.50", "fees": "35.00", "limitation_date": "2029-06-30"},
             repayments=[{"on": "2026-11-20", "amount": "1000.25"}, {"on": "2026-11-25", "amount": "15.00"}]),
        line("C-3", loan={"outstanding": "777.70", "amount_due": "77.77"},
             repayments=[{"on": "2026-11-21", "amount": "100.00"}]),
    ])
    assert result.to_dict() == {"updated": 2, "unchanged": 0, "rejected_total": 0, "rejected": [], "through_line": 2}

    # C-1: no stated balance: the ledger's arithmetic, to the cent, in decimal.
    after = servicing(seeded, "C-1")
    assert after["outstanding"] == f"{float(before['outstanding']) - 1015.25:.2f}" == "10899.75"
    assert after["amount_due"] == "3355.75"  # 4371.00 - 1015.25
    assert after["last_payment_on"] == "2026-11-25"
    assert json.loads(after["repayments"])[-2:] == [{"on": "2026-11-20", "amount": "1000.25"},
                                                    {"on": "2026-11-25", "amount": "15.00"}]
    row = loan(seeded, "C-1")
    assert (row.interest, row.fees, row.limitation_date) == ("120.50", "35.00", "2029-06-30")
    # C-3: the figures the lender states win over the arithmetic; the repayment is still in the ledger.
    row = loan(seeded, "C-3")
    assert (row.outstanding, row.amount_due, row.repayments[-1].amount) == ("777.70", "77.77", "100.00")

    allowed = update_events(seeded, "allow")
    assert [(e.case_id, e.data["rule"], sorted(e.data["fields"])) for e in allowed] == [
        ("C-1", "account.update", ["amount_due", "fees", "interest", "last_payment_on", "limitation_date",
                                   "outstanding", "repayments"]),
        ("C-3", "account.update", ["amount_due", "last_payment_on", "outstanding", "repayments"]),
    ]
    for e in allowed:
        assert e.data["lender"] == "lender-a" and e.data["borrower_id"] and e.code == "OK"
        assert "1000.25" not in json.dumps(e.data) and "777.70" not in json.dumps(e.data)  # names, never values


def test_two_lines_for_one_case_in_one_batch_each_see_the_one_before(seeded: Env) -> None:
    start = loan(seeded, "C-4").outstanding
    assert start is not None
    result = update(seeded, [line("C-4", "2026-11-29T01:00:00Z", repayments=[{"on": "2026-11-28", "amount": "1.10"}]),
                             line("C-4", "2026-11-29T02:00:00Z", repayments=[{"on": "2026-11-29", "amount": "2.20"}])])
    assert result.updated == 2
    row = loan(seeded, "C-4")
    assert row.outstanding == f"{float(start) - 3.30:.2f}" and [r.amount for r in row.repayments][-2:] == ["1.10",
                                                                                                         "2.20"]


# ------------------------------------------------------------------ order and idempotence


def test_an_older_update_or_the_same_time_with_other_content_is_stale(seeded: Env) -> None:
    first = update(seeded, [line("C-3", "2026-11-29T10:00:00+08:00", loan={"outstanding": "500.00"})])
    assert first.updated == 1
    result = update(seeded, [
        line("C-3", "2026-11-29T01:59:59Z", loan={"outstanding": "400.00"}),      # one second older (UTC)
        line("C-3", "2026-11-29T02:00:00Z", loan={"outstanding": "300.00"}),      # the same instant, other content
        line("C-3", "2026-11-29T10:00:00+08:00", loan={"outstanding": "500.00"}),  # the same line: unchanged
        line("C-3", "2026-11-29T10:00:01+08:00", loan={"amount_due": "50.00"}),   # newer: applied
        line("C-3", "2026-11-29T10:00:00+08:00", loan={"outstanding": "500.00"}),  # now older than the last
    ])
    assert result.updated == 1 and result.unchanged == 1
    codes = {r.line: (r.code, r.reason) for r in result.rejected}
    assert {n: c for n, (c, _) in codes.items()} == {1: "STALE_UPDATE", 2: "STALE_UPDATE", 5: "STALE_UPDATE"}
    assert "older" in codes[1][1] and "other content" in codes[2][1]
    row = loan(seeded, "C-3")
    assert (row.outstanding, row.amount_due) == ("500.00", "50.00")
    denials = update_events(seeded, "deny")
    assert [e.code for e in denials] == ["STALE_UPDATE"] * 3 and all(e.case_id == "C-3" for e in denials)


def test_the_same_file_twice_changes_nothing_the_second_time(seeded: Env, tmp_path: Path) -> None:
    lines = [line("C-1", repayments=[{"on": "2026-11-20", "amount": "10.00"}], status="open",
                  borrower={"email": "corrected@example.invalid"}),
             line("C-3", loan={"outstanding": "900.00"})]
    assert update(seeded, lines).updated == 2
    _, cursor = pull(seeded, "agency-1")
    ledger, c3 = loan(seeded, "C-1").repayments, loan(seeded, "C-3")
    again = update(seeded, lines)
    assert again.to_dict() == {"updated": 0, "unchanged": 2, "rejected_total": 0, "rejected": [], "through_line": 2}
    assert loan(seeded, "C-1").repayments == ledger and loan(seeded, "C-3") == c3  # no repayment twice
    assert pull(seeded, "agency-1", cursor)[0] == []  # nothing changed, so nothing to pull again
    already = [e for e in update_events(seeded, "allow") if e.data["rule"] == "account.update.already"]
    assert sorted(e.case_id for e in already) == ["C-1", "C-3"] and all(not e.data["fields"] for e in already)


def test_a_newer_update_that_states_what_the_account_holds_is_unchanged(seeded: Env) -> None:
    current = loan(seeded, "C-5")
    result = update(seeded, [line("C-5", loan={"outstanding": str(current.outstanding)})])
    assert result.updated == 0 and result.unchanged == 1
    assert update_events(seeded, "allow")[-1].data["rule"] == "account.update.same"
    # ... and it is the last one applied: an older line is stale after it.
    stale = update(seeded, [line("C-5", "2026-11-28T00:00:00Z", loan={"outstanding": "1.00"})])
    assert [r.code for r in stale.rejected] == ["STALE_UPDATE"]


# ------------------------------------------------------------------ bad lines


def test_bad_lines_are_rejected_by_line_number_with_a_stable_code_and_the_good_ones_applied(seeded: Env) -> None:
    lines = [
        line("C-3", loan={"outstanding": "100.00"}),                      # 1 good
        line("C-4", loan={"outstanding": "200.00"})[:-7],                 # 2 truncated JSON
        line("C-4", loan={"outstanding": 200.0}),                         # 3 a number, not a decimal string
        line("C-4", status="reopened"),                                   # 4 unknown status
        line("C-4", loan={"outstanding": "1.00"}, colour="blue"),         # 5 unknown key at the top
        line("C-4", loan={"balance": "1.00"}),                            # 6 unknown loan key
        line("C-4", borrower={"full_name": "名" * 5000}),                  # 7 a huge string
        line("BC-1", loan={"outstanding": "1.00"}),                       # 8 another lender's case
        line("C-404", loan={"outstanding": "1.00"}),                      # 9 no such case
        line("C-4"),                                                      # 10 nothing to update
        line("C-4", "2026-11-29 12:00", loan={"outstanding": "1.00"}),    # 11 not RFC 3339 with an offset
        line("C-4", "2026-11-29T12:00:00", loan={"outstanding": "1.00"}),  # 12 no offset
        line("bad id!", loan={"outstanding": "1.00"}),                    # 13
        line("C-4", loan={"outstanding": "-1.00"}),                       # 14 a negative figure
        line("C-4", repayments=[{"on": "2026-02-30", "amount": "1.00"}]),  # 15 not a calendar date
        line("C-4", borrower={"phone": "13900000000"}),                   # 16 not E.164
        b"",                                                              # blank: skipped
        line("C-5", loan={"amount_due": "10.00"}),                        # 18 good
    ]
    before = loan(seeded, "C-4")
    result = update(seeded, lines)
    assert result.updated == 2 and result.through_line == len(lines)
    codes = {r.line: r.code for r in result.rejected}
    assert codes == {2: "IMPORT_INVALID_JSON", 3: "IMPORT_INVALID_FIELD", 4: "UNKNOWN_STATUS",
                     5: "IMPORT_INVALID_FIELD", 6: "IMPORT_INVALID_FIELD", 7: "IMPORT_INVALID_FIELD",
                     8: "CASE_NOT_FOUND", 9: "CASE_NOT_FOUND", 10: "IMPORT_INVALID_FIELD", 11: "INVALID_TIME",
                     12: "INVALID_TIME", 13: "INVALID_CASE_ID", 14: "IMPORT_INVALID_FIELD",
                     15: "IMPORT_INVALID_FIELD", 16: "IMPORT_INVALID_FIELD"}
    reasons = {r.line: r.reason for r in result.rejected}
    assert "not a number" in reasons[3] and "longer than" in reasons[7] and "nothing to update" in reasons[10]
    assert reasons[8] == reasons[9]  # another lender's case is answered exactly as a missing one
    for r in result.rejected:  # reasons never quote the line
        assert "blue" not in r.reason and "名" not in r.reason and "C-4" not in r.reason
    assert loan(seeded, "C-4") == before
    assert (loan(seeded, "C-3").outstanding, loan(seeded, "C-5").amount_due) == ("100.00", "10.00")
    reader = seeded.gw.vault.reader()
    reader.refresh()
    assert reader.loan_values(reader.get_case("lender-b", "BC-1")).outstanding != "1.00"  # type: ignore[arg-type,union-attr]
    denials = update_events(seeded, "deny")
    assert sorted(e.code for e in denials) == sorted(codes.values())
    assert "名" not in json.dumps([e.data for e in denials])


def test_an_erased_borrower_is_refused_and_a_pending_erasure_refuses_corrections(seeded: Env) -> None:
    lender = seeded.client("lender-a")
    lender.erase("B-3")
    lender.erase("B-4", grace_days=30)
    result = update(seeded, [line("C-3", loan={"outstanding": "1.00"}),
                             line("C-4", borrower={"email": "new@example.invalid"}),
                             line("C-4", "2026-11-29T13:00:00+08:00", loan={"outstanding": "1.00"})])
    assert {r.line: r.code for r in result.rejected} == {1: "BORROWER_ERASED", 2: "ERASURE_PENDING"}
    assert result.updated == 1  # the pending erasure's loan figures still move (its final balance, for the bureau)


def test_only_a_lender_may_update(seeded: Env) -> None:
    with pytest.raises(CustosClientError) as err:
        update(seeded, [line("C-1", loan={"outstanding": "1.00"})], org="agency-1")
    assert err.value.code == "WRONG_ORG_KIND"


# ------------------------------------------------------------------ what the next reads see


def test_a_borrower_correction_is_seen_by_the_next_read_and_the_agencys_mask(seeded: Env) -> None:
    agency = seeded.client("agency-1")
    assert agency.get_case("C-1", "collection").fields["phone"] == "+86139****0001"
    result = update(seeded, [line("C-1", borrower={"phone": "+8613812345678", "full_name": "合成更正名",
                                                   "emergency_contacts": [{"name": "Contact Fixed",
                                                                           "phone": "+8613700000009"}]})])
    assert result.updated == 1
    fields = servicing(seeded, "C-1")
    assert fields["phone"] == "+8613812345678" and fields["full_name"] == "合成更正名"
    assert json.loads(fields["emergency_contacts"]) == [{"name": "Contact Fixed", "relation": None,
                                                         "phone": "+8613700000009"}]
    assert agency.get_case("C-1", "collection").fields["phone"] == "+86138****5678"
    # The borrower's other case (C-2, the same borrower) reads the corrected value too, and the blind index follows.
    assert servicing(seeded, "C-2")["phone"] == "+8613812345678"
    assert sorted(c.case_id for c in seeded.client("lender-a").list_cases(phone="+8613812345678")) == ["C-1", "C-2"]
    assert seeded.client("lender-a").list_cases(phone="+8613900000001") == []
    event = update_events(seeded, "allow")[-1]
    assert sorted(event.data["fields"]) == ["emergency_contacts", "full_name", "phone"]
    assert "5678" not in json.dumps(event.data)


def test_a_status_settle_ends_the_agencys_access_and_reopening_restores_it(seeded: Env) -> None:
    agency = seeded.client("agency-1")
    assert update(seeded, [line("C-1", status="settled")]).updated == 1
    with pytest.raises(CustosClientError) as err:
        agency.get_case("C-1", "collection")
    assert err.value.code == "CASE_CLOSED"
    reader = seeded.gw.vault.reader()
    reader.refresh()
    assert reader.get_case("lender-a", "C-1").closed_at is not None  # type: ignore[union-attr]
    assert update(seeded, [line("C-1", "2026-11-29T13:00:00+08:00", status="open")]).updated == 1
    assert agency.get_case("C-1", "collection").case_id == "C-1"
    reader.refresh()
    assert reader.get_case("lender-a", "C-1").closed_at is None  # type: ignore[union-attr]


def test_a_case_paid_in_full_settles(seeded: Env) -> None:
    owed = loan(seeded, "C-1").outstanding
    assert owed is not None
    result = update(seeded, [line("C-1", repayments=[{"on": "2026-11-28", "amount": owed}])])
    assert result.updated == 1
    assert (loan(seeded, "C-1").outstanding, servicing(seeded, "C-1")["status"]) == ("0.00", "settled")
    assert sorted(update_events(seeded, "allow")[-1].data["fields"]) == ["amount_due", "last_payment_on", "outstanding",
                                                                      "repayments", "status"]
    with pytest.raises(CustosClientError) as err:
        seeded.client("agency-1").get_case("C-1", "collection")
    assert err.value.code == "CASE_CLOSED"


def test_a_pull_after_an_update_carries_exactly_the_changed_cases(seeded: Env) -> None:
    lender = seeded.client("lender-a")
    for case in ("C-3", "C-4", "C-5", "C-6"):
        lender.assign(case, "agency-1", "collection", "2026-12-31")
    _, cursor = pull(seeded, "agency-1")
    result = update(seeded, [
        line("C-3", loan={"amount_due": "12.34"}),
        line("C-5", borrower={"phone": "+8613811112222"}),
        line("C-4", loan={"amount_due": "bad"}),                                   # rejected: no change
        line("C-6", loan={"outstanding": str(loan(seeded, "C-6").outstanding)}),   # changes nothing
    ])
    assert result.updated == 2 and result.unchanged == 1
    items, _ = pull(seeded, "agency-1", cursor)
    changed = {i.record.case_id: i.record for i in items if isinstance(i, PullRecord)}
    assert sorted(changed) == ["C-3", "C-5"] and not [i for i in items if not isinstance(i, PullRecord)]
    assert changed["C-3"].fields["amount_due"] == "12.34"
    assert changed["C-5"].fields["phone"] == "+86138****2222"


# ------------------------------------------------------------------ the command


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    return Run(capsys)


def test_cli_lender_update_prints_the_contracts_keys(seeded: Env, run: Run, tmp_path: Path) -> None:
    path = tmp_path / "updates.jsonl"
    path.write_bytes(b"\n".join([line("C-3", loan={"outstanding": "100.00"}), b"{", line("C-404", status="closed")])
                     + b"\n")
    rc, doc, _ = run.json("lender", "update", str(path), *conn(seeded, "lender-a"))
    assert rc == 0
    assert doc == {"updated": 1, "unchanged": 0, "rejected": [
        {"line": 2, "code": "IMPORT_INVALID_JSON", "reason": "not valid JSON"},
        {"line": 3, "code": "CASE_NOT_FOUND", "reason": "case_id: no such case"}]}
    rc, doc, _ = run.json("lender", "update", str(path), *conn(seeded, "lender-a"))
    assert rc == 0 and (doc["updated"], doc["unchanged"]) == (0, 1)
    rc, out, _ = run("lender", "update", str(path), *conn(seeded, "lender-a"))
    assert rc == 0 and out.splitlines()[0] == "updated 0, 1 unchanged"
    rc, doc, _ = run.json("lender", "update", str(tmp_path / "missing.jsonl"), *conn(seeded, "lender-a"))
    assert rc != 0 and doc["error"]["code"] == "INVALID_ARGUMENT"
