"""Retention: a closed case's PI is shredded when its period ends, unless held; `lender purge --dry-run` (issue 12)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from custos_client import CustosClientError, PurgePlan

from gateway import cli
from gateway.core.errors import PolicyError
from gateway.core.model import CaseRow
from gateway.core.rules.conduct_file import load_conduct_rules
from gateway.core.rules.retention import RetentionRules, borrower_retention
from policies import BUNDLE_DIR
from tests.conftest import Env

THREE_YEARS = 3 * 365 + 1  # days, 2026-11-30 + this = 2029-12-01: past three calendar years


def _case(case_id: str, jurisdiction: str, status: str, closed_at: str | None, hold: bool = False) -> CaseRow:
    return CaseRow("L", case_id, "B", "LN", jurisdiction, "UTC", "reminder", status, False, False, False, False, hold,
                   True, True, closed_at=closed_at)


def test_the_retention_day_by_jurisdiction_rule() -> None:
    rules = {"CN": RetentionRules(3, "closure"), "US": RetentionRules(3, "last_activity")}
    cn = borrower_retention(rules.__getitem__, [_case("C", "CN", "closed", "2026-01-10T00:00:00Z")], lambda c: None)
    assert cn.due_on == date(2029, 1, 10) and cn.rule == "CN.retention:3y_after_closure" and cn.held == ()
    assert not cn.due(date(2029, 1, 9)) and cn.due(date(2029, 1, 10))
    # US: from the later of the closure and the last collection activity (Reg F §1006.100).
    us = borrower_retention(rules.__getitem__, [_case("C", "US", "settled", "2026-01-10T00:00:00Z")],
                            lambda c: "2026-06-01T09:00:00Z")
    assert us.due_on == date(2029, 6, 1) and us.rule == "US.retention:3y_after_last_activity"
    # The latest case decides; an open case keeps the borrower; a hold keeps it too.
    both = [_case("C1", "CN", "closed", "2026-01-10T00:00:00Z"), _case("C2", "CN", "closed", "2027-03-01T00:00:00Z")]
    assert borrower_retention(rules.__getitem__, both, lambda c: None).due_on == date(2030, 3, 1)
    assert borrower_retention(rules.__getitem__, [*both, _case("C3", "CN", "open", None)], lambda c: None).due_on is None
    held = borrower_retention(rules.__getitem__, [_case("C", "CN", "closed", "2026-01-10T00:00:00Z", hold=True)],
                              lambda c: None)
    assert held.held == ("C",) and not held.due(date(2040, 1, 1))


def test_a_closed_case_is_shredded_when_its_period_ends_unless_held(seeded: Env) -> None:
    lender = seeded.client("lender-a")
    core = seeded.gw.core
    lender.set_flags("C-3", status="closed")   # CN, borrower B-3
    lender.set_flags("C-5", status="settled")  # CN, borrower B-5
    lender.set_flags("C-5", legal_hold=True)
    lender.set_flags("C-2", status="closed")   # B-1 still has C-1 open: never due
    assert lender.purge_plan() == PurgePlan([], [])
    seeded.clock.advance(days=THREE_YEARS)
    plan = lender.purge_plan()
    assert [(i.borrower_id, i.cases, i.rule) for i in plan.due] == \
        [("B-3", ["C-3"], "CN.retention:3y_after_closure")]
    assert [(i.borrower_id, i.held_by) for i in plan.held] == [("B-5", ["C-5"])]
    assert seeded.client("lender-b").purge_plan() == PurgePlan([], [])  # another lender's own only
    core.run_retention()
    assert lender.get_case("C-3", "servicing").erasure == "erased"
    assert lender.get_case("C-5", "servicing").fields["full_name"]  # held: kept
    assert lender.get_case("C-1", "servicing").fields["full_name"]  # open case: kept
    lender.set_flags("C-5", legal_hold=False)
    assert [i.borrower_id for i in lender.purge_plan().due] == ["B-5"]
    core.run_retention()
    assert lender.get_case("C-5", "servicing").erasure == "erased"
    assert lender.purge_plan() == PurgePlan([], [])
    events = [e for e in seeded.events(borrower_id="B-5") if e.method == "RetentionPurge"]
    assert [(e.case_id, e.data["rule"], e.org) for e in events] == [("C-5", "erasure:reason=retention", "lender-a")]
    # A reopened case starts over: nothing is due for it.
    lender.set_flags("C-6", status="closed")
    lender.set_flags("C-6", status="open")
    seeded.clock.advance(days=THREE_YEARS)
    assert "B-6" not in [i["borrower_id"] for i in lender.purge_plan().due]


def test_a_borrower_restricted_by_a_refused_erasure_is_still_shredded_when_retention_runs_out(seeded: Env) -> None:
    """The restriction (issue 22, finding 14) keeps data from other parties, never beyond its retention period."""
    lender = seeded.client("lender-a")
    lender.set_flags("C-5", status="settled")  # CN, borrower B-5
    lender.set_flags("C-5", legal_hold=True)
    with pytest.raises(CustosClientError) as info:
        lender.erase("B-5")
    assert info.value.code == "LEGAL_HOLD"
    assert lender.get_case("C-5", "servicing").erasure == "restricted"
    lender.set_flags("C-5", legal_hold=False)
    seeded.clock.advance(days=THREE_YEARS)
    assert [i.borrower_id for i in lender.purge_plan().due] == ["B-5"]
    seeded.gw.core.run_retention()
    rec = lender.get_case("C-5", "servicing")
    assert rec.erasure == "erased" and "full_name" not in rec.fields


def test_the_cli_and_the_policy(seeded: Env, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    argv = ["--gateway", seeded.addr, "--identity", str(seeded.identity("lender-a"))]
    assert cli.main(["lender", "purge", *argv, "--json"]) != 0
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "INVALID_ARGUMENT"
    seeded.client("lender-a").set_flags("C-3", status="closed")
    seeded.clock.advance(days=THREE_YEARS)
    assert cli.main(["lender", "purge", "--dry-run", *argv]) == 0
    out = capsys.readouterr().out
    assert "1 borrowers due for shredding" in out and "B-3 (C-3)" in out and "CN.retention:3y_after_closure" in out
    with pytest.raises(CustosClientError) as info:
        seeded.client("agency-1").purge_plan()
    assert info.value.code == "WRONG_ORG_KIND"
    # Every conduct file must say its retention; a bad one does not load.
    text = (BUNDLE_DIR / "conduct" / "cn.toml").read_text()
    for bad in (text.split("[retention]")[0], text.replace('start = "closure"', 'start = "whenever"'),
                text.replace("years = 3\nstart", "years = 0\nstart")):
        path = tmp_path / "cn.toml"
        path.write_text(bad)
        with pytest.raises(PolicyError):
            load_conduct_rules(path)
