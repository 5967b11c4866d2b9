"""Capabilities as data (issue 23): the shipped table is today's matrix, and a new kind is a row and a policy edit."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from custos_client import CustosClientError

from gateway import cli
from gateway.core.errors import PolicyError
from gateway.core.rules.capabilities import ACTIONS, load_capabilities
from gateway.core.rules.policy import load_bundle
from policies import BUNDLE_DIR
from tests.conftest import Env

SHIPPED_KINDS = ("lender", "agency", "law_firm", "bureau", "regulator")
EVERY_KIND = set(SHIPPED_KINDS)

# Written out from the `kinds=(...)` literals and kind comparisons the use cases carried before the table
# (list_cases had no literal: every kind could call it), so any change to the shipped table shows here.
MATRIX: dict[str, set[str]] = {
    "import_cases": {"lender"},
    "assign": {"lender"},
    "recall": {"lender"},
    "escalate": {"lender"},
    "record_notice": {"lender"},
    "set_consent": {"lender"},
    "set_stage": {"lender"},
    "set_flags": {"lender"},
    "place_cases": {"lender"},
    "recall_all": {"lender"},
    "erase": {"lender"},
    "purge_plan": {"lender"},
    "explain": {"lender"},
    "subject_data": {"lender"},
    "subject_events": {"regulator", "lender"},
    "list_cases": EVERY_KIND,
    "open_contact": {"lender", "agency"},
    "packet": {"law_firm"},
    "pull_feed": {"bureau"},
    "audit_query": {"regulator", "lender"},  # issue 25: a lender gets only its own cases' events
    "prove": {"regulator"},
    "checkpoint": {"regulator"},
    "cosign": {"regulator"},
    "performance": {"lender"},
    "propose_plan": {"agency", "law_firm"},
    "decide_plan": {"lender"},
    "show_plans": {"lender", "agency", "law_firm"},
    # issue 24: payments reported by those who collect, decided by the lender; statements of commissions
    "report_payment": {"agency", "law_firm"},
    "list_payments": {"lender"},
    "decide_payment": {"lender"},
    "statement": {"lender", "agency", "law_firm"},
    "update_accounts": {"lender"},
    # issue 25: the compliance report (a lender: its own cases)
    "compliance_report": {"regulator", "lender"},
    # issue 25: figures that can be recounted (a lender's: the events naming it)
    "audit_stats": {"regulator", "lender"},
    # issue 26 (EU): forbearance before litigation, the record of processing activities
    "record_forbearance": {"lender"},
    "ropa": {"lender"},
}
MANDATED = {"collection": {"agency"}, "litigation": {"law_firm"}, "credit_reporting": {"bureau"},
            "servicing": set(), "supervision": set()}


def test_the_shipped_table_is_todays_matrix() -> None:
    table = load_bundle(BUNDLE_DIR).capabilities
    assert table.kinds == SHIPPED_KINDS  # the order UNKNOWN_KIND's "known: ..." lists them in
    assert set(ACTIONS) == set(MATRIX)
    allowed = {(action, kind) for action in ACTIONS for kind in SHIPPED_KINDS if table.allows(kind, action)}
    assert allowed == {(action, kind) for action, kinds in MATRIX.items() for kind in kinds}
    assert {p: set(table.mandated_to(p)) for p in MANDATED} == MANDATED
    assert {k for k in SHIPPED_KINDS if table.needs_licence(k)} == {"agency", "law_firm"}
    assert not any(table.agent_required(k) for k in SHIPPED_KINDS)  # existing integrations send no agent
    assert not table.allows("debt_buyer", "list_cases")  # a kind the table lacks may do nothing
    with pytest.raises(ValueError):
        table.allows("lender", "no_such_action")  # a use case naming an action the table cannot hold


@pytest.fixture
def bundle_copy(tmp_path: Path) -> Path:
    dest = tmp_path / "policies"
    shutil.copytree(BUNDLE_DIR, dest, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    return dest


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, old
    path.write_text(text.replace(old, new))


@pytest.mark.parametrize(("old", "new", "line_of", "problem"), [
    ('actions = ["list_cases", "pull_feed"]', 'actions = ["list_cases", "pull_feeds"]',
     'actions = ["list_cases", "pull_feeds"]', "[kinds.bureau] actions: unknown action 'pull_feeds'"),
    ('actions = ["list_cases", "packet", "propose_plan", "show_plans", "report_payment", "statement"]',
     'actions = ["list_cases", "packet", "packet", "propose_plan", "show_plans", "report_payment", "statement"]',
     'actions = ["list_cases", "packet", "packet", "propose_plan", "show_plans", "report_payment", "statement"]',
     "[kinds.law_firm] actions: lists a action twice"),
    ("[kinds.bureau]\n", "[kinds.bureau]\nlicenced = true\n", "licenced = true", "[kinds.bureau]: unknown keys"),
    ("[kinds.bureau]\n", "[kinds.Bureau]\n", "[kinds.Bureau]", "[kinds.Bureau]: a kind is 1-32 of"),
    ("[kinds.bureau]\n", '[kinds.bureau]\nagent_required = "yes"\n', "agent_required",
     "[kinds.bureau] agent_required: must be true or false"),
    ('mandated_to = ["law_firm"]', 'mandated_to = ["lawfirm"]', 'mandated_to = ["lawfirm"]',
     "[purposes.litigation] mandated_to: unknown kind 'lawfirm'"),
    ("[purposes.collection]", "[purposes.collections]", "[purposes.collections]",
     "[purposes.collections]: unknown purpose"),
])
def test_a_bad_table_stops_the_bundle_naming_file_line_and_problem(bundle_copy: Path, old: str, new: str,
                                                                   line_of: str, problem: str) -> None:
    path = bundle_copy / "capabilities.toml"
    _edit(path, old, new)
    with pytest.raises(PolicyError) as info:
        load_bundle(bundle_copy)
    lines = path.read_text().splitlines()
    assert info.value.path == str(path)
    assert info.value.line == next(i for i, line in enumerate(lines, 1) if line.strip().startswith(line_of))
    assert info.value.problem.startswith(problem), info.value.problem


def test_the_other_files_name_only_the_tables_kinds(bundle_copy: Path) -> None:
    """Release rules and per-kind rates are checked against the table's kinds, not a list in the code."""
    _edit(bundle_copy / "capabilities.toml", "[kinds.bureau]\n", "[kinds.debt_buyer]\n[kinds.bureau]\n")
    release = bundle_copy / "release.toml"
    _edit(release, 'to = ["agency"]\nstages = ["letter", "field_visit"]',
          'to = ["agency", "debt_buyer"]\nstages = ["letter", "field_visit"]')
    limits = bundle_copy / "limits.toml"
    limits.write_text(limits.read_text() + "\n[rate.kind.debt_buyer]\nper_second = 5\n")
    bundle = load_bundle(bundle_copy)
    assert bundle.release("debt_buyer", "collection", "letter").fields
    assert bundle.limits.rate_for("debt_buyer").per_second == 5
    _edit(bundle_copy / "capabilities.toml", "[kinds.debt_buyer]\n", "")
    with pytest.raises(PolicyError) as info:
        load_bundle(bundle_copy)
    assert info.value.path == str(release) and "unknown organisation kind 'debt_buyer'" in info.value.problem


