"""The typed results of `CustosClient`: small frozen dataclasses, one per kind of answer.

Read them by attribute (`rec.fields`, `item.record.case_id`); nested parts are
dataclasses too. `to_dict()` gives exactly the JSON the CLI prints for the same
call (its `--json` output is a contract), so `json.dumps(r.to_dict())` is the
way to serialise one. Where an answer is genuinely open-ended (the fields a
policy releases, an audit event's JSON, a generated report) it is a dict field,
and the docstring says why.

Dict-style access (`rec["fields"]`, `"record" in item`) was how results were
read up to 0.x (they were dicts); it still works for one release, with a
DeprecationWarning, and is invisible to mypy so typed code cannot lean on it.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar, Literal

DEPRECATED_ACCESS = "dict-style access to custos_client results is deprecated"


def jsonable(value: Any) -> Any:
    """A value as its JSON shape: results by their `to_dict`, lists and dicts element by element (the CLI prints
    whatever it is given through this, so a result, a list of them or a dict holding them all print alike)."""
    if isinstance(value, Result):
        return value.to_dict()
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value


def _warn(result: Result, key: object) -> None:
    warnings.warn(f"{DEPRECATED_ACCESS} ({type(result).__name__}[{key!r}]): read the attribute, or to_dict()",
                  DeprecationWarning, stacklevel=3)


@dataclass(frozen=True, slots=True)
class Result:
    """Base of every result: `to_dict()` in the CLI's JSON shape, and the deprecated dict-style reads."""

    # Attributes left out of to_dict() when empty (the gateway sets them only sometimes; the CLI's JSON omits them).
    _OPTIONAL: ClassVar[frozenset[str]] = frozenset()
    # Attributes whose JSON key differs (a Python keyword such as `from`, or the older key of the dict era).
    _KEYS: ClassVar[Mapping[str, str]] = {}

    def to_dict(self) -> dict[str, Any]:
        """The result as the CLI prints it with --json (plain dicts, lists, str, int, bool, bytes for proofs)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in self._OPTIONAL and not value:
                continue
            out[self._KEYS.get(f.name, f.name)] = jsonable(value)
        return out

    if not TYPE_CHECKING:  # deprecated for one release; hidden from mypy so that typed callers cannot use it
        def __getitem__(self, key):
            _warn(self, key)
            return self.to_dict()[key]

        def __contains__(self, key):
            _warn(self, key)
            return key in self.to_dict()

        def get(self, key, default=None):
            _warn(self, key)
            return self.to_dict().get(key, default)

        def keys(self):
            _warn(self, "keys")
            return self.to_dict().keys()


# ------------------------------------------------------------ cases and work lists
@dataclass(frozen=True, slots=True)
class CaseRecord(Result):
    """`get_case`: the fields the policy released for this purpose, and the rules that released them.

    `fields` is a dict: which fields are released depends on the policy, the purpose and the stage."""

    _OPTIONAL: ClassVar[frozenset[str]] = frozenset({"erasure"})

    case_id: str
    purpose: str
    stage: str
    fields: dict[str, str]
    rules: list[str]
    erasure: str = ""  # set only when an erasure is scheduled or done


@dataclass(frozen=True, slots=True)
class PulledCase(Result):
    """One case of a work list: like `CaseRecord`, with the lender it belongs to (case ids are unique per
    lender, so (lender_id, case_id) is the key to store it under). `fields` as for CaseRecord."""

    case_id: str
    lender_id: str
    purpose: str
    stage: str
    fields: dict[str, str]
    rules: list[str]


@dataclass(frozen=True, slots=True)
class PullRecord(Result):
    """A case to work: the case is `item.record`; `cursor` is the position right after it."""

    record: PulledCase
    cursor: str


@dataclass(frozen=True, slots=True)
class PullRemoved(Result):
    """A case that left the work list since the last pull (only with `since`); `code` says why."""

    _KEYS: ClassVar[Mapping[str, str]] = {"case_id": "removed"}

    case_id: str
    lender_id: str
    code: str
    cursor: str


@dataclass(frozen=True, slots=True)
class PullEnd(Result):
    """The last item of a complete pull: store its cursor, and pull from it next time."""

    cursor: str
    end: Literal[True] = True


PullItem = PullRecord | PullRemoved | PullEnd
"""One item of `pull_cases`: tell them apart with isinstance or `match item: case PullRecord(record=r): ...`."""


@dataclass(frozen=True, slots=True)
class CaseSummary(Result):
    """A case as `list_cases`, `set_stage` and `set_flags` answer: where it stands, no borrower data."""

    case_id: str
    lender: str
    stage: str
    status: str
    jurisdiction: str
    purpose: str
    until: str
    flags: list[str]
    erasure: str


# ------------------------------------------------------------ streamed lines
@dataclass(frozen=True, slots=True)
class Rejected(Result):
    """A line the gateway refused: its number (from 1), the stable code and a reason without the line's values."""

    line: int
    code: str
    reason: str


