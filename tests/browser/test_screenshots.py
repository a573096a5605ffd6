"""Screenshots of the portal's main pages and the admin in Chromium against a real server (``manage.py
serve``), at a phone's width (390 px) and a desktop's (1280 px), each page checked for what it should show
first. Saved to docs/screenshots/<name>-<width>.png with XMPP_SAVE_SCREENSHOTS=1 (`make screenshots`), else
to a temporary directory, so that a test run leaves the checkout as it was.

At 390 px no portal page may scroll sideways (readable on a phone, issue 11): the document is no wider than
the viewport.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect

from tests.integration.rawclient import Session
from tests.integration.server import ROOT, Server, running_server
from tests.integration.test_mfa import fresh_code, secret_of

pytestmark = pytest.mark.integration

PHONE, DESKTOP = 390, 1280
WIDTHS = (PHONE, DESKTOP)
HEIGHT = 844

USER, USER_PASSWORD = "dana", "correct-horse-battery"
OPERATOR, OPERATOR_PASSWORD = "oper", "operator-staple"


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    if os.environ.get("XMPP_SAVE_SCREENSHOTS") == "1":
        saved = ROOT / "docs" / "screenshots"
        saved.mkdir(parents=True, exist_ok=True)
        yield saved
    else:
        with tempfile.TemporaryDirectory(prefix="xmppauth-screenshots-") as scratch:
            yield Path(scratch)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("screenshots"), accounts={}) as srv:
        yield srv


def account_with_totp(server: Server, name: str, password: str, *extra: str) -> bytes:
    """A new account with a confirmed authenticator app (``manage.py totp add``); the app's secret."""
    done = server.manage("adduser", name, password, *extra)
    assert done.returncode == 0, done.stderr
    totp = server.manage("totp", "add", name)
    assert totp.returncode == 0, totp.stderr
    uri = re.search(r"otpauth://totp/\S+", totp.stdout)
    assert uri is not None, totp.stdout
    return secret_of(uri.group(0))


class Shooter:
    """Full-page screenshots of one page at each width, and the pages that scroll sideways at 390 px."""

    def __init__(self, page: Page, folder: Path) -> None:
        self.page = page
        self.folder = folder
        self.overflowing: list[str] = []
        self.saved: list[Path] = []

    def shoot(self, name: str, shows: Locator, *, portal: bool = True) -> None:
        for width in WIDTHS:
            self.page.set_viewport_size({"width": width, "height": HEIGHT})
            expect(shows).to_be_visible()
            if width == PHONE and portal:
                scroll = int(self.page.evaluate("document.documentElement.scrollWidth"))
                if scroll > PHONE + 1:
                    self.overflowing.append(f"{name} ({self.page.url}): {scroll} px wide")
            path = self.folder / f"{name}-{width}.png"
            self.page.screenshot(path=str(path), full_page=True)
            assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
            self.saved.append(path)


def sign_in(
    page: Page,
    server: Server,
    name: str,
    password: str,
    secret: bytes,
    shots: Shooter | None,
    port: int | None = None,
) -> None:
    """On the public listener, or the one on ``port`` (the admin's)."""
    page.goto(f"http://localhost:{port or server.http}/")
    if shots is not None:
        shots.shoot("sign-in", page.get_by_role("heading", name="Sign in"))
    page.get_by_label("Username", exact=True).fill(name)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()
    if shots is not None:
        shots.shoot("second-step", page.get_by_role("heading", name="Second step"))
    else:
        expect(page.get_by_role("heading", name="Second step")).to_be_visible()
    page.get_by_label("Code from your authenticator app").fill(fresh_code(secret))
    page.get_by_role("button", name="Confirm with this code").click()
    expect(page.get_by_text(f"Signed in as {name}@localhost")).to_be_visible()


def test_screenshots_of_the_main_pages(page: Page, server: Server, folder: Path) -> None:
    base = f"http://localhost:{server.http}"
    secret = account_with_totp(server, USER, USER_PASSWORD)
    operator_secret = account_with_totp(server, OPERATOR, OPERATOR_PASSWORD, "--staff")
    shots = Shooter(page, folder)

    sign_in(page, server, USER, USER_PASSWORD, secret, shots)
    shots.shoot("dashboard", page.get_by_role("heading", name="Your account"))

    page.goto(f"{base}/account/app-passwords/new/")
    shots.shoot("app-password-new", page.get_by_role("heading", name="Create an app password"))
    page.get_by_label("Label", exact=True).fill("backup bot")
    page.get_by_label("Expires after (days)").fill("90")
    page.locator("input[name='scopes']").first.check()
    page.get_by_role("button", name="Create the app password").click()
    shots.shoot("app-password-created", page.get_by_role("heading", name="Your new app password"))
    app_password = page.locator("#app-password-secret").inner_text().strip()
    assert app_password
    page.get_by_role("link", name="I have copied it").click()
    shots.shoot("app-passwords", page.get_by_role("cell", name="backup bot", exact=True))

    # A bot logged in with the app password: the sessions page shows it online.
    bot = Session(server, USER, app_password, software="Backup bot")
    try:
        assert bot.ok, bot.reply
        page.goto(f"{base}/account/sessions/")
        expect(page.locator("#live tbody tr", has_text=bot.jid).locator("[data-status]")).to_have_text(
            "Online", timeout=10_000
        )
        shots.shoot("sessions", page.get_by_role("heading", name="Clients and sessions"))
    finally:
        bot.close()

    for name, path, heading in (
        ("security", "/account/security/", "Security"),
        ("password", "/account/password/", "Change your password"),
        ("policy", "/account/policy/", "XMPP login policy"),
        ("security-log", "/account/log/", "Security log"),
    ):
        page.goto(base + path)
        shots.shoot(name, page.get_by_role("heading", name=heading, exact=True))

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("You are signed out.")).to_be_visible()
    # the admin on its own listener (XMPP_ADMIN_HTTP), where the operator signs in
    sign_in(page, server, OPERATOR, OPERATOR_PASSWORD, operator_secret, None, port=server.admin_http)
    page.goto(f"http://localhost:{server.admin_http}/admin/")
    shots.shoot("admin", page.locator("#content h1"), portal=False)
    expect(page.locator("#content")).to_contain_text("Site administration")

    assert len(shots.saved) == 2 * 12
    assert shots.overflowing == [], "pages that scroll sideways at 390 px: " + "; ".join(shots.overflowing)
