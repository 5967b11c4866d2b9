"""Agency performance (`lender performance`): per agency and law firm, figures over UTC days that a recount of the
audit log's events (a regulator's `audit query`) and of the confirmed payments in the ledger gives again."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from custos_client import CustosClientError

from gateway import cli, synth
from gateway.core.model import Repayment
from gateway.core.ports import UnitOfWork
from tests.conftest import Env

LOW, HIGH = "2026-12-01T00:00:00", "2026-12-03T00:00:00"  # --from 2026-12-01 --to 2026-12-02, UTC days


def append_payments(env: Env, lender: str, case_id: str, *entries: Repayment) -> None:
    """Ledger entries as a confirmed payment (or the lender's own repayment) leaves them, through the ports."""
    vault = env.gw.vault
    reader = vault.reader()
    reader.refresh()
    case = reader.get_case(lender, case_id)
    assert case is not None
    loan = reader.loan_values(case)
    assert loan is not None

    def work(store: UnitOfWork) -> tuple[None, list[Any]]:
        store.update_loan(case, {"repayments": (*loan.repayments, *entries)}, "2026-12-02T00:00:00.000000Z")
        return None, []

    vault.audit.run(work)


def refused(call: Any) -> str:
    with pytest.raises(CustosClientError) as info:
        call()
    return info.value.code


def scenario(env: Env) -> dict[str, str]:
    """Two agencies and a law firm working lender-a's cases on 2026-12-01 and -02, with activity before and after
    the range and another lender's placement; returns the codes of the refusals it provoked."""
    lender, a1, a2 = env.client("lender-a"), env.client("agency-1"), env.client("agency-2")
    # Before the range: C-1 placed with agency-1 (the fixture, 2026-11-30), one call.
    env.clock.current = datetime(2026, 11, 30, 3, 0, tzinfo=UTC)
    a1.record_outcome(a1.open_contact("C-1", "call").contact_id, "connected")
    # Day 1, 11:00 in Shanghai: placements, calls, outcomes.
    env.clock.current = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
    lender.assign("C-3", "agency-2", "collection", "2027-06-30")
    lender.assign("C-5", "agency-1", "collection", "2027-06-30")
    env.client("lender-b").assign("BC-1", "agency-1", "collection", "2027-06-30")  # another lender's: not counted
    a1.record_outcome(a1.open_contact("C-1", "call").contact_id, "promise_to_pay", "150.00", "2026-12-05")
    plan = a2.propose_plan("C-3", [("2026-12-02", "75.75")]).plan_id
    lender.accept_plan(plan)
    a2.propose_plan("C-3", [("2026-12-03", "1.00")])  # proposed, never accepted: a plan, not kept
    a1.record_outcome(a1.open_contact("C-5", "call").contact_id, "no_answer")
    for _ in range(3):
        a2.record_outcome(a2.open_contact("C-3", "call").contact_id, "connected")
    codes = {"cap": refused(lambda: a2.open_contact("C-3", "call"))}  # a 4th conversation in a day: the cap
    codes["mandate"] = refused(lambda: a2.open_contact("C-1", "call"))  # not its case
    env.clock.current = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)  # 23:00 in Shanghai
    codes["window"] = refused(lambda: a1.open_contact("C-5", "call"))
    # Day 2: escalation to counsel (a law firm placed), and the money.
    env.clock.current = datetime(2026, 12, 2, 3, 0, tzinfo=UTC)
    lender.escalate("C-1", "lawfirm-1")
    append_payments(env, "lender-a", "C-1", Repayment("2026-11-29", "20.00", "agency-1", "PAY-0"),  # before
                    Repayment("2026-12-01", "150.00", "agency-1", "PAY-1"))
    append_payments(env, "lender-a", "C-3", Repayment("2026-12-02", "75.50", "agency-2", "PAY-2"),
                    Repayment("2026-12-02", "0.25", "agency-2", "PAY-3"))
    append_payments(env, "lender-a", "C-5", Repayment("2026-12-02", "10.00"))  # the lender's own: nobody's
    # After the range.
    env.clock.current = datetime(2026, 12, 4, 3, 0, tzinfo=UTC)
    a1.record_outcome(a1.open_contact("C-5", "call").contact_id, "connected")
    return codes


