"""The row cache both backends share: rows memoised until a change could alter them.

Each backend keeps a counter (table `generation`) that triggers move in the
same transaction as any change to a cached table, whoever writes, and beside
it the scope of each change (table `cache_scope`: the case it numbers the
counter for, or ('', '') for a change that is not one case's: an org, a
deletion, a retired KEK). A reader that sees a newer counter asks which
cases changed since the one its cache is at and drops only their entries
(issue 24: one payment no longer empties every cache); a change of no one
case, or too many at once, still replaces the dict whole. Each entry is
filed under the scope it was read for (`Rows.keep`), and an entry read on
an older counter than the dict is at now is not kept, so a row read before
a change and stored late never outlives the drop. A dict holds at most
CACHE_ENTRIES rows, and beside them at most MEMO_ENTRIES values derived
from them (`Rows`): beyond that the least recently used one goes, one at a
time, so a working set larger than the cache costs misses, never a cache
emptied whole and refilled (issue 13). Only ciphertext and non-PI rows are
held, never plaintext personal data (plus each borrower's unwrapped data key,
see the stores' `_opener`); values are immutable (frozen rows, tuples,
read-only mappings, closures).
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

R = TypeVar("R")
CACHE_ENTRIES = 65536  # rows, shared by all reader threads; ~5 entries per case read
MEMO_ENTRIES = 1 << 20  # values derived from rows (a read's grant: one per party, case and purpose), apart
SCOPED_CHANGES = 1000  # more cases changed at once than this (an import): the dict is replaced whole instead

# What an entry is filed under: a case id (str), ("borrower"|"loan", lender, id), ORGS (only orgs' rows: goes
# only with the dict) or EVERY (read from what no one case scopes: goes at every change).
Tag = str | tuple[str, ...]
ORGS: Tag = ("orgs",)
EVERY: Tag = ("*",)
# One change since a generation: (lender, case id, the case's borrower, its loan); no borrower: the case is gone.
Change = tuple[str, str, str | None, str | None]
ReadChanges = Callable[[int], "list[Change] | None"]  # the changes after a generation; None: drop everything
_SCOPES: dict[str, tuple[str, tuple[int, ...]]] = {}  # a cached read's name -> its tag's kind and arguments


def register(name: str, kind: str, *positions: int) -> None:
    """File a read's entries by the arguments at `positions`: kind "case" (the case id), "borrower" or "loan"
    ((lender, id)), or "orgs" (no position). A read not registered goes at every change."""
    _SCOPES[name] = (kind, positions)


def scoped_changes(found: Sequence[Sequence[Any]]) -> list[Change] | None:
    """The changes as the row cache drops them; None (drop everything) for a change of no one case (('', '')),
    of a case no longer there, or of more cases than dropping them one by one is worth."""
    if len(found) > SCOPED_CHANGES:
        return None
    changes: list[Change] = []
    for lender, case_id, borrower, loan in found:
        if not case_id or borrower is None:
            return None
        changes.append((str(lender), str(case_id), str(borrower), str(loan)))
    return changes


def tag_of(key: tuple[Any, ...]) -> Tag:
    """The tag of a row's key (its read's name and arguments, `key_of`)."""
    scope = _SCOPES.get(key[0])
    if scope is None:
        return EVERY
    kind, positions = scope
    if kind == "orgs":
        return ORGS
    if kind == "case":
        return str(key[1 + positions[0]])
    return (kind, *(str(key[1 + i]) for i in positions))


class Rows(OrderedDict[tuple[Any, ...], Any]):
    """The rows as of `generation`, and beside them (`memos`) what was derived from them, each bounded on its own.

    Apart because they are not alike: a case's rows are about five entries
    that one decision reads, a grant is one small entry that every later read
    of the case uses. A working set of a million cases is a million grants
    (`MEMO_ENTRIES`; about 2.3 KiB of memory per case held, 2.3 GiB at 10^6,
    measured in bench/README.md), and only the rows of its latest misses.
    Entries are filed by tag (`_filed`), so a change drops just its case's;
    `keep` and `drop` take `lock`, a hit takes none.
    """

    def __init__(self, generation: int = -1) -> None:
        super().__init__()
        self.generation = generation
        self.lock = threading.Lock()
        self.memos: OrderedDict[tuple[Any, ...], tuple[Tag, Any]] = OrderedDict()  # key -> (tag, value)
        self._filed: dict[Tag, list[tuple[Any, ...]]] = {}
        self._memos_filed: dict[Tag, list[tuple[Any, ...]]] = {}

    def keep(self, key: tuple[Any, ...], value: Any, at: int, tag: Tag | None = None, memo: bool = False) -> None:
        """Keep a value read on a view at generation `at`; none if the dict has moved on since (it may be stale)."""
        with self.lock:
            if at != self.generation:
                return
            if memo:
                table: OrderedDict[tuple[Any, ...], Any] = self.memos
                filed, bound, tag = self._memos_filed, MEMO_ENTRIES, EVERY if tag is None else tag
                stored: Any = (tag, value)
            else:
                table, filed, bound, tag = self, self._filed, CACHE_ENTRIES, tag_of(key)
                stored = value
            if key in table:
                _unfile(filed, table[key][0] if memo else tag, key)
            table[key] = stored
            if tag is not ORGS:
                filed.setdefault(tag, []).append(key)
            while len(table) > bound:
                old, was = table.popitem(last=False)
                _unfile(filed, was[0] if memo else tag_of(old), old)

    def drop(self, changes: list[Change], generation: int) -> None:
        """Forget every entry these changes could alter (and what no case scopes); now at `generation`."""
        with self.lock:
            tags: list[Tag] = [EVERY]
            for lender, case_id, borrower, loan in changes:
                tags.append(case_id)
                if borrower is not None:
                    tags.append(("borrower", lender, borrower))
                if loan is not None:
                    tags.append(("loan", lender, loan))
            for tag in tags:
                for key in self._filed.pop(tag, ()):
                    self.pop(key, None)
                for key in self._memos_filed.pop(tag, ()):
                    self.memos.pop(key, None)
            self.generation = generation


def _unfile(filed: dict[Tag, list[tuple[Any, ...]]], tag: Tag, key: tuple[Any, ...]) -> None:
    keys = filed.get(tag)
    if keys is None:
        return
    try:
        keys.remove(key)
    except ValueError:
        return
    if not keys:
        del filed[tag]


def put(rows: OrderedDict[tuple[Any, ...], Any], key: tuple[Any, ...], value: Any, limit: int | None = None) -> None:
    """Keep a value in a bare LRU dict; beyond the limit (CACHE_ENTRIES) the least recently used entry goes."""
    rows[key] = value
    bound = CACHE_ENTRIES if limit is None else limit
    while len(rows) > bound:
        try:
            rows.popitem(last=False)
        except KeyError:  # another thread emptied it meanwhile
            break


def get(rows: OrderedDict[tuple[Any, ...], Any], key: tuple[Any, ...]) -> Any:
    """A kept value, now the most recently used; raises KeyError on a miss."""
    value = rows[key]
    try:
        rows.move_to_end(key)
    except KeyError:  # evicted by another thread since: the value read is still right for this generation
        pass
    return value


class Stamp(Protocol):
    def stamp(self) -> bytes | None: ...


class RowCache:
    """Rows for all reader threads, at the newest counter value seen (`Rows.generation`)."""

    def __init__(self, watch: Stamp | None = None) -> None:
        # The embedded store's WAL-index watch: no commit since the last counter read means no SQL.
        self._watch = watch
        self._lock = threading.Lock()
        # (stamp read before the generation was, the rows at that generation).
        self._state: tuple[bytes | None, Rows] = (None, Rows())

    @staticmethod
    def _advance(rows: Rows, seen: int, changes: ReadChanges | None) -> Rows:
        """The rows at `seen`: only the changed cases' entries dropped, or a new dict if that cannot be told."""
        if changes is None or rows.generation < 0:
            return Rows(seen)
        changed = changes(rows.generation)  # read after `seen` was: it has every change up to it
        if changed is None:
            return Rows(seen)
        rows.drop(changed, seen)
        return rows

    def current(self, read_generation: Callable[[], int], changes: ReadChanges | None = None) -> Rows | None:
        """The dict as fresh as a new SELECT now; None if this reader saw an older generation than the cache.

        Without `changes` a newer generation replaces the dict whole.
        """
        stamp = self._watch.stamp() if self._watch is not None else None
        known, rows = self._state
        if stamp is not None and stamp == known:
            return rows  # no commit by anyone since the generation behind `rows` was read
        seen = read_generation()  # after the stamp: at least as new as the state the stamp shows
        with self._lock:
            known, rows = self._state
            if seen > rows.generation:
                rows = self._advance(rows, seen, changes)
            if seen != rows.generation:
                return None
            self._state = (stamp, rows)
            return rows

    def assumed(self) -> tuple[int, Rows] | None:
        """The live dict and its generation, unchecked (None before any generation was seen).

        For a caller that proves freshness later, at its commit: the audit log
        refuses events decided on a generation that is no longer current
        (`gateway.core.ports.StaleView`).
        """
        _, rows = self._state
        generation = rows.generation
        if generation < 0:
            return None
        return generation, rows

    def observe(self, seen: int, changes: ReadChanges | None = None) -> None:
        """A generation read elsewhere (inside an audit commit): the changed entries go at once."""
        with self._lock:
            _, rows = self._state
            if seen > rows.generation:
                self._state = (None, self._advance(rows, seen, changes))


