"""What every backend stores the same way: sealed borrower fields, the opener of a release, import digests.

The backends differ in SQL and in what else they encrypt (PostgreSQL, having no
page encryption, also seals a loan's terms); the envelope itself, its
associated data and the keyed digest of an import line are the same in both,
so ciphertexts mean the same thing wherever they are stored.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import Any

from gateway.core.errors import Code, CustosError
from gateway.core.model import (
    BORROWER_PI_FIELDS,
    CaseRow,
    ContactRow,
    ImportedCase,
    MandateRow,
    Org,
    PaymentRow,
    PlanRow,
    RegionalLicence,
    Repayment,
    Unsealer,
)

from .crypto import BlindIndex, DecryptionError, FieldCipher, Opener

# Columns both backends select in this order, and the typed rows made from them.
CASE_COLS = (
    "lender_id, case_id, borrower_id, loan_id, jurisdiction, timezone, stage, status, disputed, cease_contact, "
    "attorney_represented, lost_contact, legal_hold, consent_third_party, consent_credit, credit_withdrawn, erasure, "
    "closed_at, active_plan, identity_theft, discharged, consent_cross_border, transfer_mechanism, transfer_reference, "
    "transfer_valid_until, region, consent_artificial_voice, validation_notice_on, outsourcing_notice_on, "
    "verification_sent_on"
)
ORG_COLS = "id, kind, name, jurisdiction, licence_no, licence_expires, disabled, address, telephone, licences"
MANDATE_COLS = ("id, lender_id, case_id, org_id, purpose, label, granted_at, until, recalled_at, commission, agreement,"
                " pia")
CONTACT_COLS = ("id, lender_id, case_id, borrower_id, org_id, channel, party, target, opened_at, result, result_at,"
                " promise_amount, promise_on, recording, recording_until")
CASE_FIELDS = frozenset({"stage", "status", "disputed", "cease_contact", "attorney_represented", "lost_contact",
                         "legal_hold", "consent_third_party", "consent_credit", "credit_withdrawn",
                         "consent_changed_at", "erasure", "erase_due", "closed_at", "identity_theft", "discharged",
                         "consent_cross_border", "transfer_mechanism", "transfer_reference", "transfer_valid_until",
                         # ---- licences, artificial voices, notices (issue 26)
                         "consent_artificial_voice", "validation_notice_on", "outsourcing_notice_on",
                         "verification_sent_on"})
# The loan figures a lender's update may set (ports.UnitOfWork.update_loan); the ids and currency never change.
UPDATABLE_LOAN = frozenset({"principal", "outstanding", "amount_due", "interest", "fees", "due_on",
                            "first_delinquency_on", "last_payment_on", "repayments", "limitation_date"})
# The columns of a borrower row whose change moves the row caches' counter: all but the wrapping of its
# data key. A rewrap (KEK rotation) leaves the key itself as it was, and a cached row with the older
# wrapping opens the same key while that KEK version exists, so the rewrap does not empty every cache
# each batch; retiring a version moves the counter once (`touch_generation`).
BORROWER_GEN_COLUMNS = ("lender_id", "borrower_id", "dek_version", "nid_bidx", "phone_bidx", *BORROWER_PI_FIELDS,
                        "erased_at")
# Position of each PI field in a borrower row selected as kek_version, wrapped_dek, dek_version, <PI fields>.
PI_COLUMN = {name: 3 + i for i, name in enumerate(BORROWER_PI_FIELDS)}


def case_row(row: Sequence[Any]) -> CaseRow:
    # The columns of few values (lender, jurisdiction, time zone, stage, status, erasure) are interned: a row
    # read is otherwise a string of its own each, and grants keep a case row per case read (issue 13).
    f = [bool(v) for v in row[8:16]]
    intern = sys.intern
    return CaseRow(intern(row[0]), row[1], row[2], row[3], intern(row[4]), intern(row[5]), intern(row[6]),
                   intern(row[7]), f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], intern(row[16] or ""), row[17], row[18],
                   bool(row[19]), bool(row[20]), bool(row[21]), row[22], row[23], row[24],
                   intern(row[25] or ""), bool(row[26]), row[27], row[28], row[29])


def org_row(row: Sequence[Any]) -> Org:
    return Org(row[0], row[1], row[2], row[3], row[4], date.fromisoformat(row[5]) if row[5] else None, bool(row[6]),
               row[7], row[8], org_licences(row[9]))


def org_licences(text: str | None) -> tuple[RegionalLicence, ...]:
    """An org's regional licences, stored as JSON {region: [licence_no, expires]} in its row (a cached table)."""
    if not text:
        return ()
    return tuple(RegionalLicence(region, no, date.fromisoformat(expires))
                 for region, (no, expires) in sorted(json.loads(text).items()))


