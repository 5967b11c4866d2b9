"""The EU as a third jurisdiction (issue 26 item 10): its conduct file, minimised field sets, erasure with GDPR's
exceptions, the record of processing activities (Art. 30) and forbearance before litigation (CCD Art. 35).

Integration tests run once per backend (sqlite and postgresql) through the `env` fixture.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from custos_client import CustosClientError

from gateway import cli, synth
from policies import BUNDLE_DIR
from tests.conftest import Env, RecordsClient

# The DESIGN.md §3 agency set at reminder and letter; in the EU without the national id (and, at field_visit,
# without the employer): policies/release.toml [[withhold]] eu.minimisation.agency.
REMINDER = {"full_name", "phone", "amount_due", "days_past_due", "due_on", "product", "lender_name", "national_id"}
EU_REMINDER = REMINDER - {"national_id"}
EU_LETTER = EU_REMINDER | {"home_address"}


def refused(call: Callable[[], object]) -> CustosClientError:
    with pytest.raises(CustosClientError) as info:
        call()
    return info.value


def berlin(day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    """A wall-clock time in Europe/Berlin in December 2026 (UTC+1, no summer time) as UTC."""
    return datetime(2026, 12, day, hour, minute, second, tzinfo=UTC) - timedelta(hours=1)


def eu(i: int, **kw: Any) -> dict[str, Any]:
    return synth.case_line(i, jurisdiction="EU", **kw)


@pytest.fixture
def eu_env(env: Env) -> Env:
    """lender-a owns EU cases C-1 (reminder), C-2 (letter) and C-3 (reminder, borrower B-1 like C-1), and CN case
    C-4; agency-1 holds C-1 and C-3 for collection. The seeded organisations are CN's, so each EU case records
    standard contractual clauses (GDPR Art. 46(2)(c)) valid through 2027."""
    lines = [eu(1, borrower=1), eu(2, stage="letter"), eu(3, borrower=1), synth.case_line(4, jurisdiction="CN")]
    assert env.import_cases("lender-a", lines).imported == 4
    lender = env.client("lender-a")
    for case in ("C-1", "C-2", "C-3"):
        lender.record_transfer(case, "standard_contractual_clauses", "SCC-2021-914", "2027-12-31")
    lender.assign("C-1", "agency-1", "collection", "2026-12-31")
    lender.assign("C-3", "agency-1", "collection", "2026-12-31")
    return env


def _codes(env: Env, case: str, code: str) -> list[dict[str, Any]]:
    return [e for e in env.events(case_id=case) if e.data.get("code") == code]


# ------------------------------------------------------------------ the conduct file, checked


def test_policy_check_loads_the_eu_conduct_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["policy", "check", str(BUNDLE_DIR), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] and doc["conduct"] == ["CN", "EU", "US"]


def test_policy_check_refuses_a_broken_eu_file_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bundle = tmp_path / "policies"
    shutil.copytree(BUNDLE_DIR, bundle, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    eu_file = bundle / "conduct" / "eu.toml"
    eu_file.write_text(eu_file.read_text().replace('end = "20:00"', 'end = "07:00"'))
    assert cli.main(["policy", "check", str(bundle), "--json"]) != 0
    out = capsys.readouterr()
    assert "eu.toml" in out.out + out.err and "window" in out.out + out.err


# ------------------------------------------------------------------ import, mandate, minimised read, erasure


def test_an_eu_case_is_imported_mandated_read_minimised_and_erased(eu_env: Env) -> None:
    eu_env.clock.current = berlin(1, 10)
    agency = eu_env.client("agency-1")
    record = agency.get_case("C-1", "collection")
    assert set(record.fields) == EU_REMINDER  # the field set the response proves: no national id
    read = [e for e in eu_env.events(case_id="C-1", org="agency-1") if e.data.get("code") == "OK"][-1]
    assert "eu.minimisation.agency" in read.data["rule"]
    eu_env.client("lender-a").assign("C-4", "agency-1", "collection", "2026-12-31")
    assert set(agency.get_case("C-4", "collection").fields) == REMINDER  # CN: unchanged, last 4 of the id
    own = eu_env.client("lender-a").get_case("C-1", "servicing").fields
    assert own["jurisdiction"] == "EU" and own["national_id"]  # the controller still has everything

    receipt = eu_env.client("lender-a").erase("B-1")
    assert receipt.state == "erased" and sorted(receipt.cases) == ["C-1", "C-3"]
    assert refused(lambda: agency.get_case("C-1", "collection")).code == "ERASED"
    rec = eu_env.client("lender-a").get_case("C-1", "servicing")
    assert rec.erasure == "erased" and not set(rec.fields) & {"full_name", "national_id", "phone"}


def test_eu_field_visit_withholds_the_employer_too(eu_env: Env) -> None:
    eu_env.client("lender-a").set_stage("C-1", "field_visit")
    fields = set(eu_env.client("agency-1").get_case("C-1", "collection").fields)
    assert fields == EU_LETTER | {"work_address"}


def test_erasure_of_an_eu_case_in_litigation_is_refused_as_a_legal_claim(eu_env: Env) -> None:
    lender = eu_env.client("lender-a")
    lender.record_forbearance("C-2", "payment_plan", "2026-11-01")
    lender.escalate("C-2", "lawfirm-1")
    err = refused(lambda: lender.erase("B-2"))
    assert err.code == "LEGAL_CLAIM"
    assert [e.data["rule"] for e in _codes(eu_env, "C-2", "LEGAL_CLAIM")] == ["EU.erasure.legal_claim"]
    # kept for the claim: counsel still reads the packet's personal data; the request restricted processing
    assert lender.get_case("C-2", "servicing").fields["full_name"]
    assert any(e.data["rule"] == "erasure.restricted:legal_claim" for e in eu_env.events(case_id="C-2"))


def test_a_cn_case_in_litigation_is_erased_on_request(eu_env: Env) -> None:
    """The claim exception is the EU file's [erasure] claim_stages; CN has none (a legal hold is its way)."""
    lender = eu_env.client("lender-a")
    lender.escalate("C-4", "lawfirm-1")
    assert lender.erase("B-4").state == "erased"


