"""Client commands: they reach a gateway with an identity bundle (--gateway, --identity).

Each one asks the gateway through the typed client (`custos_client`), checks
what comes back where it can (proofs against their roots), and prints it; the
gateway decides. `audit verify --bundle` needs no gateway and is offline
verification's (`offline.py`); `bureau pull --format` writes through the
format registry (`formats.py`).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from gateway.core.errors import Code, CustosError
from gateway.core.model import FLAGS
from gateway.core.rules import auditfilter, auditstats

from .formats import BUREAU_FORMATS
from .offline import verify_bundle
from .outfiles import check_output, private_output, write_private
from .output import CliError, ImportBroken, b64, emit, key_text, plain

if TYPE_CHECKING:
    from custos_client import CustosClient, Result


def _client(args: argparse.Namespace) -> CustosClient:
    from custos_client import CustosClient

    gateway = args.gateway or os.environ.get("CUSTOS_GATEWAY")
    identity = args.identity or os.environ.get("CUSTOS_IDENTITY")
    if not gateway or not identity:
        raise CliError(Code.INVALID_ARGUMENT, "give --gateway HOST:PORT and --identity DIR (or CUSTOS_GATEWAY, "
                                           "CUSTOS_IDENTITY)")
    agent = (getattr(args, "acting_agent", None) or getattr(args, "global_agent", None)
             or os.environ.get("CUSTOS_AGENT") or "")
    return CustosClient(gateway, identity, agent=agent)


def _send_lines(args: argparse.Namespace, what: str, send: Callable[[Any, BinaryIO], Result],
                broken: Callable[[Any], Exception], counters: tuple[str, ...]) -> dict[str, Any]:
    """A JSON Lines file streamed by `send`; a broken stream becomes `broken(err)` (what was made durable); the
    result as the contract prints it: the counters, the rejections, and their total when the list was cut."""
    path = Path(args.file)
    if not path.is_file():
        raise CliError(Code.INVALID_ARGUMENT, f"{what} file not found")
    from custos_client import CustosClientError

    with _client(args) as c, open(path, "rb") as fh:
        try:
            result = send(c, fh).to_dict()
        except CustosClientError as err:
            if err.progress is not None:
                raise broken(err) from None
            raise
    doc: dict[str, Any] = {k: result[k] for k in counters}
    doc["rejected"] = result["rejected"]
    if result["rejected_total"] > len(result["rejected"]):
        doc["rejected_total"] = result["rejected_total"]
    return doc


def _rejections(d: Mapping[str, Any]) -> list[str]:
    return [f"rejected line {r['line']}: {r['code']}: {r['reason']}" for r in d["rejected"]]


def cmd_import(args: argparse.Namespace) -> None:
    doc = _send_lines(args, "import", lambda c, fh: c.import_lines(fh),
                      lambda err: ImportBroken(err.code, err.message, err.progress, err.status), ("imported", "already_imported"))
    if not doc["already_imported"]:
        del doc["already_imported"]
    emit(args, doc, lambda d: "\n".join([f"imported {d['imported']}" + (
        f", {d['already_imported']} already imported" if "already_imported" in d else ""), *_rejections(d)]))


def cmd_update(args: argparse.Namespace) -> None:
    def broken(err: Any) -> CliError:
        done = err.progress
        return CliError(err.code, f"{err.message} (lines 1-{done['through_line']} are decided and applied: "
                                  f"{done['updated']} updated, {done['unchanged']} unchanged, "
                                  f"{done['rejected_total']} rejected; sending the file again is safe)", err.status)

    doc = _send_lines(args, "update", lambda c, fh: c.update_lines(fh), broken, ("updated", "unchanged"))
    emit(args, doc, lambda d: "\n".join([f"updated {d['updated']}, {d['unchanged']} unchanged", *_rejections(d)]))


def cmd_assign(args: argparse.Namespace) -> None:
    if args.file:
        if (args.case or args.to or args.purpose or args.until or args.label or args.commission or args.agreement
                or args.pia):
            raise CliError(Code.INVALID_ARGUMENT, "--file takes every placement from the file: give no CASE, "
                                                  "--to, --purpose, --until, --label, --commission, --agreement "
                                                  "or --pia with it")
        _assign_file(args)
        return
    if not (args.case and args.to and args.purpose and args.until):
        raise CliError(Code.INVALID_ARGUMENT, "give CASE --to ORG --purpose PURPOSE --until YYYY-MM-DD, "
                                              "or --file PLACEMENTS.jsonl")
    with _client(args) as c:
        emit(args, c.assign(args.case, args.to, args.purpose, args.until, args.label or "", args.commission or "",
                            args.agreement or "", args.pia or ""))


def _assign_file(args: argparse.Namespace) -> None:
    def broken(err: Any) -> CliError:
        done = err.progress
        return CliError(err.code, f"{err.message} (lines 1-{done['through_line']} are decided: "
                                  f"{done['assigned']} assigned; sending the file again is safe)", err.status)

    doc = _send_lines(args, "placement", lambda c, fh: c.assign_lines(fh), broken, ("assigned",))
    emit(args, doc, lambda d: "\n".join([f"assigned {d['assigned']}", *_rejections(d)]))


def cmd_recall(args: argparse.Namespace) -> None:
    if args.all == bool(args.case):
        raise CliError(Code.INVALID_ARGUMENT, "give CASE --from ORG, or --all --from ORG")
    with _client(args) as c:
        if args.all:
            emit(args, c.recall_all(args.from_org), lambda d: f"{d['recalled']} mandates of {d['org_id']} ended")
        else:
            emit(args, c.recall(args.case, args.from_org))


def cmd_escalate(args: argparse.Namespace) -> None:
    with _client(args) as c:
        emit(args, c.escalate(args.case, args.to, args.until or "", args.agreement or "", args.pia or ""),
             lambda d: f"{d['case_id']}: litigation, mandated to {d['mandate']['org_id']} until "
                       f"{d['mandate']['until']}; mandates ended: {', '.join(d['recalled']) or 'none'}")


def cmd_transfer(args: argparse.Namespace) -> None:
    with _client(args) as c:
        emit(args, c.record_transfer(args.case, args.mechanism, args.reference, args.valid_until),
             lambda d: f"{d['case_id']}: transfer abroad under {d['mechanism']} {d['reference']} through "
                       f"{d['valid_until']}; cross-border consent {'yes' if d['cross_border'] else 'no'}")


def cmd_mandates(args: argparse.Namespace) -> None:
    with _client(args) as c:
        doc = {"case_id": args.case, "mandates": [m.to_dict() for m in c.list_mandates(args.case)]}

    def text(d: dict[str, Any]) -> str:
        return "\n".join([f"{d['case_id']}: {len(d['mandates'])} mandates"] + [
            f"  {m['org_id']} {m['purpose']} {m['label']} until {m['until']}"
            f"; agreement {m.get('agreement', '-')}; pia {m.get('pia', '-')}"
            + (f"; recalled {m['recalled_at']}" if m.get("recalled_at") else "") for m in d["mandates"]])

    emit(args, doc, text)


def cmd_erase(args: argparse.Namespace) -> None:
    if args.cancel and args.grace is not None:
        raise CliError(Code.INVALID_ARGUMENT, "give --grace DAYS or --cancel, not both")
    if args.grace is not None and not 1 <= args.grace <= 3650:
        raise CliError(Code.INVALID_ARGUMENT, "--grace is 1 to 3650 days")
    with _client(args) as c:
        emit(args, c.erase(args.borrower, args.grace or 0, args.cancel), _receipt_text)


def _receipt_text(d: dict[str, Any]) -> str:
    """The erasure receipt as a lender hands it to the borrower."""
    head = f"Erasure receipt: borrower {d['borrower_id']} of {d['lender']}"
    if d["state"] == "pending":
        return "\n".join([head, f"  scheduled at {d['at']}, to be performed {d['due']}",
                          f"  cases: {', '.join(d['cases'])}",
                          "  nothing is released to any other party meanwhile", f"  audit event: {d['audit_seq']}"])
    if d["state"] == "cancelled":
        return "\n".join([head, f"  scheduled erasure cancelled at {d['at']}", f"  audit event: {d['audit_seq']}"])
    lines = [head, f"  erased at {d['at']} ({d['reason']})", f"  cases: {', '.join(d['cases'])}",
             "  destroyed: " + "; ".join(d["destroyed"]),
             f"  mandates ended: {', '.join(d['mandates_ended']) or 'none'}",
             f"  audit event: {d['audit_seq']} (verifiable in the Custos audit log)"]
    return "\n".join(lines)


def cmd_subject_export(args: argparse.Namespace) -> None:
    """The borrower's own data and who received what of it, in one file for the lender to hand over."""
    from gateway.formats import subject_report

    out = Path(args.out)
    check_output(out, args.force)  # before the borrower's data is fetched (and audited as read)
    with _client(args) as c:
        cases = c.subject_data(args.borrower)
        events = c.subject_events(args.borrower, "")
    doc = subject_report.export(args.borrower, [x.to_dict() for x in cases], [e.to_dict() for e in events],
                                datetime.now(UTC))
    write_private(out, (json.dumps(doc, ensure_ascii=False, indent=1) + "\n").encode(), args.force)
    d = doc["disclosures"]
    emit(args, {"out": str(out), "cases": len(cases), "releases": len(d["releases"]), "refusals": len(d["refusals"])},
         lambda s: f"subject export of {args.borrower} written to {s['out']}: {s['cases']} cases, "
                   f"{s['releases']} releases, {s['refusals']} refused attempts (owner-only file: it holds PI)")