def licences_json(licences: Sequence[RegionalLicence]) -> str:
    return json.dumps({lic.region: [lic.licence_no, lic.expires.isoformat()] for lic in licences}, sort_keys=True)


def mandate_row(row: Sequence[Any]) -> MandateRow:
    return MandateRow(int(row[0]), row[1], row[2], row[3], row[4], row[5], row[6], date.fromisoformat(row[7]), row[8],
                      row[9], row[10], row[11])


PAYMENT_COLS = ("id, lender_id, case_id, borrower_id, org_id, amount, currency, paid_on, reference, status, reported_at,"
                " decided_at, commission, reason")


def payment_row(row: Sequence[Any]) -> PaymentRow:
    return PaymentRow(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], row[8], row[9], row[10], row[11],
                      row[12], bytes(row[13]) if row[13] is not None else None)


def reason_ad(payment_id: str) -> str:
    """The field name a payment's rejection reason is sealed under (binds it to its payment)."""
    return f"payment:{payment_id}:reason"


def contact_row(row: Sequence[Any]) -> ContactRow:
    return ContactRow(contact_id=row[0], lender_id=row[1], case_id=row[2], borrower_id=row[3], org_id=row[4],
                      channel=row[5], party=row[6], target=bytes(row[7]), opened_at=row[8], result=row[9],
                      result_at=row[10], promise_amount=row[11], promise_on=row[12],
                      recording=row[13], recording_until=row[14])


def contract_ad(loan_id: str) -> str:
    """The field name a loan's contract text is sealed under (binds it to its loan)."""
    return f"loan:{loan_id}:contract_text"


def terms_ad(loan_id: str) -> str:
    """The field name a loan's sealed terms are bound to (PostgreSQL)."""
    return f"loan:{loan_id}:terms"


def seal_fields(cipher: FieldCipher, dek: bytes, lender: str, borrower: str, dek_version: int,
                values: Mapping[str, str]) -> dict[str, bytes]:
    seal = cipher.sealer(dek, lender, borrower, dek_version)
    return {name: seal(name, value) for name, value in values.items()}


def import_digest(bidx: BlindIndex, lender: str, case: ImportedCase) -> bytes:
    """A keyed fingerprint of a validated import line: equal lines match, nobody without the key can guess one.

    The document is `dataclasses.asdict(case)` (what digests stored before were made of), built without
    asdict's deep copy: the values are JSON already (str, bool, dict and list of them).
    """
    # A line without a region digests as lines did before the field existed (a re-run import is still SAME).
    names = tuple(n for n in _IMPORTED_FIELDS if n not in _ADDED or getattr(case, n))
    doc = json.dumps({name: getattr(case, name) for name in names}, sort_keys=True, ensure_ascii=False,
                     separators=(",", ":"))
    return bidx.digest(lender, "import-line", doc.encode())


_IMPORTED_FIELDS = tuple(f.name for f in dataclasses.fields(ImportedCase))
# Optional fields added later (issue 26): in a line's digest only when given.
_ADDED = ("region", "validation_notice_on", "outsourcing_notice_on")


class Sealed:
    """An `Unsealer`: ciphertexts and the opener of their borrower's key; decrypts afresh on every call."""

    __slots__ = ("_opener", "_sealed", "fields")

    def __init__(self, fields: tuple[str, ...], sealed: tuple[tuple[str, str, bytes], ...],
                 opener: Opener | None) -> None:
        self.fields = fields
        self._sealed = sealed
        self._opener = opener

    def __call__(self) -> dict[str, str]:
        opener = self._opener
        if opener is None:
            return {}
        try:
            return opener.open_all(self._sealed)
        except DecryptionError:
            raise CustosError(Code.DECRYPTION_FAILED) from None


NOTHING = Sealed((), (), None)


