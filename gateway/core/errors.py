"""One catalogue of stable error codes.

Every failure a caller can see is a `CustosError` carrying a code from
`CATALOGUE`. The category decides the transport status (mapped in exactly one
place, `gateway.transport.status`); the public message is fixed per code, so no
message can ever carry a value the caller sent or we stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


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
    "UNAUTHENTICATED": ErrorSpec(_C.UNAUTHENTICATED, "no valid client certificate"),
    "UNKNOWN_ORG": ErrorSpec(_C.UNAUTHENTICATED, "the certificate names no registered organisation"),
    "CERT_EXPIRED": ErrorSpec(_C.UNAUTHENTICATED, "the client certificate has expired"),
    "ORG_DISABLED": ErrorSpec(_C.PERMISSION_DENIED, "the organisation is disabled"),
    "LICENCE_EXPIRED": ErrorSpec(_C.PERMISSION_DENIED, "the organisation's licence has expired"),
    "WRONG_ORG_KIND": ErrorSpec(_C.PERMISSION_DENIED, "this call is not open to the caller's kind of organisation"),
    # policy / mandates
    "NO_MANDATE": ErrorSpec(_C.PERMISSION_DENIED, "no active mandate covers this case for the caller"),
    "MANDATE_EXPIRED": ErrorSpec(_C.PERMISSION_DENIED, "the mandate for this case has ended"),
    "MANDATE_RECALLED": ErrorSpec(_C.PERMISSION_DENIED, "the mandate for this case was recalled"),
    "CASE_CLOSED": ErrorSpec(_C.PERMISSION_DENIED, "the case is settled or closed"),
    "PURPOSE_NOT_MANDATED": ErrorSpec(_C.PERMISSION_DENIED, "the mandate does not cover this purpose"),
    "PURPOSE_NOT_ALLOWED": ErrorSpec(_C.PERMISSION_DENIED, "no policy rule releases data to the caller for this purpose"),
    "STAGE_NOT_ALLOWED": ErrorSpec(_C.FAILED_PRECONDITION, "the case's stage does not allow this"),
    "CONSENT_REQUIRED": ErrorSpec(_C.FAILED_PRECONDITION, "the borrower's consent is not on file"),
    # conduct rules
    "OUTSIDE_CONTACT_WINDOW": ErrorSpec(
        _C.FAILED_PRECONDITION, "outside the permitted contact hours in the borrower's local time"
    ),
    "CONTACT_CAP_REACHED": ErrorSpec(_C.FAILED_PRECONDITION, "the contact frequency cap for this borrower is reached"),
    "NUMBER_CAP_REACHED": ErrorSpec(_C.FAILED_PRECONDITION, "the attempt cap for this number is reached"),
    "COOLDOWN": ErrorSpec(_C.FAILED_PRECONDITION, "no contact allowed so soon after a conversation"),
    "CEASE_CONTACT": ErrorSpec(_C.FAILED_PRECONDITION, "the borrower asked that contact cease"),
    "DISPUTED": ErrorSpec(_C.FAILED_PRECONDITION, "the debt is disputed"),
    "ATTORNEY_REPRESENTED": ErrorSpec(_C.FAILED_PRECONDITION, "the borrower is represented by an attorney"),
    "THIRD_PARTY_NOT_ALLOWED": ErrorSpec(_C.FAILED_PRECONDITION, "third-party contact is not allowed for this case"),
    "THIRD_PARTY_ALREADY_CONTACTED": ErrorSpec(_C.FAILED_PRECONDITION, "this third party was already contacted"),
    "CHANNEL_NOT_ALLOWED": ErrorSpec(_C.FAILED_PRECONDITION, "this channel is not allowed for this case"),
    "NO_CONTACT_DATA": ErrorSpec(_C.FAILED_PRECONDITION, "no contact data is on file for this party"),
    "OUTCOME_ALREADY_RECORDED": ErrorSpec(_C.FAILED_PRECONDITION, "an outcome was already recorded for this contact"),
    # lookups
    "CASE_NOT_FOUND": ErrorSpec(_C.NOT_FOUND, "no such case"),
    "ORG_NOT_FOUND": ErrorSpec(_C.NOT_FOUND, "no such organisation"),
    "CONTACT_NOT_FOUND": ErrorSpec(_C.NOT_FOUND, "no such contact"),
    "CASE_AMBIGUOUS": ErrorSpec(_C.INVALID_ARGUMENT, "several lenders mandated a case with this id; qualify it as LENDER/CASE"),
    # input
    "INVALID_ARGUMENT": ErrorSpec(_C.INVALID_ARGUMENT, "the request is malformed"),
    "MALFORMED_REQUEST": ErrorSpec(_C.INVALID_ARGUMENT, "the request message could not be decoded"),
    "INVALID_CASE_ID": ErrorSpec(_C.INVALID_ARGUMENT, "case ids are 1-64 characters of letters, digits and ._:-"),
    "INVALID_ORG_ID": ErrorSpec(_C.INVALID_ARGUMENT, "organisation ids are 1-64 characters of letters, digits and ._-"),
    "INVALID_DATE": ErrorSpec(_C.INVALID_ARGUMENT, "dates are YYYY-MM-DD"),
    "INVALID_TIME": ErrorSpec(_C.INVALID_ARGUMENT, "times are RFC 3339 with a zone offset"),
    "UNKNOWN_STAGE": ErrorSpec(_C.INVALID_ARGUMENT, "unknown stage"),
    "UNKNOWN_PURPOSE": ErrorSpec(_C.INVALID_ARGUMENT, "unknown purpose"),
    "UNKNOWN_LABEL": ErrorSpec(_C.INVALID_ARGUMENT, "unknown mandate label"),
    "UNKNOWN_STATUS": ErrorSpec(_C.INVALID_ARGUMENT, "unknown case status"),
    "UNKNOWN_CHANNEL": ErrorSpec(_C.INVALID_ARGUMENT, "unknown contact channel"),
    "UNKNOWN_PARTY": ErrorSpec(_C.INVALID_ARGUMENT, "unknown contact party"),
    "UNKNOWN_RESULT": ErrorSpec(_C.INVALID_ARGUMENT, "unknown contact result"),
    "UNKNOWN_KIND": ErrorSpec(_C.INVALID_ARGUMENT, "unknown organisation kind"),
    "UNKNOWN_JURISDICTION": ErrorSpec(_C.INVALID_ARGUMENT, "unknown jurisdiction"),
    "PURPOSE_KIND_MISMATCH": ErrorSpec(_C.INVALID_ARGUMENT, "this purpose cannot be mandated to that kind of organisation"),
    "UNTIL_IN_PAST": ErrorSpec(_C.INVALID_ARGUMENT, "a mandate must end today or later"),
    "IMPORT_LINE_TOO_LONG": ErrorSpec(_C.INVALID_ARGUMENT, "an import line exceeds the size limit"),
    "IMPORT_INVALID_JSON": ErrorSpec(_C.INVALID_ARGUMENT, "an import line is not valid JSON"),
    "IMPORT_INVALID_FIELD": ErrorSpec(_C.INVALID_ARGUMENT, "an import line has an invalid field"),
    "CASE_EXISTS": ErrorSpec(_C.ALREADY_EXISTS, "a case with this id already exists for this lender"),
    "LOAN_EXISTS": ErrorSpec(_C.ALREADY_EXISTS, "a loan with this id already exists for this lender"),
    "ORG_EXISTS": ErrorSpec(_C.ALREADY_EXISTS, "an organisation with this id already exists"),
    "DATA_DIR_EXISTS": ErrorSpec(_C.ALREADY_EXISTS, "the data directory already exists and is not empty"),
    # operator / environment
    "POLICY_INVALID": ErrorSpec(_C.FAILED_PRECONDITION, "the policy bundle is invalid"),
    "DATA_DIR_INVALID": ErrorSpec(_C.FAILED_PRECONDITION, "the data directory is missing or incomplete"),
    "IDENTITY_INVALID": ErrorSpec(_C.FAILED_PRECONDITION, "the identity bundle is missing or unreadable"),
    "AUDIT_VERIFY_FAILED": ErrorSpec(_C.FAILED_PRECONDITION, "the audit log does not verify"),
    "DATA_DIR_IN_USE": ErrorSpec(_C.FAILED_PRECONDITION, "another custos serve already holds this data directory"),
    "CA_OFFLINE": ErrorSpec(
        _C.FAILED_PRECONDITION, "this data directory holds no CA key: issue with 'custos ca issue', register with --cert"
    ),
    "CERT_MISMATCH": ErrorSpec(_C.INVALID_ARGUMENT, "the certificate does not chain to this gateway's CA or names another org"),
    "KEYS_UNAVAILABLE": ErrorSpec(_C.FAILED_PRECONDITION, "the key files are missing or unreadable"),
    "TLS_NOT_ENFORCED": ErrorSpec(_C.FAILED_PRECONDITION, "the server would accept TLS below 1.3; it refuses to serve"),
    "RATE_LIMITED": ErrorSpec(_C.RESOURCE_EXHAUSTED, "too many requests"),
    "CONCURRENCY_LIMITED": ErrorSpec(_C.RESOURCE_EXHAUSTED, "too many calls of this organisation in flight"),
    "REQUEST_TIMEOUT": ErrorSpec(_C.DEADLINE_EXCEEDED, "the request message did not arrive in time"),
    "STREAM_IDLE": ErrorSpec(_C.DEADLINE_EXCEEDED, "the stream waited on its client for too long"),
    "CALL_DEADLINE": ErrorSpec(_C.DEADLINE_EXCEEDED, "the call exceeded the gateway's deadline"),
    "CLIENT_GONE": ErrorSpec(_C.CANCELLED, "the client cancelled or went away"),
    "SHUTTING_DOWN": ErrorSpec(_C.UNAVAILABLE, "the gateway is shutting down"),
    "AUDIT_UNAVAILABLE": ErrorSpec(_C.UNAVAILABLE, "the audit log cannot be written; the gateway refuses to serve"),
    "UNAVAILABLE": ErrorSpec(_C.UNAVAILABLE, "the gateway is unavailable"),
    "DECRYPTION_FAILED": ErrorSpec(_C.INTERNAL, "stored data failed an integrity check"),
    "INTERNAL": ErrorSpec(_C.INTERNAL, "internal error"),
}


class CustosError(Exception):
    """A failure with a stable code; `detail` is for operators and never holds PI."""

    def __init__(self, code: str, detail: str = "") -> None:
        if code not in CATALOGUE:
            code = "INTERNAL"
        self.code = code
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
        super().__init__("POLICY_INVALID", f"{where}: {problem}")