class Cached(Protocol):
    _rows: Rows | None
    _at: int


def key_of(read: Callable[..., Any], *args: Any) -> tuple[Any, ...]:
    """The row-cache key of a `cached` read with these arguments (for a read that fills others' entries)."""
    return (read.__name__, *args)


def cached(fn: Callable[..., R]) -> Callable[..., R]:
    """Memoise a read in the request's row cache (`self._rows`, picked by the store's refresh).

    Filed as `register`ed for its name; a read not registered goes at every change.
    """

    @functools.wraps(fn)
    def wrapper(self: Cached, *args: Any) -> R:
        rows = self._rows
        if rows is None:
            return fn(self, *args)
        key = key_of(fn, *args)
        try:
            return get(rows, key)  # type: ignore[no-any-return]
        except KeyError:
            value = fn(self, *args)
            rows.keep(key, value, self._at)
            return value

    return wrapper


def scoped(kind: str, *positions: int) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """`cached`, its entries filed by its arguments at `positions` (see `register`)."""

    def decorate(fn: Callable[..., R]) -> Callable[..., R]:
        register(fn.__name__, kind, *positions)
        return cached(fn)

    return decorate


class CachedView:
    """One request's view of a store through a shared RowCache (or none: every read asks the database)."""

    _shared: RowCache | None = None
    _rows: Rows | None = None
    _at: int = -1  # the generation `_rows` was at when picked: what this request reads is at least as new

    def _generation(self) -> int:
        raise NotImplementedError

    def _changes(self, since: int) -> list[Change] | None:
        """The cases changed after generation `since` (see `Change`); None: drop everything (the default)."""
        return None

    def _pick(self, rows: Rows | None, at: int | None = None) -> None:
        self._rows = rows
        self._at = -1 if rows is None else rows.generation if at is None else at

    def refresh(self) -> None:
        """Start of a request: pick the row cache that is as fresh as a new SELECT at this moment."""
        if self._shared is not None:
            self._pick(self._shared.current(self._generation, self._changes))

    def assume(self) -> int | None:
        """A view without asking the database; its generation, for the audit commit to check (None: checked now).

        This default checks at once (`refresh`): right for a store whose check
        costs no round trip. A store whose does returns the cache's generation
        unchecked, and the audit log refuses events decided on it if it is no
        longer current.
        """
        self.refresh()
        return None

    def memo(self, key: tuple[Any, ...]) -> Any:
        """A value the core remembered in this request's row cache (None without one or on a miss)."""
        if self._rows is None:
            return None
        try:
            return get(self._rows.memos, key)[1]
        except KeyError:
            return None

    def remember(self, key: tuple[Any, ...], value: Any, case: str = "") -> None:
        """Keep a value derived only from cached rows: those of the case `case` (by id) and orgs' rows, or of
        anything (no case given); it is dropped with them on the next change that could alter it."""
        if self._rows is not None:
            self._rows.keep(key, value, self._at, case or EVERY, memo=True)