def test_the_table_is_part_of_the_revision_and_required(bundle_copy: Path) -> None:
    path = bundle_copy / "capabilities.toml"
    before = load_bundle(bundle_copy).revision
    path.write_text(path.read_text() + "\n# a comment changes the bytes, so the revision\n")
    assert load_bundle(bundle_copy).revision != before
    path.unlink()
    with pytest.raises(PolicyError) as info:
        load_bundle(bundle_copy)
    assert info.value.path == str(path) and "missing capability table" in info.value.problem
    assert load_capabilities(BUNDLE_DIR / "capabilities.toml") == load_bundle(BUNDLE_DIR).capabilities


def debt_buyer_bundle(dest: Path) -> Path:
    """A copy of the shipped bundle with one row added (a debt buyer may list its cases) and one policy edit
    (collection cases may be mandated to it). No release rule names it, so it reads nothing."""
    shutil.copytree(BUNDLE_DIR, dest, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    table = dest / "capabilities.toml"
    table.write_text(table.read_text().replace('mandated_to = ["agency"]', 'mandated_to = ["agency", "debt_buyer"]')
                     + '\n[kinds.debt_buyer]\nactions = ["list_cases"]\n')
    return dest


def test_a_new_kind_is_a_table_row_and_a_policy_edit(seeded: Env, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A debt buyer is registered, mandated and served with no code change: allowed its one action, refused
    another (WRONG_ORG_KIND, audited as every kind refusal is), and nothing under the shipped table."""
    bundle = debt_buyer_bundle(tmp_path / "policies")
    add = ["org", "add", str(seeded.data), "--id", "buyer-1", "--kind", "debt_buyer", "--name", "Buyer One",
           "--out", str(seeded.identity("buyer-1"))]
    assert cli.main(add) == 1  # the shipped table has no such kind
    assert "error: UNKNOWN_KIND: " in capsys.readouterr().err
    assert cli.main([*add, "--policies", str(bundle)]) == 0

    seeded.gw.policy_dir = bundle
    seeded.gw.reload_policies()
    seeded.client("lender-a").assign("C-3", "buyer-1", "collection", "2026-12-31")
    buyer = seeded.client("buyer-1")
    assert [(c.case_id, c.purpose) for c in buyer.list_cases()] == [("C-3", "collection")]
    with pytest.raises(CustosClientError) as info:
        buyer.open_contact("C-3", "call")
    assert info.value.code == "WRONG_ORG_KIND"
    with pytest.raises(CustosClientError) as info:
        buyer.get_case("C-3", "collection")  # what a kind reads is the release rules', and none names it
    assert info.value.code == "PURPOSE_NOT_ALLOWED"
    with pytest.raises(CustosClientError) as info:
        seeded.client("lender-a").assign("C-4", "buyer-1", "litigation", "2026-12-31")
    assert info.value.code == "PURPOSE_KIND_MISMATCH"
    denied = [(e.method, e.code, e.data["rule"]) for e in seeded.events(org="buyer-1") if e.decision == "deny"]
    assert ("OpenContact", "WRONG_ORG_KIND", "identity.kind") in denied

    # The shipped table again: the same organisation may do nothing, nor be mandated to.
    seeded.gw.policy_dir = BUNDLE_DIR
    seeded.gw.reload_policies()
    with pytest.raises(CustosClientError) as info:
        buyer.list_cases()
    assert info.value.code == "WRONG_ORG_KIND"
    with pytest.raises(CustosClientError) as info:
        seeded.client("lender-a").assign("C-4", "buyer-1", "collection", "2026-12-31")
    assert info.value.code == "PURPOSE_KIND_MISMATCH"
