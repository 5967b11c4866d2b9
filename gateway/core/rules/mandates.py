"""Pure verdicts on granting a mandate: debts that must not be collected, and the records before sharing (issue 26).

Shared by `lender assign`, bulk placement, escalation and `policy explain`, so
all refuse in the same places with the same codes. The rules are the optional
`[mandates]` table of each jurisdiction's conduct file (`policies/conduct/*.toml`);
a file without one gets the defaults of `MandateRules`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from ..errors import Code
from ..model import CaseRow, parse_date
from .access import OK, Verdict

# PIPL Art. 38: the mechanisms a provision of PI abroad rests on (a CAC security assessment, a PI-protection
# certification, the CAC's standard contract filed); the case records one with its reference and validity.
# The default of `[mandates] transfer_mechanisms`: each jurisdiction's file names its own (EU: GDPR Art. 45-47).
MECHANISMS = ("cac_assessment", "certification", "standard_contract")
# Every name a conduct file may list (a typo in a file fails `policy check`, not a transfer at run time):
# PIPL Art. 38(1)(1)-(3), then GDPR Art. 45 (adequacy), Art. 46(2)(c)-(d) (standard contractual clauses),
# Art. 46(2)(b) and 47 (binding corporate rules).
KNOWN_MECHANISMS = (*MECHANISMS, "adequacy_decision", "standard_contractual_clauses", "binding_corporate_rules")

# The purposes whose mandate collects the debt: an agency's collection and counsel's suit. A bureau's
# credit_reporting mandate is not one (furnishing is withheld at the pull instead: preconditions.credit_reporting),
# nor servicing or supervision.
COLLECTING = frozenset({"collection", "litigation"})


@dataclass(frozen=True)
class MandateRules:
    # Reg F §1006.30(b)(1): no placing for collection a debt reported as the result of identity theft or
    # discharged in bankruptcy. Defaults on: a file that says nothing refuses (fail closed).
    refuse_identity_theft: bool = True
    refuse_discharged: bool = True
    # PIPL Art. 21 (entrustment agreement) and Art. 55-56 (impact assessment before entrusting or providing PI).
    # Defaults off: which jurisdictions require them is the file's to say (CN: yes).
    requires_agreement: bool = False
    requires_pia: bool = False
    # PIPL Art. 38-39: PI provided to an organisation of another jurisdiction needs the borrower's separate consent
    # and a transfer mechanism valid on the day. Defaults off: the file says where it applies (CN, EU: yes).
    cross_border_safeguards: bool = False
    # Which mechanisms count in this jurisdiction (`lender transfer --mechanism`, UNKNOWN_MECHANISM otherwise), and
    # whether the separate consent is needed besides one (PIPL Art. 39: yes; GDPR: no, consent is only a
    # derogation, Art. 49(1)(a)). The defaults are PIPL's, so a file written before the keys existed reads as before.
    transfer_mechanisms: tuple[str, ...] = MECHANISMS
    cross_border_consent: bool = True


def collecting_problem(rules: MandateRules, case: CaseRow, purpose: str) -> Verdict:
    """Whether this case may be mandated for `purpose` at all: not if settled or closed, or not to be collected.

    Only collecting purposes are refused: a closed case's final status still
    reaches the bureaus, and nothing else collects. The closure comes first (a
    closed case is not collected whatever its flags).
    """
    if purpose not in COLLECTING:
        return OK
    if case.status != "open":
        return Verdict(Code.CASE_CLOSED, "mandate.case_status")
    if rules.refuse_identity_theft and case.identity_theft:
        return Verdict(Code.IDENTITY_THEFT_REPORTED, "mandate.identity_theft")
    if rules.refuse_discharged and case.discharged:
        return Verdict(Code.DEBT_DISCHARGED, "mandate.discharged")
    return OK


def records_problem(rules: MandateRules, agreement: str, pia: str) -> Verdict:
    """Whether the mandate names the records its jurisdiction requires before PI is entrusted or provided.

    Every mandate entrusts or provides PI (each releases some of the
    borrower's fields), so the requirement covers every purpose and label.
    """
    if rules.requires_agreement and not agreement:
        return Verdict(Code.AGREEMENT_REQUIRED, "mandate.agreement")
    if rules.requires_pia and not pia:
        return Verdict(Code.PIA_REQUIRED, "mandate.pia")
    return OK


def cross_border(rules: MandateRules, case: CaseRow, org_jurisdiction: str, today: date) -> Verdict:
    """Whether PI of this case may reach an organisation of `org_jurisdiction` on the case's local `today`.

    Decided at the grant (assign, placement, escalation) and again at every
    read and contact through the mandate: a mechanism that expires, or a
    consent withdrawn, stops the flow the next day without a recall.
    `transfer_valid_until` is inclusive: valid on that day, not the day after.
    A mechanism recorded under another jurisdiction's list (the case moved, or
    the file changed) counts as none.
    """
    if not rules.cross_border_safeguards or org_jurisdiction == case.jurisdiction:
        return OK
    if rules.cross_border_consent and not case.consent_cross_border:
        return Verdict(Code.CROSS_BORDER_NOT_ALLOWED, "cross_border.consent")
    until = parse_date(case.transfer_valid_until) if case.transfer_valid_until else None
    if case.transfer_mechanism not in rules.transfer_mechanisms or not case.transfer_reference or until is None:
        return Verdict(Code.CROSS_BORDER_NOT_ALLOWED, "cross_border.mechanism")
    if today > until:
        return Verdict(Code.CROSS_BORDER_NOT_ALLOWED, "cross_border.mechanism_expired")
    return OK


def mandate_problem(rules: MandateRules, case: CaseRow, purpose: str, agreement: str, pia: str) -> Verdict:
    """The first refusal of `collecting_problem` and `records_problem`, or OK."""
    verdict = collecting_problem(rules, case, purpose)
    return verdict if not verdict.ok else records_problem(rules, agreement, pia)