def recount(events: list[dict[str, Any]], lender: str, org: str) -> dict[str, Any]:
    """The audit-log figures of `org` for `lender`, counted afresh from `audit query` output."""
    ranged = [e for e in events if LOW <= e.time < HIGH]
    mine = [e for e in ranged if e.org == org and e.data.get("lender") == lender]
    placed = [e for e in ranged if e.org == lender and e.decision == "allow"
              and (e.data["rule"].split(";")[0] == f"mandate.grant:{org}" or e.data["rule"].endswith(f";to={org}"))]
    outcomes = [e.data["rule"].split(":")[1].split(";")[0] for e in mine
                if e.method == "RecordOutcome" and e.decision == "allow"]
    return {"cases_placed": len(placed),
            "contact_attempts": sum(e.method == "OpenContact" and e.decision == "allow" for e in mine),
            "conversations": sum(r in ("connected", "promise_to_pay", "dispute") for r in outcomes),
            "promises": outcomes.count("promise_to_pay"),
            "plans": sum(e.data["rule"].startswith("plan.propose:") and e.decision == "allow" for e in mine),
            "refusals": dict(Counter(e.code for e in mine if e.decision == "deny"))}


def test_the_figures_per_agency_equal_a_recount_of_the_audit_log_and_the_ledger(seeded: Env) -> None:
    codes = scenario(seeded)
    doc = seeded.client("lender-a").performance("2026-12-01", "2026-12-02")
    assert (doc.from_, doc.to) == ("2026-12-01", "2026-12-02")
    figures = {a.org: a for a in doc.agencies}
    assert sorted(figures) == ["agency-1", "agency-2", "lawfirm-1"]  # no bureau, no lender, no other lender's
    events = seeded.events()
    for org, fig in figures.items():
        assert {k: getattr(fig, k) for k in ("cases_placed", "contact_attempts", "conversations", "promises", "plans",
                                    "refusals")} == recount(events, "lender-a", org), org
    # And what the scenario did, counted by hand.
    a1, a2, firm = figures["agency-1"], figures["agency-2"], figures["lawfirm-1"]
    assert (a1.kind, a1.cases_placed, a1.contact_attempts, a1.conversations, a1.promises) == \
        ("agency", 1, 2, 1, 1)
    assert a1.refusals == {codes["window"]: 1}
    assert (a2.cases_placed, a2.contact_attempts, a2.conversations, a2.promises) == (1, 3, 3, 0)
    assert a2.refusals == {"CONTACT_CAP_REACHED": 1} and codes["cap"] == "CONTACT_CAP_REACHED"
    # A refusal that names no lender (no mandate: the case's owner is not told to a stranger) is nobody's.
    stranger = [e for e in events if e.org == "agency-2" and e.code == codes["mandate"] == "NO_MANDATE"]
    assert stranger and all("lender" not in e.data for e in stranger)
    assert (firm.kind, firm.cases_placed, firm.contact_attempts, firm.refusals) == ("law_firm", 1, 0, {})
    # Recovered: the confirmed payments it collected, dated in range, per currency; recounted from the ledger.
    reader = seeded.gw.vault.reader()
    reader.refresh()
    for org, fig in figures.items():
        sums: dict[str, Decimal] = {}
        for case in reader.cases_of_lender("lender-a"):
            loan = reader.loan_values(case)
            for r in loan.repayments if loan else ():
                if r.by == org and "2026-12-01" <= r.on <= "2026-12-02":
                    sums[loan.currency] = sums.get(loan.currency, Decimal(0)) + Decimal(r.amount)
        assert fig.recovered == {c: f"{v:.2f}" for c, v in sums.items()}, org
    currency = synth.case_line(1, jurisdiction="CN")["loan"]["currency"]
    assert a1.recovered == {currency: "150.00"} and a2.recovered == {currency: "75.75"}
    assert firm.recovered == {}
    # Kept by the ledger: agency-1's promise of 150.00 by 12-05 (paid 12-01), agency-2's accepted plan (paid 12-02).
    assert (a1.promises_kept, a1.plans, a1.plans_kept) == (1, 0, 0)
    assert (a2.promises_kept, a2.plans, a2.plans_kept) == (0, 2, 1)
    # The read is audited, with counts only.
    last = [e for e in seeded.events(org="lender-a") if e.method == "Performance"][-1]
    assert (last.decision, last.data["rule"]) == ("allow", "performance:orgs=3")


