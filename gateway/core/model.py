"""Domain vocabulary shared by the core, the vault and the transport."""

from __future__ import annotations

import json
import json.encoder
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, ClassVar, NamedTuple, Protocol

from .errors import Code

# The jurisdictions the code knows: the bound on what a conduct file may declare (rules/conduct_file.py), since
# some behaviour is still an `if` on the jurisdiction in a use case (furnishing, litigation). Which of them a
# gateway serves is the conduct files its bundle loaded (`PolicyBundle.jurisdictions`): ask the bundle for that.
JURISDICTIONS = ("CN", "US", "EU")
STAGES = ("early_warning", "reminder", "letter", "field_visit", "litigation")
STATUSES = ("open", "settled", "closed")
PURPOSES = ("collection", "litigation", "credit_reporting", "servicing", "supervision")
LABELS = ("entrusted", "provided")
# Forbearance measures before enforcement (CCD (EU) 2023/2225 Art. 35(1)): refinancing, or modified terms.
FORBEARANCE_MEASURES = (
    "payment_plan", "deferral", "rate_reduction", "refinancing", "term_extension", "payment_holiday",
    "partial_write_off", "debt_consolidation", "currency_conversion", "contract_type_change",
)
FLAGS = ("disputed", "cease_contact", "attorney_represented", "lost_contact", "legal_hold", "identity_theft",
         "discharged")

BORROWER_PI_FIELDS = (
    "full_name", "national_id", "date_of_birth", "phone", "email", "home_address",
    "work_address", "employer", "bank_account", "emergency_contacts",
)
LOAN_FIELDS = (
    "loan_id", "product", "currency", "principal", "outstanding", "amount_due", "originated_on",
    "due_on", "first_delinquency_on", "last_payment_on", "repayments", "contract_text",
    "limitation_date", "negative_notice_on", "interest", "fees",
)
CASE_FIELDS = (
    "case_id", "jurisdiction", "timezone", "stage", "status", "disputed", "cease_contact",
    "attorney_represented", "lost_contact", "legal_hold", "consent", "lender_name", "days_past_due",
    "contact_history",
)
ALL_FIELDS = BORROWER_PI_FIELDS + LOAN_FIELDS + CASE_FIELDS
# Encrypted at rest under the borrower's data key: the borrower's PI and the loan contract text.
ENCRYPTED_FIELDS = (*BORROWER_PI_FIELDS, "contract_text")
# Never released to agencies, whatever a policy file says (DESIGN.md §3).
NEVER_TO_AGENCY = {"bank_account": ("*",), "national_id": ("plain", "mask", "pseudonym"), "emergency_contacts": ("*",)}


# A borrower's region (issue 26, licences): ISO 3166-2 ("US-CA"), or a country code alone ("DE") where there is
# no subdivision. Upper case only: a region is compared as text with the policy's list and the licences held.
REGION_RE = re.compile(r"^[A-Z]{2}(-[A-Z0-9]{1,3})?\Z")


def region_ok(text: str) -> bool:
    return REGION_RE.fullmatch(text) is not None


# An id: of a case, borrower, loan, contact or organisation (an org id also excludes ':' and '/', usecases/admin).
ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}\Z")
ORG_ID_RE = ID_RE
# An agent: the organisation's pseudonymous id for the person acting (issue 25), spelled like the other ids.
AGENT_RE = ID_RE


def agent_ok(text: str) -> bool:
    """Whether a client's agent (the `custos-agent` metadata) is an id the log may hold; "" is none named."""
    return not text or AGENT_RE.fullmatch(text) is not None

# A party's free-text reason (a rejected payment's or plan's): 1-500 characters, not only white space. It may
# name a person, so it is stored sealed (vault.records.Reasons) and never goes into an event.
REASON_MAX = 500


def reason_ok(text: str) -> bool:
    return 0 < len(text) <= REASON_MAX and bool(text.strip())


# Times the core accepts from callers: later arithmetic on them (deadlines, windows) cannot overflow.
TIME_RANGE = (datetime(1900, 1, 1, tzinfo=UTC), datetime(9000, 1, 1, tzinfo=UTC))


