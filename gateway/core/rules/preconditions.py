"""The legal preconditions of the two heaviest releases: litigation (to counsel) and credit reporting (to bureaus).

Pure verdicts over the case, its loan terms and its contact history, by the
jurisdiction's rules (the `[litigation]` and `[credit_reporting]` tables of
`policies/conduct/*.toml`). They are part of the release decision
(`decisions.decide_read`), so `cases get`, `policy explain`, the litigation
packet and the bureau feed refuse in exactly the same places, with the same
code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from ..errors import Code
from ..model import CaseRow, ContactRow, LoanRow, parse_date, stored_time
from .access import OK, Verdict

OBSOLETE_FROM = ("first_delinquency_on", "default_end")


@dataclass(frozen=True)
class LitigationRules:
    refuse_disputed: bool
    refuse_after_limitation_date: bool
    requires_limitation_date: bool = False  # US: no date on file, no proof the debt is not time-barred
    # EU (CCD (EU) 2023/2225 Art. 35): escalation to litigation needs a forbearance measure recorded first.
    requires_forbearance: bool = False


@dataclass(frozen=True)
class ReportingRules:
    requires_consent: bool          # CN 征信业管理条例 Art. 29 (and the consent record of the case)
    requires_prior_notice: bool     # CN Art. 15: the borrower told before negative information is reported
    requires_prior_contact: bool    # US Reg F §1006.30(a): spoken to, or a letter some days before
    letter_wait_days: int
    obsolete_years: int             # negative information is not furnished once older than this
    obsolete_from: str              # first_delinquency_on (+ offset) | default_end
    obsolete_offset_days: int
    requires_first_delinquency: bool = False  # US: without it the account can never be aged out (FCRA §605(c))
    # issue 26: FCRA §623(a)(6) (identity theft), §1006.30(b) / a discharged debt is not reported as owed
    refuse_identity_theft: bool = True
    refuse_discharged: bool = True


@dataclass(frozen=True)
class Evidence:
    """What the preconditions read besides the case: its loan terms and its contact history."""

    loan: LoanRow | None
    contacts: Sequence[ContactRow]


def _add_years(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February
        return day.replace(year=day.year + years, day=28)


def litigation(rules: LitigationRules, case: CaseRow, loan: LoanRow | None, today: date) -> Verdict:
    """Counsel gets nothing for a disputed debt, nor (US) once the limitation date has passed or without one.

    A missing (or unreadable) limitation date refuses where the rules require
    one: "not after the limitation date" cannot be checked without it, and a
    time-barred suit is exactly what Reg F §1006.26(b) forbids.
    """
    if rules.refuse_disputed and case.disputed:
        return Verdict(Code.DISPUTED, "litigation.disputed")
    limitation = parse_date(loan.limitation_date) if loan is not None else None
    if rules.requires_limitation_date and limitation is None:
        return Verdict(Code.LIMITATION_DATE_MISSING, "litigation.limitation_date_missing")
    if rules.refuse_after_limitation_date and limitation is not None and today > limitation:
        return Verdict(Code.LIMITATION_EXPIRED, "litigation.limitation_date")
    return OK


def obsolete_on(rules: ReportingRules, case: CaseRow, loan: LoanRow | None) -> date | None:
    """The first day on which this account's negative information may no longer be furnished (None: not yet known).

    US (FCRA §605(a)(4), (c)): seven years from 180 days after the date of
    first delinquency. CN (征信业管理条例 Art. 16): five years from the day the
    default ends; decision: a settled or closed case's default ended on its
    last payment date, and an open case is still in default.
    """
    if loan is None:
        return None
    if rules.obsolete_from == "first_delinquency_on":
        start = parse_date(loan.first_delinquency_on)
        if start is None:
            return None
        start += timedelta(days=rules.obsolete_offset_days)
    else:
        if case.status == "open":
            return None
        start = parse_date(loan.last_payment_on)
        if start is None:
            return None
    return _add_years(start, rules.obsolete_years)


def credit_reporting(rules: ReportingRules, connected_results: frozenset[str], case: CaseRow, evidence: Evidence,
                     now: datetime, today: date) -> Verdict:
    """Whether this account may be furnished today; a dispute is no bar (it is furnished with its marker)."""
    loan = evidence.loan
    ends = obsolete_on(rules, case, loan)
    if ends is not None and today >= ends:  # first: too old is never furnished, whatever else holds
        return Verdict(Code.REPORTING_OBSOLETE, "credit_reporting.obsolete")
    if rules.refuse_identity_theft and case.identity_theft:  # issue 26: never furnished while the flag stands
        return Verdict(Code.IDENTITY_THEFT_REPORTED, "credit_reporting.identity_theft")
    if rules.refuse_discharged and case.discharged:
        return Verdict(Code.DEBT_DISCHARGED, "credit_reporting.discharged")
    if rules.requires_first_delinquency and (loan is None or parse_date(loan.first_delinquency_on) is None):
        # Without it the record carries no date of first delinquency and never becomes obsolete: withheld.
        return Verdict(Code.FIRST_DELINQUENCY_MISSING, "credit_reporting.first_delinquency")
    if case.credit_withdrawn:  # withdrawn by the borrower: never furnished, whatever the jurisdiction requires
        return Verdict(Code.CONSENT_WITHDRAWN, "credit_reporting.consent_withdrawn")
    if rules.requires_consent and not case.consent_credit:
        return Verdict(Code.CONSENT_REQUIRED, "credit_reporting.consent")
    if rules.requires_prior_notice:
        notice = parse_date(loan.negative_notice_on) if loan is not None else None
        if notice is None or notice >= today:
            return Verdict(Code.NO_PRIOR_NOTICE, "credit_reporting.prior_notice")
    if rules.requires_prior_contact and not _contacted(rules, connected_results, evidence.contacts, now):
        return Verdict(Code.NO_PRIOR_CONTACT, "credit_reporting.prior_contact")
    return OK


def _contacted(rules: ReportingRules, connected_results: frozenset[str], contacts: Sequence[ContactRow],
               now: datetime) -> bool:
    """Reg F §1006.30(a)(1): spoken to the borrower, or a letter sent `letter_wait_days` ago not returned undeliverable."""
    cutoff = now - timedelta(days=rules.letter_wait_days)
    for c in contacts:
        if c.party != "borrower":
            continue
        if c.channel in ("call", "visit") and c.result in connected_results:
            return True
        if c.channel == "letter" and c.result != "undeliverable" and stored_time(c.opened_at) <= cutoff:
            return True
    return False
