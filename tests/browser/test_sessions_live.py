"""The clients and sessions page in a real browser against a real server (``manage.py serve``): XMPP
clients logging in appear without a reload, one that disconnects goes offline, and revoking one from the
page closes its stream. Saves the page's screenshot (to docs/screenshots/sessions.png with
XMPP_SAVE_SCREENSHOTS=1: `make screenshots`).

The XMPP clients are ``tests.integration.rawclient.Session`` logins (SASL2 PLAIN with a user agent, Bind2)
over direct TLS, kept open in this thread while the browser watches.
"""

from __future__ import annotations

import os
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
