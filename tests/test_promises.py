"""Promises to pay end to end: terms on the outcome, kept or broken by the ledger at the date boundary, shown in
the contact history to the lender and to counsel, audited without the amount."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from custos_client import CustosClientError

from gateway import cli
from gateway.core.model import Repayment, rfc3339
from gateway.core.rules.ledger import apply_payment
from tests.conftest import Env

# 2026-11-30 02:00Z is 10:00 in Shanghai (C-1 is CN): inside the window; the borrower's today is 2026-11-30.


def refused(call: Any) -> CustosClientError:
    with pytest.raises(CustosClientError) as info:
        call()
    return info.value


def pay(env: Env, case_id: str, on: str, amount: str, lender: str = "lender-a") -> None:
    """A confirmed payment as the ledger records it: appended through the ports' update_loan."""
    def work(repo: Any) -> tuple[None, list[Any]]:
        case = repo.get_case(lender, case_id)
        applied = apply_payment(repo.loan_values(case), Repayment(on, amount, "agency-1", f"P-{on}"))
        repo.update_loan(case, applied.values, rfc3339(env.clock.now()))
        return None, []

    env.gw.vault.audit.run(work)


def promise(env: Env, amount: str = "100.00", on: str = "2026-12-05") -> str:
    contact = env.client("agency-1").open_contact("C-1", "call")
    info = env.client("agency-1").record_outcome(contact.contact_id, "promise_to_pay", amount, on)
    assert (info.promise_amount, info.promise_on) == (amount, on)
    return str(contact.contact_id)


def history(env: Env, org: str = "lender-a", purpose: str = "servicing") -> list[dict[str, Any]]:
    return list(json.loads(env.client(org).get_case("C-1", purpose).fields["contact_history"]))


def state_of(env: Env, contact_id: str) -> str:
    return str(next(e for e in history(env) if e["contact_id"] == contact_id)["promise_state"])


def at_shanghai(env: Env, y: int, m: int, d: int, hh: int, mm: int) -> None:
    """Move the clock to this wall time in Shanghai (UTC+8, no DST)."""
    env.clock.current = datetime(y, m, d, hh, mm, tzinfo=ZoneInfo("Asia/Shanghai")).astimezone(UTC)


def test_a_promise_paid_on_its_date_is_kept(seeded: Env) -> None:
    contact = promise(seeded)
    assert state_of(seeded, contact) == "pending"
    at_shanghai(seeded, 2026, 12, 5, 23, 59)
    pay(seeded, "C-1", "2026-12-05", "100.00")  # on the day counts
    assert state_of(seeded, contact) == "kept"
    at_shanghai(seeded, 2026, 12, 20, 10, 0)
    assert state_of(seeded, contact) == "kept"


def test_a_promise_unpaid_by_its_date_is_broken_the_next_local_day(seeded: Env) -> None:
    contact = promise(seeded)
    pay(seeded, "C-1", "2026-12-01", "40.00")  # part of it: not enough
    at_shanghai(seeded, 2026, 12, 5, 23, 59)
    assert state_of(seeded, contact) == "pending"
    at_shanghai(seeded, 2026, 12, 6, 0, 0)  # 2026-12-05 16:00Z: already the 6th in Shanghai
    assert seeded.clock.now() == datetime(2026, 12, 5, 16, 0, tzinfo=UTC)
    assert state_of(seeded, contact) == "broken"
    pay(seeded, "C-1", "2026-12-06", "60.00")  # too late for this promise
    assert state_of(seeded, contact) == "broken"


def test_a_payment_before_the_promise_does_not_keep_it(seeded: Env) -> None:
    pay(seeded, "C-1", "2026-11-29", "500.00")  # before the promise was made
    contact = promise(seeded)
    at_shanghai(seeded, 2026, 12, 6, 9, 0)
    assert state_of(seeded, contact) == "broken"


def test_counsel_sees_the_promise_in_the_contact_history(escalated: Env) -> None:
    entries = history(escalated, "lawfirm-1", "litigation")
    assert [(e["result"], e["promise_amount"], e["promise_on"], e["promise_state"]) for e in entries] == [
        ("promise_to_pay", "100.00", "2026-12-05", "pending")]


def test_promise_terms_are_required_with_it_and_refused_without_it(seeded: Env) -> None:
    agency = seeded.client("agency-1")
    contact = agency.open_contact("C-1", "call").contact_id
    cases = [
        (lambda: agency.record_outcome(contact, "promise_to_pay"), "PROMISE_TERMS_REQUIRED"),
        (lambda: agency.record_outcome(contact, "promise_to_pay", "100.00"), "PROMISE_TERMS_REQUIRED"),
        (lambda: agency.record_outcome(contact, "connected", "100.00", "2026-12-05"), "PROMISE_TERMS_NOT_ALLOWED"),
        (lambda: agency.record_outcome(contact, "promise_to_pay", "-5", "2026-12-05"), "INVALID_AMOUNT"),
        (lambda: agency.record_outcome(contact, "promise_to_pay", "0", "2026-12-05"), "INVALID_AMOUNT"),
        (lambda: agency.record_outcome(contact, "promise_to_pay", "1e3", "2026-12-05"), "INVALID_AMOUNT"),
        (lambda: agency.record_outcome(contact, "promise_to_pay", "10", "2026-13-05"), "INVALID_DATE"),
        (lambda: agency.record_outcome(contact, "promise_to_pay", "10", "2026-11-29"), "PROMISE_DATE_OUT_OF_RANGE"),
        (lambda: agency.record_outcome(contact, "promise_to_pay", "10", "2027-03-01"), "PROMISE_DATE_OUT_OF_RANGE"),
    ]
    for call, code in cases:
        err = refused(call)
        assert err.code == code and err.status == "INVALID_ARGUMENT", (code, err.code)
    denied = [e.code for e in seeded.events(org="agency-1") if e.method == "RecordOutcome"]
    assert denied == [code for _, code in cases]
    # Today and the last day of the bound (90 days) are both allowed; nothing was stored by the refusals.
    assert agency.record_outcome(contact, "promise_to_pay", "10", "2027-02-28").promise_on == "2027-02-28"
    other = agency.open_contact("C-1", "call").contact_id
    assert agency.record_outcome(other, "promise_to_pay", "10", "2026-11-30").result == "promise_to_pay"


def test_the_promise_is_audited_by_its_rule_never_its_amount(seeded: Env) -> None:
    promise(seeded, "987.65")
    events = [e for e in seeded.events(case_id="C-1") if e.method == "RecordOutcome"]
    assert [(e.decision, e.data["rule"], e.data["lender"], e.data["borrower_id"]) for e in events] == [
        ("allow", "contact.outcome:promise_to_pay", "lender-a", "B-1")]
    assert "987.65" not in json.dumps([e.data for e in seeded.events()])


def test_contact_outcome_cli_takes_the_promise_terms(seeded: Env, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["--gateway", seeded.addr, "--identity", str(seeded.identity("agency-1")), "--json"]
    contact = seeded.client("agency-1").open_contact("C-1", "call").contact_id
    assert cli.main(["contact", "outcome", contact, "--result", "promise_to_pay", *base]) != 0
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "PROMISE_TERMS_REQUIRED"
    assert cli.main(["contact", "outcome", contact, "--result", "promise_to_pay", "--amount", "150.00",
                     "--on", "2026-12-10", *base]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["result"], out["promise_amount"], out["promise_on"]) == ("promise_to_pay", "150.00", "2026-12-10")