def parse_date(text: str | None) -> date | None:
    """A calendar date written YYYY-MM-DD, else None (no other ISO form: a caller's date is one spelling).

    None or "" (a loan's date not given) is None too.
    """
    try:
        return date.fromisoformat(text) if text and len(text) == 10 else None
    except ValueError:
        return None


def parse_time(text: str) -> datetime | None:
    """An RFC 3339 time with an offset, within TIME_RANGE (so later arithmetic cannot overflow), else None."""
    try:
        ts = datetime.fromisoformat(text.replace("Z", "+00:00")) if len(text) <= 40 else None
        if ts is None or ts.tzinfo is None:
            return None
        utc = ts.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    return utc if TIME_RANGE[0] <= utc < TIME_RANGE[1] else None


def stored_time(stamp: str) -> datetime:
    """A time the gateway stored itself (`rfc3339`): trusted, so a bad one raises ValueError rather than hiding."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


@dataclass(frozen=True)
class ImportedCase:
    """One validated import line (importer.parse_line), as the use case hands it to storage."""

    case_id: str
    jurisdiction: str
    timezone: str
    stage: str
    consent_third_party: bool
    consent_credit: bool
    borrower_id: str
    pi: dict[str, str]          # PI field -> plaintext (emergency_contacts as JSON text)
    loan: dict[str, Any]        # loan fields except contract_text
    contract_text: str | None
    region: str = ""  # optional (issue 26); "" leaves the import digest as it was before the field existed
    validation_notice_on: str | None = None  # optional (issue 26): "notices" {"validation", "outsourcing"}
    outsourcing_notice_on: str | None = None


class ImportOutcome(StrEnum):
    """What storage made of one imported case (ports.UnitOfWork.import_cases); the lender's import turns each
    into its audit event and, for a refusal, its code. A StrEnum: each equals the text the stores answered before."""

    STORED = ""                 # stored, with its loan and its new or joined borrower
    SAME = "same"               # imported before from a line with these values: nothing written
    OTHER = "other"             # the case exists with other values
    ERASED = "erased"           # its borrower's data was erased
    LOAN_EXISTS = "loan_exists"  # its loan id is taken


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass(frozen=True)
class RegionalLicence:
    """A licence an organisation holds for one region (`custos org licence`): in force through `expires`."""

    region: str
    licence_no: str
    expires: date


@dataclass(frozen=True)
class Org:
    id: str
    kind: str
    name: str
    jurisdiction: str
    licence_no: str | None
    licence_expires: date | None
    disabled: bool
    address: str | None = None  # postal address and telephone (10 digits) of a lender: its bureau file's header
    telephone: str | None = None
    licences: tuple[RegionalLicence, ...] = ()  # per region (issue 26); the org-wide licence stays above

    def licence_in(self, region: str) -> RegionalLicence | None:
        return next((lic for lic in self.licences if lic.region == region), None)


class Unsealer(Protocol):
    """Opens one borrower's encrypted fields for one release; built by the vault, held by a grant."""

    fields: tuple[str, ...]  # the fields it opens (those with a stored value)

    def __call__(self) -> dict[str, str]: ...


@dataclass(frozen=True)
class Caller:
    """Who is calling, established by the transport from the client certificate only."""

    org_id: str            # "" when the certificate names no organisation
    method: str
    trace_id: str = ""
    problem: Code | None = None  # an identity refusal (UNKNOWN_ORG, CERT_EXPIRED, ...), made at admission
    cert: str = ""         # the client certificate's SHA-256, first 16 hex digits (for the audit of refusals)
    # The person acting, as the organisation names it (request metadata `custos-agent`; checked, "" none): it
    # goes into every event of the request and never changes which organisation acts (DESIGN invariant 5).
    agent: str = ""


