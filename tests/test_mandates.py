"""Granting mandates (issue 26): debts that must not be collected or furnished, closed cases, records before sharing.

Reg F §1006.30(b), FCRA §623(a)(6): a debt reported as identity theft or
discharged is neither placed for collection nor furnished; a collecting mandate
on a settled or closed case is refused instead of lying inert; PIPL Art. 21,
55-56: a CN mandate names its agreement and impact assessment.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from custos_client import CustosClientError, PullRecord, PullRemoved

from gateway import cli
from gateway.core.errors import PolicyError
from gateway.core.rules.conduct_file import load_conduct_rules
from gateway.core.rules.mandates import MandateRules
from policies import BUNDLE_DIR
from tests.conftest import Env, RecordsClient
from tests.test_cli import Run, conn


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    return Run(capsys)

FLAG_CODES = [("identity_theft", "IDENTITY_THEFT_REPORTED"), ("discharged", "DEBT_DISCHARGED")]


def code_of(call: Any) -> str:
    with pytest.raises(CustosClientError) as info:
        call()
    return str(info.value.code)


def placement(case: str, to: str = "agency-2", purpose: str = "collection", **kw: str) -> bytes:
    return json.dumps({"case_id": case, "to": to, "purpose": purpose, "until": "2026-12-31", **kw}).encode()


def denials(env: Env, case: str, method: str) -> list[tuple[str, str]]:
    return [(e.code, e.data["rule"]) for e in env.events(case_id=case) if e.method == method
            and e.decision == "deny"]


# ------------------------------------------------------------------ identity theft, discharged


@pytest.mark.parametrize(("flag", "code"), FLAG_CODES)
def test_a_flagged_debt_is_not_mandated_for_collection_nor_escalated(seeded: Env, flag: str, code: str) -> None:
    lender = seeded.client("lender-a")
    lender.set_flags("C-3", **{flag: True})
    assert code_of(lambda: lender.assign("C-3", "agency-2", "collection", "2026-12-31")) == code
    assert code_of(lambda: lender.escalate("C-3", "lawfirm-1")) == code
    bulk = lender.assign_lines([placement("C-3"), placement("C-5")])
    assert bulk.assigned == 1 and [(r.line, r.code) for r in bulk.rejected] == [(1, code)]
    # one case and another: C-5 (same lender, no flag) is mandated as before
    assert seeded.client("agency-2").get_case("C-5", "collection").case_id == "C-5"
    rule = f"mandate.{flag}"
    assert denials(seeded, "C-3", "AssignCase") == [(code, rule)]
    assert denials(seeded, "C-3", "EscalateCase") == [(code, f"escalation.{flag}")]
    assert denials(seeded, "C-3", "AssignCases") == [(code, rule)]
    # a purpose that does not collect is still granted (the bureau's record is withheld at the pull instead)
    assert lender.assign("C-3", "bureau-1", "credit_reporting", "2027-06-30").purpose == "credit_reporting"
    # cleared: collecting mandates are granted again
    lender.set_flags("C-3", **{flag: False})
    assert lender.assign("C-3", "agency-2", "collection", "2026-12-31").org_id == "agency-2"


@pytest.mark.parametrize(("flag", "code"), FLAG_CODES)
def test_setting_the_flag_ends_the_collecting_mandates_at_once(seeded: Env, flag: str, code: str) -> None:
    lender = seeded.client("lender-a")
    lender.assign("C-1", "bureau-1", "credit_reporting", "2027-06-30")
    assert seeded.client("agency-1").get_case("C-1", "collection").case_id == "C-1"
    summary = lender.set_flags("C-1", **{flag: True})
    assert flag in summary.flags
    assert code_of(lambda: seeded.client("agency-1").get_case("C-1", "collection")) == "MANDATE_RECALLED"
    assert code_of(lambda: seeded.client("agency-1").open_contact("C-1", "call")) == "MANDATE_RECALLED"
    recalls = [e.data["rule"] for e in seeded.events(case_id="C-1") if e.method == "SetFlags"]
    assert recalls == [f"flags:{flag}=true", f"mandate.recall:agency-1;{flag}"]
    mandates = {m.org_id: m for m in lender.list_mandates("C-1")}
    assert mandates["agency-1"].recalled_at and not mandates["bureau-1"].recalled_at
    # the other case of the same borrower (C-2) is not touched: the flag is the debt's, not the person's
    lender.assign("C-2", "agency-1", "collection", "2026-12-31")
    assert seeded.client("agency-1").get_case("C-2", "collection").case_id == "C-2"


@pytest.mark.parametrize(("flag", "code"), FLAG_CODES)
def test_a_flagged_debt_is_withheld_from_the_bureau(seeded: Env, flag: str, code: str) -> None:
    lender = seeded.client("lender-a")
    for case in ("C-3", "C-5"):
        lender.assign(case, "bureau-1", "credit_reporting", "2027-06-30")
        lender.record_notice(case, "2026-11-29")
    lender.set_flags("C-3", **{flag: True})
    feed = seeded.client("bureau-1").pull_feed()
    assert [r.case_id for r in feed.records] == ["C-5"]  # one case furnished, the flagged one withheld
    assert denials(seeded, "C-3", "PullFeed") == [(code, f"credit_reporting.{flag}")]
    explained = lender.explain("bureau-1", "C-3", "credit_reporting")
    assert explained.decision == "deny" and explained.code == code
    lender.set_flags("C-3", **{flag: False})
    again = seeded.client("bureau-1").pull_feed(feed.cursor)
    assert [r.case_id for r in again.records] == ["C-3"]


def test_the_cli_sets_and_clears_the_flags(seeded: Env, run: Run) -> None:
    me = conn(seeded, "lender-a")
    rc, doc, _ = run.json("lender", "flag", "C-3", "--identity-theft", "--discharged", *me)
    assert rc == 0 and {"identity_theft", "discharged"} <= set(doc["flags"])
    rc, doc, _ = run.json("lender", "flag", "C-3", "--no-identity-theft", *me)
    assert rc == 0 and "identity_theft" not in doc["flags"] and "discharged" in doc["flags"]
    rc, doc, _ = run.json("lender", "assign", "C-3", "--to", "agency-2", "--purpose", "collection",
                          "--until", "2026-12-31", "--agreement", "AG-1", "--pia", "PIA-1", *me)
    assert rc != 0 and doc["error"]["code"] == "DEBT_DISCHARGED"


# ------------------------------------------------------------------ settled and closed cases


@pytest.mark.parametrize("status", ["settled", "closed"])
def test_a_collecting_mandate_on_a_settled_or_closed_case_is_refused(seeded: Env, status: str) -> None:
    lender = seeded.client("lender-a")
    lender.set_flags("C-3", status=status)
    assert code_of(lambda: lender.assign("C-3", "agency-2", "collection", "2026-12-31")) == "CASE_CLOSED"
    assert code_of(lambda: lender.assign("C-3", "lawfirm-1", "litigation", "2026-12-31")) == "CASE_CLOSED"
    bulk = lender.assign_lines([placement("C-3"), placement("C-5")])
    assert [(r.line, r.code, r.reason) for r in bulk.rejected] == [
        (1, "CASE_CLOSED", "case_id: the case is settled or closed")] and bulk.assigned == 1
    assert ("CASE_CLOSED", "mandate.case_status") in denials(seeded, "C-3", "AssignCase")
    # the bureau's final-status record is no collection: still granted
    assert lender.assign("C-3", "bureau-1", "credit_reporting", "2027-06-30").purpose == "credit_reporting"
    lender.set_flags("C-3", status="open")  # reopened: collected again
    assert lender.assign("C-3", "agency-2", "collection", "2026-12-31").org_id == "agency-2"


# ------------------------------------------------------------------ records before sharing


def test_a_cn_mandate_names_its_agreement_and_impact_assessment(seeded: Env) -> None:
    lender = seeded.client("lender-a")
    assert code_of(lambda: lender.assign("C-3", "agency-2", "collection", "2026-12-31", agreement="",
                                         pia="")) == "AGREEMENT_REQUIRED"
    assert code_of(lambda: lender.assign("C-3", "agency-2", "collection", "2026-12-31", agreement="AG-7",
                                         pia="")) == "PIA_REQUIRED"
    assert code_of(lambda: lender.assign("C-3", "agency-2", "collection", "2026-12-31", agreement="",
                                         pia="PIA-7")) == "AGREEMENT_REQUIRED"
    assert code_of(lambda: lender.escalate("C-3", "lawfirm-1", agreement="AG-7", pia="")) == "PIA_REQUIRED"
    assert code_of(lambda: lender.assign("C-3", "agency-2", "collection", "2026-12-31", agreement="AG 7",
                                         pia="PIA-7")) == "INVALID_RECORD_REFERENCE"
    granted = lender.assign("C-3", "agency-2", "collection", "2026-12-31", agreement="AG-7", pia="PIA-7")
    assert granted.agreement == "AG-7" and granted.pia == "PIA-7"
    [mandate] = lender.list_mandates("C-3")
    assert (mandate.org_id, mandate.agreement, mandate.pia) == ("agency-2", "AG-7", "PIA-7")
    assert [c for c, _ in denials(seeded, "C-3", "AssignCase")] == [
        "AGREEMENT_REQUIRED", "PIA_REQUIRED", "AGREEMENT_REQUIRED", "INVALID_RECORD_REFERENCE"]
    [grant] = [e for e in seeded.events(case_id="C-3") if e.method == "AssignCase" and e.decision == "allow"]
    assert grant.data["rule"] == "mandate.grant:agency-2;agreement=yes;pia=yes"
    assert "AG-7" not in json.dumps([e.data for e in seeded.events(case_id="C-3")])  # presence only, never the reference
    # the agency does not see the lender's references: mandate listings are the lender's
    assert code_of(lambda: seeded.client("agency-2").list_mandates("C-3")) == "WRONG_ORG_KIND"


def test_a_us_mandate_needs_no_references_and_may_name_them(seeded: Env) -> None:
    lender = seeded.client("lender-a")
    assert "agreement" not in lender.assign("C-4", "agency-2", "collection", "2026-12-31", agreement="", pia="").to_dict()
    named = lender.assign("C-6", "agency-2", "collection", "2026-12-31", agreement="AG-US", pia="")
    assert named.agreement == "AG-US" and "pia" not in named.to_dict()


def test_placement_lines_name_their_records(seeded: Env) -> None:
    lender = seeded.client("lender-a")
    lines = [placement("C-3"), placement("C-5", agreement="AG-5"), placement("C-5", agreement="AG-5", pia="P-5"),
             placement("C-4"), placement("C-5", agreement="bad ref", pia="P-5")]
    result = lender.assign_lines(lines, records=False)
    assert result.assigned == 2
    assert [(r.line, r.code, r.reason) for r in result.rejected] == [
        (1, "AGREEMENT_REQUIRED", "agreement: the jurisdiction requires the agreement's reference"),
        (2, "PIA_REQUIRED", "pia: the jurisdiction requires the impact assessment's reference"),
        (5, "INVALID_RECORD_REFERENCE", "agreement: 1-64 characters of letters, digits and ._:-")]
    assert [(m.agreement, m.pia) for m in lender.list_mandates("C-5")] == [("AG-5", "P-5")]
    assert lender.list_mandates("C-4")[0].agreement == ""
    allowed = [e.data["rule"] for e in seeded.events(org="lender-a") if e.method == "AssignCases"
               and e.decision == "allow"]
    assert sorted(allowed) == ["mandate.grant:agency-2;placement;agreement=no;pia=no",
                               "mandate.grant:agency-2;placement;agreement=yes;pia=yes"]


def test_the_cli_names_the_records_and_lists_them(seeded: Env, run: Run) -> None:
    me = conn(seeded, "lender-a")
    rc, doc, _ = run.json("lender", "assign", "C-3", "--to", "agency-2", "--purpose", "collection",
                          "--until", "2026-12-31", *me)
    assert rc != 0 and doc["error"]["code"] == "AGREEMENT_REQUIRED"
    rc, doc, _ = run.json("lender", "assign", "C-3", "--to", "agency-2", "--purpose", "collection",
                          "--until", "2026-12-31", "--agreement", "AG-9", "--pia", "PIA-9", *me)
    assert rc == 0 and doc["agreement"] == "AG-9"
    rc, doc, _ = run.json("lender", "mandates", "C-3", *me)
    assert rc == 0 and [(m["org_id"], m["agreement"], m["pia"]) for m in doc["mandates"]] == [
        ("agency-2", "AG-9", "PIA-9")]


def test_policy_explain_says_what_a_new_mandate_needs(seeded: Env) -> None:
    lender = seeded.client("lender-a")
    notes = lender.explain("agency-2", "C-3", "collection").notes
    assert "a new collection mandate: grantable, naming --agreement and --pia (CN [mandates] rules)" in notes
    assert "a new collection mandate: grantable (US [mandates] rules)" in lender.explain(
        "agency-2", "C-4", "collection").notes
    lender.set_flags("C-3", discharged=True)
    notes = lender.explain("agency-2", "C-3", "collection").notes
    assert "a new collection mandate: refused (DEBT_DISCHARGED, rule mandate.discharged)" in notes
    notes = lender.explain("agency-1", "C-1", "collection").notes
    assert any(n.endswith("agreement named, impact assessment named") for n in notes)


# ------------------------------------------------------------------ the policy file


def _conduct(tmp_path: Path, mandates: str) -> Path:
    path = tmp_path / "cn.toml"
    text = (Path(__file__).parent.parent / "policies" / "conduct" / "cn.toml").read_text()
    path.write_text(text.split("\n[mandates]")[0] + mandates)
    return path


def test_the_mandates_table_is_optional_strict_and_read(tmp_path: Path) -> None:
    assert load_conduct_rules(_conduct(tmp_path, "")).mandates == MandateRules()  # absent: the defaults
    rules = load_conduct_rules(_conduct(tmp_path, "\n[mandates]\nrequires_pia = true\n")).mandates
    assert rules == MandateRules(requires_pia=True)
    with pytest.raises(PolicyError) as info:
        load_conduct_rules(_conduct(tmp_path, "\n[mandates]\nrequires_agremeent = true\n"))
    assert "requires_agremeent" in str(info.value)


def test_each_jurisdiction_names_its_transfer_mechanisms_and_whether_consent_is_needed(tmp_path: Path) -> None:
    cn = load_conduct_rules(BUNDLE_DIR / "conduct" / "cn.toml").mandates
    eu = load_conduct_rules(BUNDLE_DIR / "conduct" / "eu.toml").mandates
    assert (cn.transfer_mechanisms, cn.cross_border_consent) == (
        ("cac_assessment", "certification", "standard_contract"), True)  # PIPL Art. 38-39
    assert (eu.cross_border_safeguards, eu.transfer_mechanisms, eu.cross_border_consent) == (
        True, ("adequacy_decision", "standard_contractual_clauses", "binding_corporate_rules"), False)  # GDPR 45-49
    assert (eu.requires_agreement, eu.requires_pia) == (True, False)  # Art. 28(3); Art. 35 only for high risk
    read = load_conduct_rules(_conduct(tmp_path, '\n[mandates]\ntransfer_mechanisms = ["binding_corporate_rules"]\n'
                                                 "cross_border_consent = false\n")).mandates
    assert read == MandateRules(transfer_mechanisms=("binding_corporate_rules",), cross_border_consent=False)
    for bad in ('transfer_mechanisms = ["privacy_shield"]', 'transfer_mechanisms = "standard_contract"',
                "cross_border_consent = 1"):
        with pytest.raises(PolicyError) as info:
            load_conduct_rules(_conduct(tmp_path, f"\n[mandates]\n{bad}\n"))
        assert bad.split(" ")[0] in str(info.value)


# ------------------------------------------------------------------ cross-border provision (PIPL Art. 38-39)


@pytest.fixture
def abroad(seeded: Env, tmp_path: Path) -> Env:
    """`seeded` with agency-us and lawfirm-us, registered in the US (every other org is CN's)."""
    for org, kind in (("agency-us", "agency"), ("lawfirm-us", "law_firm")):
        assert cli.main(["org", "add", str(seeded.data), "--id", org, "--kind", kind, "--name", org,
                         "--jurisdiction", "US", "--licence-no", "US1", "--licence-expires", "2099-12-31",
                         "--out", str(tmp_path / org)]) == 0
        seeded.clients[org] = RecordsClient(seeded.addr, tmp_path / org, timeout=20)
    return seeded


def test_a_cn_case_goes_abroad_only_with_consent_and_a_mechanism_valid_on_the_day(abroad: Env) -> None:
    lender, agency = abroad.client("lender-a"), abroad.client("agency-us")

    def assign() -> dict[str, Any]:
        return lender.assign("C-3", "agency-us", "collection", "2026-12-31")

    assert code_of(assign) == "CROSS_BORDER_NOT_ALLOWED"  # no consent
    lender.set_consent("C-3", cross_border=True)
    assert code_of(assign) == "CROSS_BORDER_NOT_ALLOWED"  # consent, no mechanism
    lender.record_transfer("C-3", "standard_contract", "SC-2026-001", "2026-11-29")  # ended the day before
    assert code_of(assign) == "CROSS_BORDER_NOT_ALLOWED"
    assert [r for _, r in denials(abroad, "C-3", "AssignCase")] == [
        "cross_border.consent", "cross_border.mechanism", "cross_border.mechanism_expired"]
    done = lender.record_transfer("C-3", "standard_contract", "SC-2026-001", "2026-11-30")  # valid today
    assert done.to_dict() == {"case_id": "C-3", "mechanism": "standard_contract", "reference": "SC-2026-001",
                    "valid_until": "2026-11-30", "cross_border": True}
    assert assign().org_id == "agency-us"
    assert agency.get_case("C-3", "collection").case_id == "C-3"
    # the day after the mechanism's last day (Shanghai): reads and contacts through the mandate are refused
    abroad.clock.advance(days=1)
    assert code_of(lambda: agency.get_case("C-3", "collection")) == "CROSS_BORDER_NOT_ALLOWED"
    assert code_of(lambda: agency.open_contact("C-3", "call")) == "CROSS_BORDER_NOT_ALLOWED"
    explained = lender.explain("agency-us", "C-3", "collection")
    assert (explained.decision, explained.code) == ("deny", "CROSS_BORDER_NOT_ALLOWED")
    assert "a new collection mandate: refused (CROSS_BORDER_NOT_ALLOWED, rule cross_border.mechanism_expired)" \
        in explained.notes
    assert [(e.code, e.data["rule"]) for e in abroad.events(case_id="C-3", org="agency-us")
            if e.decision == "deny"][:2] == [("CROSS_BORDER_NOT_ALLOWED", "cross_border.mechanism_expired")] * 2
    # renewed: the same mandate reads again
    lender.record_transfer("C-3", "cac_assessment", "CAC-7", "2027-11-30")
    assert agency.get_case("C-3", "collection").case_id == "C-3"


def test_withdrawing_the_cross_border_consent_stops_reads_abroad_at_once(abroad: Env) -> None:
    lender, agency = abroad.client("lender-a"), abroad.client("agency-us")
    lender.set_consent("C-3", cross_border=True)
    lender.record_transfer("C-3", "certification", "CERT-1", "2027-06-30")
    lender.assign("C-3", "agency-us", "collection", "2026-12-31")
    lender.assign("C-3", "agency-2", "collection", "2026-12-31")
    assert lender.set_consent("C-3", cross_border=False).cross_border is False
    assert code_of(lambda: agency.get_case("C-3", "collection")) == "CROSS_BORDER_NOT_ALLOWED"
    # one organisation and another: the CN agency is not abroad and reads on
    assert abroad.client("agency-2").get_case("C-3", "collection").case_id == "C-3"


def test_placements_and_escalations_abroad_are_refused_and_us_cases_are_not_restricted(abroad: Env) -> None:
    lender = abroad.client("lender-a")
    result = lender.assign_lines([placement("C-3", "agency-us"), placement("C-4", "agency-us"),
                                  placement("C-5", "agency-2")])
    assert result.assigned == 2 and [(r.line, r.code, r.reason) for r in result.rejected] == [
        (1, "CROSS_BORDER_NOT_ALLOWED", "to: abroad without a valid transfer mechanism (or the consent it needs)")]
    assert code_of(lambda: lender.escalate("C-5", "lawfirm-us")) == "CROSS_BORDER_NOT_ALLOWED"
    assert lender.escalate("C-4", "lawfirm-us").stage == "litigation"  # a US case: the same jurisdiction
    assert lender.assign("C-6", "agency-2", "collection", "2026-12-31").org_id == "agency-2"  # US case, CN org


def test_the_cli_records_the_consent_and_the_mechanism(abroad: Env, run: Run) -> None:
    me = conn(abroad, "lender-a")
    rc, doc, _ = run.json("lender", "consent", "C-3", "--cross-border", "yes", *me)
    assert rc == 0 and doc["cross_border"] is True
    rc, doc, _ = run.json("lender", "transfer", "C-3", "--mechanism", "standard_contract", "--reference", "SC-1",
                          "--valid-until", "2027-01-31", *me)
    assert rc == 0 and (doc["mechanism"], doc["valid_until"]) == ("standard_contract", "2027-01-31")
    for argv, code in ((["--mechanism", "contract", "--reference", "SC-1", "--valid-until", "2027-01-31"],
                        "UNKNOWN_MECHANISM"),
                       (["--mechanism", "certification", "--reference", "a b", "--valid-until", "2027-01-31"],
                        "INVALID_RECORD_REFERENCE"),
                       (["--mechanism", "certification", "--reference", "C-1", "--valid-until", "31.01.2027"],
                        "INVALID_DATE")):
        rc, doc, _ = run.json("lender", "transfer", "C-3", *argv, *me)
        assert rc != 0 and doc["error"]["code"] == code
    rc, doc, _ = run.json("lender", "assign", "C-3", "--to", "agency-us", "--purpose", "collection", "--until",
                          "2026-12-31", "--agreement", "AG-1", "--pia", "PIA-1", *me)
    assert rc == 0 and doc["org_id"] == "agency-us"


def test_a_work_list_drops_a_case_whose_cross_border_consent_is_withdrawn(abroad: Env) -> None:
    lender, agency = abroad.client("lender-a"), abroad.client("agency-us")
    lender.set_consent("C-3", cross_border=True)
    lender.record_transfer("C-3", "standard_contract", "SC-1", "2027-06-30")
    lender.assign("C-3", "agency-us", "collection", "2026-12-31")
    first = list(agency.pull_cases("collection"))
    assert [i.record.case_id for i in first if isinstance(i, PullRecord)] == ["C-3"]
    lender.set_consent("C-3", cross_border=False)  # no mandate changes: the case row's change moves the feed
    again = list(agency.pull_cases("collection", first[-1].cursor))
    assert [(i.case_id, i.code) for i in again if isinstance(i, PullRemoved)] == [("C-3", "CROSS_BORDER_NOT_ALLOWED")]
