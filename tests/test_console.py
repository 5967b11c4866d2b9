"""`custos console`: the gate (token, session, Host, headers) over plain HTTP, and the page in a real browser.

The browser part drives Debian's chromium with Playwright (never a downloaded
browser); without chromium it is skipped loudly, and under CI=true it fails.
Screenshots of the main views go to var/screenshots/ (git-ignored).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway import cli
from gateway.console.launch import open_console
from gateway.console.server import Console, ConsoleError, check_listen
from gateway.tlog.cosign import Cosigner
from gateway.tlog.merkle import verifier_key
from tests.conftest import Env
from tests.test_audit import _edited_leaf, _tamper

pytestmark = pytest.mark.sqlite_only  # the browser part needs one backend; the store's tamper is SQLite's here

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = Path(__file__).resolve().parent.parent / "var" / "screenshots"
TIMEOUT_MS = 15_000


@pytest.fixture
def traffic(escalated: Env) -> Env:
    """Allowed and refused reads, and contacts on two channels, besides the escalation's history."""
    reg = escalated.client("regulator-1")
    note = reg.checkpoint()
    signer = Cosigner.generate("regulator.example/witness")
    reg.cosign(note, signer.cosign(note, 1_700_000_000), signer.vkey())
    for org in ("agency-2", "bureau-1"):
        try:
            escalated.client(org).get_case("C-2", "collection")
        except Exception:  # noqa: BLE001 - refused, as wanted: a deny event with its code
            pass
    escalated.client("lender-a").get_case("C-3", "servicing")
    return escalated


def _open(env: Env) -> Console:
    c = open_console(env.addr, str(env.identity("regulator-1")), "127.0.0.1:0", str(env.data / "audit.vkey"))
    c.start()
    return c


@pytest.fixture
def console(traffic: Env) -> Iterator[Console]:
    c = _open(traffic)
    try:
        yield c
    finally:
        c.stop()
        c.api.client.close()


def _get(c: Console, path: str, host: str | None = None, cookie: str | None = None) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", c.port, timeout=20)
    headers = {"Host": host or f"127.0.0.1:{c.port}"}
    if cookie:
        headers["Cookie"] = cookie
    conn.request("GET", path, headers=headers)
    resp = conn.getresponse()
    resp.read()
    return resp


def _session(c: Console) -> str:
    resp = _get(c, f"/?token={c.token}")
    assert resp.status == 303 and resp.getheader("Location") == "/"
    return str(resp.getheader("Set-Cookie")).split(";")[0]


def test_nothing_is_served_without_the_token(console: Console) -> None:
    for path in ("/", "/app.js", "/verify.js", "/app.css", "/api/events", "/api/checkpoint", "/api/info"):
        assert _get(console, path).status == 403, path
    assert _get(console, "/?token=wrong").status == 403
    assert _get(console, "/", cookie="custos_console=guessed").status == 403
    # A DNS-rebinding page reaches the port under its own name: refused, and the token is not spent.
    assert _get(console, f"/?token={console.token}", host=f"evil.example:{console.port}").status == 403
    resp = _get(console, f"/?token={console.token}")
    cookie = resp.getheader("Set-Cookie") or ""
    assert resp.status == 303 and "HttpOnly" in cookie and "SameSite=Strict" in cookie and "token" not in (
        resp.getheader("Location") or "")
    session = cookie.split(";")[0]
    assert console.token is None  # one use: the link printed cannot open a second session
    assert _get(console, "/?token=x").status == 403
    assert _get(console, "/app.js", host=f"evil.example:{console.port}", cookie=session).status == 403
    page = _get(console, "/", cookie=session)
    assert page.status == 200
    csp = page.getheader("Content-Security-Policy") or ""
    for directive in ("default-src 'none'", "script-src 'self'", "style-src 'self'", "connect-src 'self'",
                      "img-src 'self' data:", "base-uri 'none'", "form-action 'self'", "frame-ancestors 'none'"):
        assert directive in csp
    assert page.getheader("X-Content-Type-Options") == "nosniff"
    assert page.getheader("Referrer-Policy") == "no-referrer"
    api = _get(console, "/api/checkpoint", cookie=session)
    assert api.status == 200 and api.getheader("Cache-Control") == "no-store"
    assert "Content-Security-Policy" in dict(api.getheaders())


