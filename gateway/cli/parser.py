"""The command line: every command, its flags, and the room's function that runs it.

The parser is the one room that knows every other: it imports the command
rooms (operator, client, offline) to name their functions, and the format
registry for the choices of `bureau pull --format`; no room imports it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from gateway.core.model import FLAGS, FORBEARANCE_MEASURES
from gateway.core.rules import auditstats

from . import client, offline, operator
from .completion import SHELLS
from .formats import BUREAU_FORMATS

FORCE_HELP = "replace an existing --out file (the new one is still 0600; a symlink there is replaced, not followed)"


def _version() -> str:
    """The installed distribution's version, so the CLI, the package and the lock never disagree."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("custos")
    except PackageNotFoundError:
        return "unknown (not installed)"


def _proto_package() -> str:
    """The API the CLI speaks, read from the stubs it was built with (not a second constant to keep in step)."""
    from custos_client.v1 import custos_pb2

    return str(custos_pb2.DESCRIPTOR.package)


class UsageError(SystemExit):
    """A command line the parser refuses. Still a SystemExit (status 2, argparse's), so code that parses
    without `main` behaves as before; `main` prints it as the USAGE error, with --json as a document."""

    def __init__(self, usage: str, message: str) -> None:
        super().__init__(2)
        self.usage = usage
        self.message = message


class CustosParser(argparse.ArgumentParser):
    """argparse, but a refusal is raised to `main` (which knows about --json) instead of printed here.
    Subparsers are made of the same class (argparse's default), so every level behaves alike."""

    json_requested = False  # set by `main` when --json is anywhere in argv

    def error(self, message: str) -> NoReturn:
        raise UsageError(self.format_usage(), message)


