from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ImportLine(_message.Message):
    __slots__ = ("line_no", "raw")
    LINE_NO_FIELD_NUMBER: _ClassVar[int]
    RAW_FIELD_NUMBER: _ClassVar[int]
    line_no: int
    raw: bytes
    def __init__(self, line_no: _Optional[int] = ..., raw: _Optional[bytes] = ...) -> None: ...

class ImportRejection(_message.Message):
    __slots__ = ("line", "code", "reason")
    LINE_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    line: int
    code: str
    reason: str
    def __init__(self, line: _Optional[int] = ..., code: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ImportProgress(_message.Message):
    __slots__ = ("through_line", "imported", "already_imported", "rejected_total", "rejected", "done")
    THROUGH_LINE_FIELD_NUMBER: _ClassVar[int]
    IMPORTED_FIELD_NUMBER: _ClassVar[int]
    ALREADY_IMPORTED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_TOTAL_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    through_line: int
    imported: int
    already_imported: int
    rejected_total: int
    rejected: _containers.RepeatedCompositeFieldContainer[ImportRejection]
    done: bool
    def __init__(self, through_line: _Optional[int] = ..., imported: _Optional[int] = ..., already_imported: _Optional[int] = ..., rejected_total: _Optional[int] = ..., rejected: _Optional[_Iterable[_Union[ImportRejection, _Mapping]]] = ..., done: _Optional[bool] = ...) -> None: ...

class LineChunk(_message.Message):
    __slots__ = ("lines",)
    LINES_FIELD_NUMBER: _ClassVar[int]
    lines: _containers.RepeatedCompositeFieldContainer[ImportLine]
    def __init__(self, lines: _Optional[_Iterable[_Union[ImportLine, _Mapping]]] = ...) -> None: ...

class PlacementProgress(_message.Message):
    __slots__ = ("through_line", "assigned", "rejected_total", "rejected", "done")
    THROUGH_LINE_FIELD_NUMBER: _ClassVar[int]
    ASSIGNED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_TOTAL_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    through_line: int
    assigned: int
    rejected_total: int
    rejected: _containers.RepeatedCompositeFieldContainer[ImportRejection]
    done: bool
    def __init__(self, through_line: _Optional[int] = ..., assigned: _Optional[int] = ..., rejected_total: _Optional[int] = ..., rejected: _Optional[_Iterable[_Union[ImportRejection, _Mapping]]] = ..., done: _Optional[bool] = ...) -> None: ...

class UpdateProgress(_message.Message):
    __slots__ = ("through_line", "updated", "unchanged", "rejected_total", "rejected", "done")
    THROUGH_LINE_FIELD_NUMBER: _ClassVar[int]
    UPDATED_FIELD_NUMBER: _ClassVar[int]
    UNCHANGED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_TOTAL_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    DONE_FIELD_NUMBER: _ClassVar[int]
    through_line: int
    updated: int
    unchanged: int
    rejected_total: int
    rejected: _containers.RepeatedCompositeFieldContainer[ImportRejection]
    done: bool
    def __init__(self, through_line: _Optional[int] = ..., updated: _Optional[int] = ..., unchanged: _Optional[int] = ..., rejected_total: _Optional[int] = ..., rejected: _Optional[_Iterable[_Union[ImportRejection, _Mapping]]] = ..., done: _Optional[bool] = ...) -> None: ...

class RecallAllRequest(_message.Message):
    __slots__ = ("org_id",)
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    org_id: str
    def __init__(self, org_id: _Optional[str] = ...) -> None: ...

class AssignCaseRequest(_message.Message):
    __slots__ = ("case_id", "org_id", "purpose", "until", "label", "commission", "agreement", "pia")
    CASE_ID_FIELD_NUMBER: _ClassVar[int]
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    COMMISSION_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    PIA_FIELD_NUMBER: _ClassVar[int]
    case_id: str
    org_id: str
    purpose: str
    until: str
    label: str
    commission: str
    agreement: str
    pia: str
    def __init__(self, case_id: _Optional[str] = ..., org_id: _Optional[str] = ..., purpose: _Optional[str] = ..., until: _Optional[str] = ..., label: _Optional[str] = ..., commission: _Optional[str] = ..., agreement: _Optional[str] = ..., pia: _Optional[str] = ...) -> None: ...

class MandateInfo(_message.Message):
    __slots__ = ("case_id", "org_id", "purpose", "until", "label", "granted_at", "commission", "agreement", "pia", "recalled_at")
    CASE_ID_FIELD_NUMBER: _ClassVar[int]
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    GRANTED_AT_FIELD_NUMBER: _ClassVar[int]
    COMMISSION_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    PIA_FIELD_NUMBER: _ClassVar[int]
    RECALLED_AT_FIELD_NUMBER: _ClassVar[int]
    case_id: str
    org_id: str
    purpose: str
    until: str
    label: str
    granted_at: str
    commission: str
    agreement: str
    pia: str
    recalled_at: str
    def __init__(self, case_id: _Optional[str] = ..., org_id: _Optional[str] = ..., purpose: _Optional[str] = ..., until: _Optional[str] = ..., label: _Optional[str] = ..., granted_at: _Optional[str] = ..., commission: _Optional[str] = ..., agreement: _Optional[str] = ..., pia: _Optional[str] = ..., recalled_at: _Optional[str] = ...) -> None: ...

class RecallCaseRequest(_message.Message):
    __slots__ = ("case_id", "org_id")
    CASE_ID_FIELD_NUMBER: _ClassVar[int]
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    case_id: str
    org_id: str
    def __init__(self, case_id: _Optional[str] = ..., org_id: _Optional[str] = ...) -> None: ...

class RecallCaseResponse(_message.Message):
    __slots__ = ("recalled",)
    RECALLED_FIELD_NUMBER: _ClassVar[int]
    recalled: int
    def __init__(self, recalled: _Optional[int] = ...) -> None: ...

class EscalateCaseRequest(_message.Message):
    __slots__ = ("case_id", "org_id", "until", "agreement", "pia")
    CASE_ID_FIELD_NUMBER: _ClassVar[int]
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    AGREEMENT_FIELD_NUMBER: _ClassVar[int]
    PIA_FIELD_NUMBER: _ClassVar[int]
    case_id: str
    org_id: str
    until: str
    agreement: str
    pia: str
    def __init__(self, case_id: _Optional[str] = ..., org_id: _Optional[str] = ..., until: _Optional[str] = ..., agreement: _Optional[str] = ..., pia: _Optional[str] = ...) -> None: ...

class EscalateCaseResponse(_message.Message):
    __slots__ = ("case_id", "stage", "mandate", "recalled")
    CASE_ID_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    MANDATE_FIELD_NUMBER: _ClassVar[int]
    RECALLED_FIELD_NUMBER: _ClassVar[int]
    case_id: str
    stage: str
    mandate: MandateInfo
    recalled: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, case_id: _Optional[str] = ..., stage: _Optional[str] = ..., mandate: _Optional[_Union[MandateInfo, _Mapping]] = ..., recalled: _Optional[_Iterable[str]] = ...) -> None: ...