def test_gateway_errors_are_json_with_the_stable_code(console: Console) -> None:
    session = _session(console)
    conn = http.client.HTTPConnection("127.0.0.1", console.port, timeout=20)
    for path, status, code in (("/api/events?decision=maybe", 400, "INVALID_DECISION"),
                               ("/api/events?limit=0", 400, "INVALID_ARGUMENT"),
                               ("/api/nothing", 404, "INVALID_ARGUMENT"),
                               ("/api/history", 400, "INVALID_ARGUMENT")):
        conn.request("GET", path, headers={"Host": f"127.0.0.1:{console.port}", "Cookie": session})
        resp = conn.getresponse()
        body = resp.read().decode()
        assert "Traceback" not in body
        doc = json.loads(body)
        assert resp.status == status, (path, body)
        assert doc["error"]["code"] == code or (code == "INVALID_DECISION" and doc["error"]["code"].startswith("INVALID")), body


def test_console_listens_on_loopback_only(traffic: Env, capsys: pytest.CaptureFixture[str]) -> None:
    for listen in ("0.0.0.0:8443", "192.0.2.1:8443", "example.com:80", "8443", "[::]:8443"):
        with pytest.raises(ConsoleError):
            check_listen(listen)
    assert check_listen("127.0.0.1:0") == ("127.0.0.1", 0) and check_listen("[::1]:9")[0] == "::1"
    rc = cli.main(["console", "--listen", "0.0.0.0:8443", "--gateway", traffic.addr,
                   "--identity", str(traffic.identity("regulator-1"))])
    err = capsys.readouterr().err
    assert rc != 0 and "INVALID_ARGUMENT" in err and "loopback" in err and "Traceback" not in err


# ------------------------------------------------------------------ in a real browser


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} not found: the console's browser tests DID NOT RUN. Install Debian's chromium."
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        warnings.warn(message, stacklevel=1)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, timeout=TIMEOUT_MS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1400, "height": 900})
    p = ctx.new_page()
    p.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    p.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    p.errors = errors
    try:
        yield p
    finally:
        ctx.close()


def _shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _settled(page: Any, selector: str) -> str:
    page.wait_for_function(f"() => ['verified','failed','unverified','error'].includes("
                           f"document.querySelector('{selector}')?.dataset.state)")
    return str(page.eval_on_selector(selector, "e => e.dataset.state"))


def test_timeline_loads_verified_and_filters(console: Console, traffic: Env, page: Any) -> None:
    before = len(traffic.events())  # the page's own queries are audited too, after it
    page.goto(console.url)
    assert "token" not in page.url  # the redirect dropped it
    assert _settled(page, "#timeline") == "verified", page.inner_text("#status-bar")
    rows = page.locator("#timeline tbody tr")
    assert rows.count() > before
    assert page.locator("#timeline tbody tr[data-verify=verified]").count() == rows.count()
    assert [int(s) for s in rows.evaluate_all("rs => rs.map(r => r.dataset.seq)")] == list(range(rows.count()))
    assert page.get_attribute("#cp-status", "data-verify") == "verified"
    _shot(page, "timeline")
    page.select_option("#filters select[name=decision]", "deny")
    page.click("#apply")
    page.wait_for_function("() => document.querySelectorAll('#timeline tbody tr').length === "
                           f"{len(traffic.events(decision='deny'))} && document.querySelector('#timeline')"
                           ".dataset.state === 'verified'")
    denied = page.locator("#timeline tbody tr").all_inner_texts()
    assert denied and all("\tdeny\t" in r for r in denied)
    _shot(page, "timeline-deny")
    assert not page.errors  # nothing the CSP refused, no script error


def test_chart_renders_as_svg_bars(console: Console, page: Any) -> None:
    page.goto(console.url)
    _settled(page, "#timeline")
    page.click("button[data-view=charts]")
    page.wait_for_function("() => document.querySelector('#charts').dataset.state === 'drawn'")
    assert page.locator("#charts svg").count() == 4
    assert page.locator("#charts svg rect.bar").count() >= 4
    contacts = page.locator("#charts .chart").nth(1)  # escalated's one call (its outcome is not a second contact)
    assert "Contacts by channel" in contacts.inner_text() and contacts.locator("rect.bar").count() == 1
    assert contacts.locator("rect.bar title").text_content() == "call: 1"
    _shot(page, "charts")


