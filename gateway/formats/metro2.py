"""Metro 2 (CDIA) character format, 426-byte records: a header, one Base Segment per account, a trailer.

No maintained Python Metro 2 library exists; the field positions below are
the published ones (CDIA Credit Reporting Resource Guide, as transcribed in
moov-io/metro2 `pkg/lib/specifications.go`), 0-based start and length.
Numeric fields are right-justified and zero-filled, alphanumeric ones
left-justified and blank-filled, upper case; dates are MMDDYYYY (zeros when
absent); money is whole dollars.

What a collection furnisher fills (decisions, documented in docs/decisions.md):
Portfolio Type O and Account Type 48 (collection agency / attorney), Terms
Duration 001 and Frequency P, Account Status 93 (assigned to collections),
62 once settled (paid in full) and DA once closed unpaid (Date Closed set),
Payment History Profile all B (no history known to the gateway), ECOA 1
(individual), Compliance Condition XB (disputed) or XH (dispute resolved).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

RECORD = 426
# Account Status by case status: 93 assigned to collections; 62 collection paid in full; DA the account
# returned unpaid (closed), reported for deletion by the collection furnisher.
STATUS = {"open": "93", "settled": "62", "closed": "DA"}

# name: (start, length, kind) with kind "n" numeric, "a" alphanumeric, "d" date
BASE: dict[str, tuple[int, int, str]] = {
    "RecordDescriptorWord": (0, 4, "n"),
    "ProcessingIndicator": (4, 1, "n"),
    "TimeStamp": (5, 14, "n"),
    "CorrectionIndicator": (19, 1, "n"),
    "IdentificationNumber": (20, 20, "a"),
    "CycleIdentifier": (40, 2, "a"),
    "ConsumerAccountNumber": (42, 30, "a"),
    "PortfolioType": (72, 1, "a"),
    "AccountType": (73, 2, "a"),
    "DateOpened": (75, 8, "d"),
    "CreditLimit": (83, 9, "n"),
    "HighestCredit": (92, 9, "n"),
    "TermsDuration": (101, 3, "a"),
    "TermsFrequency": (104, 1, "a"),
    "ScheduledMonthlyPaymentAmount": (105, 9, "n"),
    "ActualPaymentAmount": (114, 9, "n"),
    "AccountStatus": (123, 2, "a"),
    "PaymentRating": (125, 1, "a"),
    "PaymentHistoryProfile": (126, 24, "a"),
    "SpecialComment": (150, 2, "a"),
    "ComplianceConditionCode": (152, 2, "a"),
    "CurrentBalance": (154, 9, "n"),
    "AmountPastDue": (163, 9, "n"),
    "OriginalChargeOffAmount": (172, 9, "n"),
    "DateAccountInformation": (181, 8, "d"),
    "DateFirstDelinquency": (189, 8, "d"),
    "DateClosed": (197, 8, "d"),
    "DateLastPayment": (205, 8, "d"),
    "InterestTypeIndicator": (213, 1, "a"),
    "Reserved2": (214, 17, "a"),
    "Surname": (231, 25, "a"),
    "FirstName": (256, 20, "a"),
    "MiddleName": (276, 20, "a"),
    "GenerationCode": (296, 1, "a"),
    "SocialSecurityNumber": (297, 9, "n"),
    "DateBirth": (306, 8, "d"),
    "TelephoneNumber": (314, 10, "n"),
    "ECOACode": (324, 1, "a"),
    "ConsumerInformationIndicator": (325, 2, "a"),
    "CountryCode": (327, 2, "a"),
    "FirstLineAddress": (329, 32, "a"),
    "SecondLineAddress": (361, 32, "a"),
    "City": (393, 20, "a"),
    "State": (413, 2, "a"),
    "ZipCode": (415, 9, "a"),
    "AddressIndicator": (424, 1, "a"),
    "ResidenceCode": (425, 1, "a"),
}

HEADER: dict[str, tuple[int, int, str]] = {
    "RecordDescriptorWord": (0, 4, "n"),
    "RecordIdentifier": (4, 6, "a"),
    "CycleIdentifier": (10, 2, "a"),
    "InnovisProgramIdentifier": (12, 10, "a"),
    "EquifaxProgramIdentifier": (22, 10, "a"),
    "ExperianProgramIdentifier": (32, 5, "a"),
    "TransUnionProgramIdentifier": (37, 10, "a"),
    "ActivityDate": (47, 8, "d"),
    "DateCreated": (55, 8, "d"),
    "ProgramDate": (63, 8, "d"),
    "ProgramRevisionDate": (71, 8, "d"),
    "ReporterName": (79, 40, "a"),
    "ReporterAddress": (119, 96, "a"),
    "ReporterTelephoneNumber": (215, 10, "n"),
    "SoftwareVendorName": (225, 40, "a"),
    "SoftwareVersionNumber": (265, 5, "a"),
    "PRBCProgramIdentifier": (270, 10, "a"),
    "Reserved": (280, 146, "a"),
}

TRAILER: dict[str, tuple[int, int, str]] = {
    "RecordDescriptorWord": (0, 4, "n"),
    "RecordIdentifier": (4, 7, "a"),
    "TotalBaseRecords": (11, 9, "n"),
    "Reserved1": (20, 9, "a"),
    "TotalStatusCodeDF": (29, 9, "n"),
    "TotalConsumerSegmentsJ1": (38, 9, "n"),
    "TotalConsumerSegmentsJ2": (47, 9, "n"),
    "BlockCount": (56, 9, "n"),
    "TotalStatusCodeDA": (65, 9, "n"),
    **{f"TotalStatusCode{code}": (74 + 9 * i, 9, "n") for i, code in enumerate(
        ("05", "11", "13", "61", "62", "63", "64", "65", "71", "78", "80", "82", "83", "84", "88", "89", "93", "94",
         "95", "96", "97"))},
    "TotalECOACodeZ": (263, 9, "n"),
    "TotalEmploymentSegments": (272, 9, "n"),
    "TotalOriginalCreditorSegments": (281, 9, "n"),
    "TotalPurchasedToSegments": (290, 9, "n"),
    "TotalMortgageInformationSegments": (299, 9, "n"),
    "TotalPaymentInformationSegments": (308, 9, "n"),
    "TotalChangeSegments": (317, 9, "n"),
    "TotalSocialNumbersAllSegments": (326, 9, "n"),
    "TotalSocialNumbersBaseSegments": (335, 9, "n"),
    "TotalSocialNumbersJ1Segments": (344, 9, "n"),
    "TotalSocialNumbersJ2Segments": (353, 9, "n"),
    "TotalDatesBirthAllSegments": (362, 9, "n"),
    "TotalDatesBirthBaseSegments": (371, 9, "n"),
    "TotalDatesBirthJ1Segments": (380, 9, "n"),
    "TotalDatesBirthJ2Segments": (389, 9, "n"),
    "TotalTelephoneNumbersAllSegments": (398, 9, "n"),
    "Reserved2": (407, 19, "a"),
}


def _date(value: str | None) -> str:
    if not value:
        return "0" * 8
    try:
        d = date.fromisoformat(value[:10])
    except ValueError:
        return "0" * 8
    return d.strftime("%m%d%Y")


def _dollars(value: str | None) -> str:
    try:
        amount = Decimal(value or "0")
    except InvalidOperation:
        amount = Decimal(0)
    return str(max(amount, Decimal(0)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _ascii(text: str) -> str:
    return "".join(c if " " <= c <= "~" else " " for c in text.upper())


def render(layout: Mapping[str, tuple[int, int, str]], values: Mapping[str, str]) -> bytes:
    """One 426-byte record; fields not given are zero- or blank-filled; too-long text is cut, never shifted."""
    out = bytearray(b" " * RECORD)
    for name, (start, length, kind) in layout.items():
        value = values.get(name, "")
        if kind in "nd":
            digits = "".join(c for c in value if c.isdigit())
            text = digits[-length:].rjust(length, "0")
        else:
            text = _ascii(value)[:length].ljust(length)
        out[start:start + length] = text.encode("ascii")
    assert len(out) == RECORD
    return bytes(out)


def parse(layout: Mapping[str, tuple[int, int, str]], record: bytes) -> dict[str, str]:
    """The fields of one record as text (for tests and for reading a file back)."""
    text = record.decode("ascii")
    return {name: text[start:start + length] for name, (start, length, _) in layout.items()}


def _name(full: str) -> tuple[str, str, str]:
    """(surname, first, middle): Western order, the last word is the surname (decision)."""
    words = full.split()
    if not words:
        return "", "", ""
    if len(words) == 1:
        return words[0], "", ""
    return words[-1], words[0], " ".join(words[1:-1])


def _address(text: str) -> tuple[str, str, str, str]:
    """(first line, city, state, ZIP) from 'LINE, CITY, ST 12345'; what cannot be told apart stays blank."""
    parts = [p.strip() for p in text.split(",")]
    line = parts[0] if parts else ""
    city = parts[1] if len(parts) > 2 else ""
    last = parts[-1].split() if len(parts) > 1 else []
    state = last[0] if last and len(last[0]) == 2 and last[0].isalpha() else ""
    zip_code = last[1] if len(last) > 1 else ""
    return line, city, state, zip_code


def base_segment(record: Mapping[str, str], reported_at: datetime) -> bytes:
    surname, first, middle = _name(record.get("full_name", ""))
    line, city, state, zip_code = _address(record.get("home_address", ""))
    values = {
        "RecordDescriptorWord": str(RECORD),
        "ProcessingIndicator": "1",
        "TimeStamp": reported_at.strftime("%m%d%Y%H%M%S"),
        "CorrectionIndicator": "0",
        "IdentificationNumber": record.get("lender", ""),
        "ConsumerAccountNumber": record.get("loan_id", ""),
        "PortfolioType": "O",
        "AccountType": "48",
        "DateOpened": _date(record.get("originated_on")),
        "HighestCredit": _dollars(record.get("principal")),
        "TermsDuration": "001",
        "TermsFrequency": "P",
        "AccountStatus": STATUS.get(record.get("status", "open"), "93"),
        "PaymentHistoryProfile": "B" * 24,
        "ComplianceConditionCode": record.get("compliance_condition", ""),
        "CurrentBalance": _dollars(record.get("outstanding")),
        "AmountPastDue": _dollars(record.get("amount_due")),
        "DateAccountInformation": reported_at.strftime("%m%d%Y"),
        "DateFirstDelinquency": _date(record.get("first_delinquency_on")),
        "DateLastPayment": _date(record.get("last_payment_on")),
        "DateClosed": ("0" * 8 if record.get("status", "open") == "open"
                       else _date(record.get("last_payment_on")) if record.get("last_payment_on")
                       else reported_at.strftime("%m%d%Y")),
        "Surname": surname,
        "FirstName": first,
        "MiddleName": middle,
        "SocialSecurityNumber": record.get("national_id", ""),
        "DateBirth": _date(record.get("date_of_birth")),
        "ECOACode": "1",
        "CountryCode": "US",
        "FirstLineAddress": line,
        "City": city,
        "State": state,
        "ZipCode": zip_code,
    }
    return render(BASE, values)


def file(records: Iterable[Mapping[str, str]], reported_at: datetime, reporter: str = "CUSTOS GATEWAY") -> bytes:
    """Header, one Base Segment per record, trailer with its totals."""
    bases = [base_segment(r, reported_at) for r in records]
    day = reported_at.strftime("%m%d%Y")
    header = render(HEADER, {"RecordDescriptorWord": str(RECORD), "RecordIdentifier": "HEADER", "ActivityDate": day,
                             "DateCreated": day, "ReporterName": reporter})
    parsed = [parse(BASE, b) for b in bases]
    count = str(len(bases))
    with_ssn = str(sum(1 for p in parsed if p["SocialSecurityNumber"] != "0" * 9))
    with_dob = str(sum(1 for p in parsed if p["DateBirth"] != "0" * 8))
    trailer = render(TRAILER, {
        "RecordDescriptorWord": str(RECORD), "RecordIdentifier": "TRAILER", "TotalBaseRecords": count,
        "BlockCount": str(len(bases) + 2),
        "TotalStatusCode93": str(sum(1 for p in parsed if p["AccountStatus"] == "93")),
        "TotalStatusCode62": str(sum(1 for p in parsed if p["AccountStatus"] == "62")),
        "TotalStatusCodeDA": str(sum(1 for p in parsed if p["AccountStatus"] == "DA")),
        "TotalSocialNumbersAllSegments": with_ssn, "TotalSocialNumbersBaseSegments": with_ssn,
        "TotalDatesBirthAllSegments": with_dob, "TotalDatesBirthBaseSegments": with_dob,
    })
    return header + b"".join(bases) + trailer