class SetConsentRequest(_message.Message):
    __slots__ = ("case_id", "third_party_sharing", "credit_reporting", "artificial_voice", "cross_border")
    CASE_ID_FIELD_NUMBER: _ClassVar[int]
    THIRD_PARTY_SHARING_FIELD_NUMBER: _ClassVar[int]
    CREDIT_REPORTING_FIELD_NUMBER: _ClassVar[int]
    ARTIFICIAL_VOICE_FIELD_NUMBER: _ClassVar[int]
    CROSS_BORDER_FIELD_NUMBER: _ClassVar[int]
    case_id: str
    third_party_sharing: bool
    credit_reporting: bool
    artificial_voice: bool
    cross_border: bool
    def __init__(self, case_id: _Optional[str] = ..., third_party_sharing: _Optional[bool] = ..., credit_reporting: _Optional[bool] = ..., artificial_voice: _Optional[bool] = ..., cross_border: _Optional[bool] = ...) -> None: ...

class ConsentInfo(_message.Message):
    __slots__ = ("case_id", "third_party_sharing", "credit_reporting", "changed_at", "mandates_ended", "artificial_voice", "cross_border")
    CASE_ID_FIELD_NUMBER: _ClassVar[int]
    THIRD_PARTY_SHARING_FIELD_NUMBER: _ClassVar[int]
    CREDIT_REPORTING_FIELD_NUMBER: _ClassVar[int]
    CHANGED_AT_FIELD_NUMBER: _ClassVar[int]
    MANDATES_ENDED_FIELD_NUMBER: _ClassVar[int]
    ARTIFICIAL_VOICE_FIELD_NUMBER: _ClassVar[int]
    CROSS_BORDER_FIELD_NUMBER: _ClassVar[int]
    case_id: str
    third_party_sharing: bool
    credit_reporting: bool
    changed_at: str
    mandates_ended: _containers.RepeatedScalarFieldContainer[str]
    artificial_voice: bool
    cross_border: bool
    def __init__(self, case_id: _Optional[str] = ..., third_party_sharing: _Optional[bool] = ..., credit_reporting: _Optional[bool] = ..., changed_at: _Optional[str] = ..., mandates_ended: _Optional[_Iterable[str]] = ..., artificial_voice: _Optional[bool] = ..., cross_border: _Optional[bool] = ...) -> None: ...

class EraseBorrowerRequest(_message.Message):
    __slots__ = ("borrower_id", "grace_days", "cancel")
    BORROWER_ID_FIELD_NUMBER: _ClassVar[int]
    GRACE_DAYS_FIELD_NUMBER: _ClassVar[int]
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    borrower_id: str
    grace_days: int
    cancel: bool
    def __init__(self, borrower_id: _Optional[str] = ..., grace_days: _Optional[int] = ..., cancel: _Optional[bool] = ...) -> None: ...

class ErasureReceipt(_message.Message):
    __slots__ = ("lender", "borrower_id", "state", "at", "due", "reason", "destroyed", "cases", "mandates_ended", "audit_seq")
    LENDER_FIELD_NUMBER: _ClassVar[int]
    BORROWER_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    DUE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DESTROYED_FIELD_NUMBER: _ClassVar[int]
    CASES_FIELD_NUMBER: _ClassVar[int]
    MANDATES_ENDED_FIELD_NUMBER: _ClassVar[int]
    AUDIT_SEQ_FIELD_NUMBER: _ClassVar[int]
    lender: str
    borrower_id: str
    state: str
    at: str
    due: str
    reason: str
    destroyed: _containers.RepeatedScalarFieldContainer[str]
    cases: _containers.RepeatedScalarFieldContainer[str]
    mandates_ended: _containers.RepeatedScalarFieldContainer[str]
    audit_seq: int
    def __init__(self, lender: _Optional[str] = ..., borrower_id: _Optional[str] = ..., state: _Optional[str] = ..., at: _Optional[str] = ..., due: _Optional[str] = ..., reason: _Optional[str] = ..., destroyed: _Optional[_Iterable[str]] = ..., cases: _Optional[_Iterable[str]] = ..., mandates_ended: _Optional[_Iterable[str]] = ..., audit_seq: _Optional[int] = ...) -> None: ...

class SubjectDataRequest(_message.Message):
    __slots__ = ("borrower_id",)
    BORROWER_ID_FIELD_NUMBER: _ClassVar[int]
    borrower_id: str
    def __init__(self, borrower_id: _Optional[str] = ...) -> None: ...

class SubjectDataResponse(_message.Message):
    __slots__ = ("cases",)
    CASES_FIELD_NUMBER: _ClassVar[int]
    cases: _containers.RepeatedCompositeFieldContainer[CaseRecord]
    def __init__(self, cases: _Optional[_Iterable[_Union[CaseRecord, _Mapping]]] = ...) -> None: ...

class PurgePlanRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PurgeItem(_message.Message):
    __slots__ = ("borrower_id", "cases", "due_on", "rule", "held_by")
    BORROWER_ID_FIELD_NUMBER: _ClassVar[int]
    CASES_FIELD_NUMBER: _ClassVar[int]
    DUE_ON_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    HELD_BY_FIELD_NUMBER: _ClassVar[int]
    borrower_id: str
    cases: _containers.RepeatedScalarFieldContainer[str]
    due_on: str
    rule: str
    held_by: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, borrower_id: _Optional[str] = ..., cases: _Optional[_Iterable[str]] = ..., due_on: _Optional[str] = ..., rule: _Optional[str] = ..., held_by: _Optional[_Iterable[str]] = ...) -> None: ...

