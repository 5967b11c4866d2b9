"""Repayment plans end to end: proposed by a mandated party, accepted or rejected by the owning lender, and, once
accepted, setting the released amount_due instalment by instalment until kept or broken (grace from policies)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from custos_client import CustosClientError, PullRecord

from gateway import cli
from gateway.core.errors import PolicyError
from gateway.core.model import EventDraft, Repayment, rfc3339
from gateway.core.ports import UnitOfWork
from gateway.core.rules.conduct_file import load_conduct_rules
from gateway.core.rules.ledger import apply_payment
from policies import BUNDLE_DIR
from tests.conftest import Env
from tests.test_ports import NOW, event, imported
from vault.backends import open_vault

# The clock starts 2026-11-30 10:00 in Shanghai (C-1 is CN, mandated to agency-1); grace_days = 5 (cn.toml).
THREE = [("2026-12-10", "100.00"), ("2027-01-10", "100.00"), ("2027-02-10", "100.00")]


@pytest.fixture
def planned(seeded: Env) -> Env:
    """agency-1's mandate on C-1 runs through 2027, so the plan can be followed for months."""
    seeded.client("lender-a").assign("C-1", "agency-1", "collection", "2027-12-31")
    return seeded


def refused(call: Any) -> CustosClientError:
    with pytest.raises(CustosClientError) as info:
        call()
    return info.value


def pay(env: Env, on: str, amount: str) -> None:
    """A confirmed payment as the ledger records it: appended through the ports' update_loan."""
    def work(repo: Any) -> tuple[None, list[Any]]:
        case = repo.get_case("lender-a", "C-1")
        applied = apply_payment(repo.loan_values(case), Repayment(on, amount, "agency-1", f"P-{on}"))
        repo.update_loan(case, applied.values, rfc3339(env.clock.now()))
        return None, []

    env.gw.vault.audit.run(work)


def at_shanghai(env: Env, y: int, m: int, d: int, hh: int = 10) -> None:
    env.clock.current = datetime(y, m, d, hh, 0, tzinfo=ZoneInfo("Asia/Shanghai")).astimezone(UTC)


def due(env: Env, org: str = "agency-1", purpose: str = "collection") -> str:
    return str(env.client(org).get_case("C-1", purpose).fields["amount_due"])


def shown(env: Env, org: str = "lender-a") -> dict[str, dict[str, Any]]:
    return {p.plan_id: p for p in env.client(org).show_plans("C-1").plans}


def loan_due(env: Env) -> str:
    def work(repo: Any) -> tuple[str, list[Any]]:
        return str(repo.loan_values(repo.get_case("lender-a", "C-1")).amount_due), []

    return str(env.gw.vault.audit.run(work))


def test_an_accepted_plan_sets_amount_due_is_kept_then_broken_past_grace(planned: Env) -> None:
    own = due(planned)
    assert own == loan_due(planned)
    made = planned.client("agency-1").propose_plan("C-1", THREE)
    assert made.status == "proposed" and made.plan_id.startswith("PL-")
    assert due(planned) == own  # a proposal changes nothing
    accepted = planned.client("lender-a").accept_plan(made.plan_id)
    assert accepted.status == "accepted"
    # Active: what is due now is the next instalment (nothing in arrears yet).
    assert due(planned) == "100.00"
    view = shown(planned, "agency-1")[made.plan_id]
    assert view.status == "active" and view.amount_due == "100.00"
    assert [i.state for i in view.instalments] == ["pending", "pending", "pending"]
    # The first instalment paid early: kept; nothing due until the second comes round.
    at_shanghai(planned, 2026, 12, 8)
    pay(planned, "2026-12-08", "100.00")
    assert due(planned) == "0.00"
    at_shanghai(planned, 2026, 12, 20)
    assert due(planned) == "100.00"  # the second instalment is the current one
    assert [i.state for i in shown(planned)[made.plan_id].instalments] == ["kept", "pending", "pending"]
    # The second unpaid: still pending through the grace (its date + 5 days), broken the day after.
    at_shanghai(planned, 2027, 1, 15, 23)
    assert shown(planned)[made.plan_id].status == "active"
    assert due(planned) == "200.00"  # the missed one and the current one
    at_shanghai(planned, 2027, 1, 16, 0)
    view = shown(planned)[made.plan_id]
    assert view.status == "broken" and view.amount_due == ""
    assert [i.state for i in view.instalments] == ["kept", "broken", "pending"]
    assert due(planned) == loan_due(planned)  # broken: the loan's own figure again