@dataclass(frozen=True, slots=True)
class ImportResult(Result):
    """`import_lines` / `import_file`: what was stored, what was there already, and what was refused.

    `rejected_total` may exceed len(rejected): the gateway lists only the first ones."""

    imported: int
    already_imported: int
    rejected_total: int
    rejected: list[Rejected]
    through_line: int


@dataclass(frozen=True, slots=True)
class UpdateResult(Result):
    """`update_lines` / `update_file`: updates applied, lines that changed nothing (the same line again, or values
    the account already holds), and what was refused (`STALE_UPDATE` for an as_of before the last applied)."""

    updated: int
    unchanged: int
    rejected_total: int
    rejected: list[Rejected]
    through_line: int


@dataclass(frozen=True, slots=True)
class AssignResult(Result):
    """`assign_lines`: mandates granted, and the placement lines refused."""

    assigned: int
    rejected_total: int
    rejected: list[Rejected]
    through_line: int


# ------------------------------------------------------------ mandates
@dataclass(frozen=True, slots=True)
class Mandate(Result):
    """A mandate; the optional terms (commission, agreement, pia) and `recalled_at` are "" when not set."""

    _OPTIONAL: ClassVar[frozenset[str]] = frozenset({"commission", "agreement", "pia", "recalled_at"})

    case_id: str
    org_id: str
    purpose: str
    until: str
    label: str
    granted_at: str
    commission: str = ""
    agreement: str = ""
    pia: str = ""
    recalled_at: str = ""


@dataclass(frozen=True, slots=True)
class Recall(Result):
    """`recall`: how many mandates of the organisation on the case ended (0: it held none)."""

    case_id: str
    org_id: str
    recalled: int


@dataclass(frozen=True, slots=True)
class RecallAll(Result):
    """`recall_all`: how many mandates the organisation held on the caller's cases, all ended."""

    org_id: str
    recalled: int


@dataclass(frozen=True, slots=True)
class Escalation(Result):
    """`escalate`: the case's new stage, the agencies' mandates that ended, and the law firm's mandate."""

    case_id: str
    stage: str
    recalled: list[str]
    mandate: Mandate


# ------------------------------------------------------------ borrowers' rights
@dataclass(frozen=True, slots=True)
class ErasureReceipt(Result):
    """`erase`: the receipt of an erasure done, scheduled (`state` pending, `due`) or cancelled."""

    lender: str
    borrower_id: str
    state: str
    at: str
    due: str
    reason: str
    destroyed: list[str]
    cases: list[str]
    mandates_ended: list[str]
    audit_seq: int


@dataclass(frozen=True, slots=True)
class SubjectCase(Result):
    """`subject_data`: the borrower's own data in one case. `fields` is a dict: what a case holds varies."""

    case_id: str
    stage: str
    fields: dict[str, str]
    erasure: str


@dataclass(frozen=True, slots=True)
class PurgeItem(Result):
    """A borrower whose retention ran out: the cases, since when, the rule, and the cases holding it back."""

    borrower_id: str
    cases: list[str]
    due_on: str
    rule: str
    held_by: list[str]


@dataclass(frozen=True, slots=True)
class PurgePlan(Result):
    """`purge_plan`: borrowers due for shredding, and those a legal hold keeps."""

    due: list[PurgeItem]
    held: list[PurgeItem]