@dataclass(frozen=True, slots=True)  # slots: a grant holds one per case read, a million at lender scale
class CaseRow:
    lender_id: str
    case_id: str
    borrower_id: str
    loan_id: str
    jurisdiction: str
    timezone: str
    stage: str
    status: str
    disputed: bool
    cease_contact: bool
    attorney_represented: bool
    lost_contact: bool
    legal_hold: bool
    consent_third_party: bool
    consent_credit: bool
    credit_withdrawn: bool = False  # the borrower withdrew the credit-reporting consent (`lender consent`)
    erasure: str = ""  # the borrower's erasure: "" none, "pending" (scheduled: nothing is released), "erased"
    closed_at: str | None = None  # when the case was last settled or closed (RFC 3339); None while open
    active_plan: str | None = None  # the accepted repayment plan's id (it sets amount_due); None without one
    # ---- mandates (issue 26): a debt that must not be collected nor furnished (Reg F §1006.30(b), FCRA §623(a)(6))
    identity_theft: bool = False  # the borrower reported the debt as the result of identity theft
    discharged: bool = False      # the debt was discharged (in bankruptcy)
    # ---- cross-border provision (PIPL Art. 38-39): the borrower's separate consent, and the transfer mechanism
    consent_cross_border: bool = False
    transfer_mechanism: str | None = None    # cac_assessment | certification | standard_contract
    transfer_reference: str | None = None    # its reference (filing number, certificate, assessment)
    transfer_valid_until: str | None = None  # YYYY-MM-DD, inclusive, the case's local calendar
    # ---- licences, artificial voices, notices (issue 26)
    region: str = ""  # where the borrower lives (ISO 3166-2 or a country code); "" not given at import
    consent_artificial_voice: bool = False  # prior express consent to artificial or AI voice calls (TCPA)
    validation_notice_on: str | None = None  # US: the validation notice's day (Reg F §1006.34)
    outsourcing_notice_on: str | None = None  # CN: the day the borrower was told collection is outsourced
    verification_sent_on: str | None = None  # US: the day verification of a dispute was sent (§1006.38)

    def flags(self) -> list[str]:
        return [f for f in FLAGS if getattr(self, f)]


@dataclass(frozen=True)
class MandateRow:
    id: int
    lender_id: str
    case_id: str
    org_id: str
    purpose: str
    label: str
    granted_at: str
    until: date
    recalled_at: str | None
    commission: str | None = None  # the fee term: a rate on confirmed recoveries ("0.18"); None: none agreed
    # ---- mandates (issue 26): the records before sharing (PIPL Art. 21 agreement, Art. 55-56 impact assessment)
    agreement: str | None = None  # the entrustment / provision agreement's reference; None: none named
    pia: str | None = None        # the PI-protection impact assessment's reference; None: none named


PAYMENT_STATUSES = ("reported", "confirmed", "rejected")


@dataclass(frozen=True)
class PaymentRow:
    """A payment an agency or law firm reported having collected, and the lender's decision on it.

    `reason` is the rejection's reason sealed under the borrower's data key (free text may name a person);
    it is opened only for the lender (`CaseReader.payment_reason`).
    """

    id: str
    lender_id: str
    case_id: str
    borrower_id: str
    org_id: str
    amount: str
    currency: str
    paid_on: str
    reference: str
    status: str
    reported_at: str
    decided_at: str | None = None
    commission: str | None = None  # the rate applied at confirmation
    reason: bytes | None = None


@dataclass(frozen=True)
class Repayment:
    """One entry of a loan's ledger: a repayment the lender recorded, or a payment an organisation reported and
    the lender confirmed (`by` names that organisation, `payment_id` the payment; both "" for the lender's own)."""

    on: str
    amount: str
    by: str = ""
    payment_id: str = ""

    def record(self) -> dict[str, str]:
        """As released and stored: the attribution only where there is one (old ledgers keep their shape)."""
        out = {"on": self.on, "amount": self.amount}
        if self.by:
            out["by"] = self.by
        if self.payment_id:
            out["payment_id"] = self.payment_id
        return out

    @staticmethod
    def of(record: dict[str, str]) -> Repayment:
        return Repayment(record["on"], record["amount"], record.get("by", ""), record.get("payment_id", ""))