def test_a_plan_paid_in_full_is_kept_and_amount_due_is_the_loans_again(planned: Env) -> None:
    made = planned.client("agency-1").propose_plan("C-1", [("2026-12-10", "50.00"), ("2026-12-20", "50.00")])
    planned.client("lender-a").accept_plan(made.plan_id)
    pay(planned, "2026-12-01", "60.00")
    assert due(planned) == "0.00"
    pay(planned, "2026-12-24", "40.00")  # the second instalment late, inside the grace
    at_shanghai(planned, 2026, 12, 26)
    view = shown(planned)[made.plan_id]
    assert (view.status, view.paid) == ("kept", "100.00")
    assert due(planned) == loan_due(planned)


def test_the_next_pull_carries_the_accepted_plan(planned: Env) -> None:
    items = list(planned.client("agency-1").pull_cases("collection"))
    cursor = items[-1].cursor
    made = planned.client("agency-1").propose_plan("C-1", THREE)
    planned.client("lender-a").reject_plan(made.plan_id, "too slow")
    rest = list(planned.client("agency-1").pull_cases("collection", cursor))
    assert [i for i in rest if isinstance(i, PullRecord)] == []  # a proposal and a rejection change nothing released
    made = planned.client("agency-1").propose_plan("C-1", THREE)
    planned.client("lender-a").accept_plan(made.plan_id)
    rest = list(planned.client("agency-1").pull_cases("collection", rest[-1].cursor))
    records = [i.record for i in rest if isinstance(i, PullRecord)]
    assert [(r.case_id, r.fields["amount_due"]) for r in records] == [("C-1", "100.00")]


def test_reject_changes_nothing_and_its_reason_stays_sealed_and_the_lenders(planned: Env) -> None:
    own = due(planned)
    made = planned.client("agency-1").propose_plan("C-1", THREE)
    reason = "Mr Synth said he cannot pay in December"
    rejected = planned.client("lender-a").reject_plan(made.plan_id, reason)
    assert rejected.status == "rejected" and rejected.decided_at
    assert due(planned) == own
    assert shown(planned)[made.plan_id].reason == reason
    assert shown(planned, "agency-1")[made.plan_id].reason == ""
    assert shown(planned, "agency-1")[made.plan_id].status == "rejected"

    def stored(repo: Any) -> tuple[bytes | None, list[Any]]:
        return repo.get_plan(made.plan_id).sealed_reason, []

    sealed = planned.gw.vault.audit.run(stored)
    assert sealed and reason.encode() not in sealed and b"December" not in sealed
    assert "December" not in json.dumps([e.data for e in planned.events()])
    for call in (lambda: planned.client("lender-a").reject_plan(made.plan_id, "again"),
                 lambda: planned.client("lender-a").accept_plan(made.plan_id)):
        assert refused(call).code == "PLAN_ALREADY_DECIDED"


def test_a_rejection_needs_a_reason(planned: Env) -> None:
    made = planned.client("agency-1").propose_plan("C-1", THREE)
    for reason in ("", "   ", "x" * 501):
        assert refused(lambda r=reason: planned.client("lender-a").reject_plan(made.plan_id, r)).code == \
            "INVALID_REASON"
    assert planned.client("lender-a").reject_plan(made.plan_id, "x" * 500).status == "rejected"


def test_propose_without_a_live_mandate_or_of_the_wrong_kind_is_refused(planned: Env) -> None:
    cases = [("agency-2", "C-1", "NO_MANDATE"), ("agency-1", "C-3", "NO_MANDATE"),
             ("lender-a", "C-1", "WRONG_ORG_KIND"), ("bureau-1", "C-1", "WRONG_ORG_KIND")]
    for org, case, code in cases:
        assert refused(lambda o=org, c=case: planned.client(o).propose_plan(c, THREE)).code == code
    planned.client("lender-a").recall("C-1", "agency-1")
    assert refused(lambda: planned.client("agency-1").propose_plan("C-1", THREE)).code == "MANDATE_RECALLED"
    assert refused(lambda: planned.client("agency-1").show_plans("C-1")).code == "MANDATE_RECALLED"
    denied = [e.code for e in planned.events() if e.method == "ProposePlan" and e.decision == "deny"]
    assert denied == [c for _, _, c in cases] + ["MANDATE_RECALLED"]


