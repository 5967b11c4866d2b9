"""The composition: `Core` is every feature of `usecases/` over one set of collaborators.

The features stay apart, one module each adding its group to the shared
`Context`; only this module knows all of them.
"""

from __future__ import annotations

from .usecases.account import Accounts, UpdateProgress
from .usecases.compliance import Compliance
from .usecases.contact import Contacts
from .usecases.context import Context
from .usecases.explain import Explainer
from .usecases.furnishing import FeedRecord, Furnishing
from .usecases.gatekeeping import Gatekeeping
from .usecases.lender import IMPORT_BATCH, IMPORT_BATCH_BYTES, MAX_REJECTIONS, ImportProgress, LenderActions
from .usecases.lifecycle import Lifecycle
from .usecases.litigation import Litigation, PacketContent
from .usecases.payments import Payments
from .usecases.performance import Performance
from .usecases.placements import Placements
from .usecases.plans import Plans
from .usecases.reads import Grant, Reads, Released
from .usecases.records import ProcessingRecords
from .usecases.supervision import Supervision
from .usecases.worklists import Pulled, WorkLists

__all__ = ["IMPORT_BATCH", "IMPORT_BATCH_BYTES", "MAX_REJECTIONS", "Context", "Core", "FeedRecord", "Grant", "ImportProgress",
           "PacketContent", "Pulled", "Released", "UpdateProgress"]


class Core(Gatekeeping, Litigation, Furnishing, WorkLists, Reads, Placements, Accounts, LenderActions, Lifecycle, Contacts,
           Explainer, Supervision, Performance, Plans, Payments, Compliance, ProcessingRecords):
    """Holds the collaborators; one instance serves every request."""