class PurgePlanResponse(_message.Message):
    __slots__ = ("due", "held")
    DUE_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    due: _containers.RepeatedCompositeFieldContainer[PurgeItem]
    held: _containers.RepeatedCompositeFieldContainer[PurgeItem]
    def __init__(self, due: _Optional[_Iterable[_Union[PurgeItem, _Mapping]]] = ..., held: _Optional[_Iterable[_Union[PurgeItem, _Mapping]]] = ...) -> None: ...

class RecordNoticeRequest(_message.Message):
    __slots__ = ("case_id", "on", "kind")
    CASE_ID_FIELD_NUMBER: _ClassVar[int]
    ON_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    case_id: str
    on: str
    kind: str
    def __init__(self, case_id: _Optional[str] = ..., on: _Optional[str] = ..., kind: _Optional[str] = ...) -> None: ...

class RecordNoticeResponse(_message.Message):
    __slots__ = ("case_id", "negative_notice_on", "kind", "notice_on")
    CASE_ID_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_NOTICE_ON_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    NOTICE_ON_FIELD_NUMBER: _ClassVar[int]
    case_id: str
    negative_notice_on: str
    kind: str
    notice_on: str
    def __init__(self, case_id: _Optional[str] = ..., negative_notice_on: _Optional[str] = ..., kind: _Optional[str] = ..., notice_on: _Optional[str] = ...) -> None: ...

class SetStageRequest(_message.Message):
    __slots__ = ("case_id", "stage")
    CASE_ID_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    case_id: str
    stage: str
    def __init__(self, case_id: _Optional[str] = ..., stage: _Optional[str] = ...) -> None: ...

class SetFlagsRequest(_message.Message):
    __slots__ = ("case_id", "disputed", "cease_contact", "attorney_represented", "lost_contact", "legal_hold", "status", "verification_sent", "identity_theft", "discharged")
    CASE_ID_FIELD_NUMBER: _ClassVar[int]
    DISPUTED_FIELD_NUMBER: _ClassVar[int]
    CEASE_CONTACT_FIELD_NUMBER: _ClassVar[int]
    ATTORNEY_REPRESENTED_FIELD_NUMBER: _ClassVar[int]
    LOST_CONTACT_FIELD_NUMBER: _ClassVar[int]
    LEGAL_HOLD_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    VERIFICATION_SENT_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_THEFT_FIELD_NUMBER: _ClassVar[int]
    DISCHARGED_FIELD_NUMBER: _ClassVar[int]
    case_id: str
    disputed: bool
    cease_contact: bool
    attorney_represented: bool
    lost_contact: bool
    legal_hold: bool
    status: str
    verification_sent: str
    identity_theft: bool
    discharged: bool
    def __init__(self, case_id: _Optional[str] = ..., disputed: _Optional[bool] = ..., cease_contact: _Optional[bool] = ..., attorney_represented: _Optional[bool] = ..., lost_contact: _Optional[bool] = ..., legal_hold: _Optional[bool] = ..., status: _Optional[str] = ..., verification_sent: _Optional[str] = ..., identity_theft: _Optional[bool] = ..., discharged: _Optional[bool] = ...) -> None: ...

class ExplainRequest(_message.Message):
    __slots__ = ("org_id", "case_id", "purpose", "at")
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    CASE_ID_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    AT_FIELD_NUMBER: _ClassVar[int]
    org_id: str
    case_id: str
    purpose: str
    at: str
    def __init__(self, org_id: _Optional[str] = ..., case_id: _Optional[str] = ..., purpose: _Optional[str] = ..., at: _Optional[str] = ...) -> None: ...

class FieldRelease(_message.Message):
    __slots__ = ("field", "transform", "rule")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    TRANSFORM_FIELD_NUMBER: _ClassVar[int]
    RULE_FIELD_NUMBER: _ClassVar[int]
    field: str
    transform: str
    rule: str
    def __init__(self, field: _Optional[str] = ..., transform: _Optional[str] = ..., rule: _Optional[str] = ...) -> None: ...

class Explanation(_message.Message):
    __slots__ = ("decision", "code", "fields", "rules", "policy_revision", "notes")
    DECISION_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    POLICY_REVISION_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    decision: str
    code: str
    fields: _containers.RepeatedCompositeFieldContainer[FieldRelease]
    rules: _containers.RepeatedScalarFieldContainer[str]
    policy_revision: str
    notes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, decision: _Optional[str] = ..., code: _Optional[str] = ..., fields: _Optional[_Iterable[_Union[FieldRelease, _Mapping]]] = ..., rules: _Optional[_Iterable[str]] = ..., policy_revision: _Optional[str] = ..., notes: _Optional[_Iterable[str]] = ...) -> None: ...

class PullCasesRequest(_message.Message):
    __slots__ = ("purpose", "since")
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    purpose: str
    since: str
    def __init__(self, purpose: _Optional[str] = ..., since: _Optional[str] = ...) -> None: ...

class PulledCase(_message.Message):
    __slots__ = ("record", "removed", "cursor", "lender_id", "code")
    RECORD_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    LENDER_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    record: CaseRecord
    removed: str
    cursor: str
    lender_id: str
    code: str
    def __init__(self, record: _Optional[_Union[CaseRecord, _Mapping]] = ..., removed: _Optional[str] = ..., cursor: _Optional[str] = ..., lender_id: _Optional[str] = ..., code: _Optional[str] = ...) -> None: ...

class PulledCases(_message.Message):
    __slots__ = ("items", "cursor", "end")
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[PulledCase]
    cursor: str
    end: bool
    def __init__(self, items: _Optional[_Iterable[_Union[PulledCase, _Mapping]]] = ..., cursor: _Optional[str] = ..., end: _Optional[bool] = ...) -> None: ...

class ListCasesRequest(_message.Message):
    __slots__ = ("national_id", "phone")
    NATIONAL_ID_FIELD_NUMBER: _ClassVar[int]
    PHONE_FIELD_NUMBER: _ClassVar[int]
    national_id: str
    phone: str
    def __init__(self, national_id: _Optional[str] = ..., phone: _Optional[str] = ...) -> None: ...