def cmd_purge(args: argparse.Namespace) -> None:
    if not args.dry_run:
        raise CliError(Code.INVALID_ARGUMENT, "the purge runs inside the gateway on its schedule; --dry-run lists "
                                              "what is due and why")
    with _client(args) as c:
        plan = c.purge_plan().to_dict()

    def text(d: dict[str, Any]) -> str:
        lines = [f"{len(d['due'])} borrowers due for shredding, {len(d['held'])} kept by a legal hold"]
        lines += [f"  due   {i['borrower_id']} ({', '.join(i['cases'])}) since {i['due_on']}: {i['rule']}"
                  for i in d["due"]]
        lines += [f"  held  {i['borrower_id']} ({', '.join(i['cases'])}) since {i['due_on']}: {i['rule']};"
                  f" legal hold on {', '.join(i['held_by'])}" for i in d["held"]]
        return "\n".join(lines)

    emit(args, plan, text)


def cmd_consent(args: argparse.Namespace) -> None:
    values = {"yes": True, "no": False, None: None}
    third, credit = values[args.third_party_sharing], values[args.credit_reporting]
    abroad = values[args.cross_border]
    voice = values[args.artificial_voice]
    if third is None and credit is None and abroad is None and voice is None:
        raise CliError(Code.INVALID_ARGUMENT, "give --third-party-sharing yes|no, --credit-reporting yes|no, "
                                              "--cross-border yes|no and/or --artificial-voice yes|no")
    with _client(args) as c:
        emit(args, c.set_consent(args.case, third, credit, abroad, voice),
             lambda d: f"{d['case_id']}: third-party sharing {'yes' if d['third_party_sharing'] else 'no'}, "
                       f"credit reporting {'yes' if d['credit_reporting'] else 'no'}, "
                       f"artificial voice {'yes' if d['artificial_voice'] else 'no'} (as of {d['changed_at']})"
                       + (f"; provided mandates ended: {', '.join(d['mandates_ended'])}" if d["mandates_ended"]
                          else ""))


