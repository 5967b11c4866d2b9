"""Supervision: the regulator's audit queries and signed checkpoints.
"""

from __future__ import annotations

from collections.abc import Iterator

from .context import Context, _parse_time
from .errors import Code
from .importer import ID_RE
from .model import (
    AuditEntry,
    Caller,
    rfc3339,
)


class Supervision(Context):
    def audit_query(self, caller: Caller, case_id: str = "", org: str = "", borrower_id: str = "", since: str = "",
                    from_seq: int = 0) -> Iterator[AuditEntry]:
        self._standing(caller, kinds=("regulator",), purpose="supervision")
        for value in (case_id, org, borrower_id):
            if value and not ID_RE.fullmatch(value):
                raise self._deny(caller, Code.INVALID_ARGUMENT, "input", purpose="supervision")
        since_text = ""
        if since:
            ts = _parse_time(since)
            if ts is None:
                raise self._deny(caller, Code.INVALID_TIME, "input", purpose="supervision")
            since_text = rfc3339(ts)
        self.audit.append([self._event(caller, "allow", Code.OK, "supervision.query", purpose="supervision",
                                       case_id=case_id, borrower_id=borrower_id)])
        return self.reader().audit_query(case_id, org, borrower_id, since_text, max(from_seq, 0))

    def checkpoint(self, caller: Caller) -> tuple[str, int]:
        self._standing(caller, kinds=("regulator",), purpose="supervision")
        size, root = self.audit.head()
        return self.sign_checkpoint(size, root), size
