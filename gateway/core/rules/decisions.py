"""Decisions as objects: one pure function decides a read, and both enforcement and explain use it.

`decide_read` answers "may org read this case under this purpose now, and what
would it get": the organisation's standing, then ownership or the mandate,
then the release rules for the case's stage, then the legal preconditions of
the purpose (litigation, credit reporting: `preconditions.py`). `Reads` (enforcement) refuses
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

from ..errors import Code
from ..model import CaseRow, MandateRow, Org
from . import access, preconditions
from .mandates import cross_border
from .policy import PolicyBundle, ReleaseDecision
from .preconditions import Evidence


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


PRECONDITION_PURPOSES = ("litigation", "credit_reporting")


def needs_evidence(purpose: str) -> bool:
    """Whether deciding this purpose reads the loan terms and the contact history (`Evidence`)."""
    return purpose in PRECONDITION_PURPOSES


def decide_read(bundle: PolicyBundle, org: Org | None, case: CaseRow, mandates: Sequence[MandateRow], purpose: str,
                now: datetime, evidence: Evidence | None = None, final_status: bool = False) -> ReadDecision:
    """Pure: the org's standing on `now`'s UTC day, its reach to the case, the release rules, the preconditions.

    `mandates` are the org's on this case id (those of other lenders are
    ignored); a mandate ends at `until` in the case's local time zone.
    `evidence` is required for a purpose that `needs_evidence`; without it
    such a read is refused (a caller that forgot it must not release).
    `final_status`: the bureau's one record of how a furnished account ended;
    the case's closure does not end the mandate for it, and nothing else
    changes (standing, recall, erasure, release rules, every precondition).
    """
    standing = access.standing(org, now.date(), bundle.capabilities)
    if not standing.ok or org is None:
        return ReadDecision(standing.code, standing.rule, (standing.rule,), None, None)
    active: MandateRow | None = None
    if bundle.owner_only(org.kind, purpose):
        reach = access.OK if org.id == case.lender_id else access.Verdict(Code.CASE_NOT_FOUND, "ownership")
    elif bundle.mandate_required(org.kind, purpose):
        today = now.astimezone(ZoneInfo(case.timezone)).date()
        final = final_status and purpose == "credit_reporting"
        reach, active = access.mandate([m for m in mandates if m.lender_id == case.lender_id], purpose, case, today,
                                       after_close=final)
    else:
        reach = access.Verdict(Code.PURPOSE_NOT_ALLOWED, "default-deny")
    if reach.ok and active is not None:  # through a mandate: abroad, only while the safeguards hold (issue 26)
        reach = _cross_border(bundle, org, case, now, reach)
    if not reach.ok:
        return ReadDecision(reach.code, reach.rule, (reach.rule,), None, active)
    licensed = access.regional_licence(org, case, licensed_regions(bundle), now.date(), bundle.capabilities)
    if not licensed.ok:
        return ReadDecision(licensed.code, licensed.rule, (reach.rule, licensed.rule), None, active)
    release = bundle.release(org.kind, purpose, case.stage, case.jurisdiction)
    checks = (reach.rule, *release.rules)
    if not release.allowed or not needs_evidence(purpose):
        return ReadDecision(release.code, release.rule, checks, release, active)
    verdict = _preconditions(bundle, case, purpose, evidence, now)
    checks = (*checks, verdict.rule)
    if not verdict.ok:
        return ReadDecision(verdict.code, verdict.rule, checks, None, active)
    return ReadDecision(release.code, release.rule, checks, release, active)


def _cross_border(bundle: PolicyBundle, org: Org, case: CaseRow, now: datetime, reach: access.Verdict
                  ) -> access.Verdict:
    """`reach` unless the org is of another jurisdiction and the case's cross-border safeguards fail today."""
    rules = bundle.conduct.get(case.jurisdiction)
    if rules is None:
        return reach
    today = now.astimezone(ZoneInfo(case.timezone)).date()
    verdict = cross_border(rules.mandates, case, org.jurisdiction, today)
    return reach if verdict.ok else verdict


def licensed_regions(bundle: PolicyBundle) -> frozenset[str]:
    """Every region some loaded conduct file says licenses collectors (issue 26): where the borrower lives
    counts, whichever jurisdiction's law the case is under."""
    return frozenset().union(*(rules.prerequisites.licensed_regions for rules in bundle.conduct.values()))


def _preconditions(bundle: PolicyBundle, case: CaseRow, purpose: str, evidence: Evidence | None,
                   now: datetime) -> access.Verdict:
    rules = bundle.conduct.get(case.jurisdiction)
    if rules is None or evidence is None:
        return access.Verdict(Code.PURPOSE_NOT_ALLOWED, f"{purpose}.preconditions")
    today = now.astimezone(ZoneInfo(case.timezone)).date()
    if purpose == "litigation":
        verdict = preconditions.litigation(rules.litigation, case, evidence.loan, today)
    else:
        verdict = preconditions.credit_reporting(rules.reporting, rules.connected_results, case, evidence, now, today)
    return verdict if not verdict.ok else access.Verdict(Code.OK, f"{purpose}.preconditions")