class CaseSummary(_message.Message):
    __slots__ = ("case_id", "lender", "stage", "status", "jurisdiction", "purpose", "until", "flags", "erasure")
    CASE_ID_FIELD_NUMBER: _ClassVar[int]
    LENDER_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    JURISDICTION_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    FLAGS_FIELD_NUMBER: _ClassVar[int]
    ERASURE_FIELD_NUMBER: _ClassVar[int]
    case_id: str
    lender: str
    stage: str
    status: str
    jurisdiction: str
    purpose: str
    until: str
    flags: _containers.RepeatedScalarFieldContainer[str]
    erasure: str
    def __init__(self, case_id: _Optional[str] = ..., lender: _Optional[str] = ..., stage: _Optional[str] = ..., status: _Optional[str] = ..., jurisdiction: _Optional[str] = ..., purpose: _Optional[str] = ..., until: _Optional[str] = ..., flags: _Optional[_Iterable[str]] = ..., erasure: _Optional[str] = ...) -> None: ...

class ListCasesResponse(_message.Message):
    __slots__ = ("cases",)
    CASES_FIELD_NUMBER: _ClassVar[int]
    cases: _containers.RepeatedCompositeFieldContainer[CaseSummary]
    def __init__(self, cases: _Optional[_Iterable[_Union[CaseSummary, _Mapping]]] = ...) -> None: ...

class GetCaseRequest(_message.Message):
    __slots__ = ("case_id", "purpose")
    CASE_ID_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    case_id: str
    purpose: str
    def __init__(self, case_id: _Optional[str] = ..., purpose: _Optional[str] = ...) -> None: ...

class CaseRecord(_message.Message):
    __slots__ = ("case_id", "purpose", "stage", "fields", "rules", "erasure")
    class FieldsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    CASE_ID_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    ERASURE_FIELD_NUMBER: _ClassVar[int]
    case_id: str
    purpose: str
    stage: str
    fields: _containers.ScalarMap[str, str]
    rules: _containers.RepeatedScalarFieldContainer[str]
    erasure: str
    def __init__(self, case_id: _Optional[str] = ..., purpose: _Optional[str] = ..., stage: _Optional[str] = ..., fields: _Optional[_Mapping[str, str]] = ..., rules: _Optional[_Iterable[str]] = ..., erasure: _Optional[str] = ...) -> None: ...

class OpenContactRequest(_message.Message):
    __slots__ = ("case_id", "channel", "party", "artificial_voice")
    CASE_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    PARTY_FIELD_NUMBER: _ClassVar[int]
    ARTIFICIAL_VOICE_FIELD_NUMBER: _ClassVar[int]
    case_id: str
    channel: str
    party: str
    artificial_voice: bool
    def __init__(self, case_id: _Optional[str] = ..., channel: _Optional[str] = ..., party: _Optional[str] = ..., artificial_voice: _Optional[bool] = ...) -> None: ...

class ContactInfo(_message.Message):
    __slots__ = ("contact_id", "case_id", "channel", "party", "phone", "address", "name", "result", "opened_at", "promise_amount", "promise_on", "recording", "artificial_voice")
    CONTACT_ID_FIELD_NUMBER: _ClassVar[int]
    CASE_ID_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    PARTY_FIELD_NUMBER: _ClassVar[int]
    PHONE_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    OPENED_AT_FIELD_NUMBER: _ClassVar[int]
    PROMISE_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    PROMISE_ON_FIELD_NUMBER: _ClassVar[int]
    RECORDING_FIELD_NUMBER: _ClassVar[int]
    ARTIFICIAL_VOICE_FIELD_NUMBER: _ClassVar[int]
    contact_id: str
    case_id: str
    channel: str
    party: str
    phone: str
    address: str
    name: str
    result: str
    opened_at: str
    promise_amount: str
    promise_on: str
    recording: str
    artificial_voice: bool
    def __init__(self, contact_id: _Optional[str] = ..., case_id: _Optional[str] = ..., channel: _Optional[str] = ..., party: _Optional[str] = ..., phone: _Optional[str] = ..., address: _Optional[str] = ..., name: _Optional[str] = ..., result: _Optional[str] = ..., opened_at: _Optional[str] = ..., promise_amount: _Optional[str] = ..., promise_on: _Optional[str] = ..., recording: _Optional[str] = ..., artificial_voice: _Optional[bool] = ...) -> None: ...

class RecordOutcomeRequest(_message.Message):
    __slots__ = ("contact_id", "result", "promise_amount", "promise_on", "recording")
    CONTACT_ID_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    PROMISE_AMOUNT_FIELD_NUMBER: _ClassVar[int]
    PROMISE_ON_FIELD_NUMBER: _ClassVar[int]
    RECORDING_FIELD_NUMBER: _ClassVar[int]
    contact_id: str
    result: str
    promise_amount: str
    promise_on: str
    recording: str
    def __init__(self, contact_id: _Optional[str] = ..., result: _Optional[str] = ..., promise_amount: _Optional[str] = ..., promise_on: _Optional[str] = ..., recording: _Optional[str] = ...) -> None: ...

class GetPacketRequest(_message.Message):
    __slots__ = ("case_id",)
    CASE_ID_FIELD_NUMBER: _ClassVar[int]
    case_id: str
    def __init__(self, case_id: _Optional[str] = ...) -> None: ...