@dataclass(frozen=True, slots=True)
class Consent(Result):
    """`set_consent`: the borrower's consents now, and the mandates that ended with a withdrawal."""

    case_id: str
    third_party_sharing: bool
    credit_reporting: bool
    changed_at: str
    mandates_ended: list[str]
    cross_border: bool
    artificial_voice: bool


@dataclass(frozen=True, slots=True)
class Transfer(Result):
    """`record_transfer`: the case's transfer mechanism for provision abroad."""

    case_id: str
    mechanism: str
    reference: str
    valid_until: str
    cross_border: bool


@dataclass(frozen=True, slots=True)
class Notice(Result):
    """`record_notice`: the notice recorded; `negative_notice_on` "" unless one of that kind is on file."""

    _OPTIONAL: ClassVar[frozenset[str]] = frozenset({"negative_notice_on"})

    case_id: str
    kind: str
    notice_on: str
    negative_notice_on: str = ""


@dataclass(frozen=True, slots=True)
class ForbearanceMeasure(Result):
    measure: str
    on: str


@dataclass(frozen=True, slots=True)
class Forbearance(Result):
    """`record_forbearance`: the measure recorded and every measure of the case."""

    case_id: str
    measure: str
    on: str
    recorded_at: str
    measures: list[ForbearanceMeasure]


@dataclass(frozen=True, slots=True)
class ProcessingRecord(Result):
    """`ropa`: the record of processing activities (GDPR Art. 30). A dict: it is a generated document whose
    sections follow the jurisdictions' policies (docs/regulators.md describes it)."""

    document: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.document)


# ------------------------------------------------------------ performance, explanations
@dataclass(frozen=True, slots=True)
class AgencyPerformance(Result):
    """One organisation's figures; None where the ledger cannot say (see DESIGN.md on performance)."""

    org: str
    kind: str
    cases_placed: int
    contact_attempts: int
    conversations: int
    promises: int
    promises_kept: int | None
    plans: int | None
    plans_kept: int | None
    recovered: dict[str, str]  # currency -> amount
    refusals: dict[str, int]  # code -> how many


@dataclass(frozen=True, slots=True)
class Performance(Result):
    """`performance`: figures per agency over [from_, to] (UTC days)."""

    _KEYS: ClassVar[Mapping[str, str]] = {"from_": "from"}

    from_: str
    to: str
    agencies: list[AgencyPerformance]


@dataclass(frozen=True, slots=True)
class ExplainedField(Result):
    field: str
    transform: str
    rule: str


@dataclass(frozen=True, slots=True)
class Explanation(Result):
    """`explain`: what the policy would decide for the org on the case under the purpose, and why."""

    org_id: str
    case_id: str
    purpose: str
    decision: str
    code: str
    fields: list[ExplainedField]
    rules: list[str]
    policy_revision: str
    notes: list[str]


# ------------------------------------------------------------ payments, statements, contacts, plans
@dataclass(frozen=True, slots=True)
class Payment(Result):
    """A reported payment; `reason` is set only on a rejected one (and shown to the lender only)."""

    _OPTIONAL: ClassVar[frozenset[str]] = frozenset({"reason"})

    payment_id: str
    status: str
    case_id: str
    org: str
    amount: str
    currency: str
    on: str
    reference: str
    reported_at: str
    decided_at: str
    commission: str
    reason: str = ""


_CONFIRMED_ONLY = ("org", "amount", "currency", "commission", "outstanding", "amount_due", "case_status")


@dataclass(frozen=True, slots=True)
class PaymentDecision(Result):
    """`confirm_payment` / `reject_payment`; the figures after it are set only when `status` is confirmed."""

    payment_id: str
    status: str
    case_id: str
    decided_at: str
    org: str = ""
    amount: str = ""
    currency: str = ""
    commission: str = ""
    outstanding: str = ""
    amount_due: str = ""
    case_status: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"payment_id": self.payment_id, "status": self.status, "case_id": self.case_id,
                               "decided_at": self.decided_at}
        if self.status == "confirmed":
            out.update({k: getattr(self, k) for k in _CONFIRMED_ONLY})
        return out


@dataclass(frozen=True, slots=True)
class StatementLine(Result):
    payment_id: str
    case_id: str
    lender: str
    org: str
    on: str
    confirmed_at: str
    amount: str
    currency: str
    rate: str
    fee: str