def cmd_performance(args: argparse.Namespace) -> None:
    with _client(args) as c:
        doc = c.performance(args.from_date, args.to_date).to_dict()

    def text(d: dict[str, Any]) -> str:
        def shown(v: object) -> str:
            return "n/a" if v is None else str(v)

        lines = [f"performance {d['from'] or 'start'} .. {d['to']} (UTC days): {len(d['agencies'])} organisations"]
        for a in d["agencies"]:
            money = ", ".join(f"{v} {k}".strip() for k, v in a["recovered"].items()) or "0"
            refused = ", ".join(f"{k} {v}" for k, v in a["refusals"].items()) or "none"
            lines.append(f"  {a['org']} ({a['kind']}): placed {a['cases_placed']}, attempts {a['contact_attempts']}, "
                         f"conversations {a['conversations']}, promises {a['promises']} "
                         f"(kept {shown(a['promises_kept'])}), plans {shown(a['plans'])} "
                         f"(kept {shown(a['plans_kept'])}), recovered {money}; refused: {refused}")
        return "\n".join(lines)

    emit(args, doc, text)


def cmd_notice(args: argparse.Namespace) -> None:
    with _client(args) as c:
        emit(args, c.record_notice(args.case, args.on, args.kind or ""),
             lambda d: f"{d['case_id']}: prior notice of negative reporting on {d['negative_notice_on']}"
             if d["kind"] == "negative_reporting" else f"{d['case_id']}: {d['kind']} notice on {d['notice_on']}")


def cmd_forbearance(args: argparse.Namespace) -> None:
    with _client(args) as c:
        emit(args, c.record_forbearance(args.case, args.measure, args.on),
             lambda d: f"{d['case_id']}: forbearance {d['measure']} on {d['on']}"
                       f" ({len(d['measures'])} measure(s) recorded)")


def _ropa_text(doc: dict[str, Any]) -> str:
    lines = [f"record of processing activities of {doc['controller']['org_id']} "
             f"({', '.join(doc['jurisdictions']) or 'no jurisdiction states legal bases'}), as of {doc['as_of']}"]
    for a in doc["activities"]:
        r = a["recipient"]
        lines.append(f"- {r['org_id']} ({r['kind']}, {r['jurisdiction']}) {a['purpose']}: {a['cases']} case(s); "
                     f"{', '.join(a['roles'])}; transfer outside: {'yes' if a['transfer']['outside'] else 'no'}"
                     + (f" under {', '.join(a['transfer']['mechanisms'])}" if a["transfer"]["mechanisms"] else ""))
        lines.append(f"    categories: {', '.join(a['categories']) or '(none at the cases stages)'}")
        for j, basis in sorted(a["legal_basis"].items()):
            lines.append(f"    legal basis ({j}): {basis}")
        for j, ret in sorted(a["retention"].items()):
            lines.append(f"    retention ({j}): {ret['years']} years after {ret['start']}")
    return "\n".join(lines)


