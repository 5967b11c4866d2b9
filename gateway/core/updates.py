"""Parsing and validating one account-update line (`lender update`, DESIGN.md §9). Pure.

A line is `{"case_id", "as_of", "loan": {...}, "repayments": [...], "status",
"borrower": {...}}`: the case and the time the lender's book stood so, and any
of new loan figures, repayments to append, a status and corrections of the
borrower's data. Strict as the import is (the same validators): unknown keys,
numbers where money is expected, bad dates and oversized text are rejected
with a reason that names the field, never the value.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from .errors import Code
from .importer import (
    MAX_TEXT,
    MONEY_RE,
    PHONE_RE,
    LineError,
    date_field,
    emergency_contacts,
    field_error,
    json_object,
    load_line,
    matched,
    text_field,
)
from .model import ID_RE, STATUSES, Repayment, parse_time, rfc3339

log = logging.getLogger("custos.update")

# The loan's figures a line may state: money as decimal strings, dates as YYYY-MM-DD.
UPDATE_MONEY = ("principal", "outstanding", "amount_due", "interest", "fees")
UPDATE_DATES = ("due_on", "first_delinquency_on", "last_payment_on", "limitation_date")
# The borrower's fields a line may correct (PIPL Art. 46), each validated as the import validates it.
CORRECTABLE = ("full_name", "national_id", "date_of_birth", "phone", "email", "home_address", "work_address",
               "employer", "bank_account", "emergency_contacts")
MAX_REPAYMENTS = 10_000


@dataclass(frozen=True)
class AccountUpdate:
    """One validated update line: what the lender's book says of one case at `as_of`."""

    case_id: str
    as_of: str                          # normalised to UTC (model.rfc3339): the text sorts as the time does
    loan: dict[str, str]                # stated figures and dates
    repayments: tuple[Repayment, ...]   # to append to the ledger, in the line's order
    status: str | None
    borrower: dict[str, str]            # PI field -> corrected plaintext (emergency_contacts as JSON text)
    canonical: str                      # the content in one spelling: equal lines, equal text (keyed digest)


def parse_update(raw: bytes) -> AccountUpdate:
    """One line to a validated update, or LineError with a stable code and a PI-free reason."""
    doc = load_line(raw)
    try:
        return _validate(doc)
    except LineError:
        raise
    except Exception as exc:  # noqa: BLE001 - a validator bug must cost one line, not the stream (as the import)
        log.error("update line validation failed unexpectedly: %s", type(exc).__name__,
                  extra={"event": "validation_failed", "error": type(exc).__name__})
        raise LineError(Code.IMPORT_INVALID_FIELD, "the line could not be validated") from None


def _money(d: dict[str, Any], key: str, path: str) -> str:
    """A decimal string; a JSON number is refused by name (a float would round the lender's cents)."""
    if isinstance(d.get(key), int | float) and not isinstance(d.get(key), bool):
        raise field_error(f"{path}.{key}", "must be a decimal string such as \"1234.50\", not a number")
    return str(matched(d, key, path, MONEY_RE, "a decimal string such as \"1234.50\" (not a number)"))


def _validate(doc: Any) -> AccountUpdate:
    top = json_object(doc, "", {"case_id", "as_of"}, {"loan", "repayments", "status", "borrower"})
    case_id = top["case_id"]
    if not isinstance(case_id, str) or not ID_RE.fullmatch(case_id):
        raise LineError(Code.INVALID_CASE_ID, "case_id: 1-64 characters of letters, digits and ._:-")
    as_of = top["as_of"]
    when = parse_time(as_of) if isinstance(as_of, str) else None
    if when is None:
        raise LineError(Code.INVALID_TIME, "as_of: an RFC 3339 time with a zone offset")

    loan: dict[str, str] = {}
    if "loan" in top:
        ln = json_object(top["loan"], "loan", set(), set(UPDATE_MONEY) | set(UPDATE_DATES))
        for key in UPDATE_MONEY:
            if key in ln:
                loan[key] = _money(ln, key, "loan")
        for key in UPDATE_DATES:
            if key in ln:
                loan[key] = str(date_field(ln, key, "loan"))

    repayments: list[Repayment] = []
    if "repayments" in top:
        listed = top["repayments"]
        if not isinstance(listed, list) or len(listed) > MAX_REPAYMENTS:
            raise field_error("repayments", f"must be a list of at most {MAX_REPAYMENTS} entries")
        for i, r in enumerate(listed):
            p = f"repayments[{i}]"
            r = json_object(r, p, {"on", "amount"}, set())
            repayments.append(Repayment(str(date_field(r, "on", p)), _money(r, "amount", p)))

    status = None
    if "status" in top:
        status = top["status"]
        if status not in STATUSES:  # also any non-string
            raise LineError(Code.UNKNOWN_STATUS, f"status: must be one of {', '.join(STATUSES)}")

    borrower: dict[str, str] = {}
    if "borrower" in top:
        b = json_object(top["borrower"], "borrower", set(), set(CORRECTABLE))
        for key in CORRECTABLE:
            if key not in b:
                continue
            if key == "phone":
                borrower[key] = str(matched(b, key, "borrower", PHONE_RE, "an E.164 number (+ and 7-15 digits)"))
            elif key == "date_of_birth":
                borrower[key] = str(date_field(b, key, "borrower"))
            elif key == "emergency_contacts":
                borrower[key] = emergency_contacts(b[key])
            else:
                limit = 128 if key in ("full_name", "national_id") else MAX_TEXT
                borrower[key] = str(text_field(b, key, "borrower", limit=limit))

    if not (loan or repayments or status or borrower):
        raise field_error("line", "names nothing to update (loan, repayments, status or borrower)")
    stamp = rfc3339(when)
    canonical = json.dumps({"case_id": case_id, "as_of": stamp, "loan": loan,
                            "repayments": [r.record() for r in repayments], "status": status, "borrower": borrower},
                           ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return AccountUpdate(case_id, stamp, loan, tuple(repayments), status, borrower, canonical)