class Packet(_message.Message):
    __slots__ = ("packet_id", "data")
    PACKET_ID_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    packet_id: str
    data: bytes
    def __init__(self, packet_id: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class PullFeedRequest(_message.Message):
    __slots__ = ("since",)
    SINCE_FIELD_NUMBER: _ClassVar[int]
    since: str
    def __init__(self, since: _Optional[str] = ...) -> None: ...

class FeedRecord(_message.Message):
    __slots__ = ("seq", "case_id", "loan_id", "jurisdiction", "fields")
    class FieldsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SEQ_FIELD_NUMBER: _ClassVar[int]
    CASE_ID_FIELD_NUMBER: _ClassVar[int]
    LOAN_ID_FIELD_NUMBER: _ClassVar[int]
    JURISDICTION_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    seq: int
    case_id: str
    loan_id: str
    jurisdiction: str
    fields: _containers.ScalarMap[str, str]
    def __init__(self, seq: _Optional[int] = ..., case_id: _Optional[str] = ..., loan_id: _Optional[str] = ..., jurisdiction: _Optional[str] = ..., fields: _Optional[_Mapping[str, str]] = ...) -> None: ...

class FeedWithheld(_message.Message):
    __slots__ = ("case_id", "code")
    CASE_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    case_id: str
    code: str
    def __init__(self, case_id: _Optional[str] = ..., code: _Optional[str] = ...) -> None: ...

class FeedItem(_message.Message):
    __slots__ = ("record", "cursor", "withheld")
    RECORD_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    WITHHELD_FIELD_NUMBER: _ClassVar[int]
    record: FeedRecord
    cursor: str
    withheld: FeedWithheld
    def __init__(self, record: _Optional[_Union[FeedRecord, _Mapping]] = ..., cursor: _Optional[str] = ..., withheld: _Optional[_Union[FeedWithheld, _Mapping]] = ...) -> None: ...

class QueryAuditRequest(_message.Message):
    __slots__ = ("case_id", "org_id", "borrower_id", "since", "from_seq", "with_proofs", "proof_size", "seqs", "until", "decision", "code", "method", "purpose", "channel", "agent", "limit")
    CASE_ID_FIELD_NUMBER: _ClassVar[int]
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    BORROWER_ID_FIELD_NUMBER: _ClassVar[int]
    SINCE_FIELD_NUMBER: _ClassVar[int]
    FROM_SEQ_FIELD_NUMBER: _ClassVar[int]
    WITH_PROOFS_FIELD_NUMBER: _ClassVar[int]
    PROOF_SIZE_FIELD_NUMBER: _ClassVar[int]
    SEQS_FIELD_NUMBER: _ClassVar[int]
    UNTIL_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    AGENT_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    case_id: str
    org_id: str
    borrower_id: str
    since: str
    from_seq: int
    with_proofs: bool
    proof_size: int
    seqs: _containers.RepeatedScalarFieldContainer[int]
    until: str
    decision: str
    code: str
    method: str
    purpose: str
    channel: str
    agent: str
    limit: int
    def __init__(self, case_id: _Optional[str] = ..., org_id: _Optional[str] = ..., borrower_id: _Optional[str] = ..., since: _Optional[str] = ..., from_seq: _Optional[int] = ..., with_proofs: _Optional[bool] = ..., proof_size: _Optional[int] = ..., seqs: _Optional[_Iterable[int]] = ..., until: _Optional[str] = ..., decision: _Optional[str] = ..., code: _Optional[str] = ..., method: _Optional[str] = ..., purpose: _Optional[str] = ..., channel: _Optional[str] = ..., agent: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class SubjectReportRequest(_message.Message):
    __slots__ = ("borrower_id", "lender_id")
    BORROWER_ID_FIELD_NUMBER: _ClassVar[int]
    LENDER_ID_FIELD_NUMBER: _ClassVar[int]
    borrower_id: str
    lender_id: str
    def __init__(self, borrower_id: _Optional[str] = ..., lender_id: _Optional[str] = ...) -> None: ...

class AuditEventBatch(_message.Message):
    __slots__ = ("events", "checkpoint", "next_from_seq")
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    NEXT_FROM_SEQ_FIELD_NUMBER: _ClassVar[int]
    events: _containers.RepeatedCompositeFieldContainer[AuditEvent]
    checkpoint: str
    next_from_seq: int
    def __init__(self, events: _Optional[_Iterable[_Union[AuditEvent, _Mapping]]] = ..., checkpoint: _Optional[str] = ..., next_from_seq: _Optional[int] = ...) -> None: ...

class AuditEvent(_message.Message):
    __slots__ = ("seq", "leaf", "proof", "lender")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    LEAF_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    LENDER_FIELD_NUMBER: _ClassVar[int]
    seq: int
    leaf: bytes
    proof: _containers.RepeatedScalarFieldContainer[bytes]
    lender: str
    def __init__(self, seq: _Optional[int] = ..., leaf: _Optional[bytes] = ..., proof: _Optional[_Iterable[bytes]] = ..., lender: _Optional[str] = ...) -> None: ...

class InclusionProofRequest(_message.Message):
    __slots__ = ("seq", "tree_size")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    seq: int
    tree_size: int
    def __init__(self, seq: _Optional[int] = ..., tree_size: _Optional[int] = ...) -> None: ...

class InclusionProof(_message.Message):
    __slots__ = ("index", "tree_size", "leaf_hash", "root", "proof")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    TREE_SIZE_FIELD_NUMBER: _ClassVar[int]
    LEAF_HASH_FIELD_NUMBER: _ClassVar[int]
    ROOT_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    index: int
    tree_size: int
    leaf_hash: bytes
    root: bytes
    proof: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, index: _Optional[int] = ..., tree_size: _Optional[int] = ..., leaf_hash: _Optional[bytes] = ..., root: _Optional[bytes] = ..., proof: _Optional[_Iterable[bytes]] = ...) -> None: ...

class ConsistencyProofRequest(_message.Message):
    __slots__ = ("from_size", "to_size")
    FROM_SIZE_FIELD_NUMBER: _ClassVar[int]
    TO_SIZE_FIELD_NUMBER: _ClassVar[int]
    from_size: int
    to_size: int
    def __init__(self, from_size: _Optional[int] = ..., to_size: _Optional[int] = ...) -> None: ...

class ConsistencyProof(_message.Message):
    __slots__ = ("from_size", "to_size", "from_root", "to_root", "proof")
    FROM_SIZE_FIELD_NUMBER: _ClassVar[int]
    TO_SIZE_FIELD_NUMBER: _ClassVar[int]
    FROM_ROOT_FIELD_NUMBER: _ClassVar[int]
    TO_ROOT_FIELD_NUMBER: _ClassVar[int]
    PROOF_FIELD_NUMBER: _ClassVar[int]
    from_size: int
    to_size: int
    from_root: bytes
    to_root: bytes
    proof: _containers.RepeatedScalarFieldContainer[bytes]
    def __init__(self, from_size: _Optional[int] = ..., to_size: _Optional[int] = ..., from_root: _Optional[bytes] = ..., to_root: _Optional[bytes] = ..., proof: _Optional[_Iterable[bytes]] = ...) -> None: ...

class GetCheckpointRequest(_message.Message):
    __slots__ = ("size",)
    SIZE_FIELD_NUMBER: _ClassVar[int]
    size: int
    def __init__(self, size: _Optional[int] = ...) -> None: ...

class Checkpoint(_message.Message):
    __slots__ = ("note", "size", "verifier_key", "cosigned")
    NOTE_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    VERIFIER_KEY_FIELD_NUMBER: _ClassVar[int]
    COSIGNED_FIELD_NUMBER: _ClassVar[int]
    note: str
    size: int
    verifier_key: str
    cosigned: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, note: _Optional[str] = ..., size: _Optional[int] = ..., verifier_key: _Optional[str] = ..., cosigned: _Optional[_Iterable[str]] = ...) -> None: ...

