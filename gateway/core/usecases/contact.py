"""Contact: releasing a number or address only when every conduct rule allows, counted centrally; outcomes.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any

from ..errors import Code, CustosError
from ..model import (
    ID_RE,
    Caller,
    CaseRow,
    EventDraft,
    Org,
    parse_date,
    parse_time,
    rfc3339,
)
from ..ports import UnitOfWork
from ..rules import access, plans
from ..rules.capabilities import LENDER
from ..rules.conduct import (
    CHANNELS,
    PARTIES,
    RESULTS,
    ConductDecision,
    ContactAttempt,
    ContactRequest,
    evaluate_contact,
    history_horizon,
    needs_all_history,
    opted_out,
)
from ..rules.decisions import licensed_regions
from .context import Context, _conduct_state

# A call recording's reference: an opaque key into the caller's recording system (never content, never a URL with
# a query): like an id, a little longer, and "/" for a path-like key.
RECORDING_RE = re.compile(r"^[A-Za-z0-9._:/-]{1,128}\Z")
# Contacts that can be recorded: a conversation by phone or in person.
RECORDED_CHANNELS = ("call", "visit")


def _years_after(at: datetime, years: int) -> datetime:
    """The same instant `years` later (29 February becomes 28 February)."""
    try:
        return at.replace(year=at.year + years)
    except ValueError:
        return at.replace(year=at.year + years, day=28)


class Contacts(Context):
    def _contact_case(self, caller: Caller, org: Org, case_ref: str) -> CaseRow:
        """The owning lender reaches its case directly; another kind the table allows, through a live collection
        mandate. Checked here, after the request's own fields, so the order of refusals is the same for all."""
        if not self.bundle.capabilities.allows(org.kind, "open_contact"):
            raise self._deny(caller, Code.WRONG_ORG_KIND, "identity.kind", purpose="collection")
        if org.kind == LENDER:
            return self._own_case(caller, case_ref, purpose="collection")
        return self._mandated_case(caller, case_ref, "collection")[0]

    def open_contact(self, caller: Caller, case_ref: str, channel: str, party: str,
                     artificial_voice: bool = False) -> dict[str, Any]:
        """Release a phone number or address only when every conduct rule allows, counted centrally.

        The decision runs inside the serialised writer, against the history as
        committed, so two agencies racing for the last call under a cap cannot
        both get it; the attempt and its audit event commit together.

        `artificial_voice` (issue 26): an artificial or AI voice call. It is a
        call (channel "call", counted in the same caps); its events carry the
        marker `;artificial_voice` at the end of their rule.
        """
        party = party or "borrower"
        org = self._standing(caller, purpose="collection")
        if channel not in CHANNELS:
            raise self._deny(caller, Code.UNKNOWN_CHANNEL, "input", purpose="collection")
        if party not in PARTIES:
            raise self._deny(caller, Code.UNKNOWN_PARTY, "input", purpose="collection")
        case = self._contact_case(caller, org, case_ref)
        rules = self._conduct_rules(case)
        now = self.clock.now()
        since = "" if needs_all_history(rules) else rfc3339(now - history_horizon(rules))
        marker = ";artificial_voice" if artificial_voice else ""

        def work(repo: UnitOfWork) -> tuple[tuple[ConductDecision, dict[str, str], str], list[EventDraft]]:
            fresh = repo.get_case(case.lender_id, case.case_id)
            assert fresh is not None
            repo.lock_borrower(fresh.lender_id, fresh.borrower_id)  # caps count per borrower: one decision at a time
            if fresh.erasure and caller.org_id != fresh.lender_id:
                refused = access.erasure(fresh)
                return (ConductDecision(False, refused.code, refused.rule), {}, ""), [
                    self._event(caller, "deny", refused.code, refused.rule + marker, purpose="collection",
                                case_id=fresh.case_id, borrower_id=fresh.borrower_id, lender=fresh.lender_id, now=now,
                                channel=channel, party=party, zone=fresh.timezone)]
            licensed = access.regional_licence(org, fresh, licensed_regions(self.bundle), now.date(),
                                               self.bundle.capabilities)
            if not licensed.ok:
                return (ConductDecision(False, licensed.code, licensed.rule), {}, ""), [
                    self._event(caller, "deny", licensed.code, licensed.rule + marker, purpose="collection",
                                case_id=fresh.case_id, borrower_id=fresh.borrower_id, lender=fresh.lender_id, now=now,
                                channel=channel, party=party, zone=fresh.timezone)]
            history = [
                ContactAttempt(at=parse_time(c.opened_at) or now, case_id=c.case_id, org_id=c.org_id,
                               channel=c.channel, party=c.party, target=c.target.hex(), result=c.result)
                for c in repo.contacts_since(fresh.lender_id, fresh.borrower_id, since)
            ]
            target, release = self._contact_target(repo, fresh, channel, party, history)
            state = _conduct_state(fresh)
            request = ContactRequest(case_id=fresh.case_id, org_id=caller.org_id, channel=channel, party=party,
                                     target=target.hex() if target else "",
                                     borrower_target=self._borrower_number(repo, fresh, party),
                                     artificial_voice=artificial_voice)
            decision = evaluate_contact(rules, state, request, history, now)
            kw: dict[str, Any] = {"purpose": "collection", "case_id": fresh.case_id,
                                  "borrower_id": fresh.borrower_id, "lender": fresh.lender_id, "now": now,
                                  "channel": channel, "party": party, "zone": fresh.timezone}
            if decision.allowed and (target is None or not release):
                decision = ConductDecision(False, Code.NO_CONTACT_DATA, f"{rules.jurisdiction}.data")
            if not decision.allowed:
                return (decision, {}, ""), [self._event(caller, "deny", decision.code, decision.rule + marker, **kw)]
            assert target is not None
            contact_id = repo.insert_contact(fresh.lender_id, fresh.case_id, fresh.borrower_id, caller.org_id,
                                             channel, party, target, rfc3339(now))
            names = [f"{party}.{k}" for k in release]
            return (decision, release, contact_id), [self._event(caller, "allow", Code.OK, decision.rule + marker,
                                                                 fields=names,
                                                                 contact_id=contact_id, **kw)]

        decision, release, contact_id = self.audit.run(work)
        if not decision.allowed:
            raise CustosError(decision.code)
        out: dict[str, Any] = {"contact_id": contact_id, "case_id": case.case_id, "channel": channel, "party": party,
                               "opened_at": rfc3339(now), **release}
        if artificial_voice:
            out["artificial_voice"] = True
        return out

    def _contact_target(self, repo: UnitOfWork, case: CaseRow, channel: str, party: str,
                        history: list[ContactAttempt]) -> tuple[bytes | None, dict[str, str]]:
        """The opaque key the caps count by, and the values a granted contact releases."""
        if party == "borrower":
            if channel in ("call", "sms"):
                phone = repo.borrower_values(case, ["phone"]).get("phone")
                return (repo.bidx(case.lender_id, "phone", phone), {"phone": phone}) if phone else (None, {})
            address = repo.borrower_values(case, ["home_address"]).get("home_address")
            target = repo.bidx(case.lender_id, "address", case.borrower_id)
            return (target, {"address": address}) if address else (None, {})
        raw = repo.borrower_values(case, ["emergency_contacts"]).get("emergency_contacts")
        contacts = json.loads(raw) if raw else []
        if not contacts:
            return None, {}
        rules = self._conduct_rules(case)
        allowed = rules.third_party.release if rules.third_party else ()
        keyed = [(repo.bidx(case.lender_id, "phone", c["phone"]), c) for c in contacts]
        contacted = {a.target for a in history if a.party == "emergency_contact"}

        def closed(key: bytes) -> bool:  # an opt-out (refused, stop_calls...) closes this person for the channel
            probe = ContactRequest(case_id=case.case_id, org_id="", channel=channel, party=party, target=key.hex())
            return opted_out(rules, history, probe) is not None

        # The first emergency contact neither contacted yet nor closed; else the first not closed; all closed:
        # the first (the rules then refuse with the opt-out's code).
        open_ones = [(k, c) for k, c in keyed if not closed(k)] or keyed[:1]
        target, chosen = next(((k, c) for k, c in open_ones if k.hex() not in contacted), open_ones[0])
        return target, {k: str(chosen[k]) for k in allowed if chosen.get(k)}

    @staticmethod
    def _borrower_number(repo: UnitOfWork, case: CaseRow, party: str) -> str:
        """The key of the borrower's current number: a third-party request's unreachability is shown on it."""
        if party == "borrower":
            return ""
        phone = repo.borrower_values(case, ["phone"]).get("phone")
        return repo.bidx(case.lender_id, "phone", phone).hex() if phone else ""

    def record_outcome(self, caller: Caller, contact_id: str, result: str, amount: str = "",
                       on: str = "", recording: str = "") -> dict[str, str]:
        """Record what came of a contact; a dispute sets the case's dispute flag at once; a promise to pay
        carries its amount and date (the borrower's local date, from today up to the conduct rules' bound).
        An opt-out outcome closes what it names for every org (the conduct rules read it from the history);
        a recording's reference is kept with the outcome and audited by presence only."""
        org = self._standing(caller, purpose="collection")
        if result not in RESULTS:
            raise self._deny(caller, Code.UNKNOWN_RESULT, "input", purpose="collection")
        if recording and not RECORDING_RE.fullmatch(recording):
            raise self._deny(caller, Code.INVALID_RECORDING, "input", purpose="collection")
        terms = plans.promise_terms(result, amount, on)
        if terms is not None:
            raise self._deny(caller, terms, "input", purpose="collection")
        if not ID_RE.fullmatch(contact_id):
            raise self._deny(caller, Code.CONTACT_NOT_FOUND, "input", purpose="collection")
        now = self.clock.now()

        def work(repo: UnitOfWork) -> tuple[tuple[Code, dict[str, str]], list[EventDraft]]:
            row = repo.get_contact(contact_id)
            if row is None or row.org_id != org.id:
                # Another org's contact looks exactly like a missing one.
                return (Code.CONTACT_NOT_FOUND, {}), [self._event(caller, "deny", Code.CONTACT_NOT_FOUND, "contact",
                                                               purpose="collection", now=now)]
            lender, case_id, channel, party, opened_at = row.lender_id, row.case_id, row.channel, row.party, \
                row.opened_at
            case = repo.get_case(lender, case_id)
            assert case is not None
            kw: dict[str, Any] = {"purpose": "collection", "case_id": case_id, "borrower_id": row.borrower_id,
                                  "lender": lender, "now": now, "channel": channel, "contact_id": contact_id,
                                  "party": party, "zone": case.timezone}
            if row.result is not None:
                return (Code.OUTCOME_ALREADY_RECORDED, {}), [self._event(caller, "deny", Code.OUTCOME_ALREADY_RECORDED,
                                                                      "contact.outcome", **kw)]
            rules = self._conduct_rules(case)
            opt = rules.opt_out(result)
            if opt is not None and not opt.applies_to(channel, party):
                # e.g. `refused` on the borrower's own contact, `stop_calls` on a letter: it names nothing to close
                return (Code.OUTCOME_NOT_APPLICABLE, {}), [self._event(caller, "deny", Code.OUTCOME_NOT_APPLICABLE,
                                                                    f"contact.outcome:{result}", **kw)]
            if recording and channel not in RECORDED_CHANNELS:
                return (Code.OUTCOME_NOT_APPLICABLE, {}), [self._event(caller, "deny", Code.OUTCOME_NOT_APPLICABLE,
                                                                    "contact.recording", **kw)]
            promise: dict[str, str] = {}
            if result == "promise_to_pay":
                day = parse_date(on)
                assert day is not None
                out_of_range = plans.promise_date(day, self.local_today(case, now),
                                                  self._conduct_rules(case).plans.promise_max_days)
                if out_of_range is not None:
                    return (out_of_range, {}), [self._event(caller, "deny", out_of_range, "contact.promise", **kw)]
                promise = {"promise_amount": amount, "promise_on": day.isoformat()}
            repo.set_contact_result(contact_id, result, rfc3339(now))
            if promise:
                repo.set_promise(contact_id, promise["promise_amount"], promise["promise_on"])
            rule = f"contact.outcome:{result}"
            if result == "dispute":
                repo.set_case_fields(lender, case_id, {"disputed": True}, rfc3339(now))
                rule += ";flag:disputed=true"
            if opt is not None:
                rule += f";opt_out:{opt.result}"
            kept: dict[str, str] = {}
            if recording:
                # Kept past an erasure until keep_years after now; the event names the field, never the value.
                repo.set_recording(contact_id, recording, rfc3339(_years_after(now, rules.recording_years)))
                kept = {"recording": recording}
            info = {"contact_id": contact_id, "case_id": case_id, "channel": channel, "party": party,
                    "opened_at": opened_at, "result": result, **promise, **kept}
            return (Code.OK, info), [self._event(caller, "allow", Code.OK, rule, fields=list(kept), **kw)]

        code, info = self.audit.run(work)
        if code != Code.OK:
            raise CustosError(code)
        return info
