"""One sequence, one tree, whoever writes: the audit log takes its numbers from the database.

An operator command (`custos org add`, `org disable`) appends its event from
its own process while the gateway serves. Both write to audit.db; a number
the other took makes the INSERT fail whole, and the writer renumbers its batch
after the rows appended meanwhile, under the database's write lock.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from gateway.core.model import EventDraft
from gateway.tlog.merkle import Frontier, leaf_hash
from vault.backends import create
from vault.sqlite import SqliteVault


def _draft(tag: str, i: int) -> EventDraft:
    return EventDraft(org=f"org-{tag}", method="Test", purpose="", case_id=f"C-{i % 7}", borrower_id=f"B-{i % 5}",
                      decision="allow", code="OK", rule=f"{tag}:{i}", time="2026-11-30T00:00:00.000000Z",
                      trace_id="0" * 32)


def test_two_writers_on_one_log_keep_one_sequence_and_one_tree(tmp_path: Path) -> None:
    create(tmp_path / "data")
    a, b = SqliteVault(tmp_path / "data"), SqliteVault(tmp_path / "data")
    a.audit.index_every = b.audit.index_every = 16
    try:
        def write(v: SqliteVault, tag: str) -> None:
            for i in range(60):
                v.audit.append([_draft(tag, i), _draft(tag, i + 1000)] if i % 3 == 0 else [_draft(tag, i)])

        threads = [threading.Thread(target=write, args=(v, t)) for v, t in ((a, "a"), (b, "b"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        rows = list(a.audit.reads().audit_query())
        assert [r.seq for r in rows] == list(range(160))
        assert all(json.loads(r.leaf)["seq"] == r.seq for r in rows)
        rebuilt = Frontier()
        for r in rows:
            rebuilt.append(leaf_hash(r.leaf))
        # Each writer's head after its last commit is a prefix of the one tree; a third opening sees all of it.
        c = SqliteVault(tmp_path / "data")
        try:
            assert c.audit.head() == (160, rebuilt.root())
            for key in ("org-a", "org-b"):
                want = [r.seq for r in rows if json.loads(r.leaf)["org"] == key]
                assert [r.seq for r in c.audit.reads().audit_query(org=key)] == want
            for case in ("C-0", "C-3"):
                want = [r.seq for r in rows if json.loads(r.leaf)["case_id"] == case]
                assert [r.seq for r in c.audit.reads().audit_query(case_id=case)] == want
        finally:
            c.close()
    finally:
        a.close()
        b.close()


def test_operator_commands_are_audited_and_interleave_with_a_serving_gateway(seeded: Any, tmp_path: Path) -> None:
    """`custos org add` / `org disable` go through the core and append to the same log as the gateway."""
    from gateway import cli
    from gateway.tlog.verify import verify_log

    env = seeded
    reg = env.client("regulator-1")
    ids = tmp_path / "ids"
    assert cli.main(["org", "add", str(env.data), "--id", "agency-9", "--kind", "agency", "--name", "Nine",
                     "--licence-no", "L9", "--licence-expires", "2099-12-31", "--out", str(ids / "agency-9")]) == 0
    env.client("lender-a").assign("C-2", "agency-9", "collection", "2026-12-31")  # the gateway writes after it
    assert cli.main(["org", "add", str(env.data), "--id", "agency-9", "--kind", "agency", "--name", "Again",
                     "--licence-no", "L9", "--licence-expires", "2099-12-31", "--out", str(ids / "again")]) != 0
    assert cli.main(["org", "add", str(env.data), "--id", "bad id!", "--kind", "agency", "--name", "X",
                     "--out", str(ids / "bad")]) != 0
    assert cli.main(["org", "disable", str(env.data), "--id", "agency-9"]) == 0
    assert cli.main(["org", "disable", str(env.data), "--id", "nobody-here"]) != 0
    from custos_client import CustosClient, CustosClientError

    with CustosClient(env.addr, ids / "agency-9") as nine:
        try:
            nine.get_case("C-2", "collection")
        except CustosClientError as err:
            assert err.code == "ORG_DISABLED"
    events = reg.audit_query()
    operator = [(e.method, e.org, e.decision, e.code) for e in events if e.method.startswith("Operator")]
    assert operator[-5:] == [
        ("OperatorOrgAdd", "agency-9", "allow", "OK"),
        ("OperatorOrgAdd", "agency-9", "deny", "ORG_EXISTS"),
        ("OperatorOrgAdd", "", "deny", "INVALID_ORG_ID"),
        ("OperatorOrgDisable", "agency-9", "allow", "OK"),
        ("OperatorOrgDisable", "nobody-here", "deny", "ORG_NOT_FOUND"),
    ]
    assert all(e.data["rule"].startswith("operator:") for e in events if e.method.startswith("Operator"))
    # One sequence, one tree: the gateway's events and the commands' interleave and the log verifies.
    assert [e.seq for e in events] == list(range(len(events)))
    result = verify_log(reg.audit_events(), reg.checkpoint(), (env.data / "audit.vkey").read_text())
    assert result.size >= len(events)


def test_a_commit_that_raises_refuses_every_caller_of_its_batch(tmp_path: Path) -> None:
    """A backend's commit failing outside its own guard (here: the write lock) must not leave a caller
    believing its unit was stored: every item of the batch gets AUDIT_UNAVAILABLE, none a silent None."""
    from gateway.core.errors import Code, CustosError
    from vault.groupcommit import Queued

    create(tmp_path / "data")
    vault = SqliteVault(tmp_path / "data")

    class Broken:
        def __enter__(self) -> None:
            raise OSError("the lock file is gone")

        def __exit__(self, *_: object) -> None:
            pass

    try:
        vault.audit._write_lock = Broken()
        items: list[Queued[Any]] = [Queued(lambda _repo: ("stored", [_draft("x", 1)])) for _ in range(3)]
        for item in items:
            item.wake.acquire()
        vault.audit._pending, vault.audit._leading = list(items), True  # three callers queued for one batch
        vault.audit._lead(items[0])
        assert [(item.result, getattr(item.error, "code", None)) for item in items] == [
            (None, Code.AUDIT_UNAVAILABLE)] * 3
        assert all(isinstance(item.error, CustosError) for item in items)
        assert vault.audit.head()[0] == 0  # nothing was stored
    finally:
        vault.close()
