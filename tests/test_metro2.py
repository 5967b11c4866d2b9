"""Metro 2 as bureaus accept it: what the format cannot carry is withheld (coded, audited, listed), never cut or
blanked; the lender's own header, ZIP+4, a paid account's zero balance, the loan's type and status, by byte offset."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from custos_client import Withheld

from gateway import cli, synth
from gateway.formats import metro2
from tests.conftest import Env

DAY = datetime(2026, 11, 30, 15, 0, tzinfo=UTC)  # 10:00 in New York: inside the US contact window
FURNISHER = {"lender": "lender-a", "furnisher_name": "Org lender-a",
             "furnisher_address": "1 Test Plaza, Testville, NY 10001", "furnisher_telephone": "2125550100"}


def us_case(env: Env, n: int, **borrower: str) -> str:
    """A US case of lender-a mandated to bureau-1, its borrower spoken to (Reg F §1006.30(a)): furnishable."""
    line = synth.case_line(n, jurisdiction="US")
    line["borrower"].update(borrower)
    assert env.import_cases("lender-a", [line]).imported == 1, n
    case = str(line["case_id"])
    lender, agency = env.client("lender-a"), env.client("agency-1")
    lender.assign(case, "bureau-1", "credit_reporting", "2027-06-30")
    lender.assign(case, "agency-1", "collection", "2027-06-30")
    agency.record_outcome(agency.open_contact(case, "call").contact_id, "connected")
    return case


def pull_metro2(env: Env, out: Path, capsys: pytest.CaptureFixture[str], *since: str) -> dict[str, Any]:
    argv = ["--gateway", env.addr, "--identity", str(env.identity("bureau-1")), "--json"]
    capsys.readouterr()
    assert cli.main(["bureau", "pull", "--format", "metro2", "--out", str(out), *since, *argv]) == 0
    doc: dict[str, Any] = json.loads(capsys.readouterr().out)
    return doc


def feed_codes(env: Env, case: str) -> list[tuple[str, str]]:
    return [(e.decision, e.code) for e in env.events(case_id=case) if e.method == "PullFeed"]


def record(**fields: str) -> dict[str, str]:
    base = {"full_name": "Ann Q Public", "national_id": "123456789", "date_of_birth": "1980-02-03",
            "home_address": "1 Main St, Springfield, IL 62704", "loan_id": "L-1", "product": "consumer loan",
            "status": "open", "principal": "5000.00", "outstanding": "3000.00", "amount_due": "400.00",
            "originated_on": "2025-01-10", "first_delinquency_on": "2026-10-01", "days_past_due": "10",
            **FURNISHER}
    return {**base, **fields}


def segment(**fields: str) -> bytes:
    return metro2.base_segment(record(**fields), DAY)


# ------------------------------------------------------------ finding 3 and 4: withheld, not failed whole


def test_a_us_national_id_in_other_digits_withholds_that_record_and_the_rest_are_written(
        seeded: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seeded.clock.current = DAY
    odd = {"full-width": "１２３４５６７８９", "arabic-indic": "١٢٣٤٥٦٧٨٩", "superscript": "¹²³⁴⁵⁶⁷⁸⁹"}
    cases = {kind: us_case(seeded, 70 + i, national_id=nid) for i, (kind, nid) in enumerate(odd.items())}
    good = us_case(seeded, 73)
    out = tmp_path / "feed.metro2"
    doc = pull_metro2(seeded, out, capsys)
    assert doc["records"] == 1 and doc["cursor"] == "f1"
    assert sorted(doc["withheld"], key=lambda w: w["case_id"]) == [
        {"case_id": case, "code": "SSN_INVALID"} for case in sorted(cases.values())]
    data = out.read_bytes()
    assert len(data) == 3 * 426 and data[426 + 297:426 + 306] == synth.case_line(73, jurisdiction="US")["borrower"][
        "national_id"].encode()
    assert data[426 + 42:426 + 72].rstrip() == synth.case_line(73, jurisdiction="US")["loan"]["loan_id"].encode()
    for case in cases.values():
        assert feed_codes(seeded, case) == [("deny", "SSN_INVALID")]
    assert feed_codes(seeded, good) == [("allow", "OK")]
    # Not numbered, so not passed by the cursor: the next pull decides (and lists) them again.
    again = pull_metro2(seeded, tmp_path / "again.metro2", capsys, "--since", doc["cursor"])
    assert again["records"] == 0 and again["cursor"] == "f1"
    assert sorted(w["case_id"] for w in again["withheld"]) == sorted(cases.values())


def test_a_us_national_id_of_10_digits_is_withheld_never_cut_to_its_last_9(seeded: Env) -> None:
    seeded.clock.current = DAY
    case = us_case(seeded, 74, national_id="1234567890")
    feed = seeded.client("bureau-1").pull_feed("")
    assert feed.records == [] and feed.cursor == "f0"  # JSON shares the cursor: withheld there too
    assert feed.withheld == [Withheld(case, "SSN_INVALID")]
    assert feed_codes(seeded, case) == [("deny", "SSN_INVALID")]
    assert metro2.problem(record(national_id="1234567890")) == "SSN_INVALID"
    assert metro2.problem(record(national_id="123-45-6789")) is None
    with pytest.raises(ValueError):  # the writer itself never cuts a number to its last digits
        segment(national_id="1234567890")


def test_a_name_or_an_address_outside_ascii_is_withheld_never_blanked_or_transliterated(seeded: Env) -> None:
    seeded.clock.current = DAY
    name = us_case(seeded, 75, full_name="José Müller")
    street = us_case(seeded, 76, home_address="5 Straße Rd, Testville, NY 10001")
    feed = seeded.client("bureau-1").pull_feed("")
    assert feed.records == [] and [w.to_dict() for w in sorted(feed.withheld, key=lambda w: w.case_id)] == [
        {"case_id": name, "code": "VALUE_NOT_ENCODABLE"}, {"case_id": street, "code": "VALUE_NOT_ENCODABLE"}]
    assert feed_codes(seeded, name) == [("deny", "VALUE_NOT_ENCODABLE")]


def test_a_lender_without_a_registered_address_has_its_records_withheld() -> None:
    assert metro2.problem(record(furnisher_address="")) == "FURNISHER_ADDRESS_MISSING"
    assert metro2.problem(record(furnisher_address="Ünter 1")) == "VALUE_NOT_ENCODABLE"
    assert metro2.problem(record()) is None


# ------------------------------------------------------------ the file as bureaus accept it


def test_the_header_carries_the_lenders_registered_name_address_and_telephone(
        seeded: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    seeded.clock.current = DAY
    us_case(seeded, 77)
    out = tmp_path / "feed.metro2"
    pull_metro2(seeded, out, capsys)
    head = out.read_bytes()[:426]
    assert head[4:10] == b"HEADER"
    assert head[79:119] == b"ORG LENDER-A".ljust(40)
    assert head[119:215] == b"1 TEST PLAZA, TESTVILLE, NY 10001".ljust(96)
    assert head[215:225] == b"2125550100"


def test_records_of_two_lenders_go_to_one_file_each() -> None:
    other = {**FURNISHER, "lender": "lender-b", "furnisher_name": "B", "furnisher_address": "2 B St"}
    written, withheld = metro2.files([record(), record(**other), record(national_id="12345678")], DAY)
    assert sorted(written) == ["lender-a", "lender-b"] and withheld == [{"case_id": "", "code": "SSN_INVALID"}]
    assert written["lender-b"][119:125] == b"2 B ST" and len(written["lender-b"]) == 3 * 426


def test_zip_plus_4_is_written_as_9_digits_and_a_malformed_zip_is_withheld() -> None:
    assert segment(home_address="1 Main St, Springfield, IL 62704-1234")[415:424] == b"627041234"
    assert segment(home_address="1 Main St, Springfield, IL 627041234")[415:424] == b"627041234"
    assert segment()[415:424] == b"62704    "
    assert segment()[393:413] == b"SPRINGFIELD".ljust(20) and segment()[413:415] == b"IL"
    assert metro2.problem(record(home_address="1 Main St, Springfield, IL 6270")) == "VALUE_NOT_ENCODABLE"


def test_a_paid_in_full_account_reports_13_with_a_zero_balance_and_nothing_past_due() -> None:
    paid = segment(status="settled", last_payment_on="2026-11-20", first_delinquency_on="2026-10-01")
    assert paid[123:125] == b"13" and paid[125:126] == b"1"  # paid while 30-59 days past due
    assert paid[154:163] == b"0" * 9 and paid[163:172] == b"0" * 9  # Current Balance, Amount Past Due
    assert paid[197:205] == b"11202026" and paid[189:197] == b"10012026"  # Date Closed, first delinquency
    current = segment(status="settled", last_payment_on="2026-09-20", first_delinquency_on="")
    assert current[123:126] == b"130" and current[189:197] == b"0" * 8
    charged_off = segment(status="closed")
    assert charged_off[123:125] == b"97" and charged_off[154:163] == b"000003000"
    assert charged_off[172:181] == b"000003000"  # Original Charge-off Amount


@pytest.mark.parametrize(("days", "status"), [("0", "11"), ("29", "11"), ("30", "71"), ("59", "71"), ("60", "78"),
                                              ("90", "80"), ("120", "82"), ("150", "83"), ("180", "84"),
                                              ("400", "84")])
def test_a_lenders_own_account_has_its_status_from_days_past_due(days: str, status: str) -> None:
    seg = segment(days_past_due=days)
    assert seg[123:125] == status.encode() and seg[125:126] == b" "
    assert seg[189:197] == (b"0" * 8 if status == "11" else b"10012026")  # DOFD only once delinquent


def test_a_lenders_own_account_has_the_loans_account_type_and_no_original_creditor_segment() -> None:
    seg = segment()
    assert seg[72:73] == b"I" and seg[73:75] == b"01"  # installment, unsecured loan: not 48 (collection agency)
    assert seg[101:104] == b"001" and seg[154:163] == b"000003000" and seg[163:172] == b"000000400"
    assert seg[42:72] == b"L-1".ljust(30) and seg[20:40] == b"LENDER-A".ljust(20)
    assert segment(product="auto loan")[72:75] == b"I00"
    assert segment(product="student loan")[72:75] == b"I12"
    assert segment(product="Credit Card")[72:75] == b"R18" and segment(product="credit card")[101:105] == b"REVM"
    data = metro2.file([record(), record(days_past_due="45")], DAY)
    assert len(data) == 4 * 426  # header, two Base Segments, trailer: no K1 segment appended
    trailer = metro2.parse(metro2.TRAILER, data[-426:])
    assert trailer["TotalStatusCode11"] == "000000001" and trailer["TotalStatusCode71"] == "000000001"
    assert trailer["TotalStatusCode93"] == "0" * 9 and trailer["TotalOriginalCreditorSegments"] == "0" * 9


def test_org_add_takes_a_lenders_address_and_telephone_and_refuses_what_the_header_cannot_carry(
        env: Env, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def add(org_id: str, *extra: str) -> int:
        capsys.readouterr()
        return cli.main(["org", "add", str(env.data), "--id", org_id, "--kind", "lender", "--name", "Z",
                         "--out", str(tmp_path / org_id), "--json", *extra])

    for extra in (("--telephone", "555-0100"), ("--telephone", "２１２５５５０１００"), ("--address", "Straße 1"),
                  ("--address", "x" * 97), ("--address", " ")):
        assert add("lender-z", *extra) != 0, extra
        assert json.loads(capsys.readouterr().out)["error"]["code"] == "INVALID_ARGUMENT"
    assert add("lender-z", "--address", "9 Z Road, Zed, NY 10002", "--telephone", "+1 212 555 0199") == 0
