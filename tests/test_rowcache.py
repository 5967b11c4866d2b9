"""vault/rowcache.py: bounded LRU dicts kept fresh per case (or whole) as the change counter moves; `cached` reads."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import pytest

from tests.conftest import Env
from vault.rowcache import MEMO_ENTRIES, CachedView, Change, RowCache, Rows, cached, get, key_of, put, scoped


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


# ------------------------------------------------------------------ per-case invalidation (issue 24)


class Book(CachedView):
    """A store whose reads are filed by case and borrower, and whose changes are told per case."""

    def __init__(self, shared: RowCache) -> None:
        self._shared = shared
        self.generation = 1
        self.changed: list[Change] | None = []
        self.version: dict[str, int] = {}
        self.asked: list[int] = []

    def _generation(self) -> int:
        return self.generation

    def _changes(self, since: int) -> list[Change] | None:
        self.asked.append(since)
        return self.changed

    @scoped("case", 1)
    def unit_case(self, lender: str, case_id: str) -> tuple[str, int]:
        return (case_id, self.version.get(case_id, 0))

    @scoped("borrower", 0, 1)
    def unit_borrower(self, lender: str, borrower: str) -> tuple[str, int]:
        return (borrower, self.version.get(borrower, 0))

    @cached
    def unit_unscoped(self, n: int) -> tuple[int, int]:
        return (n, self.version.get(str(n), 0))


def test_a_change_drops_the_changed_cases_entries_and_keeps_every_other() -> None:
    cache = RowCache()
    book = Book(cache)
    book.refresh()
    for case in ("C-1", "C-2"):
        book.unit_case("L", case)
        book.remember(("grant", case), f"grant {case}", case)
    book.unit_borrower("L", "B-1")
    book.unit_borrower("L", "B-2")
    book.unit_unscoped(7)
    book.remember(("anything",), "derived from anything")
    rows = book._rows
    assert rows is not None
    book.version.update({"C-1": 1, "B-1": 1, "7": 1})
    book.generation, book.changed = 2, [("L", "C-1", "B-1", "LN-1")]  # C-1 changed; its borrower is B-1
    book.refresh()
    assert book._rows is rows and rows.generation == 2 and book.asked == [1]  # the same dict, advanced
    assert book.unit_case("L", "C-1") == ("C-1", 1) and book.memo(("grant", "C-1")) is None
    assert book.unit_borrower("L", "B-1") == ("B-1", 1)
    assert book.unit_unscoped(7) == (7, 1) and book.memo(("anything",)) is None  # no case's: goes at every change
    book.version.update({"C-2": 1, "B-2": 1})  # not told as changed: still served from the cache
    assert book.unit_case("L", "C-2") == ("C-2", 0) and book.memo(("grant", "C-2")) == "grant C-2"
    assert book.unit_borrower("L", "B-2") == ("B-2", 0)


def test_a_change_of_no_one_case_replaces_the_rows_whole() -> None:
    cache = RowCache()
    book = Book(cache)
    book.refresh()
    book.unit_case("L", "C-2")
    book.remember(("grant", "C-2"), "g", "C-2")
    rows = book._rows
    book.generation, book.changed = 2, None  # an org, a deletion, a retired KEK, or too many cases at once
    book.refresh()
    assert book._rows is not rows and book._rows is not None and len(book._rows) == 0
    assert book.memo(("grant", "C-2")) is None


def test_a_row_read_before_a_change_is_not_kept_once_the_cache_has_moved_past_it() -> None:
    """The late store of a stale row: read at generation 1, stored after the drop for generation 2."""
    cache = RowCache()
    early, late = Book(cache), Book(cache)
    early.refresh()
    stale = early.unit_case("L", "C-1")  # a miss at generation 1 (kept)
    early._rows.pop(("unit_case", "L", "C-1"))  # type: ignore[union-attr]  # as if its store came only later
    late.generation = early.generation = 2
    late.changed = [("L", "C-1", "B-1", "LN-1")]
    late.refresh()  # the change is dropped: C-1's entries go
    assert early._rows is late._rows and early._at == 1
    early._rows.keep(("unit_case", "L", "C-1"), stale, early._at)  # type: ignore[union-attr]
    late.version["C-1"] = 1
    assert late.unit_case("L", "C-1") == ("C-1", 1)  # read again, not the stale row
    early.remember(("grant", "C-1"), "stale grant", "C-1")
    assert late.memo(("grant", "C-1")) is None


def test_evicted_entries_leave_the_index_that_files_them(monkeypatch: pytest.MonkeyPatch) -> None:
    from vault import rowcache

    monkeypatch.setattr(rowcache, "CACHE_ENTRIES", 4)
    monkeypatch.setattr(rowcache, "MEMO_ENTRIES", 4)
    book = Book(RowCache())
    book.refresh()
    for i in range(100):
        book.unit_case("L", f"C-{i}")
        book.remember(("grant", i), i, f"C-{i}")
    rows = book._rows
    assert rows is not None and len(rows) == 4 and len(rows.memos) == 4
    assert sum(map(len, rows._filed.values())) == 4 and sum(map(len, rows._memos_filed.values())) == 4


# ------------------------------------------------------------------ the gateway's cache, both backends


def _decisions(env: Env, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The case refs each read decides again (a grant not found in the cache)."""
    core = env.gw.core
    decided: list[str] = []
    decide = core._grant

    def counted(caller: Any, case_ref: str, purpose: str, now: Any) -> Any:
        decided.append(case_ref)
        return decide(caller, case_ref, purpose, now)

    monkeypatch.setattr(core, "_grant", counted)
    return decided


