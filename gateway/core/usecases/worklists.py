"""Work lists: every case mandated to a caller, streamed, and after the first pull only what changed.

An agency reading its portfolio one `GetCase` at a time pays gRPC's whole
per-call cost for each case, and a daily sync of the whole portfolio costs
the whole portfolio. `pull_cases` streams the records instead, each decided
and minimised exactly as `GetCase` decides it (`Reads._decide_grant`) and
each release audited with an event of its own (one commit per page); the
records of a page are released only once its events are durable.

Changes come from the store's change feed: every change that can change
what is released of a case (its decision columns, its borrower's or loan's
values, a mandate granted, recalled or lapsed) gives the case the next
number of one counter, in commit order (vault: triggers, one writer, or the
log's head lock). A pull reads the counter first and walks the feed up to
it, so a change committed during the pull is in the next one; each message's
cursor is the position after it, so an interrupted pull resumes without
repeats or gaps, after a restart too (the cursor holds feed numbers, not
memory). Cursors name the policy bundle they were made under: after a new
bundle every case is considered changed once.

With a cursor, a case the caller may no longer read (recalled, lapsed,
closed, erased, a stage it may not see) comes as `removed`, with the code
GetCase would give: the agency deletes its copy. A mandate's end passing is
a change once `lapse_mandates` (a scheduled job) marks it; until then the
read itself is refused, as GetCase refuses it. Values derived from the
calendar alone (days past due) are as of the pull that sent the record.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from ..errors import Code
from ..model import Caller, EventDraft, Org, rfc3339
from ..ports import UnitOfWork
from .reads import Grant, Reads, Released

PULL_PAGE = 256  # cases per page: one feed read, one audit commit
CURSOR_RE = re.compile(r"^w([0-9]{1,18})~([0-9a-f]{12})(?:~([A-Za-z0-9._:-]{1,64})/([A-Za-z0-9._:-]{1,64}))?$")


@dataclass(frozen=True)
class Pulled:
    """One message of a pull: a record, a removal, or (neither) the final cursor."""

    cursor: str
    lender_id: str = ""
    record: Released | None = None
    removed: str = ""
    code: str = ""


def bundle_tag(revision: str) -> str:
    """What a cursor names of the policy bundle it was made under."""
    return hashlib.sha256(revision.encode()).hexdigest()[:12]


def cursor_of(position: tuple[int, str, str], tag: str) -> str:
    seq, lender, case_id = position
    return f"w{seq}~{tag}" + (f"~{lender}/{case_id}" if case_id else "")


def parse_cursor(text: str) -> tuple[tuple[int, str, str], str] | None:
    """(feed position, bundle tag) of a cursor this gateway hands out; None if it is not one."""
    m = CURSOR_RE.fullmatch(text)
    if m is None:
        return None
    return (int(m.group(1)), m.group(3) or "", m.group(4) or ""), m.group(2)


class WorkLists(Reads):
    def pull_cases(self, caller: Caller, purpose: str, since: str = "") -> Iterator[Pulled]:
        """The caller's mandated cases for `purpose` (all, or those changed after `since`), then the cursor."""
        self._check_purpose(caller, purpose, "")
        org = self._standing(caller, purpose=purpose)
        if not self.bundle.mandate_required(org.kind, purpose):
            raise self._deny(caller, Code.PURPOSE_NOT_ALLOWED, "worklist.mandated_only", purpose=purpose)
        repo = self.reader()
        high = repo.feed_high_water()
        bundle = self.bundle
        tag = bundle_tag(bundle.revision)
        position: tuple[int, str, str] = (0, "", "")
        if since:
            parsed = parse_cursor(since)
            if parsed is None or parsed[0][0] > high + 1:
                raise self._deny(caller, Code.INVALID_CURSOR, "input", purpose=purpose)
            # Made under another policy bundle: what is released of every case may differ, so every case again.
            position = parsed[0] if parsed[1] == tag else (0, "", "")
        self.audit.append([self._event(caller, "allow", Code.OK, f"worklist.pull:from={position[0]}",
                                       purpose=purpose)])
        while True:
            org = self._standing(caller, purpose=purpose)  # per page: a fresh view, and a disabled org stops here
            repo = self.reader()
            page = repo.feed_changes(org.id, purpose, position, high, PULL_PAGE)
            if not page:
                break
            now = self.clock.now()
            items: list[Pulled] = []
            events: list[EventDraft] = []
            for seq, lender, case_id in page:
                cursor = cursor_of((seq, lender, case_id), tag)
                decided = self._pull_grant(caller, org, lender, case_id, purpose, now)
                if decided is None:
                    continue
                if isinstance(decided, Grant):
                    case = decided.case
                    values = self._values(caller, decided)
                    events.append(self._event(caller, "allow", Code.OK, decided.decision.rule, purpose=purpose,
                                              case_id=case.case_id, borrower_id=case.borrower_id, lender=case.lender_id,
                                              fields=decided.fields, now=now, head=decided.event_head))
                    items.append(Pulled(cursor, lender, Released(case.case_id, purpose, case.stage, values,
                                                                 decided.decision.rules)))
                elif since:
                    items.append(Pulled(cursor, lender, removed=case_id, code=decided[0]))
            if events:
                self.audit.append(events)  # the page's releases wait for their events to be durable
            yield from items
            position = page[-1]
        yield Pulled(cursor_of((high + 1, "", ""), tag))

    def _pull_grant(self, caller: Caller, org: Org, lender: str, case_id: str, purpose: str,
                    now: datetime) -> Grant | tuple[Code, str] | None:
        """GetCase's decision for one case of the feed (None: no such case or mandate), remembered as GetCase
        remembers it: with the rows it was decided from, so the next change drops it."""
        repo = self.reader()
        key = ("pull-grant", org.id, lender, case_id, purpose)
        grant: Grant | None = repo.memo(key)
        if grant is not None and grant.holds(self.bundle, now):
            return grant
        case = repo.get_case(lender, case_id)
        mandates = [m for m in repo.mandates_for(org.id, case_id) if m.lender_id == lender]
        if case is None or not mandates:
            return None
        decided = self._decide_grant(caller, org, case, mandates, purpose, now)
        if isinstance(decided, Grant):
            self._keep(key, decided, purpose)
        return decided

    def lapse_mandates(self) -> int:
        """Mark mandates past their last day (in every zone) as lapsed, so the change feed carries their end.

        Scheduled; the read itself is refused from the end of the last day on
        (decide_read), whenever this runs. A day's margin past the UTC day,
        since a mandate's last day is the borrower's local day.
        """
        now = self.clock.now()
        ended_before = (now.date() - timedelta(days=1)).isoformat()

        def work(store: UnitOfWork) -> tuple[int, list[EventDraft]]:
            return store.lapse_mandates(ended_before, rfc3339(now)), []

        return self.audit.run(work)