@dataclass(frozen=True)
class LoanRow:
    """A loan's stored terms (its contract text is encrypted and read through an Unsealer, not here)."""

    loan_id: str
    product: str | None
    currency: str
    principal: str | None
    outstanding: str | None
    amount_due: str | None
    originated_on: str | None
    due_on: str | None
    first_delinquency_on: str | None
    last_payment_on: str | None
    repayments: tuple[Repayment, ...]
    limitation_date: str | None
    negative_notice_on: str | None
    interest: str | None = None  # interest and fees charged to date, as the lender's book states them (updates)
    fees: str | None = None

    FIELDS: ClassVar[tuple[str, ...]] = (
        "loan_id", "product", "currency", "principal", "outstanding", "amount_due", "originated_on", "due_on",
        "first_delinquency_on", "last_payment_on", "repayments", "limitation_date", "negative_notice_on",
        "interest", "fees")

    def value(self, name: str) -> object:
        """A field as released: repayments as a list of {"on", "amount"[, "by", "payment_id"]} records."""
        if name == "repayments":
            return [r.record() for r in self.repayments]
        return getattr(self, name)


@dataclass(frozen=True)
class ContactRow:
    """One contact attempt as stored; `target` is the opaque (blind-indexed) number or person it went to."""

    contact_id: str
    lender_id: str
    case_id: str
    borrower_id: str
    org_id: str
    channel: str
    party: str
    target: bytes
    opened_at: str
    result: str | None
    result_at: str | None
    promise_amount: str | None = None  # a promise to pay: how much, by when (the borrower's local date)
    promise_on: str | None = None
    # A call recording's opaque reference in the caller's system (issue 26), kept past an erasure until
    # recording_until; released to the lender only.
    recording: str | None = None
    recording_until: str | None = None

    def history_entry(self) -> dict[str, str | None]:
        """What a case's contact history releases of it (never the target); a promise's terms where there is one."""
        entry = {"contact_id": self.contact_id, "org": self.org_id, "channel": self.channel, "party": self.party,
                 "opened_at": self.opened_at, "result": self.result, "result_at": self.result_at}
        if self.promise_amount is not None:
            entry["promise_amount"] = self.promise_amount
            entry["promise_on"] = self.promise_on
        return entry


class AuditEntry(NamedTuple):
    seq: int
    leaf: bytes  # exactly the Merkle leaf: the event's RFC 8785 JSON


class SubjectEntry(NamedTuple):
    """An event of a subject report with the lender whose borrower it is listed for (not part of the leaf)."""

    seq: int
    leaf: bytes
    lender: str  # the leaf's `lender`, or for an event naming none the one the records attribute it to; "" none


# json.dumps(s, ensure_ascii=False) for one str, without the generic encoder around it.
_json_str: Callable[[str], str] = json.encoder.encode_basestring


