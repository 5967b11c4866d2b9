"""The shapes of the client's most used results, for mypy and for the reader.

They are TypedDicts, not classes: a result is the plain dict it always was
(`rec["fields"]`, `json.dumps(rec)` keep working), and the type names the
keys and what each holds. At run time nothing changes.
"""

# No `from __future__ import annotations`: TypedDict reads NotRequired from evaluated annotations only (3.11),
# and `__required_keys__` must be right for callers that check a result's shape at run time.
from typing import Any, Literal, NotRequired, TypedDict, final


class CaseRecord(TypedDict):
    """`get_case`: the fields the policy released for this purpose, and the rules that released them."""

    case_id: str
    purpose: str
    stage: str
    fields: dict[str, str]
    rules: list[str]
    erasure: NotRequired[str]  # present only when an erasure is scheduled or done


class PulledCase(TypedDict):
    """One case of a work list: a `CaseRecord` with the lender it belongs to (case ids are unique per lender)."""

    case_id: str
    lender_id: str
    purpose: str
    stage: str
    fields: dict[str, str]
    rules: list[str]


@final  # so that `"record" in item` narrows a PullItem for mypy
class PullRecord(TypedDict):
    """A case to work: the case itself is under `item["record"]`, not at the top of the item."""

    record: PulledCase
    cursor: str


@final  # so that `"record" in item` narrows a PullItem for mypy
class PullRemoved(TypedDict):
    """A case that left the work list since the last pull (only with `since`); `code` says why."""

    removed: str  # the case id
    lender_id: str
    code: str
    cursor: str


@final  # so that `"record" in item` narrows a PullItem for mypy
class PullEnd(TypedDict):
    """The last item of a complete pull: keep its cursor for the next one."""

    cursor: str
    end: Literal[True]


PullItem = PullRecord | PullRemoved | PullEnd
"""One item of `pull_cases`: tell them apart by key (`"record" in item`, `"removed" in item`, `"end" in item`)."""


class Rejected(TypedDict):
    """A line the gateway refused: its number (from 1), the stable code and a reason without the line's values."""

    line: int
    code: str
    reason: str


class ImportResult(TypedDict):
    """`import_lines` / `import_file`: what was stored, what was there already, and what was refused."""

    imported: int
    already_imported: int
    rejected_total: int  # may exceed len(rejected): the gateway lists only the first ones
    rejected: list[Rejected]
    through_line: int


class UpdateResult(TypedDict):
    """`update_lines` / `update_file`: updates applied, lines that changed nothing (the same line again, or values
    the account already holds), and what was refused (`STALE_UPDATE` for an as_of before the last applied)."""

    updated: int
    unchanged: int
    rejected_total: int  # may exceed len(rejected): the gateway lists only the first ones
    rejected: list[Rejected]
    through_line: int


FeedRecord = dict[str, Any]
"""One record of `pull_feed`, flat: `seq` (int), `case_id`, `loan_id`, `jurisdiction`, then every released field
by name. A plain dict: the released fields depend on the policy, so no fixed set of keys can name them."""


class Withheld(TypedDict):
    """A record the bureau's format cannot carry (not numbered: it is sent once corrected)."""

    case_id: str
    code: str


class Feed(TypedDict):
    """`pull_feed`: the records changed since the cursor given, those withheld, and the cursor to keep."""

    records: list[FeedRecord]
    withheld: list[Withheld]
    cursor: str


class InclusionProof(TypedDict):
    """`inclusion_proof`: the audit hashing path from event `index`'s leaf to `root`, the tree of `tree_size`."""

    index: int
    tree_size: int
    leaf_hash: bytes
    root: bytes
    proof: list[bytes]
