"""Explain: what an organisation would get for a case under a purpose at a time, and why. Reports only.
"""

from __future__ import annotations

from datetime import date, datetime
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
from ..rules import mandates as mandate_rules
from ..rules.conduct import (
    ContactAttempt,
    ContactRequest,
    evaluate_contact,
    opted_out,
    unreachable,
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
            m = verdict.mandate
            notes.append(f"mandate {m.label} until {m.until.isoformat()}; agreement "
                         f"{'named' if m.agreement else 'not named'}, impact assessment "
                         f"{'named' if m.pia else 'not named'}")
        notes.append(self._grant_note(case, purpose, target.jurisdiction if target is not None else None, today))
        notes.extend(self._transfer_note(case, target.jurisdiction if target is not None else None))
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

    def _grant_note(self, case: CaseRow, purpose: str, org_jurisdiction: str | None, today: date) -> str:
        """Whether a new mandate for `purpose` could be granted on the case now, by the granting rules (issue 26)."""
        conduct = self.bundle.conduct.get(case.jurisdiction)
        rules = conduct.mandates if conduct is not None else mandate_rules.MandateRules()
        refused = mandate_rules.collecting_problem(rules, case, purpose)
        if refused.ok and org_jurisdiction is not None:
            refused = mandate_rules.cross_border(rules, case, org_jurisdiction, today)
        if not refused.ok:
            return f"a new {purpose} mandate: refused ({refused.code}, rule {refused.rule})"
        needs = [name for name, on in (("--agreement", rules.requires_agreement), ("--pia", rules.requires_pia)) if on]
        return (f"a new {purpose} mandate: grantable" + (f", naming {' and '.join(needs)}" if needs else "")
                + f" ({case.jurisdiction} [mandates] rules)")

    def _transfer_note(self, case: CaseRow, org_jurisdiction: str | None) -> list[str]:
        """What a provision abroad rests on in the case's jurisdiction (issue 26), when the org is abroad: the
        mechanisms that count and whether consent is needed too; names and dates, never the reference."""
        conduct = self.bundle.conduct.get(case.jurisdiction)
        rules = conduct.mandates if conduct is not None else mandate_rules.MandateRules()
        if not rules.cross_border_safeguards or org_jurisdiction in (None, case.jurisdiction):
            return []
        recorded = (f"{case.transfer_mechanism} valid until {case.transfer_valid_until}"
                    if case.transfer_mechanism else "none")
        consent = (f"the borrower's separate consent needed too (on file: {'yes' if case.consent_cross_border else 'no'})"
                   if rules.cross_border_consent else "no consent needed")
        return [f"transfer {case.jurisdiction} to {org_jurisdiction}: a mechanism of "
                f"{', '.join(rules.transfer_mechanisms) or '(none)'} valid on the day; recorded: {recorded}; {consent}"]

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
                *self._opt_out_notes(case, when), f"conduct rules: {rules.source}"]

    def _opt_out_notes(self, case: CaseRow, when: datetime) -> list[str]:
        """Issue 26: which opt-outs the borrower's history holds, what they close of the borrower's current number,
        and whether a third party may be contacted (the flag or the history's evidence). Names, never values."""
        rules = self._conduct_rules(case)
        repo = self.reader()
        history = [ContactAttempt(at=parse_time(c.opened_at) or when, case_id=c.case_id, org_id=c.org_id,
                                  channel=c.channel, party=c.party, target=c.target.hex(), result=c.result)
                   for c in repo.contacts_since(case.lender_id, case.borrower_id, "")
                   if (parse_time(c.opened_at) or when) <= when]
        phone = repo.borrower_values(case, ["phone"]).get("phone") if case.erasure != "erased" else None
        number = repo.bidx(case.lender_id, "phone", phone).hex() if phone else ""
        notes: list[str] = []
        for opt in rules.opt_outs:
            seen = sum(1 for a in history if a.result == opt.result)
            if seen:
                notes.append(f"opt-out {opt.result} recorded {seen} time(s): closes {', '.join(sorted(opt.channels))}"
                             f" to {'the borrower' if opt.scope == 'borrower' else 'that number or person'}"
                             f" (rule {rules.jurisdiction}.opt_out.{opt.result}, {opt.code})")
        for channel in ("call", "sms"):
            closed = opted_out(rules, history, ContactRequest(case.case_id, "explain", channel, "borrower", number))
            if number and closed is not None:
                notes.append(f"a borrower {channel} to the current number: refused ({closed.code}, "
                             f"rule {rules.jurisdiction}.opt_out.{closed.result})")
        tp = rules.third_party
        if tp is not None and tp.requires_lost_contact:
            if case.lost_contact:
                notes.append("third parties: the lost_contact flag is set")
            elif tp.evidence:
                shown = unreachable(tp, history, number)
                notes.append(f"third parties: the history shows the borrower unreachable ({shown})" if shown else
                             "third parties: refused (THIRD_PARTY_NOT_UNREACHABLE): neither lost_contact nor the "
                             f"history's evidence ({', '.join(tp.evidence)})")
            else:
                notes.append("third parties: refused (THIRD_PARTY_NOT_ALLOWED) until lost_contact is set")
        return notes