# ------------------------------------------------------------------ forbearance before litigation (CCD Art. 35)


def test_escalation_is_refused_before_the_forbearance_day_and_allowed_on_it(eu_env: Env) -> None:
    lender = eu_env.client("lender-a")
    eu_env.clock.current = berlin(9, 23, 59, 59)  # the day before, local
    assert refused(lambda: lender.escalate("C-1", "lawfirm-1")).code == "FORBEARANCE_REQUIRED"
    recorded = lender.record_forbearance("C-1", "deferral", "2026-12-10")
    assert recorded.to_dict()["measures"] == [{"measure": "deferral", "on": "2026-12-10"}]
    err = refused(lambda: lender.escalate("C-1", "lawfirm-1"))  # dated tomorrow: not yet
    assert err.code == "FORBEARANCE_REQUIRED"
    assert refused(lambda: lender.set_stage("C-1", "litigation")).code == "FORBEARANCE_REQUIRED"
    denials = _codes(eu_env, "C-1", "FORBEARANCE_REQUIRED")
    assert len(denials) == 3 and {e.data["rule"] for e in denials} == {"EU.litigation.forbearance"}
    eu_env.clock.current = berlin(10, 0)  # the day itself, local midnight
    assert lender.escalate("C-1", "lawfirm-1").stage == "litigation"


def test_escalation_the_day_after_the_measure_and_a_stage_move_are_allowed(eu_env: Env) -> None:
    lender = eu_env.client("lender-a")
    eu_env.clock.current = berlin(11, 9)
    lender.record_forbearance("C-2", "rate_reduction", "2026-12-10")
    assert lender.set_stage("C-2", "litigation").stage == "litigation"


def test_no_forbearance_needed_outside_the_eu(eu_env: Env) -> None:
    assert eu_env.client("lender-a").escalate("C-4", "lawfirm-1").stage == "litigation"


def test_a_bad_measure_or_day_gets_a_stable_code(eu_env: Env) -> None:
    lender = eu_env.client("lender-a")
    assert refused(lambda: lender.record_forbearance("C-1", "prayer", "2026-12-01")).code == "UNKNOWN_MEASURE"
    assert refused(lambda: lender.record_forbearance("C-1", "deferral", "2026-13-01")).code == "INVALID_DATE"
    assert refused(lambda: lender.record_forbearance("BC-9", "deferral", "2026-12-01")).code == "CASE_NOT_FOUND"
    assert refused(lambda: eu_env.client("agency-1").record_forbearance("C-1", "deferral", "2026-12-01")).code \
        == "WRONG_ORG_KIND"


