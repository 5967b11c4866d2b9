"""One catalogue of stable error codes.

Every failure a caller can see is a `CustosError` carrying a code from
`CATALOGUE`. The category decides the transport status (mapped in exactly one
place, `gateway.transport.status`); the public message is fixed per code, so no
message can ever carry a value the caller sent or we stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from custos_client.codes import Code as Code  # the wire contract lives with the stubs; the catalogue gives each its status


class Category(Enum):
    UNAUTHENTICATED = "unauthenticated"
    PERMISSION_DENIED = "permission_denied"
    FAILED_PRECONDITION = "failed_precondition"
    NOT_FOUND = "not_found"
    INVALID_ARGUMENT = "invalid_argument"
    ALREADY_EXISTS = "already_exists"
    RESOURCE_EXHAUSTED = "resource_exhausted"
    DEADLINE_EXCEEDED = "deadline_exceeded"
    CANCELLED = "cancelled"
    UNAVAILABLE = "unavailable"
    INTERNAL = "internal"


@dataclass(frozen=True)
class ErrorSpec:
    category: Category
    message: str


_C = Category


CATALOGUE: dict[str, ErrorSpec] = {
    # identity
    Code.UNAUTHENTICATED: ErrorSpec(_C.UNAUTHENTICATED, "no valid client certificate"),
    Code.UNKNOWN_ORG: ErrorSpec(_C.UNAUTHENTICATED, "the certificate names no registered organisation"),
    Code.CERT_EXPIRED: ErrorSpec(_C.UNAUTHENTICATED, "the client certificate has expired"),
    Code.ORG_DISABLED: ErrorSpec(_C.PERMISSION_DENIED, "the organisation is disabled"),
    Code.LICENCE_EXPIRED: ErrorSpec(_C.PERMISSION_DENIED, "the organisation's licence has expired"),
    Code.WRONG_ORG_KIND: ErrorSpec(_C.PERMISSION_DENIED, "this call is not open to the caller's kind of organisation"),
    # policy / mandates
    Code.NO_MANDATE: ErrorSpec(_C.PERMISSION_DENIED, "no active mandate covers this case for the caller"),
    Code.MANDATE_EXPIRED: ErrorSpec(_C.PERMISSION_DENIED, "the mandate for this case has ended"),
    Code.MANDATE_RECALLED: ErrorSpec(_C.PERMISSION_DENIED, "the mandate for this case was recalled"),
    Code.CASE_CLOSED: ErrorSpec(_C.PERMISSION_DENIED, "the case is settled or closed"),
    Code.PURPOSE_NOT_MANDATED: ErrorSpec(_C.PERMISSION_DENIED, "the mandate does not cover this purpose"),
    Code.PURPOSE_NOT_ALLOWED: ErrorSpec(_C.PERMISSION_DENIED, "no policy rule releases data to the caller for this purpose"),
    Code.STAGE_NOT_ALLOWED: ErrorSpec(_C.FAILED_PRECONDITION, "the case's stage does not allow this"),
    Code.CONSENT_REQUIRED: ErrorSpec(_C.FAILED_PRECONDITION, "the borrower's consent is not on file"),
    # litigation and credit reporting preconditions
    Code.CONSENT_WITHDRAWN: ErrorSpec(_C.FAILED_PRECONDITION, "the borrower withdrew this consent"),
    Code.ERASED: ErrorSpec(_C.PERMISSION_DENIED, "the borrower's personal data was erased"),
    Code.ERASURE_PENDING: ErrorSpec(_C.PERMISSION_DENIED, "the borrower's data is scheduled for erasure: nothing is released"),
    Code.LEGAL_HOLD: ErrorSpec(_C.FAILED_PRECONDITION, "a legal hold is set on a case of this borrower"),
    Code.ALREADY_ERASED: ErrorSpec(_C.FAILED_PRECONDITION, "the borrower's personal data was erased already"),
    Code.NO_PENDING_ERASURE: ErrorSpec(_C.FAILED_PRECONDITION, "no erasure of this borrower is scheduled"),
    Code.BORROWER_NOT_FOUND: ErrorSpec(_C.NOT_FOUND, "no such borrower"),
    Code.BORROWER_ERASED: ErrorSpec(_C.FAILED_PRECONDITION, "this borrower's data was erased; import under a new id"),
    Code.INVALID_BORROWER_ID: ErrorSpec(_C.INVALID_ARGUMENT, "the borrower id is not valid"),
    Code.KEY_IN_USE: ErrorSpec(_C.FAILED_PRECONDITION, "the key version still wraps data keys or is primary"),
    Code.KEY_VERSION_NOT_FOUND: ErrorSpec(_C.NOT_FOUND, "no such key version"),
    Code.LIMITATION_EXPIRED: ErrorSpec(
        _C.FAILED_PRECONDITION, "the limitation date has passed: no litigation material is released"),
    Code.LIMITATION_DATE_MISSING: ErrorSpec(
        _C.FAILED_PRECONDITION, "no limitation date is on file: no litigation material is released"),
    Code.FIRST_DELINQUENCY_MISSING: ErrorSpec(
        _C.FAILED_PRECONDITION, "no date of first delinquency is on file: the account is not furnished"),
    Code.PROCESSING_RESTRICTED: ErrorSpec(
        _C.PERMISSION_DENIED,
        "the borrower's erasure was refused under a legal hold: processing is restricted to storage"),
    Code.NO_PRIOR_NOTICE: ErrorSpec(
        _C.FAILED_PRECONDITION, "no prior notice of negative reporting is on file from before today"),
    Code.NO_PRIOR_CONTACT: ErrorSpec(
        _C.FAILED_PRECONDITION, "the borrower was neither spoken to nor sent a letter long enough before reporting"),
    Code.REPORTING_OBSOLETE: ErrorSpec(
        _C.FAILED_PRECONDITION, "the account's negative information is too old to be furnished"),
    # what the bureau's file format cannot carry: the record is withheld (audited, listed) until corrected
    Code.SSN_INVALID: ErrorSpec(
        _C.FAILED_PRECONDITION, "a US borrower's national id is not a social security number of 9 ASCII digits"),
    Code.VALUE_NOT_ENCODABLE: ErrorSpec(
        _C.FAILED_PRECONDITION, "a value of the record cannot be written in the bureau's file format"),
    Code.FURNISHER_ADDRESS_MISSING: ErrorSpec(
        _C.FAILED_PRECONDITION, "the lender has no registered address for the bureau file's header"),
    # conduct rules
    Code.OUTSIDE_CONTACT_WINDOW: ErrorSpec(
        _C.FAILED_PRECONDITION, "outside the permitted contact hours in the borrower's local time"
    ),
    Code.CONTACT_CAP_REACHED: ErrorSpec(_C.FAILED_PRECONDITION, "the contact frequency cap for this borrower is reached"),
    Code.NUMBER_CAP_REACHED: ErrorSpec(_C.FAILED_PRECONDITION, "the attempt cap for this number is reached"),
    Code.COOLDOWN: ErrorSpec(_C.FAILED_PRECONDITION, "no contact allowed so soon after a conversation"),
    Code.CEASE_CONTACT: ErrorSpec(_C.FAILED_PRECONDITION, "the borrower asked that contact cease"),
    Code.DISPUTED: ErrorSpec(_C.FAILED_PRECONDITION, "the debt is disputed"),
    Code.ATTORNEY_REPRESENTED: ErrorSpec(_C.FAILED_PRECONDITION, "the borrower is represented by an attorney"),
    Code.THIRD_PARTY_NOT_ALLOWED: ErrorSpec(_C.FAILED_PRECONDITION, "third-party contact is not allowed for this case"),
    Code.THIRD_PARTY_ALREADY_CONTACTED: ErrorSpec(_C.FAILED_PRECONDITION, "this third party was already contacted"),
    Code.CHANNEL_NOT_ALLOWED: ErrorSpec(_C.FAILED_PRECONDITION, "this channel is not allowed for this case"),
    Code.NO_CONTACT_DATA: ErrorSpec(_C.FAILED_PRECONDITION, "no contact data is on file for this party"),
    Code.OUTCOME_ALREADY_RECORDED: ErrorSpec(_C.FAILED_PRECONDITION, "an outcome was already recorded for this contact"),
    # lookups
    Code.CASE_NOT_FOUND: ErrorSpec(_C.NOT_FOUND, "no such case"),
    Code.ORG_NOT_FOUND: ErrorSpec(_C.NOT_FOUND, "no such organisation"),
    Code.CONTACT_NOT_FOUND: ErrorSpec(_C.NOT_FOUND, "no such contact"),
    Code.CASE_AMBIGUOUS: ErrorSpec(
        _C.INVALID_ARGUMENT, "several lenders mandated a case with this id; qualify it as LENDER/CASE"),
    # input
    Code.INVALID_ARGUMENT: ErrorSpec(_C.INVALID_ARGUMENT, "the request is malformed"),
    Code.MALFORMED_REQUEST: ErrorSpec(_C.INVALID_ARGUMENT, "the request message could not be decoded"),
    Code.INVALID_CASE_ID: ErrorSpec(_C.INVALID_ARGUMENT, "case ids are 1-64 characters of letters, digits and ._:-"),
    Code.INVALID_ORG_ID: ErrorSpec(_C.INVALID_ARGUMENT, "organisation ids are 1-64 characters of letters, digits and ._-"),
    Code.INVALID_DATE: ErrorSpec(_C.INVALID_ARGUMENT, "dates are YYYY-MM-DD"),
    Code.INVALID_TIME: ErrorSpec(_C.INVALID_ARGUMENT, "times are RFC 3339 with a zone offset"),
    Code.UNKNOWN_STAGE: ErrorSpec(_C.INVALID_ARGUMENT, "unknown stage"),
    Code.UNKNOWN_PURPOSE: ErrorSpec(_C.INVALID_ARGUMENT, "unknown purpose"),
    Code.UNKNOWN_LABEL: ErrorSpec(_C.INVALID_ARGUMENT, "unknown mandate label"),
    Code.UNKNOWN_STATUS: ErrorSpec(_C.INVALID_ARGUMENT, "unknown case status"),
    Code.UNKNOWN_CHANNEL: ErrorSpec(_C.INVALID_ARGUMENT, "unknown contact channel"),
    Code.UNKNOWN_PARTY: ErrorSpec(_C.INVALID_ARGUMENT, "unknown contact party"),
    Code.UNKNOWN_RESULT: ErrorSpec(_C.INVALID_ARGUMENT, "unknown contact result"),
    Code.UNKNOWN_KIND: ErrorSpec(_C.INVALID_ARGUMENT, "unknown organisation kind"),
    Code.UNKNOWN_JURISDICTION: ErrorSpec(_C.INVALID_ARGUMENT, "unknown jurisdiction"),
    Code.PURPOSE_KIND_MISMATCH: ErrorSpec(
        _C.INVALID_ARGUMENT, "this purpose cannot be mandated to that kind of organisation"),
    Code.UNTIL_IN_PAST: ErrorSpec(_C.INVALID_ARGUMENT, "a mandate must end today or later"),
    Code.NOTICE_IN_FUTURE: ErrorSpec(_C.INVALID_ARGUMENT, "a notice can be recorded only once it was given (today or earlier)"),
    Code.IMPORT_LINE_TOO_LONG: ErrorSpec(_C.INVALID_ARGUMENT, "an import line exceeds the size limit"),
    Code.IMPORT_INVALID_JSON: ErrorSpec(_C.INVALID_ARGUMENT, "an import line is not valid JSON"),
    Code.IMPORT_INVALID_FIELD: ErrorSpec(_C.INVALID_ARGUMENT, "an import line has an invalid field"),
    Code.CASE_EXISTS: ErrorSpec(_C.ALREADY_EXISTS, "a case with this id already exists for this lender"),
    Code.LOAN_EXISTS: ErrorSpec(_C.ALREADY_EXISTS, "a loan with this id already exists for this lender"),
    Code.STALE_UPDATE: ErrorSpec(
        _C.FAILED_PRECONDITION, "an update at or before the last one applied to this case, with other content"),
    Code.ORG_EXISTS: ErrorSpec(_C.ALREADY_EXISTS, "an organisation with this id already exists"),
    Code.DATA_DIR_EXISTS: ErrorSpec(_C.ALREADY_EXISTS, "the data directory already exists and is not empty"),
    # operator / environment
    Code.POLICY_INVALID: ErrorSpec(_C.FAILED_PRECONDITION, "the policy bundle is invalid"),
    Code.OUTPUT_EXISTS: ErrorSpec(_C.FAILED_PRECONDITION, "the --out file already exists; give --force to replace it"),
    Code.DATA_DIR_INVALID: ErrorSpec(_C.FAILED_PRECONDITION, "the data directory is missing or incomplete"),
    Code.IDENTITY_INVALID: ErrorSpec(_C.FAILED_PRECONDITION, "the identity bundle is missing or unreadable"),
    Code.CHECKPOINT_NOT_FOUND: ErrorSpec(_C.NOT_FOUND, "no checkpoint was published for that tree size"),
    Code.COSIGNATURE_INVALID: ErrorSpec(
        _C.INVALID_ARGUMENT, "not a valid cosignature of a checkpoint this log signed and still holds"),
    Code.PROOF_OUT_OF_RANGE: ErrorSpec(
        _C.INVALID_ARGUMENT, "the sequence number or tree size is not in the log (0 <= seq < size <= the current size)"),
    Code.INVALID_CURSOR: ErrorSpec(_C.INVALID_ARGUMENT, "the cursor is not one this gateway handed out"),
    Code.PACKET_INVALID: ErrorSpec(_C.FAILED_PRECONDITION, "the packet does not verify"),
    Code.PACKET_KEY_REQUIRED: ErrorSpec(
        _C.INVALID_ARGUMENT, "no pinned packet key: give --key PACKET_VKEY or an identity bundle holding packet.vkey"),
    Code.PACKET_RECIPIENT_MISMATCH: ErrorSpec(
        _C.FAILED_PRECONDITION, "the packet verifies but was issued to another organisation"),
    Code.AUDIT_VERIFY_FAILED: ErrorSpec(_C.FAILED_PRECONDITION, "the audit log does not verify"),
    Code.DATA_DIR_IN_USE: ErrorSpec(_C.FAILED_PRECONDITION, "another custos serve already holds this data directory"),
    Code.LISTEN_FAILED: ErrorSpec(_C.FAILED_PRECONDITION, "cannot listen on that address (in use, or not this machine's)"),
    Code.SERVE_FAILED: ErrorSpec(_C.INTERNAL, "a gateway process could not start"),
    Code.NOT_SERVING: ErrorSpec(_C.FAILED_PRECONDITION, "no custos serve holds this data directory"),
    Code.STOP_TIMEOUT: ErrorSpec(_C.DEADLINE_EXCEEDED, "the server did not stop in time; it may still be stopping"),
    Code.CA_OFFLINE: ErrorSpec(
        _C.FAILED_PRECONDITION, "this data directory holds no CA key: issue with 'custos ca issue', register with --cert"
    ),
    Code.CERT_MISMATCH: ErrorSpec(
        _C.INVALID_ARGUMENT, "the certificate does not chain to this gateway's CA or names another org"),
    Code.KEYS_UNAVAILABLE: ErrorSpec(_C.FAILED_PRECONDITION, "the key files are missing or unreadable"),
    Code.TLS_NOT_ENFORCED: ErrorSpec(_C.FAILED_PRECONDITION, "the server would accept TLS below 1.3; it refuses to serve"),
    Code.RATE_LIMITED: ErrorSpec(_C.RESOURCE_EXHAUSTED, "too many requests"),
    Code.METADATA_TOO_LARGE: ErrorSpec(_C.RESOURCE_EXHAUSTED, "the request's metadata exceeds the size limit"),
    Code.CONCURRENCY_LIMITED: ErrorSpec(_C.RESOURCE_EXHAUSTED, "too many calls of this organisation in flight"),
    Code.REQUEST_TIMEOUT: ErrorSpec(_C.DEADLINE_EXCEEDED, "the request message did not arrive in time"),
    Code.STREAM_IDLE: ErrorSpec(_C.DEADLINE_EXCEEDED, "the stream waited on its client for too long"),
    Code.CALL_DEADLINE: ErrorSpec(_C.DEADLINE_EXCEEDED, "the call exceeded the gateway's deadline"),
    Code.CLIENT_GONE: ErrorSpec(_C.CANCELLED, "the client cancelled or went away"),
    Code.SHUTTING_DOWN: ErrorSpec(_C.UNAVAILABLE, "the gateway is shutting down"),
    Code.AUDIT_UNAVAILABLE: ErrorSpec(_C.UNAVAILABLE, "the audit log cannot be written; the gateway refuses to serve"),
    Code.UNAVAILABLE: ErrorSpec(_C.UNAVAILABLE, "the gateway is unavailable"),
    Code.DECRYPTION_FAILED: ErrorSpec(_C.INTERNAL, "stored data failed an integrity check"),
    Code.INTERNAL: ErrorSpec(_C.INTERNAL, "internal error"),
    # ---- promises and plans
    Code.PROMISE_TERMS_REQUIRED: ErrorSpec(_C.INVALID_ARGUMENT, "a promise to pay needs --amount and --on"),
    Code.PROMISE_TERMS_NOT_ALLOWED: ErrorSpec(_C.INVALID_ARGUMENT, "an amount and date go only with promise_to_pay"),
    Code.PROMISE_DATE_OUT_OF_RANGE: ErrorSpec(
        _C.INVALID_ARGUMENT, "a promise's date is from the borrower's today up to the bound of the conduct rules"),
    Code.PLAN_INVALID: ErrorSpec(
        _C.INVALID_ARGUMENT, "a plan has 1-60 instalments, dates strictly increasing, the first not before today"),
    Code.PLAN_NOT_FOUND: ErrorSpec(_C.NOT_FOUND, "no such plan"),
    Code.PLAN_ALREADY_DECIDED: ErrorSpec(_C.FAILED_PRECONDITION, "only a proposed plan can be accepted or rejected"),
    # payments reported by those who collect, commissions and statements (usecases/payments.py)
    Code.INVALID_AMOUNT: ErrorSpec(
        _C.INVALID_ARGUMENT, "amounts are positive decimal strings: up to 15 digits, up to 4 decimals, no sign"),
    Code.INVALID_REFERENCE: ErrorSpec(
        _C.INVALID_ARGUMENT, "payment references are 1-64 characters of letters, digits and ._:-"),
    Code.PAYMENT_DATE_OUT_OF_RANGE: ErrorSpec(
        _C.INVALID_ARGUMENT, "a payment's date is not in the future and not before the loan's origination"),
    Code.PAYMENT_REFERENCE_CONFLICT: ErrorSpec(
        _C.ALREADY_EXISTS, "this reference was reported before for another case, amount or date"),
    Code.PAYMENT_NOT_FOUND: ErrorSpec(_C.NOT_FOUND, "no such payment"),
    Code.PAYMENT_ALREADY_DECIDED: ErrorSpec(_C.FAILED_PRECONDITION, "the payment was confirmed or rejected already"),
    Code.UNKNOWN_PAYMENT_STATUS: ErrorSpec(_C.INVALID_ARGUMENT, "a payment's status is reported, confirmed or rejected"),
    Code.INVALID_REASON: ErrorSpec(_C.INVALID_ARGUMENT, "a reason is 1-500 characters, not only spaces"),
    Code.INVALID_COMMISSION: ErrorSpec(
        _C.INVALID_ARGUMENT, "a commission rate is a decimal from 0 to 1 with at most 4 decimals, e.g. 0.18"),
    Code.INVALID_PERIOD: ErrorSpec(_C.INVALID_ARGUMENT, "a period is a calendar month, YYYY-MM"),
    Code.NOT_YOUR_STATEMENT: ErrorSpec(_C.PERMISSION_DENIED, "an organisation reads only its own statement"),
    # agents (issue 25)
    Code.INVALID_AGENT: ErrorSpec(_C.INVALID_ARGUMENT,
                                  "the agent (custos-agent metadata) is 1-64 of A-Z a-z 0-9 . _ : -"),
    Code.AGENT_REQUIRED: ErrorSpec(_C.PERMISSION_DENIED,
                                   "the policy requires this kind of organisation to name the agent acting"),
    # audit stats (issue 25)
    Code.INVALID_TIME_RANGE: ErrorSpec(_C.INVALID_ARGUMENT, "a time range's start is before its end"),
    Code.STATS_MISMATCH: ErrorSpec(_C.FAILED_PRECONDITION,
                                   "the figures differ from a recount of the verified events"),
    # mandates (issue 26)
    Code.IDENTITY_THEFT_REPORTED: ErrorSpec(
        _C.FAILED_PRECONDITION, "the debt is reported as the result of identity theft: not collected nor furnished"),
    Code.DEBT_DISCHARGED: ErrorSpec(_C.FAILED_PRECONDITION, "the debt is discharged: not collected nor furnished"),
    Code.AGREEMENT_REQUIRED: ErrorSpec(
        _C.FAILED_PRECONDITION, "the jurisdiction requires the mandate to name its agreement (--agreement)"),
    Code.PIA_REQUIRED: ErrorSpec(
        _C.FAILED_PRECONDITION, "the jurisdiction requires the mandate to name its impact assessment (--pia)"),
    Code.INVALID_RECORD_REFERENCE: ErrorSpec(
        _C.INVALID_ARGUMENT, "agreement and impact-assessment references are 1-64 of A-Z a-z 0-9 . _ : -"),
    Code.CROSS_BORDER_NOT_ALLOWED: ErrorSpec(
        _C.PERMISSION_DENIED, "personal information goes abroad only under a transfer mechanism valid today and, "
                              "where the case's jurisdiction requires it, the borrower's separate consent"),
    Code.UNKNOWN_MECHANISM: ErrorSpec(
        _C.INVALID_ARGUMENT, "the transfer mechanism is not one the case's jurisdiction accepts"),
    # opt-outs, unreachability, call recordings (issue 26)
    Code.CONTACT_OPTED_OUT: ErrorSpec(_C.FAILED_PRECONDITION,
                                      "contact by this medium with this number was stopped by an opt-out"),
    Code.THIRD_PARTY_REFUSED: ErrorSpec(_C.FAILED_PRECONDITION, "this third party refused further contact"),
    Code.THIRD_PARTY_NOT_UNREACHABLE: ErrorSpec(
        _C.FAILED_PRECONDITION, "third-party contact needs lost_contact or the history to show the borrower unreachable"),
    Code.OUTCOME_NOT_APPLICABLE: ErrorSpec(_C.INVALID_ARGUMENT, "this outcome does not apply to this contact"),
    Code.INVALID_RECORDING: ErrorSpec(
        _C.INVALID_ARGUMENT, "a recording reference is 1-128 characters of letters, digits and ._:/-"),
    # licences per region, artificial voices, notices before collection (issue 26)
    Code.REGION_NOT_LICENSED: ErrorSpec(_C.PERMISSION_DENIED,
                                        "the organisation holds no licence for the region where the borrower lives"),
    Code.REGIONAL_LICENCE_EXPIRED: ErrorSpec(
        _C.PERMISSION_DENIED, "the organisation's licence for the region where the borrower lives has expired"),
    Code.INVALID_REGION: ErrorSpec(_C.INVALID_ARGUMENT,
                                   "a region is an ISO 3166-2 code like US-CA, or a country code like DE"),
    Code.ARTIFICIAL_VOICE_NOT_CONSENTED: ErrorSpec(
        _C.FAILED_PRECONDITION, "an artificial or AI voice call needs the borrower's recorded prior express consent"),
    Code.NOTICE_REQUIRED: ErrorSpec(_C.FAILED_PRECONDITION,
                                    "the jurisdiction requires a notice to the borrower before this contact"),
    Code.UNKNOWN_NOTICE_KIND: ErrorSpec(_C.INVALID_ARGUMENT,
                                        "a notice kind is negative_reporting, validation or outsourcing"),
    Code.VERIFICATION_REQUIRED: ErrorSpec(
        _C.FAILED_PRECONDITION, "clearing a dispute needs the day verification was sent (--verification-sent)"),
    # EU (issue 26)
    Code.FORBEARANCE_REQUIRED: ErrorSpec(_C.FAILED_PRECONDITION,
                                         "the jurisdiction requires a forbearance measure recorded before litigation"),
    Code.UNKNOWN_MEASURE: ErrorSpec(_C.INVALID_ARGUMENT, "unknown forbearance measure"),
    Code.LEGAL_CLAIM: ErrorSpec(_C.FAILED_PRECONDITION,
                                "a case of this borrower is needed for a legal claim; processing is restricted"),
    # operability (issue 27): a box or a glyph index in place of a name is worse than no summary
    Code.PDF_FONT_MISSING: ErrorSpec(
        _C.FAILED_PRECONDITION,
        "the gateway lacks a font for some characters of the packet's summary: no packet is released "
        "(the operator installs fonts-droid-fallback)"),
}

_UNCATALOGUED = set(Code) - {Code.OK} - set(CATALOGUE)
if _UNCATALOGUED:  # a code added to the contract without the status and message it maps to
    raise ImportError(f"codes without a catalogue entry: {sorted(_UNCATALOGUED)}")


class CustosError(Exception):
    """A failure with a stable code; `detail` is for operators and never holds PI."""

    def __init__(self, code: Code, detail: str = "") -> None:
        if code not in CATALOGUE:
            # A programming error, not a failure to report: every code is a Code with a catalogue entry
            # (tests/test_codes.py checks the code base; mypy checks the type).
            raise ValueError(f"no catalogue entry for error code {code!r}")
        self.code = Code(code)
        self.detail = detail
        super().__init__(f"{code}: {self.message}")

    @property
    def spec(self) -> ErrorSpec:
        return CATALOGUE[self.code]

    @property
    def message(self) -> str:
        """Public text: the fixed catalogue message plus a PI-free detail."""
        base = self.spec.message
        return f"{base} ({self.detail})" if self.detail else base


class PolicyError(CustosError):
    """A policy file is invalid; names the file, line and problem."""

    def __init__(self, path: str, line: int | None, problem: str) -> None:
        self.path = path
        self.line = line
        self.problem = problem
        where = f"{path}:{line}" if line else path
        super().__init__(Code.POLICY_INVALID, f"{where}: {problem}")