def cmd_ropa(args: argparse.Namespace) -> None:
    with _client(args) as c:
        emit(args, c.ropa(), _ropa_text)


def cmd_stage(args: argparse.Namespace) -> None:
    with _client(args) as c:
        emit(args, c.set_stage(args.case, args.stage))


def cmd_flag(args: argparse.Namespace) -> None:
    flags = {name: getattr(args, name) for name in FLAGS if getattr(args, name) is not None}
    with _client(args) as c:
        emit(args, c.set_flags(args.case, args.status, args.verification_sent or "", **flags))


def cmd_explain(args: argparse.Namespace) -> None:
    with _client(args) as c:
        e = c.explain(args.org, args.case, args.purpose, args.at or "").to_dict()

    def human(d: dict[str, Any]) -> str:
        lines = [f"{d['decision'].upper()} ({d['code']}) for {d['org_id']} on {d['case_id']} under {d['purpose']}"]
        lines += [f"  release {f['field']} as {f['transform']}  [rule {f['rule']}]" for f in d["fields"]]
        lines += [f"  rule: {r}" for r in d["rules"]] + [f"  note: {n}" for n in d["notes"]]
        lines.append(f"  policy revision {d['policy_revision']}")
        return "\n".join(lines)

    emit(args, e, human)


def _payment_text(p: dict[str, Any]) -> str:
    text = (f"{p['payment_id']}\t{p['status']}\t{p['case_id']}\t{p['org']}\t{p['amount']} {p['currency']}"
            f"\ton {p['on']}\tref {p['reference']}")
    return text + (f"\treason: {p['reason']}" if p.get("reason") else "")


def cmd_payment_report(args: argparse.Namespace) -> None:
    with _client(args) as c:
        emit(args, c.report_payment(args.case, args.amount, args.on, args.reference), _payment_text)


def cmd_lender_payments(args: argparse.Namespace) -> None:
    with _client(args) as c:
        found = c.payments(args.status or "", args.agency or "")
    emit(args, {"payments": found},
         lambda d: "\n".join(_payment_text(p) for p in d["payments"]) or "no payments")


def cmd_payment_confirm(args: argparse.Namespace) -> None:
    with _client(args) as c:
        emit(args, c.confirm_payment(args.payment_id),
             lambda d: f"{d['payment_id']} confirmed on {d['case_id']}: outstanding {d['outstanding']}, amount due "
                       f"{d['amount_due']}, commission rate {d['commission']}"
                       + ("; the case is settled" if d["case_status"] == "settled" else ""))


def cmd_payment_reject(args: argparse.Namespace) -> None:
    with _client(args) as c:
        emit(args, c.reject_payment(args.payment_id, args.reason),
             lambda d: f"{d['payment_id']} rejected")


def cmd_statement(args: argparse.Namespace) -> None:
    with _client(args) as c:
        doc = c.statement(args.period, args.agency or "").to_dict()

    def text(d: dict[str, Any]) -> str:
        rows = [f"{x['payment_id']}\t{x['case_id']}\t{x['org']}\t{x['confirmed_at']}\t{x['amount']} {x['currency']}"
                f"\trate {x['rate']}\tfee {x['fee']}" for x in d["lines"]]
        rows += [f"{cur}: recovered {t['recovered']}, fees {t['fees']}" for cur, t in d["totals"].items()]
        return "\n".join([f"statement {d['period']}: {len(d['lines'])} confirmed payments", *rows])

    emit(args, doc, text)


def _contact_text(d: Mapping[str, Any]) -> str:
    """A contact as an agent reads it: what to reach (released fields only), then what came of it."""
    who = f"{d['party']} {d['name']}" if d.get("name") else d["party"]
    reach = d.get("phone") or d.get("address") or ""
    lines = [f"contact {d['contact_id']} on {d['case_id']}: {d['channel']} to {who}"
             + (f" at {reach}" if reach else "") + f" (opened {d['opened_at']})"]
    if d.get("artificial_voice"):
        lines.append("  artificial voice: yes (the borrower's consent is on file)")
    if d.get("result"):
        promise = (f": {d['promise_amount']} on {d['promise_on']}" if d.get("promise_amount") else "")
        lines.append(f"  result: {d['result']}{promise}")
    if d.get("recording"):
        lines.append(f"  recording: {d['recording']}")
    return "\n".join(lines)