# ------------------------------------------------------------------ the EU window and caps


def test_the_eu_window_is_0800_to_2000_local(eu_env: Env) -> None:
    agency = eu_env.client("agency-1")
    eu_env.clock.current = berlin(1, 7, 59, 59)
    assert refused(lambda: agency.open_contact("C-1", "call")).code == "OUTSIDE_CONTACT_WINDOW"
    eu_env.clock.current = berlin(1, 8)
    assert agency.open_contact("C-1", "call").phone
    eu_env.clock.current = berlin(1, 19, 59, 59)
    assert agency.open_contact("C-1", "call").phone
    eu_env.clock.current = berlin(1, 20)
    assert refused(lambda: agency.open_contact("C-1", "call")).code == "OUTSIDE_CONTACT_WINDOW"


def test_the_third_call_of_a_borrower_day_is_allowed_and_the_fourth_refused(eu_env: Env) -> None:
    """Counted per borrower across its cases (C-1 and C-3 share B-1); the next local day starts afresh."""
    agency = eu_env.client("agency-1")
    for hour, case in ((9, "C-1"), (10, "C-3"), (11, "C-1")):
        eu_env.clock.current = berlin(2, hour)
        assert agency.open_contact(case, "call").phone
    eu_env.clock.current = berlin(2, 12)
    err = refused(lambda: agency.open_contact("C-3", "call"))
    assert err.code == "CONTACT_CAP_REACHED"
    assert _codes(eu_env, "C-3", "CONTACT_CAP_REACHED")[-1].data["rule"].endswith("attempts_per_day")
    eu_env.clock.current = berlin(3, 9)
    assert agency.open_contact("C-3", "call").phone


# ------------------------------------------------------------------ the record of processing activities


def test_ropa_lists_exactly_the_mandates_recipients_and_fields(eu_env: Env, tmp_path: Path) -> None:
    ids = tmp_path / "agency-eu"
    assert cli.main(["org", "add", str(eu_env.data), "--id", "agency-eu", "--kind", "agency", "--name", "EU Agency",
                     "--jurisdiction", "EU", "--licence-no", "EU1", "--licence-expires", "2099-12-31",
                     "--out", str(ids)]) == 0
    lender = eu_env.client("lender-a")
    lender.assign("C-2", "agency-eu", "collection", "2026-12-31", label="entrusted")
    lender.assign("C-2", "agency-2", "collection", "2026-12-31")
    lender.recall("C-2", "agency-2")                           # recalled: no longer processing
    lender.assign("C-4", "agency-2", "collection", "2026-12-31")  # a CN case: not under the EU record
    doc = lender.ropa()
    assert doc.document["controller"]["org_id"] == "lender-a" and doc.document["jurisdictions"] == ["EU"]
    acts = {(a["recipient"]["org_id"], a["purpose"]): a for a in doc.document["activities"]}
    assert set(acts) == {("agency-1", "collection"), ("agency-eu", "collection")}
    outside = acts[("agency-1", "collection")]
    assert outside["cases"] == 2 and set(outside["categories"]) == EU_REMINDER
    assert outside["transfer"] == {"outside": True, "to": "CN", "from": ["EU"],
                                   "mechanisms": ["standard_contractual_clauses"]}  # Art. 30(1)(e)
    inside = acts[("agency-eu", "collection")]
    assert inside["cases"] == 1 and set(inside["categories"]) == EU_LETTER
    assert inside["transfer"]["outside"] is False and inside["roles"] == ["processor"]
    assert inside["transfer"]["mechanisms"] == []
    assert inside["legal_basis"]["EU"].startswith("GDPR Art. 6(1)(b)")
    assert inside["retention"]["EU"] == {"years": 3, "start": "closure", "rule": "EU.retention:3y_after_closure"}
    assert any(e.data.get("rule") == "ropa:activities=2" for e in eu_env.events(org="lender-a"))


