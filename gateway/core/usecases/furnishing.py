"""The bureau feed: each mandated account's record, only while its reporting preconditions hold, only when changed.

A pull decides every case mandated to the bureau under `credit_reporting`
with the same `decide_read` as `cases get` (preconditions included); a
withheld record is a denial event with its code, a furnished one an allow
event with its fields. What was sent is remembered per bureau as a sequence
of keyed digests (`furnished`: never the values), in the same transaction
as the events, so:

- a record is sent again only when what it says changed (status, balance,
  dispute, identity...): its digest differs from the last one sent;
- the cursor is the bureau's position in its sequence: a pull `since` a
  cursor also re-sends every record numbered after it (a response lost in
  transit is sent again, never skipped), and a pull with the newest cursor
  sends only what changed since. Replicas share the sequence (it is in the
  database, serialised per bureau), so a restart or another replica changes
  nothing.

An account settled or closed after it was furnished gets one final record
with its new status (the mandate ends with the case, but the bureau must
learn how the account ended); one never furnished is not furnished then.

A record the jurisdiction's bureau format cannot carry (US: Metro 2, see
`gateway.formats.metro2.problem`: an SSN that is not 9 ASCII digits, a name
or address outside ASCII, a ZIP that is not 5 or 9 digits, a lender with no
registered address) is withheld like a precondition: a denial event with its
code, listed in the pull's `withheld`, never numbered, so the cursor does not
pass it and it is decided again at every pull until corrected. JSON and
Metro 2 pulls share the cursor, so both withhold it.

A dispute is carried, never dropped: the record's `compliance_condition` is
XB while the account is disputed and XH once a dispute reported as XB is
resolved (Metro 2 compliance condition codes), and stays XH after.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gateway.formats import metro2

from ..errors import Code
from ..model import Caller, CaseRow, EventDraft, rfc3339
from ..ports import UnitOfWork
from ..rules.decisions import decide_read
from ..rules.preconditions import Evidence
from .reads import Reads

PURPOSE = "credit_reporting"
PAGE = 200  # cases decided per transaction: a long feed is many short commits, each durable on its own
CURSOR_RE = re.compile(r"^f([0-9]{1,18})$")
# The lender's registration, for the file's header: sent with each record, not part of what the bureau holds
# about the account (a new lender address re-sends nothing).
FURNISHER_FIELDS = ("furnisher_name", "furnisher_address", "furnisher_telephone")


@dataclass(frozen=True)
class FeedRecord:
    seq: int
    case_id: str
    loan_id: str
    jurisdiction: str
    fields: dict[str, str]


@dataclass(frozen=True)
class FeedWithheld:
    """A record the bureau's format cannot carry: named to the bureau with its code, never its values."""

    case_id: str
    code: str


def parse_cursor(text: str) -> int | None:
    if not text:
        return 0
    m = CURSOR_RE.fullmatch(text)
    return int(m.group(1)) if m else None


def cursor_of(seq: int) -> str:
    return f"f{seq}"