class CosignRequest(_message.Message):
    __slots__ = ("checkpoint", "cosignature", "cosigner_key")
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    COSIGNATURE_FIELD_NUMBER: _ClassVar[int]
    COSIGNER_KEY_FIELD_NUMBER: _ClassVar[int]
    checkpoint: str
    cosignature: str
    cosigner_key: str
    def __init__(self, checkpoint: _Optional[str] = ..., cosignature: _Optional[str] = ..., cosigner_key: _Optional[str] = ...) -> None: ...

class CosignResponse(_message.Message):
    __slots__ = ("size",)
    SIZE_FIELD_NUMBER: _ClassVar[int]
    size: int
    def __init__(self, size: _Optional[int] = ...) -> None: ...

class PerformanceRequest(_message.Message):
    __slots__ = ("from_date", "to_date")
    FROM_DATE_FIELD_NUMBER: _ClassVar[int]
    TO_DATE_FIELD_NUMBER: _ClassVar[int]
    from_date: str
    to_date: str
    def __init__(self, from_date: _Optional[str] = ..., to_date: _Optional[str] = ...) -> None: ...

class AgencyPerformance(_message.Message):
    __slots__ = ("org", "kind", "cases_placed", "contact_attempts", "conversations", "promises", "promises_kept", "plans", "plans_kept", "recovered", "refusals")
    class RecoveredEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class RefusalsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ORG_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    CASES_PLACED_FIELD_NUMBER: _ClassVar[int]
    CONTACT_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    CONVERSATIONS_FIELD_NUMBER: _ClassVar[int]
    PROMISES_FIELD_NUMBER: _ClassVar[int]
    PROMISES_KEPT_FIELD_NUMBER: _ClassVar[int]
    PLANS_FIELD_NUMBER: _ClassVar[int]
    PLANS_KEPT_FIELD_NUMBER: _ClassVar[int]
    RECOVERED_FIELD_NUMBER: _ClassVar[int]
    REFUSALS_FIELD_NUMBER: _ClassVar[int]
    org: str
    kind: str
    cases_placed: int
    contact_attempts: int
    conversations: int
    promises: int
    promises_kept: int
    plans: int
    plans_kept: int
    recovered: _containers.ScalarMap[str, str]
    refusals: _containers.ScalarMap[str, int]
    def __init__(self, org: _Optional[str] = ..., kind: _Optional[str] = ..., cases_placed: _Optional[int] = ..., contact_attempts: _Optional[int] = ..., conversations: _Optional[int] = ..., promises: _Optional[int] = ..., promises_kept: _Optional[int] = ..., plans: _Optional[int] = ..., plans_kept: _Optional[int] = ..., recovered: _Optional[_Mapping[str, str]] = ..., refusals: _Optional[_Mapping[str, int]] = ...) -> None: ...

class PerformanceResponse(_message.Message):
    __slots__ = ("from_date", "to_date", "agencies")
    FROM_DATE_FIELD_NUMBER: _ClassVar[int]
    TO_DATE_FIELD_NUMBER: _ClassVar[int]
    AGENCIES_FIELD_NUMBER: _ClassVar[int]
    from_date: str
    to_date: str
    agencies: _containers.RepeatedCompositeFieldContainer[AgencyPerformance]
    def __init__(self, from_date: _Optional[str] = ..., to_date: _Optional[str] = ..., agencies: _Optional[_Iterable[_Union[AgencyPerformance, _Mapping]]] = ...) -> None: ...

class Instalment(_message.Message):
    __slots__ = ("on", "amount", "state")
    ON_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    on: str
    amount: str
    state: str
    def __init__(self, on: _Optional[str] = ..., amount: _Optional[str] = ..., state: _Optional[str] = ...) -> None: ...

class ProposePlanRequest(_message.Message):
    __slots__ = ("case_id", "instalments")
    CASE_ID_FIELD_NUMBER: _ClassVar[int]
    INSTALMENTS_FIELD_NUMBER: _ClassVar[int]
    case_id: str
    instalments: _containers.RepeatedCompositeFieldContainer[Instalment]
    def __init__(self, case_id: _Optional[str] = ..., instalments: _Optional[_Iterable[_Union[Instalment, _Mapping]]] = ...) -> None: ...