def test_ropa_and_forbearance_on_the_command_line(eu_env: Env, capsys: pytest.CaptureFixture[str]) -> None:
    conn = ["--gateway", eu_env.addr, "--identity", str(eu_env.identity("lender-a"))]
    assert cli.main(["lender", "forbearance", "C-1", "--measure", "payment_plan", "--on", "2026-11-20", *conn,
                     "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["measures"] == [{"measure": "payment_plan", "on": "2026-11-20"}]
    assert cli.main(["lender", "ropa", *conn, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [a["recipient"]["org_id"] for a in doc["activities"]] == ["agency-1"]
    assert cli.main(["lender", "forbearance", "C-1", "--measure", "nope", "--on", "2026-11-20", *conn, "--json"]) != 0
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "UNKNOWN_MEASURE"


def test_an_eu_stop_calls_closes_calls_to_that_number_and_leaves_sms_open(eu_env: Env) -> None:
    agency = eu_env.client("agency-1")
    eu_env.clock.current = berlin(4, 9)
    contact = agency.open_contact("C-1", "call")
    agency.record_outcome(contact.contact_id, "stop_calls")
    eu_env.clock.current = berlin(5, 9)
    assert refused(lambda: agency.open_contact("C-3", "call")).code == "CONTACT_OPTED_OUT"  # same borrower's number
    assert agency.open_contact("C-1", "sms").phone


# ------------------------------------------------------------------ transfers abroad (GDPR Chapter V, Art. 44-49)


@pytest.fixture
def eu_abroad(eu_env: Env, tmp_path: Path) -> Env:
    """`eu_env` with agency-us (registered in the US) and EU case C-5 (reminder, borrower B-5), no mechanism."""
    assert cli.main(["org", "add", str(eu_env.data), "--id", "agency-us", "--kind", "agency", "--name", "US Agency",
                     "--jurisdiction", "US", "--licence-no", "US1", "--licence-expires", "2099-12-31",
                     "--out", str(tmp_path / "agency-us")]) == 0
    eu_env.clients["agency-us"] = RecordsClient(eu_env.addr, tmp_path / "agency-us", timeout=20)
    assert eu_env.import_cases("lender-a", [eu(5)]).imported == 1
    eu_env.clock.current = berlin(10, 10)
    return eu_env


def _denied_rules(env: Env, case: str) -> list[tuple[str, str]]:
    return [(e.code, e.data["rule"]) for e in env.events(case_id=case) if e.decision == "deny"]


def test_an_eu_case_reaches_a_us_agency_only_under_a_mechanism_valid_on_the_day(eu_abroad: Env) -> None:
    lender, agency = eu_abroad.client("lender-a"), eu_abroad.client("agency-us")

    def assign() -> dict[str, Any]:
        return lender.assign("C-5", "agency-us", "collection", "2026-12-31")

    assert refused(assign).code == "CROSS_BORDER_NOT_ALLOWED"  # no mechanism (and no consent: not the reason)
    lender.record_transfer("C-5", "standard_contractual_clauses", "SCC-US-1", "2026-12-09")  # ended the day before
    assert refused(assign).code == "CROSS_BORDER_NOT_ALLOWED"
    assert _denied_rules(eu_abroad, "C-5") == [("CROSS_BORDER_NOT_ALLOWED", "cross_border.mechanism"),
                                               ("CROSS_BORDER_NOT_ALLOWED", "cross_border.mechanism_expired")]
    done = lender.record_transfer("C-5", "standard_contractual_clauses", "SCC-US-1", "2026-12-10")  # valid today
    assert done.cross_border is False  # no consent on file, and none needed (Art. 49(1)(a) is a derogation)
    assert assign().org_id == "agency-us"
    explained = lender.explain("agency-us", "C-5", "collection")
    assert explained.decision == "allow"
    assert ("transfer EU to US: a mechanism of adequacy_decision, standard_contractual_clauses, "
            "binding_corporate_rules valid on the day; recorded: standard_contractual_clauses valid until "
            "2026-12-10; no consent needed") in explained.notes
    eu_abroad.clock.current = berlin(10, 19, 59)  # the last minute of the contact window, the last valid day
    assert agency.open_contact("C-5", "call").contact_id
    eu_abroad.clock.current = berlin(10, 23, 59, 59)  # the last second of the day in Berlin: still valid
    assert agency.get_case("C-5", "collection").case_id == "C-5"
    # the day after, in Berlin (still 10 December in UTC): reads and contacts through the mandate are refused
    eu_abroad.clock.current = berlin(11, 0, 0, 1)
    assert eu_abroad.clock.current.day == 10
    assert refused(lambda: agency.get_case("C-5", "collection")).code == "CROSS_BORDER_NOT_ALLOWED"
    eu_abroad.clock.current = berlin(11, 10)
    assert refused(lambda: agency.open_contact("C-5", "call")).code == "CROSS_BORDER_NOT_ALLOWED"
    assert [r for c, r in _denied_rules(eu_abroad, "C-5") if c == "CROSS_BORDER_NOT_ALLOWED"][-2:] == [
        "cross_border.mechanism_expired"] * 2
    explained = lender.explain("agency-us", "C-5", "collection")
    assert (explained.decision, explained.code) == ("deny", "CROSS_BORDER_NOT_ALLOWED")
    assert "a new collection mandate: refused (CROSS_BORDER_NOT_ALLOWED, rule cross_border.mechanism_expired)" \
        in explained.notes
    # binding corporate rules renewed: the same mandate reads again; one org and another: agency-1 (CN) is abroad too
    lender.record_transfer("C-5", "binding_corporate_rules", "BCR-7", "2027-12-31")
    assert agency.get_case("C-5", "collection").case_id == "C-5"
    assert lender.assign("C-5", "agency-1", "collection", "2026-12-31").org_id == "agency-1"


def test_an_eu_org_needs_no_mechanism_and_a_cn_case_still_needs_consent(eu_abroad: Env, tmp_path: Path) -> None:
    ids = tmp_path / "agency-eu"
    assert cli.main(["org", "add", str(eu_abroad.data), "--id", "agency-eu", "--kind", "agency", "--name", "EU",
                     "--jurisdiction", "EU", "--licence-no", "EU1", "--licence-expires", "2099-12-31",
                     "--out", str(ids)]) == 0
    lender = eu_abroad.client("lender-a")
    assert lender.assign("C-5", "agency-eu", "collection", "2026-12-31").org_id == "agency-eu"
    # CN keeps PIPL Art. 39: a mechanism without the separate consent is refused (CN case C-4 to the US agency)
    lender.record_transfer("C-4", "standard_contract", "SC-1", "2027-12-31")
    assert refused(lambda: lender.assign("C-4", "agency-us", "collection", "2026-12-31")).code \
        == "CROSS_BORDER_NOT_ALLOWED"
    assert _denied_rules(eu_abroad, "C-4")[-1] == ("CROSS_BORDER_NOT_ALLOWED", "cross_border.consent")


def test_a_mechanism_is_one_of_the_case_jurisdictions(eu_abroad: Env, capsys: pytest.CaptureFixture[str]) -> None:
    lender = eu_abroad.client("lender-a")
    for case, name in (("C-5", "standard_contract"), ("C-5", "cac_assessment"),
                       ("C-4", "standard_contractual_clauses"), ("C-4", "adequacy_decision")):
        err = refused(lambda c=case, n=name: lender.record_transfer(c, n, "REF-1", "2027-12-31"))
        assert err.code == "UNKNOWN_MECHANISM"
    assert [c for c, _ in _denied_rules(eu_abroad, "C-5")] == ["UNKNOWN_MECHANISM"] * 2
    conn = ["--gateway", eu_abroad.addr, "--identity", str(eu_abroad.identity("lender-a")), "--json"]
    assert cli.main(["lender", "transfer", "C-5", "--mechanism", "adequacy_decision", "--reference", "ADQ-2023-1795",
                     "--valid-until", "2027-07-10", *conn]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["mechanism"], doc["valid_until"]) == ("adequacy_decision", "2027-07-10")
    assert cli.main(["lender", "transfer", "C-5", "--mechanism", "standard_contract", "--reference", "SC-1",
                     "--valid-until", "2027-07-10", *conn]) != 0
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "UNKNOWN_MECHANISM"
    assert lender.assign("C-5", "agency-us", "collection", "2026-12-31").org_id == "agency-us"


def test_an_eu_mandate_names_its_agreement_and_needs_no_impact_assessment(eu_abroad: Env) -> None:
    lender = eu_abroad.client("lender-a")
    lender.record_transfer("C-5", "standard_contractual_clauses", "SCC-1", "2027-12-31")
    assert refused(lambda: lender.assign("C-5", "agency-us", "collection", "2026-12-31", agreement="",
                                         pia="")).code == "AGREEMENT_REQUIRED"
    granted = lender.assign("C-5", "agency-us", "collection", "2026-12-31", agreement="DPA-9", pia="")
    assert granted.agreement == "DPA-9" and granted.pia == ""
