"""Metro 2 (CDIA) character format, 426-byte records: a header, one Base Segment per account, a trailer.

No maintained Python Metro 2 library exists; the field positions below are
the published ones (CDIA Credit Reporting Resource Guide, as transcribed in
moov-io/metro2 `pkg/lib/specifications.go`), 0-based start and length.
Numeric fields are right-justified and zero-filled, alphanumeric ones
left-justified and blank-filled, upper case; dates are MMDDYYYY (zeros when
absent); money is whole dollars.

Who furnishes: the lender, about its own loans (it is the original creditor),
so the file is the lender's (its registered name, address and telephone in the
header; one file per lender) and the account is reported as the loan it is:
Portfolio Type and Account Type from the loan's product (unsecured installment
loan, 01/I, unless the product names another type), Account Status from the
case's status and days past due (11 current, 71/78/80/82/83/84 by 30-day
bucket, 13 paid or closed with a zero balance, 97 closed unpaid: charged off),
no K1 (original creditor) segment: K1 is for a collection agency or debt buyer
reporting someone else's account. Payment History Profile all B (no history
known to the gateway), ECOA 1 (individual), Compliance Condition XB (disputed)
or XH (dispute resolved). Decisions in docs/decisions.md.

A value the format cannot carry is never cut, blanked or transliterated into
something else (a different SSN, name or ZIP would attach the account to
another consumer's file): `problem` names it, and the feed withholds the record.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from gateway.core.errors import Code

RECORD = 426
MAX_AMOUNT = 10 ** 9 - 1  # whole dollars in a 9-digit field
# A US SSN (or ITIN, which the same field carries): 9 ASCII digits, bare or in the printed 3-2-4 form.
SSN_RE = re.compile(r"[0-9]{9}|[0-9]{3}-[0-9]{2}-[0-9]{4}")
ZIP_RE = re.compile(r"([0-9]{5})(?:-?([0-9]{4}))?")
PRINTABLE = re.compile(r"[ -~]*")  # the characters a Metro 2 alphanumeric field holds: printable ASCII
# The record's fields a Base Segment carries (text, dates and amounts) and the header's furnisher fields.
CARRIED = ("full_name", "home_address", "loan_id", "lender", "product", "status", "originated_on",
           "first_delinquency_on", "last_payment_on", "date_of_birth", "principal", "outstanding", "amount_due",
           "days_past_due", "compliance_condition", "furnisher_name", "furnisher_address", "furnisher_telephone")
AMOUNTS = ("principal", "outstanding", "amount_due")
# Delinquency buckets (days past due -> Account Status), CRRG: 11 current (0-29), then one per 30 days.
DELINQUENT = ((180, "84"), (150, "83"), (120, "82"), (90, "80"), (60, "78"), (30, "71"))
PAYMENT_RATING = ((180, "6"), (150, "5"), (120, "4"), (90, "3"), (60, "2"), (30, "1"))
# (words in the loan's product, Portfolio Type, Account Type, Terms Duration, Terms Frequency); first match wins.
PRODUCTS: tuple[tuple[tuple[str, ...], str, str, str, str], ...] = (
    (("credit card",), "R", "18", "REV", "M"),
    (("line of credit",), "C", "15", "LOC", "M"),
    (("mortgage",), "M", "26", "001", "P"),
    (("auto", "car", "vehicle"), "I", "00", "001", "P"),
    (("student", "education"), "I", "12", "001", "P"),
)
UNSECURED = ("I", "01", "001", "P")

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


def _amount(value: str | None) -> Decimal:
    try:
        amount = Decimal(value or "0")
    except InvalidOperation:
        return Decimal(0)
    return max(amount, Decimal(0)) if amount.is_finite() else Decimal(0)


def _dollars(value: str | None) -> str:
    return str(_amount(value).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _ascii(text: str) -> str:
    return "".join(c if " " <= c <= "~" else " " for c in text.upper())


def render(layout: Mapping[str, tuple[int, int, str]], values: Mapping[str, str]) -> bytes:
    """One 426-byte record; fields not given are zero- or blank-filled; too-long text is cut, never shifted.

    Numbers keep only ASCII digits, and one too long for its field is an error, never its last digits: a cut
    number is another number (`problem` withholds such records before they get here).
    """
    out = bytearray(b" " * RECORD)
    for name, (start, length, kind) in layout.items():
        value = values.get(name, "")
        if kind in "nd":
            digits = "".join(c for c in value if "0" <= c <= "9")
            if len(digits) > length:
                raise ValueError(f"{name}: {len(digits)} digits in a field of {length}")
            text = digits.rjust(length, "0")
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


def _zip(text: str) -> str:
    """ZIP or ZIP+4 as Metro 2 wants it: 5 or 9 digits, no hyphen ('' when the value is not a ZIP)."""
    m = ZIP_RE.fullmatch(text)
    return (m.group(1) + (m.group(2) or "")) if m else ""


def problem(record: Mapping[str, str]) -> Code | None:
    """Why this record cannot be written in a Metro 2 file (a stable code), or None when it can.

    Rule (docs/decisions.md): a national id, when present, is an SSN of exactly 9 ASCII digits
    (SSN_INVALID otherwise: never its last 9 digits); every carried text, date and amount is printable ASCII,
    amounts fit their 9 digits and a ZIP is 5 or 9 digits (VALUE_NOT_ENCODABLE otherwise: never blanked or
    transliterated); the lender's file needs its registered address (FURNISHER_ADDRESS_MISSING).
    """
    nid = record.get("national_id") or ""
    if nid and not SSN_RE.fullmatch(nid):
        return Code.SSN_INVALID
    if any(not PRINTABLE.fullmatch(record.get(name) or "") for name in CARRIED):
        return Code.VALUE_NOT_ENCODABLE
    if any(_amount(record.get(name)) > MAX_AMOUNT for name in AMOUNTS):
        return Code.VALUE_NOT_ENCODABLE
    zip_code = _address(record.get("home_address") or "")[3]
    if zip_code and not _zip(zip_code):
        return Code.VALUE_NOT_ENCODABLE
    if not (record.get("furnisher_address") or "").strip():
        return Code.FURNISHER_ADDRESS_MISSING
    if len(record["furnisher_address"]) > HEADER["ReporterAddress"][1]:
        return Code.VALUE_NOT_ENCODABLE
    return None


def _days(value: str | None) -> int:
    return int(value) if value and value.isascii() and value.isdigit() else 0


def _bucket(days: int, table: tuple[tuple[int, str], ...], current: str) -> str:
    return next((code for floor, code in table if days >= floor), current)


def account_type(product: str | None) -> tuple[str, str, str, str]:
    """(Portfolio Type, Account Type, Terms Duration, Terms Frequency) of the lender's own loan, by its product."""
    text = (product or "").lower()
    for words, *codes in PRODUCTS:
        if any(w in text for w in words):
            return codes[0], codes[1], codes[2], codes[3]
    return UNSECURED


