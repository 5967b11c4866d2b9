"""Admission of every call before its request is read: identity, rate, standing; refusals audited.
"""

from __future__ import annotations

import time

from ..errors import Code, CustosError
from ..model import (
    ID_RE,
    Caller,
    EventDraft,
    Org,
)
from ..rules import access
from ..rules.admission import RATE_EVENT_WINDOW_S, _Suppressed
from ..rules.capabilities import LENDER
from .context import Context


class Gatekeeping(Context):
    def admit(self, caller: Caller) -> Org:
        """`admission`, with a standing refusal audited and raised at once (no case is known yet)."""
        org, refusal = self.admission(caller)
        if refusal is not None:
            raise self._deny(caller, refusal.code, refusal.rule)
        assert org is not None
        return org

    def admission(self, caller: Caller) -> tuple[Org | None, access.Verdict | None]:
        """Before any request byte is decoded: identity, rate, the agent named, and standing (with the agent the
        caller's kind may require), each refusal audited.

        The rate comes first, so that whatever else a caller gets wrong it can
        write at most its rate of events into the log; refusals beyond the rate
        are counted, not written one by one (see `_rate_denied`).
        """
        if caller.problem and caller.problem != Code.INVALID_AGENT:
            if not self._rates.allow("cert:" + caller.cert, self.bundle.limits.rate):
                raise self._rate_denied(caller, "unidentified")
            raise self._deny(caller, caller.problem, f"identity:cert={caller.cert}" if caller.cert else "identity")
        repo = self.reader()
        # The unchecked view is enough to let a call through: what it goes on to do starts from a checked
        # view (`_standing`) or proves its view at the commit (`Reads.get_case`). A refusal is decided on
        # a checked one, so nobody is turned away on a stale row.
        view = repo.assume()
        org = repo.get_org(caller.org_id)
        kind = org.kind if org is not None else ""
        if not self._rates.allow(caller.org_id, self.bundle.limits.rate_for(kind)):
            raise self._rate_denied(caller, kind or "unregistered")
        if caller.problem == Code.INVALID_AGENT:
            # The organisation is the certificate's; only the agent it named is not an id. The event names the
            # caller without it (the transport kept the text out of the Caller).
            raise self._deny(caller, Code.INVALID_AGENT, "identity.agent")
        verdict = access.standing(org, self.clock.now().date(), self.bundle.capabilities, agent=caller.agent)
        if not verdict.ok and view is not None:
            repo.refresh()
            org = repo.get_org(caller.org_id)
            verdict = access.standing(org, self.clock.now().date(), self.bundle.capabilities, agent=caller.agent)
        if not verdict.ok:
            return org, verdict  # refused for its standing: the caller audits it, with the case if it can
        return org, None

    def standing_now(self, caller: Caller) -> Code | None:
        """The caller's standing refusal on a checked view, or None (the gate asks it of a call that admission let
        in on an unchecked view and that still waits for its first message)."""
        repo = self.reader()
        repo.refresh()
        verdict = access.standing(repo.get_org(caller.org_id), self.clock.now().date(), self.bundle.capabilities,
                                  agent=caller.agent)
        return None if verdict.ok else verdict.code

    def deny_standing(self, caller: Caller, verdict: access.Verdict, case_ref: str) -> CustosError:
        """Audit a standing refusal naming the case the request named (and its borrower where known).

        A regulator querying a case then sees every attempt on it, also those
        of a disabled organisation or an expired licence. The borrower is
        known when the case is the caller's own (a lender) or reached by the
        caller's mandates from one lender; the caller learns nothing of it.
        """
        lender, _, case_id = case_ref.rpartition("/")
        if not ID_RE.fullmatch(case_id) or (lender and not ID_RE.fullmatch(lender)):
            return self._deny(caller, verdict.code, verdict.rule)
        repo = self.reader()
        org = repo.get_org(caller.org_id)
        case = None
        if org is not None and org.kind == LENDER:
            case = repo.get_case(caller.org_id, case_id) if lender in ("", caller.org_id) else None
        else:
            lenders = {m.lender_id for m in repo.mandates_for(caller.org_id, case_id)
                       if not lender or m.lender_id == lender}
            if len(lenders) == 1:
                case = repo.get_case(lenders.pop(), case_id)
        return self._deny(caller, verdict.code, verdict.rule, case_id=case_id,
                          borrower_id=case.borrower_id if case is not None else "",
                          lender=case.lender_id if case is not None else "")

    def deny(self, caller: Caller, code: Code, rule: str = "") -> CustosError:
        """A refusal decided outside a use case (by the transport: undecodable request, timeout, share)."""
        return self._deny(caller, code, rule or code.lower())

    def _rate_denied(self, caller: Caller, kind: str) -> CustosError:
        """Audit a rate refusal: the first of a window at once, the rest as one count when the window ends.

        A caller far over its rate would otherwise turn every refused call into a
        durable event, filling the log and the writer's commits at the expense of
        every other organisation. Each window's count is written by
        `flush_suppressed` (called about twice a second), so every refusal is in
        the log within a second or two, as `rate:KIND;repeated=N`.
        """
        key = (caller.org_id or "cert:" + caller.cert, caller.method)
        now = time.monotonic()
        with self._suppressed_lock:
            entry = self._suppressed.get(key)
            if entry is not None and now - entry.since < RATE_EVENT_WINDOW_S:
                entry.count += 1
                return CustosError(Code.RATE_LIMITED)
            self._suppressed[key] = _Suppressed(now, 0, caller, kind)
        events = [self._repeated(entry)] if entry is not None and entry.count else []
        events.append(self._event(caller, "deny", Code.RATE_LIMITED, f"rate:{kind}"))
        self.audit.append(events)
        return CustosError(Code.RATE_LIMITED)

    def _repeated(self, entry: _Suppressed) -> EventDraft:
        return self._event(entry.caller, "deny", Code.RATE_LIMITED, f"rate:{entry.kind};repeated={entry.count}")

    def flush_suppressed(self, force: bool = False) -> None:
        """Write the counts of rate refusals whose window has ended (all of them with `force`)."""
        now = time.monotonic()
        with self._suppressed_lock:
            due = [k for k, e in self._suppressed.items() if force or now - e.since >= RATE_EVENT_WINDOW_S]
            entries = [self._suppressed.pop(k) for k in due]
        events = [self._repeated(e) for e in entries if e.count]
        if events:
            self.audit.append(events)