def test_the_range_is_of_utc_days_inclusive_and_defaults_to_everything_through_today(seeded: Env) -> None:
    scenario(seeded)
    lender = seeded.client("lender-a")
    day1 = {a.org: a for a in lender.performance("2026-12-01", "2026-12-01").agencies}
    assert day1["agency-2"].recovered == {} and day1["agency-1"].recovered != {}
    assert "lawfirm-1" not in day1  # escalated on day 2
    everything = lender.performance()
    assert (everything.from_, everything.to) == ("", "2026-12-04")
    whole = {a.org: a for a in everything.agencies}
    # The fixture's placement (2026-11-30) and the calls before and after the range are in.
    assert (whole["agency-1"].cases_placed, whole["agency-1"].contact_attempts) == (2, 4)
    assert whole["agency-1"].conversations == 3
    events = seeded.events()
    lo_hi = (LOW, HIGH)
    globals()["LOW"], globals()["HIGH"] = "", "2026-12-05T00:00:00"
    try:
        for org, fig in whole.items():
            assert {k: getattr(fig, k) for k in ("cases_placed", "contact_attempts", "conversations", "promises", "plans",
                                        "refusals")} == recount(events, "lender-a", org), org
    finally:
        globals()["LOW"], globals()["HIGH"] = lo_hi
    assert lender.performance("2026-12-05", "2026-12-06").agencies == []


def test_bad_ranges_and_other_kinds_are_refused_with_a_stable_code(seeded: Env) -> None:
    lender = seeded.client("lender-a")
    assert refused(lambda: lender.performance("2026-12-02", "2026-12-01")) == "INVALID_DATE"
    assert refused(lambda: lender.performance("2026-13-01", "")) == "INVALID_DATE"
    assert refused(lambda: lender.performance("", "yesterday")) == "INVALID_DATE"
    assert refused(lambda: seeded.client("agency-1").performance()) == "WRONG_ORG_KIND"
    denials = [e for e in seeded.events(org="lender-a") if e.method == "Performance"]
    assert [e.code for e in denials] == ["INVALID_DATE"] * 3


def test_the_cli_prints_the_same_figures(seeded: Env, capsys: pytest.CaptureFixture[str]) -> None:
    scenario(seeded)
    argv = ["--gateway", seeded.addr, "--identity", str(seeded.identity("lender-a"))]
    capsys.readouterr()
    assert cli.main(["lender", "performance", "--from", "2026-12-01", "--to", "2026-12-02", "--json", *argv]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc == seeded.client("lender-a").performance("2026-12-01", "2026-12-02").to_dict()
    assert cli.main(["lender", "performance", "--from", "2026-12-01", "--to", "2026-12-02", *argv]) == 0
    out = capsys.readouterr().out
    assert "agency-2 (agency): placed 1, attempts 3, conversations 3" in out and "CONTACT_CAP_REACHED 1" in out


@pytest.mark.parametrize("result", ["stop_calls", "stop_texts", "refused", "has_attorney", "connected"])
def test_an_opt_out_is_a_conversation_a_no_answer_is_not(result: str) -> None:
    """Somebody who said "stop calling" was reached: the opt-outs count as conversations, as the conduct files'
    connected_results count them (issue 26)."""
    from gateway.core.rules import performance

    def outcome(r: str) -> dict[str, Any]:
        return {"time": "2026-12-01T01:00:00.000000Z", "org": "agency-1", "lender": "lender-a", "decision": "allow",
                "method": "RecordOutcome", "rule": f"contact.outcome:{r}"}

    t = performance.tally("lender-a", [outcome(result), outcome("no_answer")], "", "9999")["agency-1"]
    assert t.conversations == 1