def test_checkpoint_and_history_views(console: Console, page: Any) -> None:
    page.goto(console.url)
    _settled(page, "#timeline")
    page.click("button[data-view=checkpoint]")
    page.wait_for_function("() => document.querySelector('#view-checkpoint').dataset.verify")
    assert page.get_attribute("#view-checkpoint", "data-verify") == "verified"
    cosigned = page.locator("#cosigned li")
    assert cosigned.count() == 1 and "regulator.example/witness" in cosigned.inner_text()
    assert "log signature verified" in cosigned.inner_text()
    _shot(page, "checkpoint")
    page.click("button[data-view=history]")
    page.fill("#history-form input[name=borrower]", "B-1")
    page.click("#history-form button")
    assert _settled(page, "#history") == "verified"
    assert page.locator("#history tbody tr").count() > 0
    _shot(page, "history")


def test_an_altered_event_shows_as_failing(traffic: Env, page: Any) -> None:
    _tamper(traffic, "UPDATE audit_events SET leaf = ? WHERE seq = 3", (_edited_leaf(traffic, 3),))
    c = _open(traffic)
    try:
        page.goto(c.url)
        assert _settled(page, "#timeline") == "failed"
        assert page.get_attribute("#timeline tbody tr[data-seq='3']", "data-verify") == "failed"
        assert "FAILS" in page.inner_text("#timeline tbody tr[data-seq='3']")
        others = page.locator("#timeline tbody tr[data-verify=verified]").count()
        assert others == page.locator("#timeline tbody tr").count() - 1
        _shot(page, "tampered")
    finally:
        c.stop()
        c.api.client.close()


def test_without_a_pinned_key_nothing_shows_as_verified(traffic: Env, page: Any, tmp_path: Path) -> None:
    ident = tmp_path / "ident"
    shutil.copytree(traffic.identity("regulator-1"), ident)  # no audit.vkey in it, and no --key
    c = open_console(traffic.addr, str(ident), "127.0.0.1:0", None)
    c.start()
    try:
        page.goto(c.url)
        assert _settled(page, "#timeline") == "unverified"
        assert page.locator("#timeline tbody tr[data-verify=verified]").count() == 0
        assert page.get_attribute("#cp-status", "data-verify") == "unverified"
    finally:
        c.stop()
        c.api.client.close()


def test_first_view_is_the_latest_page_and_pages_back(traffic: Env, page: Any) -> None:
    for _ in range(60):  # a log of two pages and more
        traffic.client("regulator-1").checkpoint()
        try:
            traffic.client("agency-2").get_case("C-2", "collection")
        except Exception:  # noqa: BLE001 - refused, as wanted
            pass
    c = _open(traffic)
    try:
        page.goto(c.url)
        assert _settled(page, "#timeline") == "verified"
        seqs = [int(s) for s in page.locator("#timeline tbody tr").evaluate_all("rs => rs.map(r => r.dataset.seq)")]
        size = int(page.inner_text("#cp-status").split(": ")[1].split(" ")[0])
        assert seqs == list(range(size - 50, size))  # the newest 50, read from the tree size back
        page.click("#prev")
        first = max(0, size - 100)  # a page back; at the log's start the first page, whole
        page.wait_for_function(f"() => document.querySelector('#timeline tbody tr')?.dataset.seq === '{first}'")
        assert _settled(page, "#timeline") == "verified"
        assert page.locator("#timeline tbody tr").count() == 50
    finally:
        c.stop()
        c.api.client.close()
    # Everything the console asked the gateway was the regulator's audit calls: no case was read (no PI).
    mine = traffic.events(org="regulator-1")
    assert mine and "QueryAudit" in {e.method for e in mine}
    assert not [e for e in mine if e.method in ("GetCase", "PullCases", "GetPacket", "SubjectData")]