class _Version(argparse.Action):
    """`custos --version`: the installed package and the API it speaks; one JSON document with --json."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kw: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS,
                         help="print the version of custos and of its API (custos.v1), and exit")

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        version, proto = _version(), _proto_package()
        if getattr(parser, "json_requested", False):
            print(json.dumps({"version": version, "proto": proto}))
        else:
            print(f"custos {version} (proto {proto})")
        sys.stdout.flush()
        parser.exit(0)


def build_parser() -> CustosParser:
    p = CustosParser(prog="custos", description="Custos data-sharing gateway")
    p.add_argument("--version", action=_Version)
    sub = p.add_subparsers(dest="command", required=True)

    common = CustosParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    agent_help = ("the person acting, as your organisation names them (a pseudonymous id; or CUSTOS_AGENT): "
                  "recorded in every event of the call, never a change of organisation")
    # A client command's options. `audit query` takes them without --agent, which is its filter there; the
    # agent acting is then named before the command (`custos --agent ID audit query ...`) or by CUSTOS_AGENT.
    client_conn = CustosParser(add_help=False, parents=[common])
    client_conn.add_argument("--gateway", help="HOST:PORT (or CUSTOS_GATEWAY)")
    client_conn.add_argument("--identity", help="identity bundle directory (or CUSTOS_IDENTITY)")
    client_opts = CustosParser(add_help=False, parents=[client_conn])
    client_opts.add_argument("--agent", dest="acting_agent", metavar="ID", help=agent_help)
    p.add_argument("--agent", dest="global_agent", metavar="ID", help=agent_help + " (any client command)")

    s = sub.add_parser("init", parents=[common], help="create a data directory")
    s.add_argument("data_dir")
    s.add_argument("--hostname", action="append", default=[], help="extra DNS name or IP for the server cert")
    s.add_argument("--tls", help="server certificate, key and CA certificate from 'custos ca issue --server': "
                                 "the CA key stays offline")
    s.add_argument("--key-dir", help="keep every key file here instead of DATA_DIR/keys")
    s.add_argument("--database", help="postgresql://USER@HOST:PORT/DB: the store for many replicas (no password "
                                      "in the URL: PGPASSWORD or ~/.pgpass); default: SQLCipher in DATA_DIR")
    s.set_defaults(fn=operator.cmd_init)

    ca = sub.add_parser("ca", help="an offline CA that never has to sit on the gateway host").add_subparsers(
        dest="sub", required=True)
    s = ca.add_parser("init", parents=[common])
    s.add_argument("ca_dir")
    s.set_defaults(fn=operator.cmd_ca_init)
    s = ca.add_parser("issue", parents=[common])
    s.add_argument("ca_dir")
    s.add_argument("--server", action="store_true", help="the gateway's server certificate")
    s.add_argument("--hostname", action="append", default=[], help="with --server: extra DNS name or IP")
    s.add_argument("--org", help="a client certificate for organisation ORG")
    s.add_argument("--packet-key", metavar="PACKET_VKEY",
                   help="with --org: the gateway's DATA_DIR/packet.vkey, copied into the bundle for 'packet verify'")
    s.add_argument("--out", required=True)
    s.set_defaults(fn=operator.cmd_ca_issue)

    keys = sub.add_parser("keys", help="KEK rotation: rotate, status, retire").add_subparsers(dest="sub", required=True)
    s = keys.add_parser("rotate", parents=[common], help="a new KEK version, primary at once; the gateway rewraps")
    s.add_argument("data_dir")
    s.set_defaults(fn=operator.cmd_keys_rotate)
    s = keys.add_parser("status", parents=[common], help="how many data keys each KEK version wraps")
    s.add_argument("data_dir")
    s.set_defaults(fn=operator.cmd_keys_status)
    s = keys.add_parser("retire", parents=[common], help="destroy a KEK version nothing uses any more")
    s.add_argument("data_dir")
    s.add_argument("--version", type=int, required=True)
    s.set_defaults(fn=operator.cmd_keys_retire)
    org = sub.add_parser("org", help="register and disable organisations").add_subparsers(dest="sub", required=True)
    s = org.add_parser("add", parents=[common])
    s.add_argument("data_dir")
    s.add_argument("--id", required=True)
    s.add_argument("--kind", required=True)
    s.add_argument("--name", required=True)
    s.add_argument("--jurisdiction", default="CN")
    s.add_argument("--licence-no")
    s.add_argument("--licence-expires")
    s.add_argument("--address", help="a lender's postal address (the header of its Metro 2 bureau file)")
    s.add_argument("--telephone", help="a lender's 10-digit US telephone number (the same header)")
    s.add_argument("--out", help="write a new identity bundle here (the data directory's own CA)")
    s.add_argument("--cert", help="register with this client certificate from 'custos ca issue --org'")
    s.add_argument("--policies", help="the policy bundle the gateway serves, whose capability table names the "
                                      "kinds (default: the shipped bundle)")
    s.set_defaults(fn=operator.cmd_org_add)
    s = org.add_parser("disable", parents=[common])
    s.add_argument("data_dir")
    s.add_argument("--id", required=True)
    s.set_defaults(fn=operator.cmd_org_disable)
    s = org.add_parser("licence", parents=[common], help="record or update an organisation's licence for a region")
    s.add_argument("data_dir")
    s.add_argument("--id", required=True)
    s.add_argument("--region", required=True, help="ISO 3166-2 (US-CA), or a country code (DE)")
    s.add_argument("--licence-no", required=True)
    s.add_argument("--licence-expires", required=True, help="YYYY-MM-DD, the last day it is in force")
    s.add_argument("--policies", help="the policy bundle the gateway serves (default: the shipped bundle)")
    s.set_defaults(fn=operator.cmd_org_licence)

    s = sub.add_parser("serve", parents=[common], help="run the gateway")
    s.add_argument("data_dir")
    s.add_argument("--listen", default="127.0.0.1:7443")
    s.add_argument("--policies", help="policy bundle directory (default: the shipped bundle)")
    s.add_argument("--workers", type=int, default=128,
                   help="RPC worker threads (default 128; idle ones cost no CPU)")
    s.add_argument("--grace", type=float, default=5.0,
                   help="seconds calls in flight get on SIGTERM before they are cancelled (default 5)")
    s.add_argument("--processes", type=int, default=None,
                   help="gateway processes sharing the port (default: the usable cores; 1: this process serves)")
    s.add_argument("--health", metavar="HOST:PORT",
                   help="also serve grpc.health.v1.Health, and nothing else, in plaintext here, for probes without a "
                        "client certificate (Health is always on the mTLS port too); see docs/health.md")
    s.add_argument("--metrics", metavar="HOST:PORT",
                   help="serve the Prometheus text exposition here (plain HTTP, no authentication: a private interface);"
                        " with --processes N, process i on PORT+i; see docs/health.md")
    s.add_argument("--reflection", action="store_true",
                   help="serve gRPC server reflection on the mTLS port (off by default: it hands anyone holding a "
                        "certificate of the CA the map of the whole API)")
    s.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)  # a process of --processes N
    s.add_argument("--supervisor", type=int, default=None, help=argparse.SUPPRESS)
    s.add_argument("--log-format", choices=["text", "json"], default=None,
                   help="stderr log lines: text, or json (one object per line); default: CUSTOS_LOG_FORMAT, else text")
    s.set_defaults(fn=operator.cmd_serve)
    s = sub.add_parser("stop", parents=[common], help="stop the custos serve of a data directory, all its processes")
    s.add_argument("data_dir")
    s.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for it to stop (default 30)")
    s.set_defaults(fn=operator.cmd_stop)

    pol = sub.add_parser("policy", help="check policy bundles").add_subparsers(dest="sub", required=True)
    s = pol.add_parser("check", parents=[common])
    s.add_argument("dir", nargs="?")
    s.set_defaults(fn=operator.cmd_policy_check)

    lender = sub.add_parser("lender", help="lender commands").add_subparsers(dest="sub", required=True)
    s = lender.add_parser("import", parents=[client_opts])
    s.add_argument("file")
    s.set_defaults(fn=client.cmd_import)
    s = lender.add_parser("update", parents=[client_opts],
                          help='account updates: JSON Lines {"case_id", "as_of", "loan", "repayments", "status", '
                               '"borrower"}')
    s.add_argument("file")
    s.set_defaults(fn=client.cmd_update)
    s = lender.add_parser("assign", parents=[client_opts], help="mandate a case (or, with --file, many)")
    s.add_argument("case", nargs="?")
    s.add_argument("--to")
    s.add_argument("--purpose")
    s.add_argument("--until")
    s.add_argument("--label")
    s.add_argument("--commission", metavar="RATE",
                   help='the fee term: a rate on confirmed recoveries, 0 to 1, at most 4 decimals (e.g. 0.18)')
    s.add_argument("--agreement", metavar="REF", help="the agreement with the organisation (PIPL Art. 21)")
    s.add_argument("--pia", metavar="REF", help="the PI-protection impact assessment (PIPL Art. 55-56)")
    s.add_argument("--file", help='JSON Lines, one {"case_id", "to", "purpose", "until", "label", "commission", '
                                  '"agreement", "pia"} per line')
    s.set_defaults(fn=client.cmd_assign)
    s = lender.add_parser("mandates", parents=[client_opts],
                          help="a case's mandates, with the agreement and impact assessment each names")
    s.add_argument("case")
    s.set_defaults(fn=client.cmd_mandates)
    s = lender.add_parser("payments", parents=[client_opts], help="payments reported on your cases")
    s.add_argument("--status", help="reported | confirmed | rejected")
    s.add_argument("--agency", metavar="ORG", help="only those this organisation reported")
    s.set_defaults(fn=client.cmd_lender_payments)
    pay = lender.add_parser("payment", help="confirm or reject a reported payment").add_subparsers(
        dest="action", required=True)
    s = pay.add_parser("confirm", parents=[client_opts], help="it enters the loan's ledger (paid in full: settled)")
    s.add_argument("payment_id")
    s.set_defaults(fn=client.cmd_payment_confirm)
    s = pay.add_parser("reject", parents=[client_opts], help="nothing changes but the payment's status")
    s.add_argument("payment_id")
    s.add_argument("--reason", required=True, help="1-500 characters (stored sealed; shown to you only)")
    s.set_defaults(fn=client.cmd_payment_reject)
    s = lender.add_parser("recall", parents=[client_opts], help="end a case's mandates of an org (or, with --all, every one)")
    s.add_argument("case", nargs="?")
    s.add_argument("--from", dest="from_org", required=True)
    s.add_argument("--all", action="store_true", help="every mandate the org holds on your cases")
    s.set_defaults(fn=client.cmd_recall)
    s = lender.add_parser("escalate", parents=[client_opts], help="to litigation, mandated to a law firm")
    s.add_argument("case")
    s.add_argument("--to", required=True, help="the law firm")
    s.add_argument("--until", help="YYYY-MM-DD (default: a year from today)")
    s.add_argument("--agreement", metavar="REF", help="the agreement with the law firm (PIPL Art. 21)")
    s.add_argument("--pia", metavar="REF", help="the PI-protection impact assessment (PIPL Art. 55-56)")
    s.set_defaults(fn=client.cmd_escalate)
    s = lender.add_parser("erase", parents=[client_opts], help="crypto-shred a borrower's data (refused under legal hold)")
    s.add_argument("borrower")
    s.add_argument("--grace", type=int, metavar="DAYS", help="schedule it DAYS from now (cancellable)")
    s.add_argument("--cancel", action="store_true", help="cancel a scheduled erasure")
    s.set_defaults(fn=client.cmd_erase)
    s = lender.add_parser("subject-export", parents=[client_opts],
                          help="a borrower's own data and its disclosures, for an access request")
    s.add_argument("borrower")
    s.add_argument("--out", required=True, help="the file to write (0600: it holds the borrower's PI)")
    s.add_argument("--force", action="store_true", help=FORCE_HELP)
    s.set_defaults(fn=client.cmd_subject_export)
    s = lender.add_parser("purge", parents=[client_opts], help="what the retention purge will shred, and why")
    s.add_argument("--dry-run", action="store_true", required=False)
    s.set_defaults(fn=client.cmd_purge)
    s = lender.add_parser("consent", parents=[client_opts], help="record a change of the borrower's consents")
    s.add_argument("case")
    s.add_argument("--third-party-sharing", choices=("yes", "no"))
    s.add_argument("--credit-reporting", choices=("yes", "no"))
    s.add_argument("--cross-border", choices=("yes", "no"), help="the separate consent to provision abroad")
    s.add_argument("--artificial-voice", choices=("yes", "no"),
                   help="prior express consent to artificial or AI voice calls (TCPA); no: revoked from now on")
    s.set_defaults(fn=client.cmd_consent)
    s = lender.add_parser("transfer", parents=[client_opts],
                          help="record the case's transfer mechanism for provision abroad (PIPL Art. 38, GDPR Art. 45-47)")
    s.add_argument("case")
    s.add_argument("--mechanism", required=True,
                   help="one of the case's jurisdiction's [mandates] transfer_mechanisms (CN: cac_assessment | "
                        "certification | standard_contract; EU: adequacy_decision | standard_contractual_clauses | "
                        "binding_corporate_rules)")
    s.add_argument("--reference", required=True, metavar="REF", help="the assessment, certificate or filing")
    s.add_argument("--valid-until", required=True, metavar="YYYY-MM-DD", help="inclusive, the case's local date")
    s.set_defaults(fn=client.cmd_transfer)
    s = lender.add_parser("notice", parents=[client_opts], help="record a notice given to the borrower")
    s.add_argument("case")
    s.add_argument("--on", required=True, help="YYYY-MM-DD, the day the notice was given")
    s.add_argument("--kind", choices=("negative_reporting", "validation", "outsourcing"),
                   help="negative_reporting (default): of coming negative credit reporting; validation: the US "
                        "validation notice (Reg F 1006.34); outsourcing: CN, collection is outsourced")
    s.set_defaults(fn=client.cmd_notice)
    # ---- EU (issue 26)
    s = lender.add_parser("forbearance", parents=[client_opts],
                          help="record a forbearance measure before litigation (CCD (EU) 2023/2225 Art. 35)")
    s.add_argument("case")
    s.add_argument("--measure", required=True, help=f"one of: {', '.join(FORBEARANCE_MEASURES)}")
    s.add_argument("--on", required=True, help="YYYY-MM-DD, the local day the measure counts from")
    s.set_defaults(fn=client.cmd_forbearance)
    s = lender.add_parser("ropa", parents=[client_opts],
                          help="the record of processing activities (GDPR Art. 30) generated from the mandates")
    s.set_defaults(fn=client.cmd_ropa)
    s = lender.add_parser("performance", parents=[client_opts],
                          help="per agency and law firm: placements, contacts, promises, recoveries, refusals")
    s.add_argument("--from", dest="from_date", default="", help="YYYY-MM-DD, first UTC day (inclusive)")
    s.add_argument("--to", dest="to_date", default="", help="YYYY-MM-DD, last UTC day (inclusive; default today)")
    s.set_defaults(fn=client.cmd_performance)
    s = lender.add_parser("stage", parents=[client_opts])
    s.add_argument("case")
    s.add_argument("stage")
    s.set_defaults(fn=client.cmd_stage)

    s = lender.add_parser("flag", parents=[client_opts], help="set (--X) or clear (--no-X) case flags")
    s.add_argument("case")
    for name in FLAGS:
        s.add_argument(f"--{name.replace('_', '-')}", dest=name, action=argparse.BooleanOptionalAction, default=None)
    s.add_argument("--status", choices=None, help="open | settled | closed")
    s.add_argument("--verification-sent", metavar="YYYY-MM-DD",
                   help="with --no-disputed: the day verification of the debt was sent (Reg F 1006.38)")
    s.set_defaults(fn=client.cmd_flag)

    s = pol.add_parser("explain", parents=[client_opts], help="what would ORG get for CASE under PURPOSE, and why")
    s.add_argument("--org", required=True)
    s.add_argument("--case", required=True)
    s.add_argument("--purpose", required=True)
    s.add_argument("--at", help="RFC 3339 time (default: now)")
    s.set_defaults(fn=client.cmd_explain)

    contact = sub.add_parser("contact", help="open contacts and record outcomes").add_subparsers(dest="sub",
                                                                                                  required=True)
    s = contact.add_parser("open", parents=[client_opts])
    s.add_argument("case")
    s.add_argument("--channel", required=True, help="call | sms | visit | letter")
    s.add_argument("--party", default="borrower", help="borrower | emergency_contact")
    s.add_argument("--artificial-voice", action="store_true",
                   help="an artificial or AI voice call (channel call): only under the borrower's recorded consent")
    s.set_defaults(fn=client.cmd_contact_open)
    s = contact.add_parser("outcome", parents=[client_opts])
    s.add_argument("contact_id")
    s.add_argument("--result", required=True,
                   help="connected | no_answer | promise_to_pay | dispute | wrong_number | undeliverable | "
                        "invalid_number | stop_calls | stop_texts | refused | has_attorney")
    s.add_argument("--amount", help="promise_to_pay (required with it): the amount promised, e.g. 150.00")
    s.add_argument("--on", help="promise_to_pay (required with it): YYYY-MM-DD, the borrower's local date")
    s.add_argument("--recording", help="calls and visits: an opaque reference into your recording system "
                                       "(1-128 of A-Z a-z 0-9 . _ : / -), never the recording itself")
    s.set_defaults(fn=client.cmd_contact_outcome)

    # ---- promises and plans
    plan = sub.add_parser("plan", help="repayment plans").add_subparsers(dest="sub", required=True)
    s = plan.add_parser("propose", parents=[client_opts], help="propose a repayment plan on a mandated case")
    s.add_argument("case")
    s.add_argument("--instalment", action="append", required=True, metavar="YYYY-MM-DD:AMOUNT",
                   help="one instalment (repeat, dates increasing; 1-60)")
    s.set_defaults(fn=client.cmd_plan_propose)
    s = plan.add_parser("show", parents=[client_opts], help="a case's plans and their state today")
    s.add_argument("case")
    s.set_defaults(fn=client.cmd_plan_show)
    lender_plan = lender.add_parser("plan", help="accept or reject a proposed plan").add_subparsers(
        dest="plan_sub", required=True)
    s = lender_plan.add_parser("accept", parents=[client_opts], help="the case's plan from now (sets amount_due)")
    s.add_argument("plan_id")
    s.set_defaults(fn=client.cmd_plan_accept)
    s = lender_plan.add_parser("reject", parents=[client_opts])
    s.add_argument("plan_id")
    s.add_argument("--reason", required=True, help="1-500 characters (kept sealed; shown only to you)")
    s.set_defaults(fn=client.cmd_plan_reject)
    payment = sub.add_parser("payment", help="report payments you collected").add_subparsers(dest="sub",
                                                                                              required=True)
    s = payment.add_parser("report", parents=[client_opts], help="a payment collected on a case mandated to you")
    s.add_argument("case")
    s.add_argument("--amount", required=True, help="a positive decimal, in the loan's currency")
    s.add_argument("--on", required=True, help="YYYY-MM-DD, the day it was paid")
    s.add_argument("--reference", required=True, help="your id of the payment: reporting it again is safe")
    s.set_defaults(fn=client.cmd_payment_report)
    s = sub.add_parser("statement", parents=[client_opts],
                       help="a month's confirmed payments with their commissions (UTC month of confirmation)")
    s.add_argument("--period", required=True, help="YYYY-MM")
    s.add_argument("--agency", metavar="ORG", help="a lender: one organisation's; others: only their own id")
    s.set_defaults(fn=client.cmd_statement)

    cases = sub.add_parser("cases", help="read cases").add_subparsers(dest="sub", required=True)
    s = cases.add_parser("list", parents=[client_opts])
    s.add_argument("--national-id", help="lender only: find by national id (blind index)")
    s.add_argument("--phone", help="lender only: find by phone (blind index)")
    s.set_defaults(fn=client.cmd_cases_list)
    s = cases.add_parser("get", parents=[client_opts])
    s.add_argument("case")
    s.add_argument("--purpose", required=True)
    s.set_defaults(fn=client.cmd_cases_get)
    s = cases.add_parser("pull", parents=[client_opts], help="the cases mandated to you, or those changed since a cursor")
    s.add_argument("--purpose", required=True)
    s.add_argument("--since", help="the cursor of an earlier pull: only what changed after it")
    s.add_argument("--out", help="write the document here (owner-only) instead of stdout")
    s.add_argument("--force", action="store_true", help=FORCE_HELP)
    s.set_defaults(fn=client.cmd_cases_pull)

    packet = sub.add_parser("packet", help="signed litigation packets").add_subparsers(dest="sub", required=True)
    s = packet.add_parser("get", parents=[client_opts], help="a case's litigation packet (law firm)")
    s.add_argument("case")
    s.add_argument("--out", required=True)
    s.add_argument("--force", action="store_true", help=FORCE_HELP)
    s.set_defaults(fn=client.cmd_packet_get)
    s = packet.add_parser("verify", parents=[common],
                          help="check every hash and the signature against a pinned key, offline")
    s.add_argument("file")
    s.add_argument("--key", help="the gateway's packet.vkey (default: packet.vkey of the identity bundle)")
    s.add_argument("--identity", help="identity bundle directory whose packet.vkey is pinned (or CUSTOS_IDENTITY)")
    s.add_argument("--recipient", metavar="ORG", help="require the packet to have been issued to ORG")
    s.set_defaults(fn=offline.cmd_packet_verify)

    bureau = sub.add_parser("bureau", help="credit bureau feed").add_subparsers(dest="sub", required=True)
    s = bureau.add_parser("pull", parents=[client_opts], help="records changed since the cursor (bureau)")
    s.add_argument("--since", help="the cursor of the last pull (default: from the start)")
    s.add_argument("--format", choices=tuple(BUREAU_FORMATS), default="json")
    s.add_argument("--out", help="write here (mode 0600) instead of stdout")
    s.add_argument("--force", action="store_true", help=FORCE_HELP)
    s.set_defaults(fn=client.cmd_bureau_pull)

    audit = sub.add_parser("audit", help="audit log").add_subparsers(dest="sub", required=True)
    s = audit.add_parser("query", parents=[client_conn])
    s.add_argument("--case")
    s.add_argument("--org")
    s.add_argument("--borrower")
    s.add_argument("--since", help="RFC 3339: events at or after it")
    s.add_argument("--until", help="RFC 3339: events before it (one at exactly that time is left out)")
    s.add_argument("--decision", help="allow | deny")
    s.add_argument("--code", help="a stable code, e.g. CONTACT_CAP_REACHED")
    s.add_argument("--method", help="the call, e.g. GetCase, OpenContact")
    s.add_argument("--purpose", help="collection | litigation | credit_reporting | servicing | supervision")
    s.add_argument("--channel", help="contact events of one channel: call | sms | visit | letter")
    s.add_argument("--agent", help="events of one agent (the person acting, as its organisation names them)")
    s.add_argument("--limit", type=int, default=0,
                   help="at most N events; the output's \"next\" is the --from-seq that continues (0: all)")
    s.add_argument("--from-seq", type=int, default=0, help="start at this sequence number (a page's \"next\")")
    s.add_argument("--key", help="the pinned audit.vkey: check every event against a signed checkpoint by its "
                                 "inclusion proof before printing any (exit 5, AUDIT_VERIFY_FAILED, if one fails)")
    s.set_defaults(fn=client.cmd_audit_query)
    s = audit.add_parser("compliance-report", parents=[client_opts],
                         help="a period's compliance report (regulator: all cases; lender: its own)")
    s.add_argument("--from", dest="from_", required=True, help="RFC 3339: events at or after it")
    s.add_argument("--to", required=True, help="RFC 3339: events before it (one at exactly that time is left out)")
    s.add_argument("--verify", action="store_true",
                   help="recount every figure from the period's events, each verified by proof against --key "
                        "(exit 5, REPORT_MISMATCH, on any difference)")
    s.add_argument("--key", help="the pinned audit.vkey (needed by --verify)")
    s.set_defaults(fn=client.cmd_audit_compliance_report)
    s = audit.add_parser("stats", parents=[client_opts],
                         help="events per group over [--from, --to), with the checkpoint they were counted at")
    s.add_argument("--from", dest="start", required=True, help="RFC 3339: events at or after it")
    s.add_argument("--to", dest="end", required=True, help="RFC 3339: events before it")
    s.add_argument("--by", default="", help="comma-separated group keys: " + ",".join(auditstats.KEYS)
                                           + " (none: the total)")
    s.add_argument("--verify", action="store_true",
                   help="recount the figures from the verified events of their checkpoint (needs --key; exit 5, "
                        "STATS_MISMATCH, on any difference)")
    s.add_argument("--key", help="the pinned audit.vkey the checkpoint and every event are checked against")
    s.set_defaults(fn=client.cmd_audit_stats)
    s = audit.add_parser("checkpoint", parents=[client_opts], help="a signed checkpoint (regulator)")
    s.add_argument("--size", type=int, help="the one published for this tree size (default: the current tree)")
    s.set_defaults(fn=client.cmd_audit_checkpoint)
    s = audit.add_parser("subject-report", parents=[client_opts],
                         help="who received which of a borrower's fields, and every refused attempt")
    s.add_argument("borrower")
    s.add_argument("--lender", help="the borrower's lender (a lender: its own); without it every lender's "
                                    "borrower of this id, apart (a lender: only its own)")
    s.set_defaults(fn=client.cmd_audit_subject_report)
    s = audit.add_parser("prove", parents=[client_opts], help="an event's inclusion proof (regulator)")
    s.add_argument("seq", type=int, help="the event's sequence number (its leaf index)")
    s.add_argument("--size", type=int, help="the tree size (default: the current one)")
    s.set_defaults(fn=client.cmd_audit_prove)
    s = audit.add_parser("consistency", parents=[client_opts], help="a consistency proof between two sizes (regulator)")
    s.add_argument("--from", dest="first", type=int, required=True)
    s.add_argument("--to", type=int, help="default: the current size")
    s.set_defaults(fn=client.cmd_audit_consistency)
    s = audit.add_parser("verify", parents=[client_opts], help="the whole log, or with --state what was added since")
    s.add_argument("--key", required=True)
    s.add_argument("--state", help="the last run's state: later runs read only the new events")
    s.add_argument("--full", action="store_true", help="re-read every event even with --state")
    s.add_argument("--sample", type=int, default=client.DEFAULT_SAMPLE, metavar="K",
                   help=f"with --state: also re-read K random events verified on earlier runs and check each by "
                        f"inclusion proof (default {client.DEFAULT_SAMPLE}; 0: none)")
    s.add_argument("--bundle", help="verify an exported bundle offline instead (no gateway)")
    s.set_defaults(fn=client.cmd_audit_verify)
    s = audit.add_parser("cosigner-key", parents=[common], help="a regulator's cosigning key (offline)")
    s.add_argument("--name", required=True, help="the cosigner's name, e.g. regulator.example/custos-witness")
    s.add_argument("--out", required=True)
    s.set_defaults(fn=offline.cmd_audit_cosigner_key)
    s = audit.add_parser("cosign", parents=[client_opts], help="cosign the checkpoint the state verified (regulator)")
    s.add_argument("--key", required=True)
    s.add_argument("--state", required=True)
    s.set_defaults(fn=client.cmd_audit_cosign)
    s = audit.add_parser("export", parents=[client_opts], help="the log as a C2SP tlog-tiles bundle (regulator)")
    s.add_argument("--out", required=True)
    s.set_defaults(fn=client.cmd_audit_export)

    s = sub.add_parser("console", parents=[client_opts],
                       help="a web console on loopback: timeline, charts, histories, checked in the browser")
    s.add_argument("--listen", help="loopback HOST:PORT to serve on (default 127.0.0.1:8443; 0 as port: any free)")
    s.add_argument("--key", help="the pinned audit.vkey the page verifies against (default: audit.vkey of the "
                                 "identity bundle; never the gateway's)")
    s.set_defaults(fn=_console)

    s = sub.add_parser("completion", parents=[common], help="print a shell completion script: "
                                                            "eval \"$(custos completion bash)\"")
    s.add_argument("shell", choices=SHELLS)
    s.set_defaults(fn=_completion)
    return p


def _completion(args: argparse.Namespace) -> None:
    from .completion import script
    from .output import emit

    text = script(args.shell, build_parser())
    emit(args, {"shell": args.shell, "script": text}, lambda d: str(d["script"]).rstrip("\n"))


def _console(args: argparse.Namespace) -> None:
    from . import console  # only when asked: the console's server is not every command's

    console.cmd_console(args)