def test_another_lender_cannot_accept_or_see_the_plan(planned: Env) -> None:
    made = planned.client("agency-1").propose_plan("C-1", THREE)
    assert refused(lambda: planned.client("lender-b").accept_plan(made.plan_id)).code == "PLAN_NOT_FOUND"
    assert refused(lambda: planned.client("lender-b").reject_plan(made.plan_id, "no")).code == "PLAN_NOT_FOUND"
    assert refused(lambda: planned.client("lender-b").accept_plan("PL-0000000000000000")).code == "PLAN_NOT_FOUND"
    assert refused(lambda: planned.client("lender-b").show_plans("C-1")).code == "CASE_NOT_FOUND"
    assert refused(lambda: planned.client("agency-1").accept_plan(made.plan_id)).code == "WRONG_ORG_KIND"
    assert shown(planned)[made.plan_id].status == "proposed"


@pytest.mark.parametrize(("instalments", "code"), [
    ([], "PLAN_INVALID"),
    ([("2026-12-10", "100.00"), ("2026-12-10", "100.00")], "PLAN_INVALID"),
    ([("2026-12-10", "100.00"), ("2026-12-01", "100.00")], "PLAN_INVALID"),
    ([("2026-11-29", "100.00")], "PLAN_INVALID"),
    ([(f"2027-{1 + i // 28:02d}-{1 + i % 28:02d}", "1") for i in range(61)], "PLAN_INVALID"),
    ([("2026-12-10", "-1")], "INVALID_AMOUNT"),
    ([("2026-12-10", "0.00")], "INVALID_AMOUNT"),
    ([("2026-12-10", "abc")], "INVALID_AMOUNT"),
    ([("10/12/2026", "100")], "INVALID_DATE"),
])
def test_a_malformed_plan_is_refused_with_a_stable_code(planned: Env, instalments: list[tuple[str, str]],
                                                        code: str) -> None:
    err = refused(lambda: planned.client("agency-1").propose_plan("C-1", instalments))
    assert (err.code, err.status) == (code, "INVALID_ARGUMENT")
    assert planned.client("lender-a").show_plans("C-1").plans == []


def test_a_new_proposal_supersedes_the_earlier_and_a_new_acceptance_the_accepted(planned: Env) -> None:
    agency, lender = planned.client("agency-1"), planned.client("lender-a")
    first = agency.propose_plan("C-1", THREE).plan_id
    second = agency.propose_plan("C-1", THREE[:2]).plan_id
    assert {k: v.status for k, v in shown(planned).items()} == {first: "superseded", second: "proposed"}
    assert refused(lambda: lender.accept_plan(first)).code == "PLAN_ALREADY_DECIDED"
    lender.accept_plan(second)
    third = agency.propose_plan("C-1", [("2026-12-15", "300.00")]).plan_id
    assert shown(planned)[second].status == "active"  # a new proposal leaves the accepted plan alone
    lender.accept_plan(third)
    assert {k: v.status for k, v in shown(planned).items()} == {
        first: "superseded", second: "superseded", third: "active"}
    assert due(planned) == "300.00"


def test_each_step_is_one_audit_event_with_case_borrower_and_lender(planned: Env) -> None:
    made = planned.client("agency-1").propose_plan("C-1", THREE)
    planned.client("lender-a").accept_plan(made.plan_id)
    other = planned.client("agency-1").propose_plan("C-1", THREE)
    planned.client("lender-a").reject_plan(other.plan_id, "no")
    steps = [(e.org, e.data["rule"], e.case_id, e.data["borrower_id"], e.data["lender"]) for e in planned.events(case_id="C-1")
             if e.data["rule"].split(":")[0] in ("plan.propose", "plan.accept", "plan.reject")]
    first, second = made.plan_id, other.plan_id
    assert steps == [("agency-1", f"plan.propose:{first}", "C-1", "B-1", "lender-a"),
                     ("lender-a", f"plan.accept:{first}", "C-1", "B-1", "lender-a"),
                     ("agency-1", f"plan.propose:{second}", "C-1", "B-1", "lender-a"),
                     ("lender-a", f"plan.reject:{second}", "C-1", "B-1", "lender-a")]


