"""The bureau feed: preconditions withheld and satisfied, only changes re-sent, a durable cursor, Metro 2 to the byte."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from custos_client import CustosClientError

from gateway import cli, synth
from gateway.formats import metro2
from gateway.transport.server import build
from tests.conftest import Env


def pull(env: Env, since: str = "") -> tuple[list[dict[str, str]], str]:
    feed = env.client("bureau-1").pull_feed(since)
    return feed.records, feed.cursor


def restart(env: Env) -> None:
    env.close()
    env.clients = {}
    env.gw = build(env.data, "127.0.0.1:0", clock=env.clock, workers=8)


def cn_case(env: Env, n: int, **loan: str) -> str:
    line = synth.case_line(n, jurisdiction="CN")
    line["loan"].update(loan)
    assert env.import_cases("lender-a", [line]).imported == 1
    env.client("lender-a").assign(line["case_id"], "bureau-1", "credit_reporting", "2027-06-30")
    return str(line["case_id"])


def test_cn_records_are_withheld_until_the_notice_then_sent_once_and_again_only_when_changed(seeded: Env) -> None:
    lender = seeded.client("lender-a")
    lender.assign("C-3", "bureau-1", "credit_reporting", "2027-06-30")
    records, cursor = pull(seeded)
    assert records == [] and cursor == "f0"
    withheld = [e for e in seeded.events(case_id="C-3") if e.method == "PullFeed"]
    assert [(e.decision, e.code) for e in withheld] == [("deny", "NO_PRIOR_NOTICE")]
    lender.record_notice("C-3", "2026-11-29")
    records, cursor = pull(seeded, cursor)
    assert [(r.case_id, r.seq) for r in records] == [("C-3", 1)] and cursor == "f1"
    line = synth.case_line(3, jurisdiction="CN")
    record = records[0]
    assert record.loan_id == line["loan"]["loan_id"]
    assert record.fields["national_id"] == line["borrower"]["national_id"]
    assert record.fields["consent_reference"] == "lender-a/C-3/credit_reporting"
    assert record.fields["negative_notice_on"] == "2026-11-29"
    assert record.fields["outstanding"] == line["loan"]["outstanding"]
    assert int(record.fields["overdue_periods"]) >= 1 and record.fields["compliance_condition"] == ""
    assert "phone" not in record.fields and "bank_account" not in record.fields  # not in the bureau's field set
    allow = [e for e in seeded.events(case_id="C-3") if e.method == "PullFeed"][-1]
    assert allow.decision == "allow" and "national_id" in allow.data["fields"] and "seq=1" in allow.data["rule"]
    assert pull(seeded, cursor) == ([], "f1")  # nothing changed: nothing sent
    lender.set_stage("C-3", "letter")  # not part of the record: still nothing
    assert pull(seeded, cursor) == ([], "f1")
    lender.set_flags("C-3", disputed=True)
    records, cursor = pull(seeded, cursor)
    assert [(r.seq, r.fields["compliance_condition"], r.fields["disputed"]) for r in records] == [(2, "XB", "true")]
    lender.set_flags("C-3", disputed=False)
    records, cursor = pull(seeded, cursor)
    assert [(r.seq, r.fields["compliance_condition"], r.fields["disputed"]) for r in records] == [(3, "XH", "false")]
    assert pull(seeded, cursor) == ([], "f3")  # XH stays: no new record


def test_the_cursor_survives_a_restart_and_a_lost_response_is_sent_again(seeded: Env) -> None:
    cases = [cn_case(seeded, n, negative_notice_on="2026-11-01") for n in (60, 61, 62)]
    first, c1 = pull(seeded)
    assert sorted(r.case_id for r in first) == cases and c1 == "f3"
    # The bureau never got that response: pulling again from its old cursor sends the same records, same numbers.
    again, c1b = pull(seeded, "")
    assert [(r.case_id, r.seq) for r in again] == [(r.case_id, r.seq) for r in first] and c1b == "f3"
    restart(seeded)
    assert pull(seeded, c1) == ([], "f3")  # after a restart: nothing repeated
    seeded.client("lender-a").set_flags(cases[1], disputed=True)
    restart(seeded)
    changed, c2 = pull(seeded, c1)
    assert [(r.case_id, r.seq) for r in changed] == [(cases[1], 4)] and c2 == "f4"


def test_a_recall_or_a_withdrawn_precondition_stops_the_records(seeded: Env) -> None:
    case = cn_case(seeded, 63, negative_notice_on="2026-11-01")
    records, cursor = pull(seeded)
    assert [r.case_id for r in records] == [case]
    seeded.client("lender-a").recall(case, "bureau-1")
    seeded.client("lender-a").set_flags(case, disputed=True)
    assert pull(seeded, cursor) == ([], cursor)


def test_bad_cursors_and_other_callers_are_refused(seeded: Env) -> None:
    for cursor in ("garbage", "f99", "f-1", "f" + "9" * 30):
        with pytest.raises(CustosClientError) as info:
            pull(seeded, cursor)
        assert info.value.code == "INVALID_CURSOR", cursor
    with pytest.raises(CustosClientError) as info:
        seeded.client("agency-1").pull_feed("")
    assert info.value.code == "WRONG_ORG_KIND"


def test_us_records_in_metro2_every_filled_field_at_its_position(seeded: Env, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    lender, agency = seeded.client("lender-a"), seeded.client("agency-1")
    case = "C-4"  # US, America/New_York
    lender.assign(case, "bureau-1", "credit_reporting", "2027-06-30")
    lender.assign(case, "agency-1", "collection", "2027-06-30")
    seeded.clock.current = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)
    call = agency.open_contact(case, "call")
    assert pull(seeded)[0] == []  # no conversation yet
    agency.record_outcome(call.contact_id, "connected")
    out = tmp_path / "feed.metro2"
    argv = ["--gateway", seeded.addr, "--identity", str(seeded.identity("bureau-1")), "--json"]
    assert cli.main(["bureau", "pull", "--format", "metro2", "--out", str(out), *argv]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["records"] == 1 and doc["cursor"] == "f1" and out.stat().st_mode & 0o777 == 0o600
    data = out.read_bytes()
    assert len(data) == 3 * 426
    header, base, trailer = (metro2.parse(layout, data[i * 426:(i + 1) * 426])
                             for i, layout in enumerate((metro2.HEADER, metro2.BASE, metro2.TRAILER)))
    line = synth.case_line(4, jurisdiction="US")
    b, loan = line["borrower"], line["loan"]
    first, middle, last = b["full_name"].split()

    def mdy(iso: str) -> str:
        return f"{iso[5:7]}{iso[8:10]}{iso[:4]}"

    assert header["RecordDescriptorWord"] == "0426" and header["RecordIdentifier"] == "HEADER"
    today = datetime.now(UTC).strftime("%m%d%Y")  # the file is dated when the bureau writes it
    assert header["ActivityDate"] == today
    # The lender furnishes its own account: its registration heads the file.
    assert header["ReporterName"] == "ORG LENDER-A".ljust(40)
    assert header["ReporterAddress"] == "1 TEST PLAZA, TESTVILLE, NY 10001".ljust(96)
    assert header["ReporterTelephoneNumber"] == "2125550100"
    # Its status is the loan's delinquency (C-4's days past due on the day of the pull), not "in collection".
    dpd = (date(2026, 11, 30) - date.fromisoformat(loan["first_delinquency_on"])).days + 1
    status = next((code for floor, code in ((180, "84"), (150, "83"), (120, "82"), (90, "80"), (60, "78"),
                                            (30, "71")) if dpd >= floor), "11")
    expected = {
        "RecordDescriptorWord": "0426", "ProcessingIndicator": "1", "CorrectionIndicator": "0",
        "IdentificationNumber": "LENDER-A".ljust(20), "ConsumerAccountNumber": loan["loan_id"].upper().ljust(30),
        "PortfolioType": "I", "AccountType": "01", "DateOpened": mdy(loan["originated_on"]),
        "HighestCredit": loan["principal"].split(".")[0].rjust(9, "0"), "TermsDuration": "001",
        "TermsFrequency": "P", "AccountStatus": status, "PaymentRating": " ", "PaymentHistoryProfile": "B" * 24,
        "ComplianceConditionCode": "  ", "CurrentBalance": loan["outstanding"].split(".")[0].rjust(9, "0"),
        "AmountPastDue": loan["amount_due"].split(".")[0].rjust(9, "0"), "DateAccountInformation": today,
        "DateFirstDelinquency": mdy(loan["first_delinquency_on"]) if status != "11" else "0" * 8,
        "DateClosed": "0" * 8, "OriginalChargeOffAmount": "0" * 9,
        "DateLastPayment": "0" * 8, "Surname": last.upper().ljust(25), "FirstName": first.upper().ljust(20),
        "MiddleName": middle.upper().ljust(20), "SocialSecurityNumber": b["national_id"],
        "DateBirth": mdy(b["date_of_birth"]), "TelephoneNumber": "0" * 10, "ECOACode": "1", "CountryCode": "US",
        "FirstLineAddress": b["home_address"].split(",")[0].upper().ljust(32), "City": "TESTVILLE".ljust(20),
        "State": "NY",
    }
    for name, value in expected.items():
        assert base[name] == value, name
    assert trailer["RecordIdentifier"] == "TRAILER" and int(trailer["TotalBaseRecords"]) == 1
    assert int(trailer[f"TotalStatusCode{status}"]) == 1 and int(trailer["BlockCount"]) == 3
    assert int(trailer["TotalStatusCode93"]) == 0 and int(trailer["TotalOriginalCreditorSegments"]) == 0
    assert int(trailer["TotalSocialNumbersBaseSegments"]) == 1 and int(trailer["TotalDatesBirthBaseSegments"]) == 1
    # A dispute: XB, then XH once resolved.
    lender.set_flags(case, disputed=True)
    records, cursor = pull(seeded, "f1")
    assert metro2.parse(metro2.BASE, metro2.base_segment(records[0].to_dict(), seeded.clock.now()))[
        "ComplianceConditionCode"] == "XB"
    lender.set_flags(case, disputed=False, verification_sent="2026-11-01")  # US: verification sent (issue 26)
    records, _ = pull(seeded, cursor)
    assert metro2.parse(metro2.BASE, metro2.base_segment(records[0].to_dict(), seeded.clock.now()))[
        "ComplianceConditionCode"] == "XH"


def test_metro2_refuses_records_it_cannot_carry_and_json_is_the_default(seeded: Env, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    cn_case(seeded, 64, negative_notice_on="2026-11-01")
    argv = ["--gateway", seeded.addr, "--identity", str(seeded.identity("bureau-1"))]
    assert cli.main(["bureau", "pull", "--format", "metro2", "--out", str(tmp_path / "x"), *argv, "--json"]) != 0
    assert json.loads(capsys.readouterr().out)["error"]["code"] == "INVALID_ARGUMENT"
    assert not (tmp_path / "x").exists()
    assert cli.main(["bureau", "pull", *argv]) == 0  # the same records, not lost: the cursor was not taken
    feed = json.loads(capsys.readouterr().out)
    assert [r["case_id"] for r in feed["records"]] == ["C-64"] and feed["cursor"] == "f1"


def test_metro2_records_are_426_bytes_and_never_shift() -> None:
    record = {"full_name": "A " + "B" * 40, "home_address": "x" * 100, "national_id": "123-45-6789",
              "loan_id": "L" * 50, "outstanding": "999999999.49", "originated_on": "not a date"}
    segment = metro2.base_segment(record, datetime(2026, 11, 30, tzinfo=UTC) + timedelta(hours=1))
    assert len(segment) == 426
    parsed = metro2.parse(metro2.BASE, segment)
    assert parsed["SocialSecurityNumber"] == "123456789" and parsed["DateOpened"] == "0" * 8
    assert parsed["ConsumerAccountNumber"] == "L" * 30 and parsed["Surname"] == "B" * 25
    assert parsed["ECOACode"] == "1" and parsed["ResidenceCode"] == " " and parsed["CurrentBalance"] == "9" * 9
    # An amount too large for its 9 digits is never cut to its last digits: the record cannot be written.
    too_large = {**record, "outstanding": "1000000000.00", "furnisher_address": "1 Main St"}
    assert metro2.problem(too_large) == "VALUE_NOT_ENCODABLE"
    with pytest.raises(ValueError):
        metro2.base_segment(too_large, datetime(2026, 11, 30, tzinfo=UTC))
    assert metro2.file([], datetime(2026, 11, 30, tzinfo=UTC))[4:10] == b"HEADER"


def test_a_furnished_account_that_ends_gets_one_final_record_and_one_never_furnished_gets_none(seeded: Env) -> None:
    lender = seeded.client("lender-a")
    furnished = cn_case(seeded, 65, negative_notice_on="2026-11-01")
    never = cn_case(seeded, 66)  # no notice: withheld, so never furnished
    records, cursor = pull(seeded)
    assert [r.case_id for r in records] == [furnished]
    lender.set_flags(furnished, status="settled")
    lender.set_flags(never, status="closed")
    records, cursor = pull(seeded, cursor)
    assert [(r.case_id, r.fields["status"], r.seq) for r in records] == [(furnished, "settled", 2)]
    assert [e.data["rule"] for e in seeded.events(case_id=furnished) if e.method == "PullFeed"][-1] == \
        "credit_reporting.final_status;seq=2"
    assert [e.code for e in seeded.events(case_id=never) if e.method == "PullFeed"][-1] == "CASE_CLOSED"
    assert pull(seeded, cursor) == ([], cursor)  # final: nothing more unless it changes again
    as_us = {**records[0].to_dict(), "national_id": "123456789"}  # a CN id is no SSN: the status is what is checked here
    segment = metro2.parse(metro2.BASE, metro2.base_segment(as_us, datetime(2026, 12, 1, tzinfo=UTC)))
    assert segment["AccountStatus"] == "13" and segment["DateClosed"] == "12012026"
    assert segment["CurrentBalance"] == segment["AmountPastDue"] == "0" * 9


def test_the_final_record_passes_the_same_decision_as_every_record(seeded: Env) -> None:
    """Issue 22 finding 11: a withdrawn consent (or a restriction) stops the final-status record too."""
    lender = seeded.client("lender-a")
    withdrawn = cn_case(seeded, 69, negative_notice_on="2026-11-01")
    kept = cn_case(seeded, 70, negative_notice_on="2026-11-01")
    records, cursor = pull(seeded)
    assert sorted(r.case_id for r in records) == [withdrawn, kept]
    lender.set_consent(withdrawn, credit_reporting=False)
    assert pull(seeded, cursor) == ([], cursor)  # withheld while open
    lender.set_flags(withdrawn, status="settled")
    lender.set_flags(kept, status="settled")
    records, cursor = pull(seeded, cursor)
    assert [(r.case_id, r.fields["status"]) for r in records] == [(kept, "settled")]  # the control: its final record
    last = [e for e in seeded.events(case_id=withdrawn) if e.method == "PullFeed"][-1]
    assert (last.decision, last.code, last.data["fields"]) == ("deny", "CONSENT_WITHDRAWN", [])
    assert pull(seeded, cursor) == ([], cursor)


def test_the_feed_withholds_exactly_where_cases_get_refuses(seeded: Env) -> None:
    lender = seeded.client("lender-a")
    no_consent = synth.case_line(67, jurisdiction="CN")
    no_consent["consent"]["credit_reporting"] = False
    no_consent["loan"]["negative_notice_on"] = "2026-11-01"
    obsolete = synth.case_line(68, jurisdiction="US")
    obsolete["loan"]["first_delinquency_on"] = "2019-01-02"
    seeded.import_cases("lender-a", [no_consent, obsolete])
    expected = {"C-67": "CONSENT_REQUIRED", "C-68": "REPORTING_OBSOLETE", "C-3": "NO_PRIOR_NOTICE",
                "C-4": "NO_PRIOR_CONTACT"}
    for case in expected:
        lender.assign(case, "bureau-1", "credit_reporting", "2027-06-30")
    assert pull(seeded)[0] == []
    for case, code in expected.items():
        with pytest.raises(CustosClientError) as info:
            seeded.client("bureau-1").get_case(case, "credit_reporting")
        assert info.value.code == code
        withheld = [e for e in seeded.events(case_id=case) if e.method == "PullFeed"]
        assert [(e.decision, e.code) for e in withheld] == [("deny", code)], case
