"""Pure access verdicts: an organisation's standing and a mandate's state.

Shared by enforcement (which audits and raises) and by `policy explain`
(which only reports), so both always agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from ..errors import Code
from ..model import CaseRow, MandateRow, Org
from .capabilities import Capabilities


@dataclass(frozen=True)
class Verdict:
    code: Code         # OK or the denial code
    rule: str

    @property
    def ok(self) -> bool:
        return self.code == Code.OK


OK = Verdict(Code.OK, "ok")

# The erasure state of a borrower whose erasure was refused under a legal hold (`lifecycle.py`): the request
# stands and the data is only stored (PIPL Art. 47 ¶2), until the lender erases or withdraws the request.
RESTRICTED = "restricted"


def standing(org: Org | None, today: date, table: Capabilities, action: str | None = None,
             agent: str | None = None) -> Verdict:
    """Registered, enabled, licensed on `today` (if its kind needs one), of a kind `table` allows `action`, and
    naming the person acting if its kind must (`agent`: the call's, "" none; None: a check not about a call)."""
    if org is None:
        return Verdict(Code.UNKNOWN_ORG, "identity")
    if org.disabled:
        return Verdict(Code.ORG_DISABLED, "identity")
    if table.needs_licence(org.kind) and (org.licence_expires is None or org.licence_expires < today):
        return Verdict(Code.LICENCE_EXPIRED, "identity.licence")
    if action is not None and not table.allows(org.kind, action):
        return Verdict(Code.WRONG_ORG_KIND, "identity.kind")
    if agent == "" and table.agent_required(org.kind):
        return Verdict(Code.AGENT_REQUIRED, "identity.agent")
    return OK


# ---- licences (issue 26)
def regional_licence(org: Org, case: CaseRow, regions: frozenset[str], today: date, table: Capabilities) -> Verdict:
    """An org of a licensed kind reaching a borrower who lives in a region that licenses collectors holds that
    region's licence, in force on `today` (the UTC day, as the org-wide licence). A case with no region, or a
    region the policy does not list, needs only the org-wide licence (`standing`); the owner needs none."""
    if not case.region or case.region not in regions or org.id == case.lender_id or not table.needs_licence(org.kind):
        return OK
    held = org.licence_in(case.region)
    if held is None:
        return Verdict(Code.REGION_NOT_LICENSED, f"identity.licence.region:{case.region}")
    if held.expires < today:
        return Verdict(Code.REGIONAL_LICENCE_EXPIRED, f"identity.licence.region:{case.region}")
    return OK


def mandate(mandates: Sequence[MandateRow], purpose: str, case: CaseRow, today: date,
            after_close: bool = False) -> tuple[Verdict, MandateRow | None]:
    """Whether one of `mandates` (the org's, on this case) is live for `purpose` on the case's local `today`.

    A mandate ends at `until` (inclusive, local), on recall, and when the case
    is settled or closed. Nothing is released through any mandate once the
    borrower's erasure is scheduled or done, nor while it is restricted (but
    counsel's litigation read of a case under a litigation hold); an org that
    held one is told so. `after_close`: the one read a case's closure does not
    end (the bureau's final-status record); every other check still applies.
    """
    if not mandates:
        return Verdict(Code.NO_MANDATE, "mandate"), None
    for_purpose = [m for m in mandates if m.purpose == purpose]
    if not for_purpose:
        return Verdict(Code.PURPOSE_NOT_MANDATED, "mandate.purpose"), None
    if case.erasure:
        refused = blocked(case, purpose)
        if not refused.ok:
            return refused, None
    live = [m for m in for_purpose if m.recalled_at is None]
    if not live:
        return Verdict(Code.MANDATE_RECALLED, "mandate.recall"), None
    active = [m for m in live if today <= m.until]
    if not active:
        return Verdict(Code.MANDATE_EXPIRED, "mandate.until"), None
    if case.status != "open" and not after_close:
        return Verdict(Code.CASE_CLOSED, "mandate.case_status"), None
    return Verdict(Code.OK, f"mandate:{active[0].id}"), active[0]


def erasure(case: CaseRow) -> Verdict:
    """Why nothing of this case reaches another party: its borrower is erased, about to be, or restricted."""
    if case.erasure == "erased":
        return Verdict(Code.ERASED, "erasure")
    if case.erasure == RESTRICTED:
        return Verdict(Code.PROCESSING_RESTRICTED, "erasure.restricted")
    return Verdict(Code.ERASURE_PENDING, "erasure.pending")


def litigation_hold(case: CaseRow) -> bool:
    """A legal hold on a case in litigation: the hold exists for the suit, so the suit's counsel keeps the case."""
    return case.legal_hold and case.stage == "litigation"


def blocked(case: CaseRow, purpose: str) -> Verdict:
    """Whether the borrower's erasure state keeps this case from a non-owner under `purpose` (OK: it does not).

    A restricted borrower's data is stored only; the one use a hold exists
    for, the litigation of a case under a litigation hold, goes on.
    """
    if not case.erasure:
        return OK
    if case.erasure == RESTRICTED and purpose == "litigation" and litigation_hold(case):
        return OK
    return erasure(case)


def placement_problem(case: CaseRow, target: Org | None, purpose: str, label: str, until: date,
                      today: date, table: Capabilities) -> tuple[Code, str, str] | None:
    """Why this mandate cannot be granted (code, rule, reason), or None. Shared by assign and bulk placement."""
    if until < today:
        return Code.UNTIL_IN_PAST, "input", "until: before the case's local today"
    if target is None:
        return Code.ORG_NOT_FOUND, "input", "to: no such organisation"
    if target.kind not in table.mandated_to(purpose):
        return Code.PURPOSE_KIND_MISMATCH, "mandate.kind", "purpose: not one this kind of organisation is mandated for"
    verdict = blocked(case, purpose)
    if not verdict.ok:
        return verdict.code, verdict.rule, "case_id: the borrower's erasure is scheduled, done or held"
    if label == "provided" and not case.consent_third_party:
        # PIPL Art. 23: providing to another handler needs the borrower's consent.
        return Code.CONSENT_REQUIRED, "mandate.provided_consent", "label: provided needs the borrower's consent"
    return None