def test_plan_cli_output_shapes(planned: Env, capsys: pytest.CaptureFixture[str]) -> None:
    def run(org: str, *argv: str) -> tuple[int, dict[str, Any]]:
        code = cli.main([*argv, "--gateway", planned.addr, "--identity", str(planned.identity(org)), "--json"])
        return code, json.loads(capsys.readouterr().out)

    code, made = run("agency-1", "plan", "propose", "C-1", "--instalment", "2026-12-10:100.00",
                     "--instalment", "2027-01-10:100.00")
    assert code == 0 and set(made) == {"plan_id", "status"} and made["status"] == "proposed"
    code, out = run("agency-1", "plan", "propose", "C-1", "--instalment", "2026-12-10")
    assert code != 0 and out["error"]["code"] == "INVALID_ARGUMENT"
    code, out = run("lender-a", "lender", "plan", "accept", made["plan_id"])
    assert code == 0 and (out["plan_id"], out["status"]) == (made["plan_id"], "accepted")
    code, out = run("agency-1", "plan", "show", "C-1")
    assert code == 0 and list(out) == ["plans"]
    (plan,) = out["plans"]
    assert (plan["plan_id"], plan["status"], plan["org"], plan["amount_due"]) == (
        made["plan_id"], "active", "agency-1", "100.00")
    assert plan["instalments"] == [{"on": "2026-12-10", "amount": "100.00", "state": "pending"},
                                   {"on": "2027-01-10", "amount": "100.00", "state": "pending"}]
    code, other = run("agency-1", "plan", "propose", "C-1", "--instalment", "2026-12-11:5")
    code, out = run("lender-a", "lender", "plan", "reject", other["plan_id"], "--reason", "short")
    assert code == 0 and out["status"] == "rejected"
    code, out = run("lender-b", "lender", "plan", "accept", made["plan_id"])
    assert code != 0 and out["error"]["code"] == "PLAN_NOT_FOUND"


@pytest.mark.parametrize(("old", "new", "problem"), [
    ("grace_days = 5", "grace_days = 61", "plans.grace_days: must be between 0 and 60"),
    ("grace_days = 5", "grace_days = \"5\"", "plans.grace_days: must be an integer"),
    ("promise_max_days = 90", "promise_max_days = 0", "plans.promise_max_days: must be between 1 and 366"),
    ("promise_max_days = 90", "promise_days = 90", "plans.promise_days: unknown key"),
])
def test_the_plans_rules_are_checked_when_loaded_naming_file_and_line(tmp_path: Path, old: str, new: str,
                                                                     problem: str) -> None:
    text = (BUNDLE_DIR / "conduct" / "cn.toml").read_text()
    assert text.count(old) == 1
    path = tmp_path / "cn.toml"
    path.write_text(text.replace(old, new))
    with pytest.raises(PolicyError) as info:
        load_conduct_rules(path)
    assert info.value.path == str(path) and problem in info.value.problem
    assert info.value.line == path.read_text().splitlines().index(new) + 1
    # Without the table, the defaults (5 days' grace, promises up to 90 days ahead).
    path.write_text(text[:text.index("[plans]")])
    rules = load_conduct_rules(path).plans
    assert (rules.grace_days, rules.promise_max_days) == (5, 90)


def test_an_erasure_shreds_a_rejection_reason_with_the_borrowers_key(planned: Env) -> None:
    made = planned.client("agency-1").propose_plan("C-1", THREE)
    planned.client("lender-a").reject_plan(made.plan_id, "cannot pay: lost job")
    planned.client("lender-a").erase("B-1")

    def stored(repo: Any) -> tuple[bytes | None, list[Any]]:
        return repo.get_plan(made.plan_id).sealed_reason, []

    assert planned.gw.vault.audit.run(stored) is None
    assert shown(planned)[made.plan_id].reason == ""


