"""The console's HTTP side: a one-time token, a session cookie, the Host check, strict headers, a JSON API.

Nothing is served without the session (static assets included): a page on
loopback is reachable by every local user and by any web page the browser
visits, so the token (secrets-grade, printed once, like Jupyter's) is the only
way in, and the Host check keeps DNS-rebinding pages out. Only GET exists: the
console changes nothing at the gateway.
"""

from __future__ import annotations

import base64
import http.server
import ipaddress
import json
import secrets
import threading
from collections.abc import Callable
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from gateway.core.errors import Code
from gateway.tlog.merkle import canonical_json

if TYPE_CHECKING:
    from custos_client import CustosClient

STATIC = Path(__file__).parent / "static"
ASSETS = {"/": ("index.html", "text/html; charset=utf-8"), "/app.js": ("app.js", "text/javascript; charset=utf-8"),
          "/verify.js": ("verify.js", "text/javascript; charset=utf-8"),
          "/charts.js": ("charts.js", "text/javascript; charset=utf-8"),
          "/app.css": ("app.css", "text/css; charset=utf-8")}
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
COOKIE = "custos_console"
PAGE = 50          # events on a timeline page unless asked otherwise
MAX_PAGE = 1000    # and at most
ALL_FROM, ALL_TO = "2000-01-01T00:00:00Z", "2100-01-01T00:00:00Z"  # charts without a range: the whole log
FILTERS = {"case": "case_id", "org": "org_id", "borrower": "borrower_id", "since": "since", "until": "until",
           "decision": "decision", "code": "code", "method": "method", "purpose": "purpose", "channel": "channel",
           "agent": "agent"}
# The gateway's status (gRPC) as the console's HTTP status: the page shows the stable code either way.
# Keyed by the status's name in lower case: the upper-case names are also stable codes of ours, which are spelled
# only as Code members (tests/test_codes.py).
HTTP_OF = {"invalid_argument": 400, "failed_precondition": 400, "out_of_range": 400, "permission_denied": 403,
           "unauthenticated": 403, "not_found": 404, "resource_exhausted": 429}


class ConsoleError(Exception):
    """Bad input to the console itself, or a gateway refusal: a stable code and its public message."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.status = str(code), message, status


def check_listen(listen: str) -> tuple[str, int]:
    """HOST:PORT on loopback only: the console serves one person's identity and must not be on a network."""
    host, sep, port_text = listen.rpartition(":")
    host = host.strip("[]")
    if not sep or not port_text.isdigit() or int(port_text) > 65535:
        raise ConsoleError(Code.INVALID_ARGUMENT, "--listen is HOST:PORT on loopback, e.g. 127.0.0.1:8443")
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ConsoleError(Code.INVALID_ARGUMENT, "--listen must be a loopback address (127.0.0.1, ::1 or "
                                                  "localhost): the console serves your identity to whoever reaches it")
    return ("127.0.0.1" if host == "localhost" else host), int(port_text)


def pinned_key(key: str | None, identity: str) -> tuple[str | None, str | None]:
    """The verifier key the page checks against, and where it came from: --key, else the identity bundle's
    audit.vkey; None when there is neither (the page then marks everything unverified). Never the gateway's."""
    path = Path(key) if key else Path(identity) / "audit.vkey"
    try:
        return path.read_text().strip(), str(path)
    except (OSError, ValueError):
        if key:
            raise ConsoleError(Code.INVALID_ARGUMENT, "--key file not readable") from None
        return None, None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _size_of(note: str) -> int:
    lines = note.split("\n")
    if len(lines) < 3 or not lines[1].isdigit():
        raise ConsoleError(Code.UNAVAILABLE, "the gateway's checkpoint is malformed", 502)
    return int(lines[1])


