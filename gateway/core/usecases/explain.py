"""Explain: what an organisation would get for a case under a purpose at a time, and why. Reports only.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ..errors import Code
from ..model import (
    ORG_ID_RE,
    PURPOSES,
    Caller,
    CaseRow,
    parse_time,
    rfc3339,
)
from ..rules.conduct import (
    ContactRequest,
    evaluate_contact,
)
from ..rules.decisions import decide_read, licensed_regions, needs_evidence
from .context import Context, _conduct_state


class Explainer(Context):
    def explain(self, caller: Caller, org_id: str, case_ref: str, purpose: str, at: str) -> dict[str, Any]:
        """What would `org_id` get for this case under `purpose` at time `at`, and why. Reports; enforces nothing."""
        self._standing(caller, action="explain")
        case = self._own_case(caller, case_ref, purpose=purpose)
        kw: dict[str, Any] = {"purpose": purpose, "case_id": case.case_id, "borrower_id": case.borrower_id,
                              "lender": case.lender_id}
        if purpose not in PURPOSES:
            raise self._deny(caller, Code.UNKNOWN_PURPOSE, "input", **kw)
        when = parse_time(at) if at else self.clock.now()
        if when is None:
            raise self._deny(caller, Code.INVALID_TIME, "input", **kw)
        if not ORG_ID_RE.fullmatch(org_id):
            raise self._deny(caller, Code.INVALID_ORG_ID, "input", **kw)
        repo = self.reader()
        target = repo.get_org(org_id)
        today = self.local_today(case, when)
        notes: list[str] = [f"evaluated at {rfc3339(when)} (borrower local date {today.isoformat()})"]
        mandates = repo.mandates_for(target.id, case.case_id) if target is not None else ()
        evidence = self._evidence(case) if needs_evidence(purpose) else None
        verdict = decide_read(self.bundle, target, case, mandates, purpose, when, evidence)
        if verdict.mandate is not None:
            notes.append(f"mandate {verdict.mandate.label} until {verdict.mandate.until.isoformat()}")
        fields = []
        if verdict.allowed and verdict.release is not None:
            release = verdict.release
            rule_of = {f: r.id for r in self.bundle.rules for f in r.fields if r.id in release.rules}
            fields = [{"field": f, "transform": t.describe(), "rule": rule_of.get(f, "")}
                      for f, t in sorted(release.fields.items())]
        if purpose == "collection" and target is not None and self.bundle.capabilities.allows(target.kind, "open_contact"):
            notes.extend(self._contact_notes(case, when, target.id))
        self.audit.append([self._event(caller, "allow", Code.OK, f"explain:{org_id}", **kw)])
        return {"org_id": org_id, "case_id": case.case_id, "purpose": purpose, "stage": case.stage,
                "decision": "allow" if verdict.allowed else "deny", "code": verdict.code, "fields": fields,
                "rules": list(verdict.checks), "policy_revision": self.bundle.revision, "notes": notes}

    def _contact_notes(self, case: CaseRow, when: datetime, org_id: str) -> list[str]:
        """How a call to the borrower would fare at `when`, ignoring caps (no history is consulted); and an
        artificial-voice call, with the notices and consent it reads (issue 26)."""
        rules = self._conduct_rules(case)
        state = _conduct_state(case)
        d = evaluate_contact(rules, state, ContactRequest(case.case_id, org_id, "call", "borrower", "explain"), [], when)
        verdict = "allowed" if d.allowed else f"refused ({d.code}, rule {d.rule})"
        voice = evaluate_contact(rules, state, ContactRequest(case.case_id, org_id, "call", "borrower", "explain",
                                                              artificial_voice=True), [], when)
        voiced = "allowed" if voice.allowed else f"refused ({voice.code}, rule {voice.rule})"
        pre = rules.prerequisites
        notices = [f"{kind} notice on {state.notices[kind].isoformat() if kind in state.notices else 'none on file'}"
                   for kind in pre.notices]
        return [f"a borrower call at that time: {verdict}", *d.notes,
                f"an artificial-voice call at that time: {voiced} (consent on file: "
                f"{'yes' if case.consent_artificial_voice else 'no'})",
                *([f"notices an agency's contact needs: {'; '.join(notices)}"] if notices else []),
                *([f"licence for the borrower's region {case.region} needed"]
                  if case.region and case.region in licensed_regions(self.bundle) else []),
                f"conduct rules: {rules.source}"]