@dataclass(frozen=True, slots=True)
class CurrencyTotal(Result):
    recovered: str
    fees: str


@dataclass(frozen=True, slots=True)
class Statement(Result):
    """`statement`: the month's confirmed payments, and the totals per currency."""

    period: str
    org: str
    lines: list[StatementLine]
    recovered: str
    fees: str
    currency: str
    totals: dict[str, CurrencyTotal]


@dataclass(frozen=True, slots=True)
class Contact(Result):
    """A contact: what to reach (only the fields the gateway released: phone or address, a name for a third
    party; "" otherwise) and, once recorded, what came of it."""

    _OPTIONAL: ClassVar[frozenset[str]] = frozenset({"phone", "address", "name", "result", "promise_amount",
                                                     "promise_on", "recording", "artificial_voice"})

    contact_id: str
    case_id: str
    channel: str
    party: str
    opened_at: str
    phone: str = ""
    address: str = ""
    name: str = ""
    result: str = ""
    promise_amount: str = ""
    promise_on: str = ""
    recording: str = ""
    artificial_voice: bool = False


@dataclass(frozen=True, slots=True)
class Instalment(Result):
    _OPTIONAL: ClassVar[frozenset[str]] = frozenset({"state"})

    on: str
    amount: str
    state: str = ""


@dataclass(frozen=True, slots=True)
class ProposedPlan(Result):
    """`propose_plan`: the new plan's id and status."""

    plan_id: str
    case_id: str
    status: str


@dataclass(frozen=True, slots=True)
class Plan(Result):
    """A repayment plan; the parts after `status` are "" where the gateway did not set them."""

    _OPTIONAL: ClassVar[frozenset[str]] = frozenset({"org", "proposed_at", "decided_at", "paid", "amount_due", "reason"})

    plan_id: str
    case_id: str
    status: str
    org: str = ""
    proposed_at: str = ""
    decided_at: str = ""
    paid: str = ""
    amount_due: str = ""
    reason: str = ""
    instalments: list[Instalment] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Plans(Result):
    """`show_plans`: a case's plans."""

    case_id: str
    plans: list[Plan]


# ------------------------------------------------------------ the bureau feed
@dataclass(frozen=True, slots=True)
class FeedRecord(Result):
    """One record of `pull_feed`. `fields` is a dict: the released fields depend on the bureau's policy.

    to_dict() is flat, as the feed's JSON is: seq, case_id, loan_id, jurisdiction, then each field by name."""

    seq: int
    case_id: str
    loan_id: str
    jurisdiction: str
    fields: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "case_id": self.case_id, "loan_id": self.loan_id,
                "jurisdiction": self.jurisdiction, **self.fields}


@dataclass(frozen=True, slots=True)
class Withheld(Result):
    """A record the bureau's format cannot carry (not numbered: it is sent once corrected)."""

    case_id: str
    code: str


@dataclass(frozen=True, slots=True)
class Feed(Result):
    """`pull_feed`: the records changed since the cursor given, those withheld, and the cursor to keep."""

    records: list[FeedRecord]
    withheld: list[Withheld]
    cursor: str


# ------------------------------------------------------------ audit
@dataclass(frozen=True, slots=True)
class AuditEvent(Result):
    """One audit event. The common keys are attributes; `data` is the whole leaf object, a dict because an
    event's keys vary with its kind (a contact's channel and party, an agent, a lender) and grow over releases.
    to_dict() is `data`, the leaf as the CLI prints it."""

    seq: int
    time: str
    org: str
    method: str
    purpose: str
    case_id: str
    decision: str
    code: str
    data: dict[str, Any]

    @classmethod
    def from_leaf(cls, leaf: dict[str, Any]) -> AuditEvent:
        return cls(int(leaf.get("seq", 0)), str(leaf.get("time", "")), str(leaf.get("org", "")),
                   str(leaf.get("method", "")), str(leaf.get("purpose", "")), str(leaf.get("case_id", "")),
                   str(leaf.get("decision", "")), str(leaf.get("code", "")), leaf)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.data)


