"""`make run`: a demo data directory with organisations and synthetic cases, served.

First run creates DATA_DIR (keys, CA, demo organisations with identity bundles
under DATA_DIR/identities/, synthetic cases mandated to an agency); later runs
serve the same directory again.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from gateway import cli, synth

ORGS = [
    ("lender-a", "lender", "Demo Lender A", []),
    ("lender-b", "lender", "Demo Lender B", []),
    ("agency-1", "agency", "Demo Collections One", ["--licence-no", "LIC-DEMO-1", "--licence-expires", "2030-12-31"]),
    ("agency-2", "agency", "Demo Collections Two", ["--licence-no", "LIC-DEMO-2", "--licence-expires", "2030-12-31"]),
    ("lawfirm-1", "law_firm", "Demo Counsel LLP", ["--licence-no", "BAR-DEMO-1", "--licence-expires", "2030-12-31"]),
    ("bureau-1", "bureau", "Demo Credit Bureau", []),
    ("regulator-1", "regulator", "Demo Supervisory Authority", []),
]


def _run(argv: list[str]) -> None:
    if cli.main(argv) != 0:
        raise SystemExit(f"demo set-up failed at: custos {argv[0]} {argv[1] if len(argv) > 1 else ''}")


def create(data_dir: Path) -> None:
    _run(["init", str(data_dir)])
    for org_id, kind, name, extra in ORGS:
        _run(["org", "add", str(data_dir), "--id", org_id, "--kind", kind, "--name", name,
              "--out", str(data_dir / "identities" / org_id), *extra])


def updates_file(data_dir: Path) -> Path:
    return data_dir.parent / f"{data_dir.name}-updates.jsonl"


def seed(gateway: str, data_dir: Path) -> None:
    from custos_client import CustosClient

    ids = data_dir / "identities"
    stages = ["reminder", "letter", "field_visit", "early_warning", "litigation"]
    lines = [synth.case_line(i, stage=stages[i % len(stages)]) for i in range(1, 21)]
    # The notices an agency's contact needs (issue 26: the US validation notice, the CN notice that collection is
    # outsourced), given a week ago; C-20 has none, so an agency's contact on it is refused (NOTICE_REQUIRED).
    given = (date.today() - timedelta(days=7)).isoformat()
    for line in lines[:-1]:
        line["notices"] = {"validation": given, "outsourcing": given}
    with CustosClient(gateway, ids / "lender-a") as lender:
        lender.import_lines(synth.jsonl(lines).splitlines())
        until = (date.today() + timedelta(days=90)).isoformat()
        # Every mandate names its agreement and impact assessment (CN requires both: PIPL Art. 21, 55-56).
        records = {"agreement": "AG-DEMO-1", "pia": "PIA-DEMO-1"}
        for i in range(1, 11):
            lender.assign(f"C-{i}", "agency-1", "collection", until, commission="0.18", **records)  # 18 % recovered
        lender.escalate("C-16", "lawfirm-1", **records)  # counsel's case: a signed litigation packet
        for case in ("C-13", "C-14"):  # CN cases a bureau may be furnished, once told in advance
            lender.assign(case, "bureau-1", "credit_reporting", until, **records)
            lender.record_notice(case, (date.today() - timedelta(days=1)).isoformat())
    # A little supervised traffic, so the console and `audit stats` have something to show: an agent's reads and a
    # contact (refused, and audited, when the borrower's local time is outside the contact window), and an
    # agency's read without a mandate (refused). The agent id is the agency's pseudonym for its collector.
    from custos_client import CustosClientError

    with CustosClient(gateway, ids / "agency-1", agent="collector-0042") as agency:
        for case in ("C-6", "C-7"):
            agency.get_case(case, "collection")
        try:
            contact = agency.open_contact("C-6", "sms")
            agency.record_outcome(contact.contact_id, "no_answer")
        except CustosClientError:
            pass
    with CustosClient(gateway, ids / "agency-2") as other:
        try:
            other.get_case("C-7", "collection")
        except CustosClientError:
            pass
    # A day's changes to the lender's book, for `lender update` (synthetic; beside the data directory, not in it).
    as_of = datetime.now(UTC).isoformat(timespec="seconds")
    updates = [{"case_id": "C-1", "as_of": as_of, "loan": {"outstanding": "9500.00", "interest": "120.00"},
                "repayments": [{"on": (date.today() - timedelta(days=1)).isoformat(), "amount": "500.00"}]},
               {"case_id": "C-5", "as_of": as_of, "status": "settled"}]
    updates_file(data_dir).write_text("".join(json.dumps(u) + "\n" for u in updates))
    with CustosClient(gateway, ids / "lender-b") as other:
        other.import_lines(synth.jsonl([synth.case_line(i, lender_prefix="B") for i in range(1, 6)]).splitlines())


def _console(gateway: str, identity: Path, vkey: Path) -> str:
    """The demo regulator's web console, served beside the gateway (127.0.0.1:8443, or a free port when that is
    taken), so `make run` prints a link that opens; the one-time token is this run's."""
    from gateway.console import ConsoleError
    from gateway.console.launch import open_console

    for listen in ("127.0.0.1:8443", "127.0.0.1:0"):
        try:
            console = open_console(gateway, str(identity), listen, str(vkey))
        except (ConsoleError, OSError):
            continue
        console.start()
        return console.url
    return "(the console could not start here; run `custos console` as below)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gateway.demo")
    ap.add_argument("data_dir")
    ap.add_argument("--listen", default="127.0.0.1:7443")
    args = ap.parse_args(argv)
    data_dir = Path(args.data_dir)
    fresh = not (data_dir / "custos.db").exists()
    if fresh:
        create(data_dir)
    from gateway.core.errors import CustosError
    from gateway.transport.server import build

    try:
        gw = build(data_dir, args.listen)
    except CustosError as err:
        print(f"error: {err.code}: {err.message}", file=sys.stderr)
        return 1
    host = args.listen.rsplit(":", 1)[0]
    gateway = f"{host}:{gw.port}"
    if fresh:
        seed(gateway, data_dir)
    ids = data_dir / "identities"
    console_url = _console(gateway, ids / "regulator-1", data_dir / "audit.vkey")
    today = date.today()
    yesterday, month = (today - timedelta(days=1)).isoformat(), today.strftime("%Y-%m")
    first, second = (today + timedelta(days=7)).isoformat(), (today + timedelta(days=37)).isoformat()
    print(f"""
Custos demo gateway on {gateway} (data directory {data_dir}; synthetic data only).
In another shell:  source .venv/bin/activate && export CUSTOS_GATEWAY={gateway}

  As the lender (servicing, everything it owns):
    custos cases list --identity {ids}/lender-a
    custos cases get C-1 --purpose servicing --identity {ids}/lender-a --json
  As a collection agency (only mandated cases, minimised fields):
    custos cases list --identity {ids}/agency-1
    custos cases get C-2 --purpose collection --identity {ids}/agency-1 --json
    custos cases get C-11 --purpose collection --identity {ids}/agency-1   # no mandate: refused, audited
    custos cases pull --purpose collection --out /tmp/worklist.json --identity {ids}/agency-1  # the work list
  As the law firm (C-16 was escalated to it):
    custos packet get C-16 --out /tmp/C-16.packet --identity {ids}/lawfirm-1
    custos packet verify /tmp/C-16.packet --identity {ids}/lawfirm-1 --recipient lawfirm-1  # pins its packet.vkey
  As the credit bureau (records whose reporting preconditions hold; keep the cursor):
    custos bureau pull --identity {ids}/bureau-1 --json
  As the regulator (audit metadata, never PI):
    custos audit query --case C-2 --key {data_dir}/audit.vkey --identity {ids}/regulator-1 --json  # every event checked by proof
    custos audit verify --key {data_dir}/audit.vkey --state {data_dir}/verifier.state --identity {ids}/regulator-1
  The web console (timeline, charts, histories; the page verifies every event it shows against the pinned key),
  served now for regulator-1 -- open this one-time link (loopback only; it works once):
    {console_url}
  or start one yourself, e.g. for lender-a's compliance officer:
    custos console --identity {ids}/lender-a --key {data_dir}/audit.vkey --listen 127.0.0.1:8444
  The living account (agency-1 works C-1..C-10 at 18 % commission; PAYMENT_ID and PLAN_ID from the output):
    custos payment report C-3 --amount 100.00 --on {yesterday} --reference RCPT-1 --identity {ids}/agency-1
    custos lender payments --status reported --identity {ids}/lender-a
    custos lender payment confirm PAYMENT_ID --identity {ids}/lender-a   # C-3's outstanding and amount due fall
    custos statement --period {month} --identity {ids}/agency-1           # its fee on what it recovered
    custos plan propose C-2 --instalment {first}:150.00 --instalment {second}:150.00 --identity {ids}/agency-1
    custos lender plan accept PLAN_ID --identity {ids}/lender-a          # C-2's amount due follows the plan
    custos lender update {updates_file(data_dir)} --identity {ids}/lender-a   # a day's changes to the book
    custos lender performance --identity {ids}/lender-a
  The data lifecycle (the lender; the operator for keys):
    custos lender subject-export B-2 --out /tmp/B-2.json --identity {ids}/lender-a
    custos lender erase B-2 --identity {ids}/lender-a        # crypto-shredding; agency-1's read of C-2: ERASED
    custos lender purge --dry-run --identity {ids}/lender-a
    custos keys rotate {data_dir} && custos keys status {data_dir}
Ctrl-C stops the gateway.""", flush=True)
    cli.serve_until_signalled(gw, 2.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