def cmd_contact_open(args: argparse.Namespace) -> None:
    with _client(args) as c:
        emit(args, c.open_contact(args.case, args.channel, args.party, args.artificial_voice), _contact_text)


def cmd_contact_outcome(args: argparse.Namespace) -> None:
    with _client(args) as c:
        emit(args, c.record_outcome(args.contact_id, args.result, args.amount or "", args.on or "",
                                    args.recording or ""), _contact_text)


# ---- promises and plans
def _instalments(values: list[str]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for value in values:
        on, sep, amount = value.partition(":")
        if not sep:
            raise CliError(Code.INVALID_ARGUMENT, "an instalment is YYYY-MM-DD:AMOUNT")
        out.append((on, amount))
    return out


def _plans_text(d: dict[str, Any]) -> str:
    lines = []
    for p in d["plans"]:
        due = f" due {p['amount_due']}" if p.get("amount_due") else ""
        lines.append(f"{p['plan_id']}\t{p['status']}\t{p.get('org', '')}{due}")
        lines += [f"  {i['on']}\t{i['amount']}\t{i.get('state', '')}" for i in p["instalments"]]
    return "\n".join(lines) or "no plans"


def cmd_plan_propose(args: argparse.Namespace) -> None:
    instalments = _instalments(args.instalment)
    with _client(args) as c:
        made = c.propose_plan(args.case, instalments)
    emit(args, {"plan_id": made.plan_id, "status": made.status}, lambda d: f"{d['plan_id']}\t{d['status']}")


def _decided_text(d: dict[str, Any]) -> str:
    return f"{d['plan_id']}\t{d['status']}\ton {d['case_id']}"


def cmd_plan_show(args: argparse.Namespace) -> None:
    with _client(args) as c:
        shown = c.show_plans(args.case)
    emit(args, {"plans": shown.plans}, _plans_text)


def cmd_plan_accept(args: argparse.Namespace) -> None:
    with _client(args) as c:
        emit(args, c.accept_plan(args.plan_id), _decided_text)


def cmd_plan_reject(args: argparse.Namespace) -> None:
    with _client(args) as c:
        emit(args, c.reject_plan(args.plan_id, args.reason), _decided_text)


def cmd_cases_list(args: argparse.Namespace) -> None:
    with _client(args) as c:
        cases = c.list_cases(args.national_id or "", args.phone or "")
    emit(args, {"cases": cases}, lambda d: "\n".join(
        f"{x['case_id']}\t{x['stage']}\t{x['status']}\t{x['purpose']}\t{x['until']}" for x in d["cases"]) or
        "no cases")


def cmd_cases_get(args: argparse.Namespace) -> None:
    with _client(args) as c:
        rec = c.get_case(args.case, args.purpose)
    emit(args, rec)


def cmd_cases_pull(args: argparse.Namespace) -> None:
    """The work list as one JSON document, {"records", "removed", "cursor"}, on stdout or (0600) in --out.

    Records are written as they arrive, so memory stays bounded whatever the
    portfolio. If the pull breaks, what arrived is kept with the cursor after
    it and "complete": false, and the error says to resume from that cursor.
    """
    from custos_client import CustosClientError, PullRecord, PullRemoved

    out = Path(args.out) if args.out else None
    removed: list[dict[str, Any]] = []
    count, cursor, complete, received = 0, args.since or "", False, False
    failure: CliError | None = None
    with private_output(out, args.force) if out else nullcontext(None) as fh:
        def write(text: str) -> None:
            if fh is None:
                sys.stdout.write(text)
            else:
                fh.write(text.encode())

        write('{"records": [')
        try:
            with _client(args) as c:
                for item in c.pull_cases(args.purpose, args.since or ""):
                    cursor, received = item.cursor, True
                    if isinstance(item, PullRecord):
                        write((",\n" if count else "\n") + json.dumps(item.record.to_dict(), ensure_ascii=False))
                        count += 1
                    elif isinstance(item, PullRemoved):
                        removed.append({"case_id": item.case_id, "lender_id": item.lender_id, "code": item.code})
                    else:
                        complete = True
        except CustosClientError as err:
            # The cursor after the last item written out, which is the one the document ends with; the file
            # is still put in place (it says "complete": false), so what arrived is kept.
            what = f"; what arrived is kept: resume with --since {cursor}" if received else ""
            failure = CliError(err.code, err.message + what, err.status)
        finally:
            write("\n], " + json.dumps({"removed": removed, "cursor": cursor, "complete": complete},
                                       ensure_ascii=False)[1:] + "\n")
            if fh is None:
                sys.stdout.flush()
    if failure is not None:
        raise failure
    if out is not None:
        emit(args, {"records": count, "removed": len(removed), "cursor": cursor, "out": str(out)},
             lambda d: f"{d['records']} records, {d['removed']} removed, written to {d['out']};"
                       f" next --since {d['cursor']}")


def cmd_audit_query(args: argparse.Namespace) -> None:
    if args.limit < 0 or args.from_seq < 0:
        raise CliError(Code.INVALID_ARGUMENT, "--limit and --from-seq are 0 or more")
    filters: dict[str, Any] = {"case_id": args.case or "", "org_id": args.org or "", "borrower_id": args.borrower or "",
               "since": args.since or "", **{key: getattr(args, key) or "" for key in auditfilter.KEYS}}
    vkey = key_text(args.key) if args.key else None
    with _client(args) as c:
        # With a pinned key every event is checked against a signed checkpoint by its inclusion proof, and
        # all of them before any is printed.
        page = (c.verified_audit_events(vkey, **filters, from_seq=args.from_seq, limit=args.limit)
                if vkey is not None else c.audit_events(**filters, from_seq=args.from_seq, limit=args.limit))
        events = [json.loads(leaf) for _, leaf in page]
    doc: dict[str, Any] = {"events": events}
    if page.next_from_seq:
        doc["next"] = page.next_from_seq
    emit(args, doc, lambda d: "\n".join([*(_event_text(e) for e in d["events"]),
                                         *([f"next --from-seq {d['next']}"] if "next" in d else [])]))


def _event_text(e: Mapping[str, Any]) -> str:
    """An event on one line, `key=value` after its sequence number and time (--json for the events as JSON)."""
    rest = " ".join(f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}"
                    for k, v in e.items() if k not in ("seq", "time") and v not in ("", None, []))
    return f"{e.get('seq', '-')} {e.get('time', '-')} {rest}"