def test_the_ports_keep_plans_promises_and_the_active_plan(env_dir: Path) -> None:
    """The store contract (both backends): plans round-trip typed, a reason only sealed, the case row carries
    the accepted plan and the change feed numbers the case for it; a promise's terms on its contact."""
    vault = open_vault(env_dir / "data", "sha256:contract")
    try:
        imported(vault, 1)
        reader = vault.reader()

        def work(store: UnitOfWork) -> tuple[tuple[str, str, int], list[EventDraft]]:
            case = store.get_case("lender-a", "C-1")
            first = store.insert_plan(case, "agency-1", [Repayment("2026-12-10", "100.00")], NOW)
            second = store.insert_plan(case, "agency-1", [Repayment("2026-12-10", "50"),
                                                          Repayment("2027-01-10", "50")], "2026-11-30T03:00:00.000000Z")
            store.set_plan_status(store.get_plan(first), "rejected", NOW, "the borrower's own words")
            before = store.feed_high_water()
            store.set_plan_status(store.get_plan(second), "accepted", NOW)
            store.set_active_plan(case, second, NOW)
            contact = store.insert_contact("lender-a", "C-1", case.borrower_id, "agency-1", "call", "borrower",
                                           b"t", NOW)
            store.set_contact_result(contact, "promise_to_pay", NOW)
            store.set_promise(contact, "25.50", "2026-12-03")
            return (first, second, before), [event("plans", "C-1", case.borrower_id)]

        first, second, before = vault.audit.run(work)
        reader.refresh()
        case = reader.get_case("lender-a", "C-1")
        assert case.active_plan == second
        assert reader.feed_high_water() > before
        plans = reader.plans_of_case("lender-a", "C-1")
        assert [(p.plan_id, p.status) for p in plans] == [(second, "accepted"), (first, "rejected")]
        assert plans[0].instalments == (Repayment("2026-12-10", "50"), Repayment("2027-01-10", "50"))
        assert plans[0].sealed_reason is None and reader.plan_reason(plans[0]) is None
        assert plans[1].sealed_reason and b"own words" not in plans[1].sealed_reason
        assert reader.plan_reason(plans[1]) == "the borrower's own words"
        assert reader.get_plan("PL-0000000000000000") is None
        (contact,) = reader.contact_history(case)
        assert (contact.promise_amount, contact.promise_on) == ("25.50", "2026-12-03")
    finally:
        vault.close()


def test_counsel_with_a_litigation_mandate_proposes_and_sees_its_plan(escalated: Env) -> None:
    made = escalated.client("lawfirm-1").propose_plan("C-1", THREE)
    assert made.status == "proposed"
    assert refused(lambda: escalated.client("agency-1").propose_plan("C-1", THREE)).code == "MANDATE_RECALLED"
    escalated.client("lender-a").accept_plan(made.plan_id)
    (plan,) = escalated.client("lawfirm-1").show_plans("C-1").plans
    assert (plan.org, plan.status, plan.amount_due) == ("lawfirm-1", "active", "100.00")
    events = [e for e in escalated.events(case_id="C-1") if e.data["rule"] == f"plan.propose:{made.plan_id}"]
    assert [(e.org, e.purpose) for e in events] == [("lawfirm-1", "litigation")]


def test_plan_events_name_what_they_carry_never_a_value(planned: Env) -> None:
    """Issue 25: a proposal and an acceptance carry the instalments (an accepted plan sets amount_due), a
    rejection the reason; no instalment's date or amount, nor the reason, reaches a leaf's bytes."""
    agency, lender = planned.client("agency-1"), planned.client("lender-a")
    instalments = [("2026-12-17", "123.45"), ("2027-01-17", "678.91")]
    first = agency.propose_plan("C-1", instalments)
    lender.accept_plan(first.plan_id)
    second = agency.propose_plan("C-1", [("2026-12-19", "555.55")])
    lender.reject_plan(second.plan_id, "branch Q4471 says no")
    shapes = [(e.data["rule"].split(":")[0], sorted(e.data["fields"])) for e in planned.events(case_id="C-1")
              if e.data["rule"].startswith("plan.") and e.data["rule"] != "plan.show"]
    assert shapes == [("plan.propose", ["plan.instalments"]), ("plan.accept", ["amount_due", "plan.instalments"]),
                      ("plan.propose", ["plan.instalments"]), ("plan.reject", ["plan.reason"])]
    log = b"".join(leaf for _, leaf in planned.client("regulator-1").audit_events())
    for value in ("123.45", "678.91", "555.55", "2026-12-17", "2027-01-17", "2026-12-19", "branch Q4471"):
        assert value.encode() not in log, value
