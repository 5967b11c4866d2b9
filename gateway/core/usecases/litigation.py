"""Litigation packets: everything counsel may have of one case, decided once, assembled, signed, audited.

The packet is the `litigation` read of the case (the same `decide_read`, with
its preconditions) in another shape: the released fields, the ledger built
from the released loan terms (the figures as recorded and every ledger entry,
reconciled by `rules.ledger.reconcile`: a ledger that does not add up is
stated as such, never made to add up by a residual), the contract text, the contact history and, in
CN, the service address on file. What the caller may not read, the packet
does not hold. Assembly and signing are the transport side's
(`gateway/packets`, injected as `assemble_packet`); the release is one
audit event naming every field and the packet id, durable before the bytes
are returned.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from ..errors import Code, CustosError
from ..model import Caller, LoanRow, Repayment, rfc3339
from ..rules.ledger import reconcile
from .reads import Reads

PURPOSE = "litigation"
IDENTITY_FIELDS = ("full_name", "national_id", "date_of_birth", "home_address", "phone")
LEDGER_FIELDS = ("loan_id", "product", "currency", "principal", "outstanding", "amount_due", "originated_on",
                 "due_on", "first_delinquency_on", "last_payment_on", "limitation_date", "interest", "fees")


@dataclass(frozen=True)
class PacketContent:
    meta: dict[str, Any]             # packet_id, recipient, lender, case_id, jurisdiction, issued_at, fields
    record: dict[str, str]           # the released identity and case fields
    ledger: dict[str, Any]           # released loan terms, repayments and the summary
    contacts: list[dict[str, Any]]   # the released contact history
    contract_text: str | None
    service_address: str | None      # CN: the address on file for service of process


def released_loan(ledger: dict[str, Any], repayments: list[dict[str, str]]) -> LoanRow:
    """The loan as the law firm was given it: a figure the release withholds is absent here too."""
    def get(name: str) -> str | None:
        value = ledger.get(name)
        return value if isinstance(value, str) and value else None

    return LoanRow(
        loan_id=get("loan_id") or "", product=get("product"), currency=get("currency") or "",
        principal=get("principal"), outstanding=get("outstanding"), amount_due=get("amount_due"),
        originated_on=get("originated_on"), due_on=get("due_on"), first_delinquency_on=get("first_delinquency_on"),
        last_payment_on=get("last_payment_on"), repayments=tuple(Repayment.of(r) for r in repayments),
        limitation_date=get("limitation_date"), negative_notice_on=None, interest=get("interest"),
        fees=get("fees"))


def ledger_summary(loan: LoanRow) -> dict[str, Any]:
    """The recorded figures, what the ledger entries repaid, and whether they reconcile (decimal strings).

    Interest and fees are the lender's recorded figures (absent: not recorded,
    counted as zero in `expected`), never a residual: `expected` is principal +
    interest + fees - repaid, `difference` is outstanding - expected, and
    `reconciles` is false when it is not zero (null when principal or
    outstanding is unknown), so counsel sees a ledger that does not add up.
    """
    r = reconcile(loan)
    return {"principal": r.principal, "interest": r.interest, "fees": r.fees, "repaid": r.repaid,
            "outstanding": r.outstanding, "amount_due": loan.amount_due, "expected": r.expected,
            "difference": r.difference, "reconciles": r.reconciles}


class Litigation(Reads):
    def packet(self, caller: Caller, case_ref: str) -> bytes:
        """The signed packet for a case escalated to the caller; every refusal is the litigation read's."""
        self._standing(caller, action="packet", purpose=PURPOSE)
        if self.assemble_packet is None:
            raise self._deny(caller, Code.KEYS_UNAVAILABLE, "packet.key", purpose=PURPOSE)
        now = self.clock.now()
        grant = self._grant(caller, case_ref, PURPOSE, now)
        case = grant.case
        released = dict(grant.plain)
        released.update(self._released(grant.decision, grant.unseal(), caller.org_id))
        contacts: list[dict[str, Any]] = []
        if grant.with_history:
            contacts = [c.history_entry() for c in self.reader().contact_history(case)]
        repayments = json.loads(released.pop("repayments", "[]"))
        contract = released.pop("contract_text", None)
        ledger: dict[str, Any] = {k: released.pop(k) for k in LEDGER_FIELDS if k in released}
        ledger["repayments"] = repayments
        ledger["summary"] = ledger_summary(released_loan(ledger, repayments))
        record = {"case_id": case.case_id, "loan_id": case.loan_id, "lender": case.lender_id,
                  "jurisdiction": case.jurisdiction, "stage": case.stage, **released}
        packet_id = "P-" + secrets.token_hex(8)
        meta = {"packet_id": packet_id, "recipient": caller.org_id, "lender": case.lender_id,
                "case_id": case.case_id, "jurisdiction": case.jurisdiction, "issued_at": rfc3339(now),
                "fields": grant.fields}
        service = released.get("home_address") if case.jurisdiction == "CN" else None
        content = PacketContent(meta, record, ledger, contacts, contract, service)
        try:
            data = self.assemble_packet(content)
        except CustosError as refused:
            # Assembly refuses only for the gateway's own state (PDF_FONT_MISSING): audited like any refusal.
            raise self._deny(caller, refused.code, purpose=PURPOSE, case_id=case.case_id,
                             borrower_id=case.borrower_id, lender=case.lender_id, now=now) from None
        # One event for the release: every field, and the packet id (the manifest names the recipient).
        self.audit.append([self._event(caller, "allow", Code.OK, f"{grant.decision.rule};packet={packet_id}",
                                       purpose=PURPOSE, case_id=case.case_id, borrower_id=case.borrower_id, lender=case.lender_id,
                                       fields=grant.fields, now=now)])
        return data
