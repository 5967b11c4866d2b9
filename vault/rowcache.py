"""The row cache both backends share: rows memoised until the database's change counter moves.

Each backend keeps a counter (table `generation`) that triggers bump in the
same transaction as any change to a cached table, whoever writes. A cache
dict belongs to one value of the counter and is replaced whole when a newer
one is seen, so a row read before a change and stored late lands in the
dropped dict, never in the live one. A dict holds at most CACHE_ENTRIES
rows, and beside them at most MEMO_ENTRIES values derived from them (`Rows`):
beyond that the least recently used one goes, one at a time, so a
working set larger than the cache costs misses, never a cache emptied whole
and refilled (issue 13). Only ciphertext and non-PI rows are
held, never plaintext personal data (plus each borrower's unwrapped data key,
see the stores' `_opener`); values are immutable (frozen rows, tuples,
read-only mappings, closures).
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

R = TypeVar("R")
CACHE_ENTRIES = 65536  # rows, shared by all reader threads; ~5 entries per case read
MEMO_ENTRIES = 1 << 20  # values derived from rows (a read's grant: one per party, case and purpose), apart


class Rows(OrderedDict[tuple[Any, ...], Any]):
    """One generation's rows, and beside them (`memos`) what was derived from them, each bounded on its own.

    Apart because they are not alike: a case's rows are about five entries
    that one decision reads, a grant is one small entry that every later read
    of the case uses. A working set of a million cases is a million grants
    (`MEMO_ENTRIES`; about 2.3 KiB of memory per case held, 2.3 GiB at 10^6,
    measured in bench/README.md), and only the rows of its latest misses.
    Both go with the generation.
    """

    def __init__(self) -> None:
        super().__init__()
        self.memos: OrderedDict[tuple[Any, ...], Any] = OrderedDict()


def put(rows: OrderedDict[tuple[Any, ...], Any], key: tuple[Any, ...], value: Any, limit: int | None = None) -> None:
    """Keep a value; beyond the limit (CACHE_ENTRIES) the least recently used entry goes (readers race: never an error)."""
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
    """Rows for all reader threads, tagged with the counter value they are at least as new as."""

    def __init__(self, watch: Stamp | None = None) -> None:
        # The embedded store's WAL-index watch: no commit since the last counter read means no SQL.
        self._watch = watch
        self._lock = threading.Lock()
        # (stamp read before `generation` was, generation, its rows), replaced whole on a newer generation.
        self._state: tuple[bytes | None, int, Rows] = (None, -1, Rows())

    def current(self, read_generation: Callable[[], int]) -> Rows | None:
        """The dict as fresh as a new SELECT now; None if this reader saw an older generation than the cache."""
        stamp = self._watch.stamp() if self._watch is not None else None
        known, _, rows = self._state
        if stamp is not None and stamp == known:
            return rows  # no commit by anyone since the generation behind `rows` was read
        seen = read_generation()  # after the stamp: at least as new as the state the stamp shows
        with self._lock:
            known, generation, rows = self._state
            if seen > generation:
                generation, rows = seen, Rows()
            if seen != generation:
                return None
            self._state = (stamp, generation, rows)
            return rows

    def assumed(self) -> tuple[int, Rows] | None:
        """The live dict and its generation, unchecked (None before any generation was seen).

        For a caller that proves freshness later, at its commit: the audit log
        refuses events decided on a generation that is no longer current
        (`gateway.core.ports.StaleView`).
        """
        _, generation, rows = self._state
        if generation < 0:
            return None
        return generation, rows

    def observe(self, seen: int) -> None:
        """A generation read elsewhere (inside an audit commit): a newer one drops the rows at once."""
        with self._lock:
            _, generation, _ = self._state
            if seen > generation:
                self._state = (None, seen, Rows())


class Cached(Protocol):
    _rows: Rows | None


def key_of(read: Callable[..., Any], *args: Any) -> tuple[Any, ...]:
    """The row-cache key of a `cached` read with these arguments (for a read that fills others' entries)."""
    return (read.__name__, *args)


def cached(fn: Callable[..., R]) -> Callable[..., R]:
    """Memoise a read in the request's row cache (`self._rows`, picked by the store's refresh)."""

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
            put(rows, key, value)
            return value

    return wrapper


class CachedView:
    """One request's view of a store through a shared RowCache (or none: every read asks the database)."""

    _shared: RowCache | None = None
    _rows: Rows | None = None

    def _generation(self) -> int:
        raise NotImplementedError

    def refresh(self) -> None:
        """Start of a request: pick the row cache that is as fresh as a new SELECT at this moment."""
        if self._shared is not None:
            self._rows = self._shared.current(self._generation)

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
            return get(self._rows.memos, key)
        except KeyError:
            return None

    def remember(self, key: tuple[Any, ...], value: Any) -> None:
        """Keep a value derived only from cached rows; it is dropped with them on the next change."""
        if self._rows is not None:
            put(self._rows.memos, key, value, MEMO_ENTRIES)
