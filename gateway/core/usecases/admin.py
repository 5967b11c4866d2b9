"""Operator actions: registering and disabling organisations, audited like every other change.

`custos org add` and `custos org disable` run on the data directory, usually
while the gateway serves it. Each goes through here: the input is checked, the
change and its audit event commit together in one unit of work, and a refusal
is an audited denial. The event's `org` is the organisation acted on (never a
value that failed validation), its method `OperatorOrgAdd` or
`OperatorOrgDisable`, and its rule names the operator's local account.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date

from ..errors import Code, CustosError
from ..model import ID_RE, Clock, EventDraft, Org, RegionalLicence, region_ok, rfc3339
from ..ports import AuditLog, CaseReader, UnitOfWork
from ..rules.capabilities import Capabilities

ADD = "OperatorOrgAdd"
DISABLE = "OperatorOrgDisable"
LICENCE = "OperatorOrgLicence"


def is_org_id(text: str) -> bool:
    """An id a new organisation may take: an id (1-64 of letters, digits, ._-), never with ':' or '/'."""
    return bool(ID_RE.fullmatch(text)) and ":" not in text and "/" not in text


@dataclass(frozen=True)
class OrgSpec:
    """An organisation as the operator typed it, before any check."""

    id: str
    kind: str
    name: str
    jurisdiction: str = "CN"
    licence_no: str | None = None
    licence_expires: str | None = None
    address: str | None = None
    telephone: str | None = None


class Administration:
    def __init__(self, reader: Callable[[], CaseReader], audit: AuditLog, clock: Clock, operator: str,
                 capabilities: Capabilities, jurisdictions: Sequence[str]) -> None:
        self.reader = reader
        # The kinds there are, and which need a licence: the capability table of the bundle the gateway serves.
        self.capabilities = capabilities
        # Where an organisation may be: the conduct files of that bundle (PolicyBundle.jurisdictions).
        self.jurisdictions = tuple(jurisdictions)
        self.audit = audit
        self.clock = clock
        self.operator = operator

    def _event(self, method: str, org: str, decision: str, code: Code, detail: str = "") -> EventDraft:
        return EventDraft(org=org, method=method, purpose="", case_id="", borrower_id="", decision=decision,
                          code=code, rule=f"operator:{self.operator}" + (f";{detail}" if detail else ""),
                          time=rfc3339(self.clock.now()), trace_id=f"{random.getrandbits(128):032x}")

    def _deny(self, method: str, org: str, code: Code, detail: str = "") -> CustosError:
        self.audit.append([self._event(method, org, "deny", code, detail)])
        return CustosError(code, detail)

    def validate(self, spec: OrgSpec) -> Org:
        """The organisation to register, or an audited refusal naming what is wrong (never echoing it)."""
        if not is_org_id(spec.id):
            raise self._deny(ADD, "", Code.INVALID_ORG_ID)
        kinds = self.capabilities.kinds
        if spec.kind not in kinds:
            raise self._deny(ADD, spec.id, Code.UNKNOWN_KIND, f"known: {', '.join(kinds)}")
        if spec.jurisdiction not in self.jurisdictions:
            raise self._deny(ADD, spec.id, Code.UNKNOWN_JURISDICTION, f"known: {', '.join(self.jurisdictions)}")
        expires: date | None = None
        if spec.licence_expires:
            try:
                expires = date.fromisoformat(spec.licence_expires)
            except ValueError:
                raise self._deny(ADD, spec.id, Code.INVALID_DATE, "--licence-expires") from None
        if self.capabilities.needs_licence(spec.kind) and not (spec.licence_no and expires):
            raise self._deny(ADD, spec.id, Code.INVALID_ARGUMENT,
                             f"a {spec.kind} needs --licence-no and --licence-expires")
        if not spec.name.strip() or len(spec.name) > 200:
            raise self._deny(ADD, spec.id, Code.INVALID_ARGUMENT, "--name must be 1-200 characters")
        if spec.licence_no is not None and (not spec.licence_no.strip() or len(spec.licence_no) > 64):
            raise self._deny(ADD, spec.id, Code.INVALID_ARGUMENT, "--licence-no must be 1-64 characters")
        # A lender's address and telephone head its Metro 2 file (Reporter Address: 96 characters, Reporter
        # Telephone Number: 10 digits); checked here, so a lender is not registered with one the file cannot carry.
        if spec.address is not None and not (spec.address.strip() and len(spec.address) <= 96
                                             and all(" " <= c <= "~" for c in spec.address)):
            raise self._deny(ADD, spec.id, Code.INVALID_ARGUMENT, "--address must be 1-96 printable ASCII characters")
        telephone = None
        if spec.telephone is not None:
            telephone = "".join(c for c in spec.telephone if c not in " -.()")
            telephone = telephone[2:] if telephone.startswith("+1") else telephone
            if not (len(telephone) == 10 and telephone.isascii() and telephone.isdigit()):
                raise self._deny(ADD, spec.id, Code.INVALID_ARGUMENT, "--telephone must be a 10-digit US number")
        return Org(spec.id, spec.kind, spec.name, spec.jurisdiction, spec.licence_no, expires, False,
                   spec.address.strip() if spec.address else None, telephone)

    def register(self, org: Org, identity: Callable[[], None]) -> None:
        """Register `org` once `identity()` (issuing or checking its certificate) has succeeded.

        A refusal of `identity` (CA_OFFLINE, CERT_MISMATCH) is audited. The
        row and its event commit together; an organisation registered by
        another command in between is ORG_EXISTS, audited too.
        """
        repo = self.reader()
        repo.refresh()
        if repo.get_org(org.id) is not None:
            raise self._deny(ADD, org.id, Code.ORG_EXISTS)
        try:
            identity()
        except CustosError as err:
            raise self._deny(ADD, org.id, err.code, err.detail) from None
        now = self.clock.now()

        def work(store: UnitOfWork) -> tuple[Code, list[EventDraft]]:
            if store.get_org(org.id) is not None:
                return Code.ORG_EXISTS, [self._event(ADD, org.id, "deny", Code.ORG_EXISTS)]
            store.insert_org(org, rfc3339(now))
            return Code.OK, [self._event(ADD, org.id, "allow", Code.OK, f"kind={org.kind}")]

        code = self.audit.run(work)
        if code != Code.OK:
            raise CustosError(code)

    def disable(self, org_id: str) -> None:
        """Disable an organisation: every request it makes from the next one on is refused."""
        if not ID_RE.fullmatch(org_id):
            raise self._deny(DISABLE, "", Code.INVALID_ORG_ID)

        def work(store: UnitOfWork) -> tuple[Code, list[EventDraft]]:
            if store.set_org_disabled(org_id) == 0:
                return Code.ORG_NOT_FOUND, [self._event(DISABLE, org_id, "deny", Code.ORG_NOT_FOUND)]
            return Code.OK, [self._event(DISABLE, org_id, "allow", Code.OK)]

        code = self.audit.run(work)
        if code != Code.OK:
            raise CustosError(code)

    # ---- licences (issue 26)
    def licence(self, org_id: str, region: str, licence_no: str, expires: str) -> RegionalLicence:
        """Record (or update: re-running replaces) an organisation's licence for one region, e.g. California's
        under the Debt Collection Licensing Act (Cal. Fin. Code §100001). The event names the region, never the
        number; where a region needs one is the conduct files' `[licensing]`."""
        if not ID_RE.fullmatch(org_id):
            raise self._deny(LICENCE, "", Code.INVALID_ORG_ID)
        if not region_ok(region):
            raise self._deny(LICENCE, org_id, Code.INVALID_REGION, "--region")
        if not licence_no.strip() or len(licence_no) > 64:
            raise self._deny(LICENCE, org_id, Code.INVALID_ARGUMENT, "--licence-no must be 1-64 characters")
        try:
            day = date.fromisoformat(expires) if len(expires) == 10 else None
        except ValueError:
            day = None
        if day is None:
            raise self._deny(LICENCE, org_id, Code.INVALID_DATE, "--licence-expires")
        held = RegionalLicence(region, licence_no.strip(), day)

        def work(store: UnitOfWork) -> tuple[Code, list[EventDraft]]:
            org = store.get_org(org_id)
            if org is None:
                return Code.ORG_NOT_FOUND, [self._event(LICENCE, org_id, "deny", Code.ORG_NOT_FOUND)]
            licences = [lic for lic in org.licences if lic.region != region] + [held]
            store.set_org_licences(org_id, sorted(licences, key=lambda lic: lic.region))
            return Code.OK, [self._event(LICENCE, org_id, "allow", Code.OK,
                                         f"region={region};expires={day.isoformat()}")]

        code = self.audit.run(work)
        if code != Code.OK:
            raise CustosError(code)
        return held