def account_status(record: Mapping[str, str]) -> tuple[str, str]:
    """(Account Status, Payment Rating) of the lender's own account: from the case's status and days past due.

    Settled, or paid in full (a stated outstanding of zero, whatever the case's status: the CRRG's 13 is
    "paid or closed account/zero balance"): 13 with the rating it had when it was paid (days from first
    delinquency to last payment). Closed with a balance: 97 (unpaid balance charged off). Open: 11 under 30
    days past due, then 71, 78, 80, 82, 83, 84 per 30 days.
    """
    status = record.get("status") or "open"
    paid_off = bool(record.get("outstanding")) and _amount(record.get("outstanding")) == 0
    if status == "settled" or paid_off:
        days = _days(record.get("days_past_due"))
        first, paid = record.get("first_delinquency_on"), record.get("last_payment_on")
        if first and paid:
            try:
                days = max((date.fromisoformat(paid[:10]) - date.fromisoformat(first[:10])).days + 1, 0)
            except ValueError:
                pass
        return "13", _bucket(days, PAYMENT_RATING, "0")
    if status == "closed":
        return "97", ""
    return _bucket(_days(record.get("days_past_due")), DELINQUENT, "11"), ""


def base_segment(record: Mapping[str, str], reported_at: datetime) -> bytes:
    surname, first, middle = _name(record.get("full_name", ""))
    line, city, state, zip_code = _address(record.get("home_address", ""))
    portfolio, acct_type, duration, frequency = account_type(record.get("product"))
    status, rating = account_status(record)
    paid = status == "13"
    delinquent = status in ("97", *(code for _, code in DELINQUENT)) or (paid and rating != "0")
    closed = status in ("13", "97")  # ended: settled, closed, or paid in full (dated by the last payment)
    owed = "0" if paid else _dollars(record.get("outstanding"))
    values = {
        "RecordDescriptorWord": str(RECORD),
        "ProcessingIndicator": "1",
        "TimeStamp": reported_at.strftime("%m%d%Y%H%M%S"),
        "CorrectionIndicator": "0",
        "IdentificationNumber": record.get("lender", ""),
        "ConsumerAccountNumber": record.get("loan_id", ""),
        "PortfolioType": portfolio,
        "AccountType": acct_type,
        "DateOpened": _date(record.get("originated_on")),
        "HighestCredit": _dollars(record.get("principal")),
        "TermsDuration": duration,
        "TermsFrequency": frequency,
        "AccountStatus": status,
        "PaymentRating": rating,
        "PaymentHistoryProfile": "B" * 24,
        "ComplianceConditionCode": record.get("compliance_condition", ""),
        "CurrentBalance": owed,
        "AmountPastDue": "0" if paid else owed if status == "97" else _dollars(record.get("amount_due")),
        "OriginalChargeOffAmount": owed if status == "97" else "0",
        "DateAccountInformation": reported_at.strftime("%m%d%Y"),
        "DateFirstDelinquency": _date(record.get("first_delinquency_on")) if delinquent else "0" * 8,
        "DateLastPayment": _date(record.get("last_payment_on")),
        "DateClosed": ("0" * 8 if not closed
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
        "ZipCode": _zip(zip_code),
    }
    return render(BASE, values)


def header(records: list[Mapping[str, str]], reported_at: datetime) -> bytes:
    """The lender's header: its registered name, address and telephone (from the first record; one lender)."""
    first: Mapping[str, str] = records[0] if records else {}
    day = reported_at.strftime("%m%d%Y")
    return render(HEADER, {"RecordDescriptorWord": str(RECORD), "RecordIdentifier": "HEADER", "ActivityDate": day,
                           "DateCreated": day, "ReporterName": first.get("furnisher_name") or "CUSTOS GATEWAY",
                           "ReporterAddress": first.get("furnisher_address", ""),
                           "ReporterTelephoneNumber": first.get("furnisher_telephone", "")})


def file(records: Iterable[Mapping[str, str]], reported_at: datetime) -> bytes:
    """Header, one Base Segment per record, trailer with its totals: the records of one lender."""
    kept = list(records)
    bases = [base_segment(r, reported_at) for r in kept]
    parsed = [parse(BASE, b) for b in bases]
    count = str(len(bases))
    with_ssn = str(sum(1 for p in parsed if p["SocialSecurityNumber"] != "0" * 9))
    with_dob = str(sum(1 for p in parsed if p["DateBirth"] != "0" * 8))
    totals = {f"TotalStatusCode{code}": str(sum(1 for p in parsed if p["AccountStatus"] == code))
              for code in {p["AccountStatus"] for p in parsed} if f"TotalStatusCode{code}" in TRAILER}
    trailer = render(TRAILER, {
        "RecordDescriptorWord": str(RECORD), "RecordIdentifier": "TRAILER", "TotalBaseRecords": count,
        "BlockCount": str(len(bases) + 2), **totals,
        "TotalSocialNumbersAllSegments": with_ssn, "TotalSocialNumbersBaseSegments": with_ssn,
        "TotalDatesBirthAllSegments": with_dob, "TotalDatesBirthBaseSegments": with_dob,
    })
    return header(kept, reported_at) + b"".join(bases) + trailer


def files(records: Iterable[Mapping[str, str]], reported_at: datetime
          ) -> tuple[dict[str, bytes], list[dict[str, str]]]:
    """One file per lender (a Metro 2 file has one header: one furnisher), and the records withheld.

    The gateway withholds what the format cannot carry before it numbers a record; this check again is the
    guard of the file itself (a record from an older gateway is listed, never written cut or blanked).
    """
    by_lender: dict[str, list[Mapping[str, str]]] = {}
    withheld: list[dict[str, str]] = []
    for r in records:
        code = problem(r)
        if code is not None:
            withheld.append({"case_id": r.get("case_id", ""), "code": str(code)})
        else:
            by_lender.setdefault(r.get("lender", ""), []).append(r)
    return {lender: file(rs, reported_at) for lender, rs in sorted(by_lender.items())}, withheld
