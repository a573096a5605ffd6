"""The clients and sessions page in a real browser against a real server (``manage.py serve``): XMPP
clients logging in appear without a reload, one that disconnects goes offline, and revoking one from the
page closes its stream. Saves the page's screenshot (to docs/screenshots/sessions.png with
XMPP_SAVE_SCREENSHOTS=1: `make screenshots`).

The XMPP clients are ``tests.integration.rawclient.Session`` logins (SASL2 PLAIN with a user agent, Bind2)
over direct TLS, kept open in this thread while the browser watches, and the project's reference client
(``python -m xmppauth.client``) as a subprocess. That command logs in, does its ``--send`` and ``--ping``
and closes at once: it has no option to stay connected. :data:`STAY` runs the same command (its ``main``:
arguments, TLS, SASL2 with its user agent, Bind2, JSON reports, exit codes) with one change: ``--ping``
waits for whatever the server sends until the server ends the stream.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.integration.rawclient import Session
from tests.integration.server import ROOT, Server, running_server

pytestmark = pytest.mark.integration

#: docs/screenshots/sessions.png (shown in the README) when XMPP_SAVE_SCREENSHOTS=1 (`make screenshots`); else a
#: file of the test's own, so that a test run leaves the checkout as it was.
SCREENSHOT = (
    ROOT / "docs" / "screenshots" / "sessions.png"
    if os.environ.get("XMPP_SAVE_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / "xmppauth-sessions.png"
)
#: ``python -m xmppauth.client`` with --ping replaced by staying connected until the server ends the stream.
STAY = """
import sys
from xmppauth.client import cli

async def stay(transport, domain, report):
    report("online", "logged in; connected until the server ends the stream")
    while True:
        await transport.receive()

cli.ping = stay
sys.exit(cli.main(sys.argv[1:]))
"""
LIVE_MS = 10_000  # the page looks every 2 s (XMPP_PORTAL_LIVE_SECONDS); allow for a slow machine


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("sessions-live")) as srv:
        yield srv


def sign_in(page: Page, server: Server) -> None:
    page.goto(f"http://localhost:{server.http}/")
    page.get_by_label("Username", exact=True).fill("alice")
    page.get_by_label("Password", exact=True).fill("wonderland")
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_text("Signed in as alice@localhost")).to_be_visible()


def client_row(page: Page, software: str) -> Locator:
    return page.locator("#clients tbody tr", has_text=software)


def session_row(page: Page, session: Session) -> Locator:
    return page.locator("#live tbody tr", has_text=session.jid)


def test_clients_appear_go_offline_and_are_revoked_live(page: Page, server: Server) -> None:
    sign_in(page, server)
    page.goto(f"http://localhost:{server.http}/account/sessions/")
    expect(page.get_by_role("heading", name="Clients and sessions")).to_be_visible()
    expect(page.get_by_text("Live: this page updates itself")).to_be_visible()
    page.evaluate("window.notReloaded = true")

    phone = Session(server, "alice", "wonderland", software="Conversations")
    laptop = Session(server, "alice", "wonderland", software="Gajim")
    try:
        assert phone.ok, phone.reply
        assert laptop.ok, laptop.reply
        for session, software in ((phone, "Conversations"), (laptop, "Gajim")):
            expect(session_row(page, session).locator("[data-status]")).to_have_text(
                "Online", timeout=LIVE_MS
            )
            expect(session_row(page, session)).to_contain_text("TCP, direct TLS")
            expect(session_row(page, session)).to_contain_text("PLAIN with the password")
            expect(client_row(page, software).locator("[data-status]")).to_have_text("Online")
        expect(page.get_by_text("No XMPP session of your account is online right now.")).to_have_count(0)
        assert page.evaluate("window.notReloaded") is True
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOT), full_page=True)

        laptop.close()  # the client goes away by itself
        expect(session_row(page, laptop).locator("[data-status]")).to_have_text("Ended", timeout=LIVE_MS)
        expect(client_row(page, "Gajim").locator("[data-status]")).to_have_text("Offline", timeout=LIVE_MS)
        assert page.evaluate("window.notReloaded") is True

        client_row(page, "Conversations").get_by_role("button", name="Revoke").click()
        expect(page.get_by_text("Revoked Conversations: its sessions end now")).to_be_visible()
        closed = phone.raw.read_to_close(timeout=5).decode()
        assert "policy-violation" in closed, closed
        assert "this client was revoked by alice@localhost (web)" in closed, closed
        expect(client_row(page, "Conversations").locator("[data-status]")).to_have_text("Revoked")
        expect(page.locator("#live tbody tr:not(.ended)", has_text=phone.jid)).to_have_count(
            0, timeout=LIVE_MS
        )
        expect(page.get_by_role("button", name="Revoke Conversations")).to_have_count(0)
    finally:
        phone.close()
        laptop.close()
    assert SCREENSHOT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    page.get_by_role("link", name="Security log").first.click()
    expect(page.get_by_role("cell", name="client Conversations, by alice@localhost (web)")).to_be_visible()


class RefClient:
    """The reference client logged in as alice over direct TLS, staying connected: its JSON reports."""

    def __init__(self, server: Server) -> None:
        cmd = [
            sys.executable, "-c", STAY, "alice@localhost", "--json", "--transport", "tls",
            "--host", "127.0.0.1", "--port", str(server.c2s_tls), "--cafile", str(server.cert),
            "--password", "wonderland", "--timeout", "120", "--ping",
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if k != "XMPPAUTH_PASSWORD"}
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True
        )
        self.lines: list[dict[str, object]] = []

    def until(self, event: str) -> dict[str, object]:
        """Read reports up to the first ``event`` (the process ending first fails)."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(json.loads(line))
            if self.lines[-1]["event"] == event:
                return self.lines[-1]
        raise AssertionError(f"no {event!r} report: {self.lines}, exit {self.proc.wait()}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def test_the_reference_client_appears_live_and_is_revoked(page: Page, server: Server) -> None:
    sign_in(page, server)
    page.goto(f"http://localhost:{server.http}/account/sessions/")
    expect(page.get_by_text("Live: this page updates itself")).to_be_visible()
    page.evaluate("window.notReloaded = true")

    client = RefClient(server)
    try:
        jid = str(client.until("success")["jid"])
        assert jid.startswith("alice@localhost/refclient~"), client.lines
        client.until("online")
        row = page.locator("#live tbody tr", has_text=jid)
        expect(row.locator("[data-status]")).to_have_text("Online", timeout=LIVE_MS)
        expect(row).to_contain_text("TCP, direct TLS")
        expect(row).to_contain_text("SCRAM-SHA-256")
        # The software name is the one of its SASL2 user agent.
        expect(client_row(page, "xmppauth-client").locator("[data-status]")).to_have_text("Online")
        assert page.evaluate("window.notReloaded") is True

        client_row(page, "xmppauth-client").get_by_role("button", name="Revoke").click()
        expect(page.get_by_text("Revoked xmppauth-client: its sessions end now")).to_be_visible()
        # Its stream is closed: the client reports the server's stream error and exits with 3.
        error = client.until("error")
        assert client.proc.wait(timeout=10) == 3, client.lines
        assert "policy-violation" in str(error["message"]), error
        assert "this client was revoked by alice@localhost (web)" in str(error["message"]), error
        expect(client_row(page, "xmppauth-client").locator("[data-status]")).to_have_text("Revoked")
        expect(page.locator("#live tbody tr:not(.ended)", has_text=jid)).to_have_count(0, timeout=LIVE_MS)
    finally:
        client.close()
