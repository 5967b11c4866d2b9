"""Decisions as objects: one pure function decides a read, and both enforcement and explain use it.

`decide_read` answers "may org read this case under this purpose now, and what
would it get": the organisation's standing, then ownership or the mandate,
then the release rules for the case's stage. `Reads` (enforcement) refuses
with the decision's code and rule and releases its fields; `Explainer`
(`custos policy explain`) reports the very same object, so what is explained
is by construction what is enforced. Like OPA, the decision is data the
caller enforces; it audits and raises nothing itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from . import access
from .errors import Code
from .model import CaseRow, MandateRow, Org
from .policy import PolicyBundle, ReleaseDecision


@dataclass(frozen=True)
class ReadDecision:
    code: Code                       # OK, or the first check that refused
    rule: str                        # the rule or check that decided
    checks: tuple[str, ...]          # every check consulted, in order (what explain lists)
    release: ReleaseDecision | None  # the fields and transforms, once access is granted
    mandate: MandateRow | None       # the live mandate the read goes through, if one is needed

    @property
    def allowed(self) -> bool:
        return self.code == Code.OK


def decide_read(bundle: PolicyBundle, org: Org | None, case: CaseRow, mandates: Sequence[MandateRow], purpose: str,
                now: datetime) -> ReadDecision:
    """Pure: the org's standing on `now`'s UTC day, its reach to the case, the release rules for the stage.

    `mandates` are the org's on this case id (those of other lenders are
    ignored); a mandate ends at `until` in the case's local time zone.
    """
    standing = access.standing(org, now.date())
    if not standing.ok or org is None:
        return ReadDecision(standing.code, standing.rule, (standing.rule,), None, None)
    active: MandateRow | None = None
    if bundle.owner_only(org.kind, purpose):
        reach = access.OK if org.id == case.lender_id else access.Verdict(Code.CASE_NOT_FOUND, "ownership")
    elif bundle.mandate_required(org.kind, purpose):
        today = now.astimezone(ZoneInfo(case.timezone)).date()
        reach, active = access.mandate([m for m in mandates if m.lender_id == case.lender_id], purpose, case, today)
    else:
        reach = access.Verdict(Code.PURPOSE_NOT_ALLOWED, "default-deny")
    if not reach.ok:
        return ReadDecision(reach.code, reach.rule, (reach.rule,), None, active)
    release = bundle.release(org.kind, purpose, case.stage)
    checks = (reach.rule, *release.rules)
    return ReadDecision(release.code, release.rule, checks, release, active)
