"""EU (issue 26): the record of processing activities (GDPR Art. 30), `custos lender ropa`."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from ..errors import Code
from ..model import Caller, Org
from ..rules import ropa
from .context import Context


class ProcessingRecords(Context):
    def ropa(self, caller: Caller) -> dict[str, Any]:
        """The caller's record of processing activities, generated from its mandates in force today (UTC day).

        Generated, never kept: it cannot drift from the mandates. Audited like every read (no personal data in it:
        field names, organisations, counts).
        """
        lender = self._standing(caller, action="ropa")
        repo = self.reader()
        mandates = repo.mandates_of_lender(caller.org_id)
        cases = {c.case_id: c for c in repo.cases_of_lender(caller.org_id)}
        orgs: dict[str, Org | None] = {o: repo.get_org(o) for o in {m.org_id for m in mandates}}
        doc = ropa.build(self.bundle, lender, mandates, cases, orgs, self.clock.now().astimezone(UTC).date())
        self.audit.append([self._event(caller, "allow", Code.OK, f"ropa:activities={len(doc['activities'])}")])
        return doc