def _int(q: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    text = q.get(name, "")
    if not text:
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise ConsoleError(Code.INVALID_ARGUMENT, f"{name} is a whole number from {low} to {high}")
    return int(text)


_T = TypeVar("_T")

class Api:
    """The JSON answers, each from the gateway through the typed client; proofs go to the page unchecked (it
    checks them). No GetCase, ever: events carry no personal information, case records do."""

    def __init__(self, client: CustosClient, info: dict[str, Any]) -> None:
        self.client = client
        self.info = info

    def _call(self, fn: Callable[[], _T]) -> _T:
        from custos_client import CustosClientError

        try:
            return fn()
        except CustosClientError as err:
            raise ConsoleError(err.code, err.message, HTTP_OF.get(str(err.status).lower(), 502)) from None

    def route(self, path: str, q: dict[str, str]) -> dict[str, Any]:
        routes: dict[str, Callable[[dict[str, str]], dict[str, Any]]] = {
            "/api/info": lambda _: self.info, "/api/events": self.events, "/api/checkpoint": self.checkpoint,
            "/api/history": self.history, "/api/stats": self.stats}
        if path not in routes:
            raise ConsoleError(Code.INVALID_ARGUMENT, "no such console endpoint", 404)
        return routes[path](q)

    def events(self, q: dict[str, str]) -> dict[str, Any]:
        """One page of the timeline with proofs and the checkpoint they lead to. Without filters and a start the
        latest page (from the tree size back): the first view reads a page, never the log."""
        limit = _int(q, "limit", PAGE, 1, MAX_PAGE)
        filters = {FILTERS[k]: v for k, v in q.items() if k in FILTERS and v}
        latest = "from_seq" not in q or q["from_seq"] == ""
        from_seq = _int(q, "from_seq", 0, 0, 1 << 62)
        newest = latest and not filters
        if newest:
            try:
                from_seq = max(0, _size_of(self._call(self.client.checkpoint)) - limit)
            except ConsoleError as err:
                if err.code != Code.WRONG_ORG_KIND:
                    raise
                newest = False  # a lender reads no bare checkpoint: its own events from the start, a page at a time
        page = self._call(lambda: self.client.proven_audit_page(limit, newest, from_seq=from_seq, **filters))
        if newest and page.events:
            from_seq = page.events[0].seq
        events = [{"seq": e.seq, "leaf": _b64(e.leaf), "proof": [_b64(h) for h in e.proof]} for e in page.events]
        nxt = page.next_from_seq or None
        prev = max(0, from_seq - limit) if not filters and from_seq > 0 else None
        return {"checkpoint": page.checkpoint, "from_seq": from_seq, "events": events, "next_from_seq": nxt,
                "prev_from_seq": prev, "filters": {k: q[k] for k in FILTERS if q.get(k)}}

    def checkpoint(self, _: dict[str, str]) -> dict[str, Any]:
        return {"checkpoint": self._call(self.client.checkpoint), "cosigned": self._call(self.client.cosigned)}

    def history(self, q: dict[str, str]) -> dict[str, Any]:
        """A borrower's history (the subject report: every lender's borrower of this id, or the named lender's),
        each event with its proof in the current tree, for the page to check."""
        borrower = q.get("borrower", "")
        if not borrower:
            raise ConsoleError(Code.INVALID_ARGUMENT, "give a borrower id")
        listed = self._call(lambda: self.client.subject_events(borrower, q.get("lender", "")))
        lender = {e.event.seq: e.report_lender for e in listed}
        try:
            note = self._call(self.client.checkpoint)  # after the report: every event listed is inside this tree
            proven = self._call(lambda: self.client.proven_events(lender, _size_of(note)))
        except ConsoleError as err:
            if err.code != Code.WRONG_ORG_KIND:
                raise
            # A lender's officer reads no bare checkpoint: its query of the borrower's events comes with a
            # checkpoint of its own (the gateway keeps it to the lender's events); what the report listed and
            # that query did not return is shown unverified, never as checked.
            page = self._call(lambda: self.client.proven_audit_page(MAX_PAGE, borrower_id=borrower))
            note, proven = page.checkpoint, page.events
        got = {p.seq for p in proven}
        missing = [{"seq": e.event.seq, "proof": [], "unproven": True, "report_lender": e.report_lender,
                    "leaf": _b64(canonical_json(e.event.data))}
                   for e in listed if e.event.seq not in got]
        events: list[dict[str, Any]] = [
            {"seq": p.seq, "leaf": _b64(p.leaf), "proof": [_b64(h) for h in p.proof], "report_lender": lender.get(p.seq, "")}
            for p in proven if p.seq in lender]
        return {"checkpoint": note, "events": sorted(events + missing, key=lambda e: int(e["seq"])),
                "listed": len(listed)}

    def stats(self, q: dict[str, str]) -> dict[str, Any]:
        """Counts per group, as the gateway computes them (`audit stats`); the page checks the checkpoint they
        were counted at and says the counts are the gateway's (`audit stats --verify` recounts them)."""
        fn = getattr(self.client, "audit_stats", None)
        if fn is None:
            raise ConsoleError(Code.UNAVAILABLE, "this client has no audit stats: the page counts the events it "
                                                 "fetched instead", 501)
        by = [b for b in q.get("by", "").split(",") if b]
        # No range given: all of it (the figures name the range they were counted over).
        start, end = q.get("from") or ALL_FROM, q.get("to") or ALL_TO
        result = self._call(lambda: fn(start, end, by))
        return result.to_dict() if hasattr(result, "to_dict") else dict(result)


class Console:
    """The console's state: the one-time token, the sessions it opened, the expected Host, the API."""

    def __init__(self, api: Api, host: str, port: int) -> None:
        self.api = api
        self.token: str | None = secrets.token_urlsafe(32)
        self.sessions: set[str] = set()
        self.lock = threading.Lock()
        self.server = http.server.ThreadingHTTPServer((host, port), _handler(self))
        self.server.daemon_threads = True
        self.host = host
        self.port = int(self.server.server_address[1])
        shown = f"[{host}]" if ":" in host else host
        self.hosts = {f"{shown}:{self.port}", f"localhost:{self.port}"}
        self.url = f"http://{shown}:{self.port}/?token={self.token}"

    def exchange(self, token: str) -> str | None:
        """The token for a session, once: a second use (a copied URL, a history entry) opens nothing."""
        with self.lock:
            if self.token is None or not secrets.compare_digest(token, self.token):
                return None
            self.token = None
            session = secrets.token_urlsafe(32)
            self.sessions.add(session)
            return session

    def has_session(self, value: str) -> bool:
        with self.lock:
            return any(secrets.compare_digest(value, s) for s in self.sessions)

    def serve_forever(self) -> None:
        self.server.serve_forever(poll_interval=0.2)

    def start(self) -> threading.Thread:
        t = threading.Thread(target=self.serve_forever, name="custos-console", daemon=True)
        t.start()
        return t

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler(console: Console) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "custos-console"
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:
            """Silent: request lines carry filter values (case and borrower ids) and the one-time token."""

        def _send(self, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Content-Security-Policy", CSP)
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Referrer-Policy", "no-referrer")
            self.send_header("X-Frame-Options", "DENY")
            self.send_header("Cross-Origin-Opener-Policy", "same-origin")
            self.send_header("Cross-Origin-Resource-Policy", "same-origin")
            self.send_header("Cache-Control", "no-store")
            for k, v in (extra or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _json(self, status: int, doc: dict[str, Any]) -> None:
            self._send(status, json.dumps(doc, ensure_ascii=False).encode(), "application/json; charset=utf-8")

        def _error(self, err: ConsoleError) -> None:
            self._json(err.status, {"error": {"code": err.code, "message": err.message}})

        def _session(self) -> bool:
            try:
                jar = SimpleCookie(self.headers.get("Cookie", ""))
            except CookieError:
                return False
            morsel = jar.get(COOKIE)
            return morsel is not None and console.has_session(morsel.value)

        def do_GET(self) -> None:
            if self.headers.get("Host", "") not in console.hosts:
                self._error(ConsoleError(Code.UNAUTHENTICATED, "unexpected Host header", 403))
                return
            url = urlsplit(self.path)
            q = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
            if url.path == "/" and "token" in q:
                session = console.exchange(q["token"])
                if session is None:
                    self._error(ConsoleError(Code.UNAUTHENTICATED, "this console link was used already or is "
                                                                     "wrong: start the console again", 403))
                    return
                # The token leaves the address bar (and the history) at once; the cookie goes to this origin only.
                self._send(303, b"", "text/plain", {"Location": "/", "Set-Cookie": (
                    f"{COOKIE}={session}; HttpOnly; SameSite=Strict; Path=/")})
                return
            if not self._session():
                self._error(ConsoleError(Code.UNAUTHENTICATED, "open the console with the link it printed", 403))
                return
            if url.path in ASSETS:
                name, ctype = ASSETS[url.path]
                self._send(200, (STATIC / name).read_bytes(), ctype)
                return
            try:
                self._json(200, console.api.route(url.path, q))
            except ConsoleError as err:
                self._error(err)
            except Exception:  # noqa: BLE001 - a fault of the console itself: a code, never a traceback
                self._error(ConsoleError(Code.INTERNAL, "the console failed on this request", 500))

        do_HEAD = do_GET

        def _refuse(self) -> None:
            self._error(ConsoleError(Code.INVALID_ARGUMENT, "the console only reads: GET", 405))

        do_POST = do_PUT = do_DELETE = do_PATCH = _refuse

    return Handler