def cmd_audit_compliance_report(args: argparse.Namespace) -> None:
    """The report as one JSON document; with --verify, each figure recounted from the events verified by proof."""
    if args.verify and not args.key:
        raise CliError(Code.INVALID_ARGUMENT, "--verify needs --key, the pinned audit.vkey")
    vkey = key_text(args.key) if args.key else None
    with _client(args) as c:
        report = c.compliance_report(args.from_, args.to).to_dict()
        if args.verify and vkey is not None:
            report["verified"] = _recount_report(c, vkey, report)
    emit(args, report, plain)


def _recount_report(c: CustosClient, vkey: str, report: dict[str, Any]) -> bool:
    """Fetch the period's events (and its cases' consent and notice events) verified by proof against the pinned
    key, recount every figure with the report's own statement (scope, size, org kinds, caps); any difference is
    REPORT_MISMATCH, naming the figures only (they hold pseudonymous ids)."""
    from custos_client import ClientCode

    from gateway.core.rules import compliance

    period, size = report["period"], int(report["size"])
    found: dict[int, dict[str, Any]] = {}
    for query in ({"since": period["from"], "until": period["to"]},
                  {"method": compliance.CONSENT_METHOD, "until": period["to"]},
                  {"method": compliance.NOTICE_METHOD, "until": period["to"]}):
        for seq, leaf in c.verified_audit_events(vkey, **query):
            if seq >= size:
                break
            found[seq] = json.loads(leaf)
    events = [found[seq] for seq in sorted(found)]
    lender = "" if report["scope"] == "all" else str(report["scope"])
    recount = compliance.figures(events, start=period["from"], end=period["to"], size=size, lender=lender,
                                 kinds=report["org_kinds"], caps=report["caps"])
    missing = [org for org in compliance.release_orgs(compliance.in_period(events, period["from"], period["to"],
                                                                           size, lender))
               if org not in report["org_kinds"]]
    wrong = compliance.differences(report, recount) + (["org_kinds"] if missing else [])
    if wrong:
        raise CliError(ClientCode.REPORT_MISMATCH,
                       "the report's figures differ from a recount of the verified events: " + ", ".join(wrong))
    return True


def cmd_audit_stats(args: argparse.Namespace) -> None:
    if args.verify and not args.key:
        raise CliError(Code.INVALID_ARGUMENT, "--verify needs --key, the pinned audit.vkey")
    by = [k.strip() for k in args.by.split(",")] if args.by.strip() else []
    vkey = key_text(args.key) if args.key else None
    with _client(args) as c:
        doc = c.audit_stats(args.start, args.end, by).to_dict()
        if args.verify and vkey is not None:
            _recount(c, doc, vkey, args.start, args.end, by)
    emit(args, doc, _stats_text)