class DecidePlanRequest(_message.Message):
    __slots__ = ("plan_id", "reason")
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    plan_id: str
    reason: str
    def __init__(self, plan_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class PlanInfo(_message.Message):
    __slots__ = ("plan_id", "case_id", "org", "status", "instalments", "proposed_at", "decided_at", "paid", "amount_due", "reason")
    PLAN_ID_FIELD_NUMBER: _ClassVar[int]
    CASE_ID_FIELD_NUMBER: _ClassVar[int]
    ORG_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    INSTALMENTS_FIELD_NUMBER: _ClassVar[int]
    PROPOSED_AT_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_FIELD_NUMBER: _ClassVar[int]
    PAID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_DUE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    plan_id: str
    case_id: str
    org: str
    status: str
    instalments: _containers.RepeatedCompositeFieldContainer[Instalment]
    proposed_at: str
    decided_at: str
    paid: str
    amount_due: str
    reason: str
    def __init__(self, plan_id: _Optional[str] = ..., case_id: _Optional[str] = ..., org: _Optional[str] = ..., status: _Optional[str] = ..., instalments: _Optional[_Iterable[_Union[Instalment, _Mapping]]] = ..., proposed_at: _Optional[str] = ..., decided_at: _Optional[str] = ..., paid: _Optional[str] = ..., amount_due: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ShowPlansRequest(_message.Message):
    __slots__ = ("case_id",)
    CASE_ID_FIELD_NUMBER: _ClassVar[int]
    case_id: str
    def __init__(self, case_id: _Optional[str] = ...) -> None: ...

class ShowPlansResponse(_message.Message):
    __slots__ = ("case_id", "plans")
    CASE_ID_FIELD_NUMBER: _ClassVar[int]
    PLANS_FIELD_NUMBER: _ClassVar[int]
    case_id: str
    plans: _containers.RepeatedCompositeFieldContainer[PlanInfo]
    def __init__(self, case_id: _Optional[str] = ..., plans: _Optional[_Iterable[_Union[PlanInfo, _Mapping]]] = ...) -> None: ...

class ReportPaymentRequest(_message.Message):
    __slots__ = ("case_id", "amount", "on", "reference")
    CASE_ID_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    ON_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    case_id: str
    amount: str
    on: str
    reference: str
    def __init__(self, case_id: _Optional[str] = ..., amount: _Optional[str] = ..., on: _Optional[str] = ..., reference: _Optional[str] = ...) -> None: ...

class PaymentInfo(_message.Message):
    __slots__ = ("payment_id", "status", "case_id", "org", "amount", "currency", "on", "reference", "reported_at", "decided_at", "commission", "reason")
    PAYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CASE_ID_FIELD_NUMBER: _ClassVar[int]
    ORG_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    ON_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    REPORTED_AT_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_FIELD_NUMBER: _ClassVar[int]
    COMMISSION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
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
    reason: str
    def __init__(self, payment_id: _Optional[str] = ..., status: _Optional[str] = ..., case_id: _Optional[str] = ..., org: _Optional[str] = ..., amount: _Optional[str] = ..., currency: _Optional[str] = ..., on: _Optional[str] = ..., reference: _Optional[str] = ..., reported_at: _Optional[str] = ..., decided_at: _Optional[str] = ..., commission: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class ListPaymentsRequest(_message.Message):
    __slots__ = ("status", "org_id")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    status: str
    org_id: str
    def __init__(self, status: _Optional[str] = ..., org_id: _Optional[str] = ...) -> None: ...

class ListPaymentsResponse(_message.Message):
    __slots__ = ("payments",)
    PAYMENTS_FIELD_NUMBER: _ClassVar[int]
    payments: _containers.RepeatedCompositeFieldContainer[PaymentInfo]
    def __init__(self, payments: _Optional[_Iterable[_Union[PaymentInfo, _Mapping]]] = ...) -> None: ...

class DecidePaymentRequest(_message.Message):
    __slots__ = ("payment_id", "reason")
    PAYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    payment_id: str
    reason: str
    def __init__(self, payment_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class PaymentDecision(_message.Message):
    __slots__ = ("payment_id", "status", "case_id", "decided_at", "commission", "outstanding", "amount_due", "case_status", "org", "amount", "currency")
    PAYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CASE_ID_FIELD_NUMBER: _ClassVar[int]
    DECIDED_AT_FIELD_NUMBER: _ClassVar[int]
    COMMISSION_FIELD_NUMBER: _ClassVar[int]
    OUTSTANDING_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_DUE_FIELD_NUMBER: _ClassVar[int]
    CASE_STATUS_FIELD_NUMBER: _ClassVar[int]
    ORG_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    payment_id: str
    status: str
    case_id: str
    decided_at: str
    commission: str
    outstanding: str
    amount_due: str
    case_status: str
    org: str
    amount: str
    currency: str
    def __init__(self, payment_id: _Optional[str] = ..., status: _Optional[str] = ..., case_id: _Optional[str] = ..., decided_at: _Optional[str] = ..., commission: _Optional[str] = ..., outstanding: _Optional[str] = ..., amount_due: _Optional[str] = ..., case_status: _Optional[str] = ..., org: _Optional[str] = ..., amount: _Optional[str] = ..., currency: _Optional[str] = ...) -> None: ...

class StatementRequest(_message.Message):
    __slots__ = ("period", "org_id")
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    ORG_ID_FIELD_NUMBER: _ClassVar[int]
    period: str
    org_id: str
    def __init__(self, period: _Optional[str] = ..., org_id: _Optional[str] = ...) -> None: ...

class StatementLine(_message.Message):
    __slots__ = ("payment_id", "case_id", "lender", "org", "on", "confirmed_at", "amount", "currency", "rate", "fee")
    PAYMENT_ID_FIELD_NUMBER: _ClassVar[int]
    CASE_ID_FIELD_NUMBER: _ClassVar[int]
    LENDER_FIELD_NUMBER: _ClassVar[int]
    ORG_FIELD_NUMBER: _ClassVar[int]
    ON_FIELD_NUMBER: _ClassVar[int]
    CONFIRMED_AT_FIELD_NUMBER: _ClassVar[int]
    AMOUNT_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    RATE_FIELD_NUMBER: _ClassVar[int]
    FEE_FIELD_NUMBER: _ClassVar[int]
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
    def __init__(self, payment_id: _Optional[str] = ..., case_id: _Optional[str] = ..., lender: _Optional[str] = ..., org: _Optional[str] = ..., on: _Optional[str] = ..., confirmed_at: _Optional[str] = ..., amount: _Optional[str] = ..., currency: _Optional[str] = ..., rate: _Optional[str] = ..., fee: _Optional[str] = ...) -> None: ...

class StatementTotal(_message.Message):
    __slots__ = ("recovered", "fees")
    RECOVERED_FIELD_NUMBER: _ClassVar[int]
    FEES_FIELD_NUMBER: _ClassVar[int]
    recovered: str
    fees: str
    def __init__(self, recovered: _Optional[str] = ..., fees: _Optional[str] = ...) -> None: ...

class Statement(_message.Message):
    __slots__ = ("period", "lines", "recovered", "fees", "currency", "totals", "org")
    class TotalsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: StatementTotal
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[StatementTotal, _Mapping]] = ...) -> None: ...
    PERIOD_FIELD_NUMBER: _ClassVar[int]
    LINES_FIELD_NUMBER: _ClassVar[int]
    RECOVERED_FIELD_NUMBER: _ClassVar[int]
    FEES_FIELD_NUMBER: _ClassVar[int]
    CURRENCY_FIELD_NUMBER: _ClassVar[int]
    TOTALS_FIELD_NUMBER: _ClassVar[int]
    ORG_FIELD_NUMBER: _ClassVar[int]
    period: str
    lines: _containers.RepeatedCompositeFieldContainer[StatementLine]
    recovered: str
    fees: str
    currency: str
    totals: _containers.MessageMap[str, StatementTotal]
    org: str
    def __init__(self, period: _Optional[str] = ..., lines: _Optional[_Iterable[_Union[StatementLine, _Mapping]]] = ..., recovered: _Optional[str] = ..., fees: _Optional[str] = ..., currency: _Optional[str] = ..., totals: _Optional[_Mapping[str, StatementTotal]] = ..., org: _Optional[str] = ...) -> None: ...

class ComplianceReportRequest(_message.Message):
    __slots__ = ("from_time", "to_time")
    FROM_TIME_FIELD_NUMBER: _ClassVar[int]
    TO_TIME_FIELD_NUMBER: _ClassVar[int]
    from_time: str
    to_time: str
    def __init__(self, from_time: _Optional[str] = ..., to_time: _Optional[str] = ...) -> None: ...

class ComplianceReportResponse(_message.Message):
    __slots__ = ("report",)
    REPORT_FIELD_NUMBER: _ClassVar[int]
    report: str
    def __init__(self, report: _Optional[str] = ...) -> None: ...

class AuditStatsRequest(_message.Message):
    __slots__ = ("from_time", "to_time", "by")
    FROM_TIME_FIELD_NUMBER: _ClassVar[int]
    TO_TIME_FIELD_NUMBER: _ClassVar[int]
    BY_FIELD_NUMBER: _ClassVar[int]
    from_time: str
    to_time: str
    by: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, from_time: _Optional[str] = ..., to_time: _Optional[str] = ..., by: _Optional[_Iterable[str]] = ...) -> None: ...

class AuditStatsGroup(_message.Message):
    __slots__ = ("keys", "count")
    class KeysEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    KEYS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    keys: _containers.ScalarMap[str, str]
    count: int
    def __init__(self, keys: _Optional[_Mapping[str, str]] = ..., count: _Optional[int] = ...) -> None: ...

class AuditStatsResponse(_message.Message):
    __slots__ = ("from_time", "to_time", "by", "size", "checkpoint", "total", "groups", "lender")
    FROM_TIME_FIELD_NUMBER: _ClassVar[int]
    TO_TIME_FIELD_NUMBER: _ClassVar[int]
    BY_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    CHECKPOINT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    LENDER_FIELD_NUMBER: _ClassVar[int]
    from_time: str
    to_time: str
    by: _containers.RepeatedScalarFieldContainer[str]
    size: int
    checkpoint: str
    total: int
    groups: _containers.RepeatedCompositeFieldContainer[AuditStatsGroup]
    lender: str
    def __init__(self, from_time: _Optional[str] = ..., to_time: _Optional[str] = ..., by: _Optional[_Iterable[str]] = ..., size: _Optional[int] = ..., checkpoint: _Optional[str] = ..., total: _Optional[int] = ..., groups: _Optional[_Iterable[_Union[AuditStatsGroup, _Mapping]]] = ..., lender: _Optional[str] = ...) -> None: ...

class ListMandatesRequest(_message.Message):
    __slots__ = ("case_id",)
    CASE_ID_FIELD_NUMBER: _ClassVar[int]
    case_id: str
    def __init__(self, case_id: _Optional[str] = ...) -> None: ...

class ListMandatesResponse(_message.Message):
    __slots__ = ("mandates",)
    MANDATES_FIELD_NUMBER: _ClassVar[int]
    mandates: _containers.RepeatedCompositeFieldContainer[MandateInfo]
    def __init__(self, mandates: _Optional[_Iterable[_Union[MandateInfo, _Mapping]]] = ...) -> None: ...

class RecordTransferRequest(_message.Message):
    __slots__ = ("case_id", "mechanism", "reference", "valid_until")
    CASE_ID_FIELD_NUMBER: _ClassVar[int]
    MECHANISM_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    VALID_UNTIL_FIELD_NUMBER: _ClassVar[int]
    case_id: str
    mechanism: str
    reference: str
    valid_until: str
    def __init__(self, case_id: _Optional[str] = ..., mechanism: _Optional[str] = ..., reference: _Optional[str] = ..., valid_until: _Optional[str] = ...) -> None: ...

class TransferInfo(_message.Message):
    __slots__ = ("case_id", "mechanism", "reference", "valid_until", "cross_border")
    CASE_ID_FIELD_NUMBER: _ClassVar[int]
    MECHANISM_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    VALID_UNTIL_FIELD_NUMBER: _ClassVar[int]
    CROSS_BORDER_FIELD_NUMBER: _ClassVar[int]
    case_id: str
    mechanism: str
    reference: str
    valid_until: str
    cross_border: bool
    def __init__(self, case_id: _Optional[str] = ..., mechanism: _Optional[str] = ..., reference: _Optional[str] = ..., valid_until: _Optional[str] = ..., cross_border: _Optional[bool] = ...) -> None: ...

class RecordForbearanceRequest(_message.Message):
    __slots__ = ("case_id", "measure", "on")
    CASE_ID_FIELD_NUMBER: _ClassVar[int]
    MEASURE_FIELD_NUMBER: _ClassVar[int]
    ON_FIELD_NUMBER: _ClassVar[int]
    case_id: str
    measure: str
    on: str
    def __init__(self, case_id: _Optional[str] = ..., measure: _Optional[str] = ..., on: _Optional[str] = ...) -> None: ...

class ForbearanceMeasure(_message.Message):
    __slots__ = ("measure", "on")
    MEASURE_FIELD_NUMBER: _ClassVar[int]
    ON_FIELD_NUMBER: _ClassVar[int]
    measure: str
    on: str
    def __init__(self, measure: _Optional[str] = ..., on: _Optional[str] = ...) -> None: ...

class ForbearanceInfo(_message.Message):
    __slots__ = ("case_id", "measure", "on", "recorded_at", "measures")
    CASE_ID_FIELD_NUMBER: _ClassVar[int]
    MEASURE_FIELD_NUMBER: _ClassVar[int]
    ON_FIELD_NUMBER: _ClassVar[int]
    RECORDED_AT_FIELD_NUMBER: _ClassVar[int]
    MEASURES_FIELD_NUMBER: _ClassVar[int]
    case_id: str
    measure: str
    on: str
    recorded_at: str
    measures: _containers.RepeatedCompositeFieldContainer[ForbearanceMeasure]
    def __init__(self, case_id: _Optional[str] = ..., measure: _Optional[str] = ..., on: _Optional[str] = ..., recorded_at: _Optional[str] = ..., measures: _Optional[_Iterable[_Union[ForbearanceMeasure, _Mapping]]] = ...) -> None: ...

class ProcessingRecordRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ProcessingRecordResponse(_message.Message):
    __slots__ = ("record",)
    RECORD_FIELD_NUMBER: _ClassVar[int]
    record: str
    def __init__(self, record: _Optional[str] = ...) -> None: ...
