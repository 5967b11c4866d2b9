"""Parsing and validating one import line (DESIGN.md §9). Pure.

Strict: unknown keys, wrong types, bad dates, non-decimal money, oversized
values and unknown enum values are rejected with a reason that names the field
and the problem, never the value (a bad value may itself be personal data).
"""

from __future__ import annotations

import difflib
import functools
import json
import logging
import re
import zoneinfo
from collections.abc import Collection
from datetime import date
from typing import Any

from .errors import Code
from .model import ID_RE, STAGES, ImportedCase, region_ok

log = logging.getLogger("custos.import")

MAX_LINE_BYTES = 1 << 20
MAX_TEXT = 512
MAX_CONTRACT = 256 * 1024
MAX_LIST = 200

PHONE_RE = re.compile(r"^\+[1-9][0-9]{6,14}\Z")
MONEY_RE = re.compile(r"^[0-9]{1,15}(\.[0-9]{1,4})?\Z")
CURRENCY_RE = re.compile(r"^[A-Z]{3}\Z")
DATE_RE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")
# What no text value may hold: control characters but tab and newline, and lone surrogates (not Unicode text).
# One search in C; a per-character check in Python was 18 % of an import's CPU.
_UNFIT = re.compile("[\x00-\x08\x0b-\x1f\ud800-\udfff]")
# No value in the format is a number, so a long one is never valid; refusing it early also keeps
# Python's int() from failing deep in the parser (it refuses more than 4,300 digits).
MAX_NUMBER_CHARS = 64