def _recount(c: CustosClient, doc: Mapping[str, Any], vkey: str, start: str, end: str, by: list[str]) -> None:
    """Figures checked on this side: their checkpoint signed by the pinned key, every event of the range up to
    its size proved against its root, and the same pure count (rules/auditstats.py) giving the same groups."""
    from custos_client import AuditVerifyError, verify

    asked = auditstats.stats_range(start, end)
    if asked != (doc["from"], doc["to"]) or list(doc["by"]) != by:
        raise CliError(Code.STATS_MISMATCH, "the figures are not for the range and keys asked for")
    try:
        tree = verify.verify_checkpoint(doc["checkpoint"], vkey)
    except verify.VerifyFailed as exc:
        raise CliError(Code.AUDIT_VERIFY_FAILED, str(exc)) from None
    if tree.size != doc["size"]:
        raise CliError(Code.STATS_MISMATCH, "the figures name a tree size their checkpoint does not sign")
    try:
        leaves = (leaf for _, leaf in c.verified_audit_events(vkey, since=doc["from"], until=doc["to"], tree=tree))
        recounted = auditstats.count(leaves, by, doc["from"], doc["to"], str(doc.get("lender", "")))
    except AuditVerifyError as exc:
        raise CliError(Code.AUDIT_VERIFY_FAILED, exc.message) from None
    found = auditstats.differences(doc, recounted)
    if found:
        more = f" (and {len(found) - 3} more)" if len(found) > 3 else ""
        raise CliError(Code.STATS_MISMATCH, "; ".join(found[:3]) + more)


def _stats_text(d: Mapping[str, Any]) -> str:
    lines = [f"{d['total']} events in [{d['from']}, {d['to']}) of the first {d['size']}"]
    lines += ["  " + " ".join(f"{k}={g[k] or '-'}" for k in d["by"]) + f"  {g['count']}"
              for g in d["groups"] if d["by"]]
    return "\n".join(lines)


def cmd_audit_checkpoint(args: argparse.Namespace) -> None:
    if args.size is not None and args.size <= 0:
        raise CliError(Code.INVALID_ARGUMENT, "--size is 1 or more")
    with _client(args) as c:
        checkpoint = c.checkpoint_and_cosigned(args.size or 0)
    # The cosignatures come with the checkpoint: a regulator compares them with its own (the current tree must
    # extend every checkpoint a regulator cosigned), so they are printed, in both forms.
    emit(args, checkpoint,
         lambda d: "\n\n".join([d["checkpoint"].rstrip("\n"),
                                 *(f"cosigned:\n{x.rstrip()}" for x in d["cosigned"])]))


def cmd_audit_prove(args: argparse.Namespace) -> None:
    from gateway.tlog.proofcheck import verify_inclusion

    if args.seq < 0 or (args.size is not None and args.size <= 0):
        raise CliError(Code.INVALID_ARGUMENT, "SEQ is 0 or more and --size 1 or more")
    with _client(args) as c:
        p = c.inclusion_proof(args.seq, args.size or 0)
    if not verify_inclusion(p.index, p.tree_size, p.leaf_hash, p.proof, p.root):
        raise CliError(Code.AUDIT_VERIFY_FAILED, "the gateway's inclusion proof does not lead to its root")
    emit(args, {"index": p.index, "tree_size": p.tree_size, "leaf_hash": b64(p.leaf_hash),
                "root": b64(p.root), "proof": [b64(h) for h in p.proof]},
         lambda d: f"event {d['index']} is in the tree of {d['tree_size']} events with root {d['root']} "
                   f"({len(d['proof'])} hashes; compare the root with a signed checkpoint of that size)")


def cmd_audit_consistency(args: argparse.Namespace) -> None:
    from gateway.tlog.proofcheck import verify_consistency

    if args.first <= 0 or (args.to is not None and args.to < args.first):
        raise CliError(Code.INVALID_ARGUMENT, "--from is 1 or more, and --to at least --from")
    with _client(args) as c:
        p = c.consistency_proof(args.first, args.to or 0)
    if not verify_consistency(p.from_, p.to, p.from_root, p.to_root, p.proof):
        raise CliError(Code.AUDIT_VERIFY_FAILED, "the gateway's consistency proof does not verify")
    emit(args, {"from": p.from_, "to": p.to, "from_root": b64(p.from_root), "to_root": b64(p.to_root),
                "proof": [b64(h) for h in p.proof]},
         lambda d: f"the tree of {d['from']} events is a prefix of the tree of {d['to']} ({len(d['proof'])} hashes)")


def cmd_audit_subject_report(args: argparse.Namespace) -> None:
    from gateway.formats import subject_report

    with _client(args) as c:
        events = c.subject_events(args.borrower, args.lender or "")
    report = subject_report.build(args.borrower, args.lender or "", [e.to_dict() for e in events])
    emit(args, report, subject_report.table)


