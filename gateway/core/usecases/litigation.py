"""Litigation packets: everything counsel may have of one case, decided once, assembled, signed, audited.

The packet is the `litigation` read of the case (the same `decide_read`, with
its preconditions) in another shape: the released fields, the ledger built
from the released loan terms, the contract text, the contact history and, in
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
from decimal import Decimal, InvalidOperation
from typing import Any

from ..errors import Code
from ..model import Caller, rfc3339
from .reads import Reads

PURPOSE = "litigation"
IDENTITY_FIELDS = ("full_name", "national_id", "date_of_birth", "home_address", "phone")
LEDGER_FIELDS = ("loan_id", "product", "currency", "principal", "outstanding", "amount_due", "originated_on",
                 "due_on", "first_delinquency_on", "last_payment_on", "limitation_date")


@dataclass(frozen=True)
class PacketContent:
    meta: dict[str, Any]             # packet_id, recipient, lender, case_id, jurisdiction, issued_at, fields
    record: dict[str, str]           # the released identity and case fields
    ledger: dict[str, Any]           # released loan terms, repayments and the summary
    contacts: list[dict[str, Any]]   # the released contact history
    contract_text: str | None
    service_address: str | None      # CN: the address on file for service of process


def _money(text: object) -> Decimal:
    try:
        return Decimal(str(text)) if text not in (None, "") else Decimal(0)
    except InvalidOperation:
        return Decimal(0)


def ledger_summary(principal: object, outstanding: object, amount_due: object,
                   repayments: list[dict[str, Any]]) -> dict[str, str]:
    """Principal, what was repaid, interest and fees, outstanding, amount due (decimal strings, never floats).

    Decision: interest and fees are what the debt grew by beyond the principal,
    outstanding + repaid - principal (never below zero); the loan record holds
    no separate interest ledger.
    """
    p, o = _money(principal), _money(outstanding)
    repaid = sum((_money(r.get("amount")) for r in repayments), Decimal(0))
    interest = max(o + repaid - p, Decimal(0))
    q = Decimal("0.01")
    return {"principal": str(p.quantize(q)), "repaid": str(repaid.quantize(q)),
            "interest_and_fees": str(interest.quantize(q)), "outstanding": str(o.quantize(q)),
            "amount_due": str(_money(amount_due).quantize(q))}


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
        ledger["summary"] = ledger_summary(ledger.get("principal"), ledger.get("outstanding"),
                                           ledger.get("amount_due"), repayments)
        record = {"case_id": case.case_id, "loan_id": case.loan_id, "lender": case.lender_id,
                  "jurisdiction": case.jurisdiction, "stage": case.stage, **released}
        packet_id = "P-" + secrets.token_hex(8)
        meta = {"packet_id": packet_id, "recipient": caller.org_id, "lender": case.lender_id,
                "case_id": case.case_id, "jurisdiction": case.jurisdiction, "issued_at": rfc3339(now),
                "fields": grant.fields}
        service = released.get("home_address") if case.jurisdiction == "CN" else None
        content = PacketContent(meta, record, ledger, contacts, contract, service)
        data = self.assemble_packet(content)
        # One event for the release: every field, and the packet id (the manifest names the recipient).
        self.audit.append([self._event(caller, "allow", Code.OK, f"{grant.decision.rule};packet={packet_id}",
                                       purpose=PURPOSE, case_id=case.case_id, borrower_id=case.borrower_id, lender=case.lender_id,
                                       fields=grant.fields, now=now)])
        return data