class SealedReads:
    """How both stores hand out sealed borrower fields: one definition over three backend reads.

    A store provides `_borrower_row` (kek_version, wrapped_dek, dek_version,
    then the PI columns), `_contract_blob` and `cipher`; both cache them with
    the rows (`vault.rowcache.cached`), and `_opener` with them.
    """

    cipher: FieldCipher

    def _borrower_row(self, lender: str, borrower_id: str) -> tuple[Any, ...] | None:
        raise NotImplementedError

    def _contract_blob(self, lender: str, loan_id: str) -> bytes | None:
        raise NotImplementedError

    def _opener(self, lender: str, borrower: str, kek_version: int, wrapped: bytes,
                dek_version: int) -> Opener:
        """The borrower's unwrapped data key, ready to open fields (stores cache it with the rows it opens).

        Holding data keys in memory for the cache's life adds nothing to what the
        process already holds (the KEK unwraps every one of them); they are
        dropped with the rows on the next change and never written anywhere.
        """
        dek = self.cipher.unwrap_dek(lender, borrower, kek_version, wrapped)
        return self.cipher.opener(dek, lender, borrower, dek_version)

    def _borrower_opener(self, lender: str, borrower_id: str) -> Opener | None:
        row = self._borrower_row(lender, borrower_id)
        if row is None or row[1] is None:
            return None
        try:
            return self._opener(lender, borrower_id, int(row[0]), bytes(row[1]), int(row[2]))
        except DecryptionError:
            raise CustosError(Code.DECRYPTION_FAILED) from None

    def unsealer(self, case: CaseRow, fields: Iterable[str]) -> Unsealer:
        """What opens these fields of this case's borrower: their ciphertext and the borrower's data key.

        Nothing is decrypted until it is called; each call decrypts afresh, so the
        caller may keep it (a grant does) without keeping any plaintext.
        """
        sealed: list[tuple[str, str, bytes]] = []
        row = self._borrower_row(case.lender_id, case.borrower_id)
        if row is not None and row[1] is not None:
            for name in fields:
                if name == "contract_text":
                    value = self._contract_blob(case.lender_id, case.loan_id)
                    ad_name = contract_ad(case.loan_id)
                else:
                    column = PI_COLUMN.get(name)
                    value = row[column] if column is not None else None
                    ad_name = name
                if value is not None:
                    sealed.append((name, ad_name, bytes(value)))
        if not sealed:
            return NOTHING
        return Sealed(tuple(n for n, _, _ in sealed), tuple(sealed),
                      self._borrower_opener(case.lender_id, case.borrower_id))

    def borrower_values(self, case: CaseRow, fields: Iterable[str]) -> dict[str, str]:
        """Decrypt only the requested PI fields (and contract text); any failure is one generic error."""
        return self.unsealer(case, fields)()


# ---- promises and plans
PLAN_COLS = "id, lender_id, case_id, borrower_id, org_id, status, instalments, proposed_at, decided_at, reason"


def plan_row(row: Sequence[Any]) -> PlanRow:
    return PlanRow(plan_id=row[0], lender_id=row[1], case_id=row[2], borrower_id=row[3], org_id=row[4],
                   status=row[5], instalments=tuple(Repayment.of(r) for r in json.loads(row[6])),
                   proposed_at=row[7], decided_at=row[8], sealed_reason=bytes(row[9]) if row[9] is not None else None)


def plan_reason_ad(plan_id: str) -> str:
    """The field name a plan's rejection reason is sealed under (binds it to its plan)."""
    return f"plan:{plan_id}:reason"


class Reasons(SealedReads):
    """A party's free-text reason (a payment's or a plan's rejection) sealed under its borrower's data key and
    opened again, the same in both stores: it may name a person, and it goes with the key on erasure."""

    def seal_reason(self, lender: str, borrower: str, ad: str, reason: str) -> bytes:
        row = self._borrower_row(lender, borrower)
        if row is None or row[1] is None:
            raise CustosError(Code.BORROWER_ERASED)
        dek = self.cipher.unwrap_dek(lender, borrower, int(row[0]), bytes(row[1]))
        return self.cipher.sealer(dek, lender, borrower, int(row[2]))(ad, reason)

    def open_reason(self, lender: str, borrower: str, ad: str, sealed: bytes | None) -> str | None:
        """The opened reason; None without one or once the borrower's key is gone."""
        if sealed is None:
            return None
        opener = self._borrower_opener(lender, borrower)
        if opener is None:
            return None
        try:
            return opener(ad, sealed)
        except DecryptionError:
            raise CustosError(Code.DECRYPTION_FAILED) from None

    def seal_plan_reason(self, case: CaseRow, plan_id: str, reason: str) -> bytes:
        return self.seal_reason(case.lender_id, case.borrower_id, plan_reason_ad(plan_id), reason)

    def plan_reason(self, plan: PlanRow) -> str | None:
        return self.open_reason(plan.lender_id, plan.borrower_id, plan_reason_ad(plan.plan_id), plan.sealed_reason)

    def payment_reason(self, payment: PaymentRow) -> str | None:
        return self.open_reason(payment.lender_id, payment.borrower_id, reason_ad(payment.id), payment.reason)