def test_a_key_other_than_the_logs_fails_the_checkpoint(traffic: Env, page: Any, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    name = (traffic.data / "audit.vkey").read_text().split("+")[0]  # the log's name, another key
    other = tmp_path / "other.vkey"
    other.write_text(verifier_key(name, Ed25519PrivateKey.generate().public_key()) + "\n")
    c = open_console(traffic.addr, str(traffic.identity("regulator-1")), "127.0.0.1:0", str(other))
    c.start()
    try:
        page.goto(c.url)
        assert _settled(page, "#timeline") == "unverified"
        assert page.get_attribute("#cp-status", "data-verify") == "failed"
        assert "FAILS" in page.inner_text("#cp-status")
        assert page.locator("#timeline tbody tr[data-verify=verified]").count() == 0
    finally:
        c.stop()
        c.api.client.close()


def test_a_lenders_officer_sees_its_own_events_verified(traffic: Env, page: Any) -> None:
    """A lender reads no bare checkpoint; its own queries come with one, and the page checks them the same way."""
    c = open_console(traffic.addr, str(traffic.identity("lender-a")), "127.0.0.1:0", str(traffic.data / "audit.vkey"))
    c.start()
    try:
        page.goto(c.url)
        assert _settled(page, "#timeline") == "verified", page.inner_text("#error")
        rows = page.locator("#timeline tbody tr")
        assert rows.count() > 0 and page.locator("#timeline tbody tr[data-verify=verified]").count() == rows.count()
        assert "lender-b" not in page.inner_text("#timeline tbody")  # the gateway keeps it to its own events
        page.click("button[data-view=history]")
        page.fill("#history-form input[name=borrower]", "B-1")
        page.click("#history-form button")
        state = _settled(page, "#history")
        marks = page.locator("#history tbody tr").evaluate_all("rs => rs.map(r => r.dataset.verify)")
        assert marks and "failed" not in marks and "verified" in marks
        assert state == ("verified" if set(marks) == {"verified"} else "unverified")
        _shot(page, "lender-history")
    finally:
        c.stop()
        c.api.client.close()


def test_charts_draw_the_gateways_figures_with_their_checkpoint_checked(console: Console, page: Any) -> None:
    page.goto(console.url)
    _settled(page, "#timeline")
    page.click("button[data-view=charts]")
    page.wait_for_function("() => document.querySelector('#charts').dataset.state === 'drawn'")
    assert page.get_attribute("#charts", "data-source") == "stats", page.inner_text("#chart-source")
    assert page.get_attribute("#charts", "data-verify") == "verified"
    assert "as the gateway counts them" in page.inner_text("#chart-source")
    charts = page.locator("#charts .chart")
    titles = [charts.nth(i).locator("rect.bar title").all_text_contents() for i in range(4)]
    assert sorted(titles[0]) == ["collection: 1", "servicing: 1"]  # the agency's contact, the lender's read
    assert titles[1] == ["call: 1"]
    assert sorted(titles[2]) == ["NO_MANDATE: 1", "PURPOSE_NOT_ALLOWED: 1"]
    _shot(page, "charts-stats")


def test_charts_fall_back_to_counting_verified_events(console: Console, page: Any) -> None:
    console.api.info["stats"] = False  # a client without audit stats
    page.goto(console.url)
    _settled(page, "#timeline")
    page.click("button[data-view=charts]")
    page.wait_for_function("() => document.querySelector('#charts').dataset.state === 'drawn'")
    assert page.get_attribute("#charts", "data-source") == "events"
    assert "counted in the browser" in page.inner_text("#chart-source")
    charts = page.locator("#charts .chart")
    assert charts.nth(1).locator("rect.bar title").all_text_contents() == ["call: 1"]
    assert sorted(charts.nth(2).locator("rect.bar title").all_text_contents()) == [
        "NO_MANDATE: 1", "PURPOSE_NOT_ALLOWED: 1"]


def test_the_command_prints_its_link_and_serves(traffic: Env) -> None:
    import re
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "console", "--listen", "127.0.0.1:0",
                             "--gateway", traffic.addr, "--identity", str(traffic.identity("regulator-1")),
                             "--key", str(traffic.data / "audit.vkey")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        lines = [proc.stdout.readline() for _ in range(3)]
        match = re.search(r"(http://127\.0\.0\.1:(\d+)/\?token=[A-Za-z0-9_-]{43})", "".join(lines))
        assert match, lines
        conn = http.client.HTTPConnection("127.0.0.1", int(match.group(2)), timeout=20)
        conn.request("GET", match.group(1).split(match.group(2), 1)[1], headers={"Host": f"127.0.0.1:{match.group(2)}"})
        resp = conn.getresponse()
        assert resp.status == 303 and "HttpOnly" in (resp.getheader("Set-Cookie") or "")
    finally:
        proc.terminate()
        proc.wait(timeout=20)
