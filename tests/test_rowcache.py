"""vault/rowcache.py: bounded LRU dicts, one per generation of the database's change counter, and `cached` reads."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import pytest

from vault.rowcache import MEMO_ENTRIES, CachedView, RowCache, Rows, cached, get, key_of, put


def test_put_keeps_the_bound_by_evicting_the_least_recently_used() -> None:
    rows: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
    for i in range(3):
        put(rows, ("k", i), i, limit=3)
    assert get(rows, ("k", 0)) == 0        # now the most recently used
    put(rows, ("k", 3), 3, limit=3)
    assert list(rows) == [("k", 2), ("k", 0), ("k", 3)]  # ("k", 1) went, one entry only
    with pytest.raises(KeyError):
        get(rows, ("k", 1))


class FakeWatch:
    def __init__(self) -> None:
        self.value: bytes | None = b"s1"

    def stamp(self) -> bytes | None:
        return self.value


def test_a_newer_generation_replaces_the_rows_whole_and_an_older_reader_gets_none() -> None:
    cache = RowCache()
    assert cache.assumed() is None
    first = cache.current(lambda: 1)
    assert first is not None
    put(first, ("row",), "v")
    assert cache.current(lambda: 1) is first
    second = cache.current(lambda: 2)
    assert second is not None and second is not first and ("row",) not in second
    assert cache.current(lambda: 1) is None  # a reader that saw an older counter must not fill the new dict
    assert cache.assumed() == (2, second)
    cache.observe(3)
    assumed = cache.assumed()
    assert assumed is not None and assumed[0] == 3 and assumed[1] is not second
    cache.observe(1)  # an older one changes nothing
    assert cache.assumed() == assumed


def test_an_unchanged_watch_stamp_skips_reading_the_counter() -> None:
    watch = FakeWatch()
    cache = RowCache(watch)
    reads: list[int] = []

    def read() -> int:
        reads.append(1)
        return 5

    rows = cache.current(read)
    assert cache.current(read) is rows and len(reads) == 1
    watch.value = b"s2"
    assert cache.current(read) is rows and len(reads) == 2


class Store(CachedView):
    def __init__(self, shared: RowCache | None, generation: int = 1) -> None:
        self._shared = shared
        self.generation = generation
        self.calls = 0

    def _generation(self) -> int:
        return self.generation

    @cached
    def case(self, case_id: str) -> tuple[str, int]:
        self.calls += 1
        return (case_id, self.calls)


def test_cached_reads_are_memoised_per_generation_and_uncached_without_a_shared_cache() -> None:
    store = Store(RowCache())
    store.refresh()
    assert store.case("C-1") == ("C-1", 1) and store.case("C-1") == ("C-1", 1) and store.calls == 1
    assert store._rows is not None and key_of(Store.case, "C-1") in store._rows
    store.generation = 2
    store.refresh()
    assert store.case("C-1") == ("C-1", 2)
    bare = Store(None)
    bare.refresh()
    assert bare.case("C-1") == ("C-1", 1) and bare.case("C-1") == ("C-1", 2)


def test_memos_live_beside_the_rows_and_go_with_them() -> None:
    store = Store(RowCache())
    assert store.memo(("grant",)) is None
    store.remember(("grant",), "g")     # no rows picked yet: nothing kept
    store.refresh()
    store.remember(("grant",), "g")
    assert store.memo(("grant",)) == "g"
    assert isinstance(store._rows, Rows) and ("grant",) not in store._rows
    assert store.assume() is None
    store.generation = 2
    store.refresh()
    assert store.memo(("grant",)) is None
    assert MEMO_ENTRIES > 0