def _read(env: Env, cases: tuple[str, ...], times: int = 3) -> None:
    for case in cases:
        for _ in range(times):
            assert env.client("lender-a").get_case(case, "servicing").case_id == case


def _live(env: Env) -> Rows:
    state = env.gw.vault._rows.assumed()
    assert state is not None
    return state[1]


def test_a_write_to_one_case_leaves_every_other_cases_cached_entries(seeded: Env,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    cases = ("C-3", "C-4", "C-5")
    _read(seeded, cases)
    decided = _decisions(seeded, monkeypatch)
    before = _live(seeded)
    assert ("get_case", "lender-a", "C-4") in before
    seeded.client("lender-a").set_stage("C-3", "early_warning")  # one per-case write (`lender stage`)
    _read(seeded, cases)
    assert decided == ["C-3"]  # C-4 and C-5 still read from their cached grants
    assert _live(seeded) is before and ("get_case", "lender-a", "C-4") in before
    assert seeded.client("lender-a").get_case("C-3", "servicing").stage == "early_warning"
    seeded.client("lender-a").set_flags("C-5", disputed=True)  # `lender flag`
    seeded.client("lender-a").record_notice("C-4", "2026-11-01")  # `lender notice`
    _read(seeded, cases)
    assert decided == ["C-3", "C-4", "C-5"]


def test_a_borrowers_change_drops_each_of_its_cases(seeded: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """C-1 and C-2 share borrower B-1: erasing it changes both, and C-3 stays cached."""
    cases = ("C-1", "C-2", "C-3")
    _read(seeded, cases)
    decided = _decisions(seeded, monkeypatch)
    assert seeded.client("lender-a").erase("B-1").state == "erased"
    _read(seeded, cases)
    assert decided == ["C-1", "C-2"]
    assert seeded.client("lender-a").get_case("C-1", "servicing").erasure == "erased"


def test_an_org_change_or_a_retired_kek_still_drops_everything(seeded: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway import cli

    cases = ("C-3", "C-4")
    _read(seeded, cases)
    decided = _decisions(seeded, monkeypatch)
    assert cli.main(["org", "disable", str(seeded.data), "--id", "agency-2"]) == 0  # another org, another process
    _read(seeded, cases)
    assert decided == ["C-3", "C-4"]
    seeded.gw.vault.audit.run(lambda repo: (repo.touch_generation(), []))  # as `keys retire` does first
    _read(seeded, cases)
    assert decided == ["C-3", "C-4", "C-3", "C-4"]