@dataclass
class EventDraft:
    """An audit event before the log gives it a sequence number."""

    org: str
    method: str
    purpose: str
    case_id: str
    borrower_id: str
    decision: str
    code: str
    rule: str
    time: str
    trace_id: str
    fields: list[str] = field(default_factory=list)
    policy_revision: str = ""
    # The owning lender of the case or borrower the event is about (DESIGN.md §7); "" where none applies or the
    # case is not resolved, and then the leaf has no `lender` key (so events without one keep their old shape).
    lender: str = ""
    # A contact's channel and id (issue 25: conduct shown by the log): on `contact open` (the id once one was
    # opened) and on its outcome; "" elsewhere, and then the leaf has no such key.
    channel: str = ""
    contact_id: str = ""
    # The party a contact reached ("borrower" | "emergency_contact") and the case's IANA zone (the conduct rules'
    # "local"), on contact events once the case is resolved: caps per local day can be recounted from the log.
    # "" elsewhere: no key. `zone` sorts after `trace_id`, so leaf_bytes appends it after the per-event part.
    party: str = ""
    zone: str = ""
    # The person acting, as the calling organisation names it (Caller.agent); "" none, and then no `agent` key.
    agent: str = ""

    # The leaf up to `"seq":` WITHOUT the agent, when the caller worked it out once for many events
    # (Core.get_case): the agent is the request's, so it is put in front of a remembered head per event.
    head: bytes = field(default=b"", repr=False, compare=False)

    def head_bytes(self) -> bytes:
        """The RFC 8785 leaf up to the sequence number, written out key by key in JCS order.

        Every value is a str, an int or a list of str, and JCS escapes strings as
        json.dumps(ensure_ascii=False) does; tests check the whole leaf equals
        `merkle.canonical_json(leaf_object(seq))` for arbitrary text. `seq`,
        `time` and `trace_id` sort last, so they are the only part that varies
        between events of one grant.
        """
        front, tail = self.head_parts()
        return self.with_agent(front + tail)

    def with_agent(self, head: bytes) -> bytes:
        """A head without the agent (`head_parts`, a remembered one) with this event's agent put first.

        "agent" sorts before every other key of a leaf, so it goes right after
        the opening brace; nothing to do (no copy) without one.
        """
        if not self.agent:
            return head
        return b'{"agent":' + _json_str(self.agent).encode() + b"," + head[1:]

    def head_parts(self) -> tuple[bytes, bytes]:
        """The head in two, both WITHOUT the agent (per request, so never part of what is remembered): the
        case's own part, and the rest, which many cases' events share."""
        e = _json_str
        lender = f'"lender":{e(self.lender)},' if self.lender else ""
        channel = f'"channel":{e(self.channel)},' if self.channel else ""
        contact = f'"contact_id":{e(self.contact_id)},' if self.contact_id else ""
        party = f'"party":{e(self.party)},' if self.party else ""
        return (f'{{"borrower_id":{e(self.borrower_id)},"case_id":{e(self.case_id)},'.encode(), (
            f'{channel}"code":{e(self.code)},{contact}'
            f'"decision":{e(self.decision)},"fields":[{",".join(map(e, sorted(self.fields)))}],{lender}'
            f'"method":{e(self.method)},"org":{e(self.org)},{party}"policy_revision":{e(self.policy_revision)},'
            f'"purpose":{e(self.purpose)},"rule":{e(self.rule)},"seq":'
        ).encode())

    def leaf_bytes(self, seq: int) -> bytes:
        """The RFC 8785 leaf (one per event, so this is hot)."""
        e = _json_str
        zone = f',"zone":{e(self.zone)}' if self.zone else ""
        head = self.head
        if not head:
            head = self.head_bytes()
        elif self.agent:
            head = self.with_agent(head)
        return head + (
            f'{int(seq)},"time":{e(self.time)},"trace_id":{e(self.trace_id)}{zone}}}'
        ).encode()

    def leaf_object(self, seq: int) -> dict[str, object]:
        return {
            "seq": seq, "time": self.time, "org": self.org, "method": self.method,
            "purpose": self.purpose, "case_id": self.case_id, "borrower_id": self.borrower_id,
            "fields": sorted(self.fields), "decision": self.decision, "code": self.code,
            "rule": self.rule, "policy_revision": self.policy_revision, "trace_id": self.trace_id,
            **({"lender": self.lender} if self.lender else {}),
            **({"channel": self.channel} if self.channel else {}),
            **({"contact_id": self.contact_id} if self.contact_id else {}),
            **({"party": self.party} if self.party else {}),
            **({"zone": self.zone} if self.zone else {}),
            **({"agent": self.agent} if self.agent else {}),
        }


def rfc3339(ts: datetime) -> str:
    """UTC, microseconds, `Z`: fixed width, so the text sorts as the time does."""
    return ts.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


# ---- promises and plans
PLAN_STATUSES = ("proposed", "accepted", "rejected", "superseded")


@dataclass(frozen=True)
class PlanRow:
    """A repayment plan as stored: its instalments are dated in the borrower's calendar; the lender's reason for
    a rejection stays sealed under the borrower's key (`sealed_reason`), opened only for the lender."""

    plan_id: str
    lender_id: str
    case_id: str
    borrower_id: str
    org_id: str
    status: str
    instalments: tuple[Repayment, ...]
    proposed_at: str
    decided_at: str | None = None
    sealed_reason: bytes | None = None