class LineError(Exception):
    def __init__(self, code: Code, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def field_error(path: str, problem: str) -> LineError:
    return LineError(Code.IMPORT_INVALID_FIELD, f"{path}: {problem}")


def json_object(value: object, path: str, required: set[str], optional: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise field_error(path or "line", "must be a JSON object")
    missing = sorted(required - value.keys())
    if missing:
        raise field_error(f"{path}.{missing[0]}" if path else missing[0], "is required")
    known = required | optional
    for position, key in enumerate(value, start=1):
        if key not in known:
            raise field_error(path or "line", _unknown_key(position, len(value), key, known))
    return value


def _unknown_key(position: int, count: int, key: str, known: set[str]) -> str:
    """Names an unknown key by its position, never by its text (a key may be anything, personal data too).

    A close match among the known names is suggested: that text is ours.
    """
    hint = difflib.get_close_matches(key[:64], sorted(known), n=1, cutoff=0.75) if len(key) <= 64 else []
    suggestion = f'; did you mean "{hint[0]}"?' if hint else ""
    return f"unknown field (key {position} of {count}){suggestion}"


class _JsonRefused(ValueError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _no_constant(name: str) -> object:
    raise _JsonRefused("NaN and Infinity are not JSON")


def _bounded_int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise _JsonRefused(f"a number longer than {MAX_NUMBER_CHARS} characters")
    return int(text)


def _bounded_float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise _JsonRefused(f"a number longer than {MAX_NUMBER_CHARS} characters")
    return float(text)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise _JsonRefused("an object has the same key twice")
    return out


def loads_strict(text: str) -> Any:
    """RFC 8259 JSON only: no NaN or Infinity, no repeated keys, no oversized numbers. Raises _JsonRefused."""
    try:
        return json.loads(text, parse_constant=_no_constant, parse_int=_bounded_int, parse_float=_bounded_float,
                          object_pairs_hook=_unique_keys)
    except _JsonRefused:
        raise
    except RecursionError:
        raise _JsonRefused("nested too deeply") from None
    except ValueError:  # JSONDecodeError and anything the parser refuses
        raise _JsonRefused("not valid JSON") from None


@functools.cache
def time_zones() -> frozenset[str]:
    """Every IANA zone name the tz database knows: a name is checked against this set, never opened as a path."""
    return frozenset(zoneinfo.available_timezones())


def text_field(d: dict[str, Any], key: str, path: str, limit: int = MAX_TEXT, optional: bool = False) -> str | None:
    value = d.get(key)
    if value is None and optional:
        return None
    where = f"{path}.{key}" if path else key
    if not isinstance(value, str):
        raise field_error(where, "must be a string")
    if not value.strip():
        raise field_error(where, "must not be empty")
    if len(value) > limit:
        raise field_error(where, f"longer than {limit} characters")
    unfit = _UNFIT.search(value)
    if unfit is not None:
        if ord(unfit.group()) < 32:
            raise field_error(where, "contains control characters")
        raise field_error(where, "is not valid Unicode text (lone surrogate)")
    return value


def matched(d: dict[str, Any], key: str, path: str, rx: re.Pattern[str], what: str, optional: bool = False) -> str | None:
    value = text_field(d, key, path, optional=optional)
    if value is None:
        return None
    if not rx.fullmatch(value):
        raise field_error(f"{path}.{key}" if path else key, f"must be {what}")
    return value


def date_field(d: dict[str, Any], key: str, path: str, optional: bool = False) -> str | None:
    value = matched(d, key, path, DATE_RE, "a date YYYY-MM-DD", optional)
    if value is None:
        return None
    try:
        date.fromisoformat(value)
    except ValueError:
        raise field_error(f"{path}.{key}", "must be a real calendar date") from None
    return value


def _bool(d: dict[str, Any], key: str, path: str) -> bool:
    value = d.get(key, False)
    if not isinstance(value, bool):
        raise field_error(f"{path}.{key}", "must be true or false")
    return value


def emergency_contacts(contacts: object) -> str:
    """A borrower's emergency contacts, validated, as the JSON text stored (import and account updates)."""
    if not isinstance(contacts, list) or len(contacts) > 20:
        raise field_error("borrower.emergency_contacts", "must be a list of at most 20 contacts")
    clean = []
    for i, c in enumerate(contacts):
        p = f"borrower.emergency_contacts[{i}]"
        c = json_object(c, p, {"name", "phone"}, {"relation"})
        clean.append({
            "name": text_field(c, "name", p, limit=128),
            "relation": text_field(c, "relation", p, limit=32, optional=True),
            "phone": matched(c, "phone", p, PHONE_RE, "an E.164 number"),
        })
    return json.dumps(clean, ensure_ascii=False, separators=(",", ":"))


def load_line(raw: bytes) -> Any:
    """A JSON Lines line's document (any line format: import, update, placement), or LineError: too long, not
    UTF-8, or JSON that `loads_strict` refuses."""
    if len(raw) > MAX_LINE_BYTES:
        raise LineError(Code.IMPORT_LINE_TOO_LONG, f"line longer than {MAX_LINE_BYTES} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise LineError(Code.IMPORT_INVALID_JSON, "not valid UTF-8") from None
    try:
        return loads_strict(text)
    except _JsonRefused as err:
        raise LineError(Code.IMPORT_INVALID_JSON, err.reason) from None


def parse_line(raw: bytes, *, jurisdictions: Collection[str]) -> ImportedCase:
    """One line to a validated case, or LineError with a stable code and a PI-free reason.

    Never anything else: whatever a line holds, the worst it gets is a rejection.
    `jurisdictions` are those the gateway serves: the conduct files of its
    bundle (`PolicyBundle.jurisdictions`), in the order the reason lists them.
    """
    doc = load_line(raw)
    try:
        return _validate(doc, jurisdictions)
    except LineError:
        raise
    except Exception as exc:  # noqa: BLE001 - a validator bug must cost one line, not the stream
        log.error("import line validation failed unexpectedly: %s", type(exc).__name__,
                  extra={"event": "validation_failed", "error": type(exc).__name__})
        raise LineError(Code.IMPORT_INVALID_FIELD, "the line could not be validated") from None


def _validate(doc: Any, jurisdictions: Collection[str]) -> ImportedCase:
    top = json_object(doc, "", {"case_id", "jurisdiction", "timezone", "stage", "borrower", "loan"},
                      {"consent", "region", "notices"})
    case_id = matched(top, "case_id", "", ID_RE, "1-64 letters, digits or ._:-")
    jurisdiction = text_field(top, "jurisdiction", "")
    if jurisdiction not in jurisdictions:
        raise field_error("jurisdiction", f"must be one of {', '.join(jurisdictions)}")
    tz = text_field(top, "timezone", "", limit=64)
    if tz not in time_zones():
        raise field_error("timezone", "must be an IANA time zone name such as Asia/Shanghai")
    stage = text_field(top, "stage", "")
    if stage not in STAGES:
        raise LineError(Code.UNKNOWN_STAGE, f"stage: must be one of {', '.join(STAGES)}")
    consent = json_object(top.get("consent", {}), "consent", set(), {"third_party_sharing", "credit_reporting"})
    # Where the borrower lives (issue 26): regional licences are checked against it. Optional; null is absent.
    region = top.get("region")
    if region is not None and not (isinstance(region, str) and region_ok(region)):
        raise LineError(Code.INVALID_REGION, "region: an ISO 3166-2 code such as US-CA, or a country code such as DE")
    # Notices given before collection (issue 26), as `lender notice --kind` records them later.
    notices = json_object(top.get("notices", {}), "notices", set(), {"validation", "outsourcing"})

    b = json_object(
        top["borrower"], "borrower", {"borrower_id", "full_name", "national_id", "phone"},
        {"date_of_birth", "email", "home_address", "work_address", "employer", "bank_account", "emergency_contacts"},
    )
    borrower_id = matched(b, "borrower_id", "borrower", ID_RE, "1-64 letters, digits or ._:-")
    pi: dict[str, str] = {}
    for key in ("full_name", "national_id"):
        pi[key] = str(text_field(b, key, "borrower", limit=128))
    pi["phone"] = str(matched(b, "phone", "borrower", PHONE_RE, "an E.164 number (+ and 7-15 digits)"))
    dob = date_field(b, "date_of_birth", "borrower", optional=True)
    if dob:
        pi["date_of_birth"] = dob
    for key in ("email", "home_address", "work_address", "employer", "bank_account"):
        value = text_field(b, key, "borrower", optional=True)
        if value is not None:
            pi[key] = value
    contacts = b.get("emergency_contacts")
    if contacts is not None:
        pi["emergency_contacts"] = emergency_contacts(contacts)

    ln = json_object(
        top["loan"], "loan", {"loan_id", "currency", "principal", "outstanding", "amount_due", "due_on"},
        {"product", "originated_on", "first_delinquency_on", "last_payment_on", "repayments", "contract_text",
         "limitation_date", "negative_notice_on"},
    )
    loan: dict[str, Any] = {
        "loan_id": matched(ln, "loan_id", "loan", ID_RE, "1-64 letters, digits or ._:-"),
        "product": text_field(ln, "product", "loan", limit=128, optional=True),
        "currency": matched(ln, "currency", "loan", CURRENCY_RE, "an ISO 4217 code"),
    }
    for key in ("principal", "outstanding", "amount_due"):
        loan[key] = matched(ln, key, "loan", MONEY_RE, "a decimal string such as \"1234.50\" (not a number)")
    for key in ("originated_on", "due_on", "first_delinquency_on", "last_payment_on", "limitation_date",
                "negative_notice_on"):
        loan[key] = date_field(ln, key, "loan", optional=key != "due_on")
    repayments = ln.get("repayments") or []
    if not isinstance(repayments, list) or len(repayments) > 10_000:
        raise field_error("loan.repayments", "must be a list of at most 10000 entries")
    clean_rep = []
    for i, r in enumerate(repayments):
        p = f"loan.repayments[{i}]"
        r = json_object(r, p, {"on", "amount"}, set())
        clean_rep.append({"on": date_field(r, "on", p), "amount": matched(r, "amount", p, MONEY_RE, "a decimal string")})
    loan["repayments"] = clean_rep
    contract = text_field(ln, "contract_text", "loan", limit=MAX_CONTRACT, optional=True)
    return ImportedCase(
        case_id=str(case_id), jurisdiction=str(jurisdiction), timezone=str(tz), stage=str(stage),
        consent_third_party=_bool(consent, "third_party_sharing", "consent"),
        consent_credit=_bool(consent, "credit_reporting", "consent"),
        borrower_id=str(borrower_id), pi=pi, loan=loan, contract_text=contract, region=region or "",
        validation_notice_on=date_field(notices, "validation", "notices", optional=True),
        outsourcing_notice_on=date_field(notices, "outsourcing", "notices", optional=True),
    )