class Furnishing(Reads):
    def pull(self, caller: Caller, since: str) -> Iterator[FeedRecord | FeedWithheld | str]:
        """The bureau's records after `since` and those withheld, then the new cursor (the last item, a str)."""
        self._standing(caller, action="pull_feed", purpose=PURPOSE)
        start = parse_cursor(since)
        repo = self.reader()
        head = repo.feed_head(caller.org_id)
        if start is None or start > head:
            raise self._deny(caller, Code.INVALID_CURSOR, "input", purpose=PURPOSE)
        keys = sorted({(m.lender_id, m.case_id) for m in repo.mandates_of_org(caller.org_id) if m.purpose == PURPOSE})
        last = head
        for i in range(0, len(keys), PAGE):
            page = keys[i:i + PAGE]
            records, withheld, top = self.audit.run(functools.partial(self._furnish, caller, page=page,
                                                                      since=start))
            last = max(last, top)
            yield from records
            yield from withheld
        yield cursor_of(last)

    def _furnish(self, caller: Caller, store: UnitOfWork, *, page: list[tuple[str, str]], since: int
                 ) -> tuple[tuple[list[FeedRecord], list[FeedWithheld], int], list[EventDraft]]:
        """One page in one transaction: decide, compare with what was sent, number the changes, audit each."""
        store.lock_feed(caller.org_id)  # one bureau's sequence is numbered by one transaction at a time
        org = store.get_org(caller.org_id)
        now = self.clock.now()
        records: list[FeedRecord] = []
        withheld: list[FeedWithheld] = []
        events: list[EventDraft] = []
        for lender, case_id in page:
            case = store.get_case(lender, case_id)
            if case is None:
                continue
            kw: dict[str, Any] = {"purpose": PURPOSE, "case_id": case.case_id, "borrower_id": case.borrower_id,
                                  "lender": case.lender_id, "now": now}
            evidence = Evidence(store.loan_values(case), store.contact_history(case))
            live = [m for m in store.mandates_for(caller.org_id, case_id) if m.lender_id == lender]  # fresh
            verdict = decide_read(self.bundle, org, case, live, PURPOSE, now, evidence)
            previous = store.last_furnished(caller.org_id, lender, case_id)
            release, rule = verdict.release, verdict.rule
            if verdict.code == Code.CASE_CLOSED and previous is not None:
                # The mandate ends with the case (DESIGN.md §2), but an account the bureau holds must be
                # updated with how it ended (FCRA §623(a)(2); 征信业管理条例 Art. 16): one final record, with the
                # same field set, through the same live mandate; nothing after it unless it changes again.
                # The same decision as every record (consent, obsolescence, erasure...), only not ended by closure.
                verdict = decide_read(self.bundle, org, case, live, PURPOSE, now, evidence, final_status=True)
                release, rule = verdict.release, "credit_reporting.final_status"
            if not verdict.allowed:
                release = None
            if release is None:
                events.append(self._event(caller, "deny", verdict.code, verdict.rule, **kw))
                continue
            fields = self._record_fields(caller, store, case, release, evidence, now)
            condition = "XB" if case.disputed else ("XH" if previous and previous[2] in ("XB", "XH") else "")
            fields["compliance_condition"] = condition
            unfit = metro2.problem(fields) if case.jurisdiction == "US" else None
            if unfit is not None:
                events.append(self._event(caller, "deny", unfit, "credit_reporting.format", **kw))
                withheld.append(FeedWithheld(case.case_id, unfit))
                continue
            digest = self._digest(case, {k: v for k, v in fields.items() if k not in FURNISHER_FIELDS})
            if previous is None or previous[1] != digest:
                seq = store.record_furnished(caller.org_id, lender, case_id, digest, condition, rfc3339(now))
            elif previous[0] > since:
                seq = previous[0]  # sent before but after the bureau's cursor: the bureau may not have it
            else:
                continue  # the bureau has exactly this
            records.append(FeedRecord(seq, case.case_id, case.loan_id, case.jurisdiction, fields))
            events.append(self._event(caller, "allow", Code.OK, f"{rule};seq={seq}",
                                      fields=sorted(fields), **kw))
        return (records, withheld, store.feed_head(caller.org_id)), events

    def _record_fields(self, caller: Caller, store: UnitOfWork, case: CaseRow, release: Any, evidence: Evidence,
                       now: datetime) -> dict[str, str]:
        """The released fields as text, plus what the jurisdiction's format needs that is derived from them."""
        local_day = self.local_today(case, now)
        raw = self._plain_values(case, release, local_day, store, evidence.loan)
        values = self._released(release, raw, caller.org_id)
        values.update(self._released(release, store.unsealer(case, release.encrypted)(), caller.org_id))
        values["lender"] = case.lender_id  # the furnisher the bureau files the account under
        if case.jurisdiction == "US":
            lender = store.get_org(case.lender_id)  # Metro 2's header: the lender's registered name and address
            values["furnisher_name"] = lender.name if lender else ""
            values["furnisher_address"] = (lender.address or "") if lender else ""
            values["furnisher_telephone"] = (lender.telephone or "") if lender else ""
        if case.jurisdiction == "CN":
            # 征信: the consent record's reference, the prior-notice date, overdue periods (months, rounded up).
            values["consent_reference"] = f"{case.lender_id}/{case.case_id}/credit_reporting"
            dpd = int(values.get("days_past_due", "0") or 0)
            values["overdue_periods"] = str((dpd + 29) // 30)
        return values

    def _digest(self, case: CaseRow, fields: dict[str, str]) -> bytes:
        """Keyed, so the stored digest says nothing about the values to anyone without the gateway's key."""
        doc = json.dumps({"case": [case.lender_id, case.case_id], "fields": fields}, sort_keys=True,
                         ensure_ascii=False, separators=(",", ":"))
        return hmac.new(self.pseudonym_key, b"custos/furnished\n" + doc.encode(), hashlib.sha256).digest()