@dataclass(frozen=True, slots=True)
class SubjectEvent(Result):
    """An event of a subject report (`subject_events`): the event, and the lender it is listed for ("" none
    sure). to_dict() is the leaf with `report_lender` added."""

    event: AuditEvent
    report_lender: str

    def to_dict(self) -> dict[str, Any]:
        return {**self.event.data, "report_lender": self.report_lender}


@dataclass(frozen=True, slots=True)
class StatsGroup(Result):
    """One group of `audit_stats`: its value for each key of `by` (a dict: `by` is the caller's choice), and
    how many events."""

    group: dict[str, str]
    count: int

    def to_dict(self) -> dict[str, Any]:
        return {**self.group, "count": self.count}


@dataclass(frozen=True, slots=True)
class AuditStats(Result):
    """`audit_stats`: events per group over [from_, to), counted over the events with seq < size; `checkpoint`
    is the gateway's signed note of that size. `lender` is set on a lender's own figures."""

    _KEYS: ClassVar[Mapping[str, str]] = {"from_": "from"}
    _OPTIONAL: ClassVar[frozenset[str]] = frozenset({"lender"})

    from_: str
    to: str
    by: list[str]
    size: int
    checkpoint: str
    total: int
    groups: list[StatsGroup]
    lender: str = ""


@dataclass(frozen=True, slots=True)
class ComplianceReport(Result):
    """`compliance_report`: one generated document (a dict: its figures follow the jurisdictions' rules;
    gateway/core/rules/compliance.py says what each is)."""

    document: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return dict(self.document)


@dataclass(frozen=True, slots=True)
class InclusionProof(Result):
    """`inclusion_proof`: the hashing path from event `index`'s leaf to `root`, the tree of `tree_size`."""

    index: int
    tree_size: int
    leaf_hash: bytes
    root: bytes
    proof: list[bytes]


@dataclass(frozen=True, slots=True)
class ConsistencyProof(Result):
    """`consistency_proof`: the tree of `from_` events is a prefix of the tree of `to` events."""

    _KEYS: ClassVar[Mapping[str, str]] = {"from_": "from"}

    from_: int
    to: int
    from_root: bytes
    to_root: bytes
    proof: list[bytes]


@dataclass(frozen=True, slots=True)
class Checkpoint(Result):
    """`checkpoint_and_cosigned`: the signed checkpoint, and the latest one each regulator cosigned."""

    checkpoint: str
    cosigned: list[str]


@dataclass(frozen=True, slots=True)
class ProvenEvent(Result):
    """An event with its inclusion proof, UNCHECKED (the reader checks it against a checkpoint it verified)."""

    seq: int
    leaf: bytes
    proof: list[bytes]


@dataclass(frozen=True, slots=True)
class ProvenPage(Result):
    """`proven_audit_page`: events with proofs and the checkpoint signed for the query, all unchecked;
    `next_from_seq` continues (0: nothing more)."""

    checkpoint: str
    events: list[ProvenEvent]
    next_from_seq: int


__all__ = [
    "AgencyPerformance",
    "AssignResult",
    "AuditEvent",
    "AuditStats",
    "CaseRecord",
    "CaseSummary",
    "Checkpoint",
    "ComplianceReport",
    "Consent",
    "ConsistencyProof",
    "Contact",
    "CurrencyTotal",
    "ErasureReceipt",
    "Escalation",
    "ExplainedField",
    "Explanation",
    "Feed",
    "FeedRecord",
    "Forbearance",
    "ForbearanceMeasure",
    "ImportResult",
    "InclusionProof",
    "Instalment",
    "Mandate",
    "Notice",
    "Payment",
    "PaymentDecision",
    "Performance",
    "Plan",
    "Plans",
    "ProcessingRecord",
    "ProposedPlan",
    "ProvenEvent",
    "ProvenPage",
    "PullEnd",
    "PullItem",
    "PullRecord",
    "PullRemoved",
    "PulledCase",
    "PurgeItem",
    "PurgePlan",
    "Recall",
    "RecallAll",
    "Rejected",
    "Result",
    "Statement",
    "StatementLine",
    "StatsGroup",
    "SubjectCase",
    "SubjectEvent",
    "Transfer",
    "UpdateResult",
    "Withheld",
]
