"""Use cases: each RPC's decision and enforcement, without any transport.

The pattern is always the same: establish the caller's standing, decide with
pure functions (policy, conduct rules), record the decision in the audit log,
and only then release. Denials are recorded too, with the code that denied.

The use cases are split by feature, each a module adding its group to the
shared `Context`; `Core` is all of them over one set of collaborators.
"""

from __future__ import annotations

from .contact import Contacts
from .context import Context
from .explain import Explainer
from .furnishing import FeedRecord, Furnishing
from .gatekeeping import Gatekeeping
from .lender import IMPORT_BATCH, IMPORT_BATCH_BYTES, MAX_REJECTIONS, ImportProgress, LenderActions
from .lifecycle import Lifecycle
from .litigation import Litigation, PacketContent
from .placements import Placements
from .reads import Grant, Reads, Released
from .supervision import Supervision
from .worklists import Pulled, WorkLists

__all__ = ["IMPORT_BATCH", "IMPORT_BATCH_BYTES", "MAX_REJECTIONS", "Context", "Core", "FeedRecord", "Grant", "ImportProgress",
           "PacketContent", "Pulled", "Released"]


class Core(Gatekeeping, Litigation, Furnishing, WorkLists, Reads, Placements, LenderActions, Lifecycle, Contacts, Explainer,
           Supervision):
    """Holds the collaborators; one instance serves every request."""