def cmd_audit_cosign(args: argparse.Namespace) -> None:
    import time

    from gateway.tlog.cosign import Cosigner

    try:
        signer = Cosigner.parse(Path(args.key).read_text())
    except (OSError, ValueError):
        raise CliError(Code.INVALID_ARGUMENT, "--key is not a cosigner key file (custos audit cosigner-key)") from None
    try:
        state = json.loads(Path(args.state).read_text())
        note = str(state["checkpoint"])
    except (OSError, ValueError, KeyError, TypeError):
        raise CliError(Code.INVALID_ARGUMENT, "--state holds no verified checkpoint: run custos audit verify "
                                              "--state FILE first") from None
    line = signer.cosign(note, int(time.time()))
    with _client(args) as c:
        size = c.cosign(note, line, signer.vkey())
    emit(args, {"cosigned": size, "cosigner": signer.name, "cosignature": line},
         lambda d: f"cosigned the checkpoint of {d['cosigned']} events as {d['cosigner']}")


def cmd_audit_export(args: argparse.Namespace) -> None:
    from gateway.tlog import tiles

    out = Path(args.out)
    if out.exists():
        raise CliError(Code.INVALID_ARGUMENT, "--out exists: give a new directory")
    with _client(args) as c:
        note, vkey = c.checkpoint_and_key()
        try:
            size, root = tiles.write_bundle(out, note, vkey, (leaf for _, leaf in c.audit_events()))
        except (tiles.BundleError, ValueError) as exc:
            raise CustosError(Code.AUDIT_VERIFY_FAILED, str(exc)) from None
    emit(args, {"out": str(out), "size": size, "root": b64(root)},
         lambda d: f"exported {d['size']} events to {d['out']} (root {d['root']}); check it with: "
                   f"custos audit verify --bundle {d['out']} --key {d['out']}/audit.vkey")


DEFAULT_SAMPLE = 64  # earlier events an incremental verify re-checks by proof (docs/regulators.md)


def cmd_audit_verify(args: argparse.Namespace) -> None:
    from gateway.tlog.verify import VerifyError, resume_from, sample_seqs, verify_log

    if args.sample < 0:
        raise CliError(Code.INVALID_ARGUMENT, "--sample is 0 or more")
    vkey = key_text(args.key)
    if args.bundle:
        verify_bundle(args, vkey)
        return
    state = None
    state_path = Path(args.state) if args.state else None
    if state_path and state_path.exists():
        try:
            state = json.loads(state_path.read_text())
        except ValueError:
            raise CliError(Code.INVALID_ARGUMENT, "--state file is not valid JSON") from None
    with _client(args) as c:
        note = c.checkpoint()
        if args.full and state is not None:
            state = {k: v for k, v in state.items() if k != "frontier"}  # re-read every event, still pinned
        start = resume_from(state)

        def consistency(first: int, second: int) -> list[bytes]:
            return list(c.consistency_proof(first, second).proof)

        try:
            result = verify_log(c.audit_events(from_seq=start), note, vkey, state, consistency, c.cosigned())
        except VerifyError as exc:
            raise CustosError(Code.AUDIT_VERIFY_FAILED, str(exc)) from None
        # An incremental run reads only the new events; a random sample of those verified before is re-read
        # and checked by proof against the root just verified, so an edit in place there is found too.
        sampled = c.check_sample(sample_seqs(start, args.sample), result.size, result.root) if start else 0
    if state_path:
        tmp = state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(result.state()) + "\n")
        tmp.replace(state_path)
    doc = {"verified": True, "read": result.read, "sampled": sampled, **result.state()}
    emit(args, doc, lambda d: f"audit log verified: {d['size']} events, root {d['root']} "
                              f"({d['read']} event{'' if d['read'] == 1 else 's'} read this run"
                              + (f", {d['sampled']} earlier ones re-checked by proof" if d["sampled"] else "")
                              + ")")


def cmd_packet_get(args: argparse.Namespace) -> None:
    out = Path(args.out)
    check_output(out, args.force)  # before the packet is released (and audited)
    with _client(args) as c:
        packet_id, data = c.get_packet(args.case)
    write_private(out, data, args.force)
    emit(args, {"packet_id": packet_id, "case_id": args.case, "out": str(out), "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest()},
         lambda d: f"packet {d['packet_id']} for {d['case_id']} written to {d['out']} ({d['bytes']} bytes)")


def cmd_bureau_pull(args: argparse.Namespace) -> None:
    fmt = BUREAU_FORMATS[args.format]
    out = Path(args.out) if args.out else None
    if out is not None:
        check_output(out, args.force)  # before the feed is pulled (and audited as furnished)
    with _client(args) as c:
        feed = c.pull_feed(args.since or "").to_dict()
    fmt.check(feed["records"], out)
    fmt.write(args, feed, out)
