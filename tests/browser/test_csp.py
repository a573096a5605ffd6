"""The Content-Security-Policy in a real browser (docs/deploy.md): Chromium against a real server
(``manage.py serve``: HTTP, the portal's live WebSocket and XMPP over WebSocket in one process) signs in, walks
through the portal's pages, the admin and the XMPP web client's page, and no page reports a violation of the
policy while its scripts still work: the passkey button registers a key, the sessions page's live connection
opens (``connect-src 'self'`` covers ws://), the web client opens its WebSocket.

Violations are caught twice: a ``securitypolicyviolation`` listener each page gets before its own scripts
(``add_init_script``) and Chromium's console messages. A first test shows both catch an inline script.
"""

from __future__ import annotations

import re
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, ConsoleMessage, Page, expect

from tests.chromium import Authenticator
from tests.integration.server import Server, running_server
from tests.integration.test_mfa import fresh_code, secret_of
from xmppauth.security_headers import policy_header

pytestmark = pytest.mark.integration

WATCH = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (event) => {
  window.__cspViolations.push(`${event.violatedDirective} ${event.blockedURI} ${event.sourceFile}:${event.lineNumber}`);
});
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("csp")) as srv:
        done = srv.manage("adduser", "oper", "operator", "--staff")
        assert done.returncode == 0, done.stderr
        totp = srv.manage("totp", "add", "oper")  # the admin asks every operator for a second factor
        assert totp.returncode == 0, totp.stderr
        OPERATOR_SECRET.append(secret_of(re.search(r"otpauth://totp/\S+", totp.stdout).group(0)))  # type: ignore[union-attr]
        yield srv


class Watched:
    """A page whose CSP violations are collected: :meth:`violations` since the last call."""

    def __init__(self, context: BrowserContext, page: Page) -> None:
        self.page = page
        self.console: list[str] = []
        context.add_init_script(WATCH)
        page.on("console", self._console)

    def _console(self, message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text or "Content-Security-Policy" in message.text:
            self.console.append(message.text)

    def violations(self) -> list[str]:
        found = list(self.console)
        self.console.clear()
        try:
            found += self.page.evaluate("window.__cspViolations || []")
        except Exception as exc:  # a page navigating away: its list is gone
            found.append(f"could not read the page's violations: {exc}")
        return found

    def goto(self, url: str) -> Any:
        response = self.page.goto(url)
        assert response is not None, url
        assert response.ok, url
        assert "'unsafe-inline'" not in (response.header_value("content-security-policy") or "")
        return response


@pytest.fixture
def watched(context: BrowserContext, page: Page) -> Watched:
    return Watched(context, page)


def sends_the_policy(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=10) as answer:
        return bool(answer.headers.get("Content-Security-Policy") == policy_header())


OPERATOR_SECRET: list[bytes] = []  # oper's authenticator app (the server fixture sets it up)


def sign_in(
    watched: Watched,
    server: Server,
    username: str,
    password: str,
    secret: bytes | None = None,
    port: int | None = None,
) -> None:
    """On the public listener, or the one on ``port`` (the admin's)."""
    page = watched.page
    response = watched.goto(f"http://localhost:{port or server.http}/")
    assert response.header_value("content-security-policy") == policy_header()
    page.get_by_label("Username", exact=True).fill(username)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in", exact=True).click()
    if secret is not None:  # the second step, with a code from the authenticator app
        page.locator("input[name='totp-code']").fill(fresh_code(secret))
        page.get_by_role("button", name="Confirm with this code").click()
    expect(page.get_by_text(f"Signed in as {username}@localhost")).to_be_visible()


def test_the_watch_catches_an_inline_script(watched: Watched, server: Server) -> None:
    watched.goto(f"http://localhost:{server.http}/")
    watched.page.evaluate(
        """() => { const s = document.createElement("script"); s.textContent = "window.__ran = true";
                   document.body.append(s); }"""
    )
    watched.page.wait_for_function("window.__cspViolations.length > 0")
    assert watched.page.evaluate("window.__ran === undefined")
    found = watched.violations()
    assert any("script-src" in line for line in found), found


def test_the_portal_runs_under_the_policy(
    watched: Watched, context: BrowserContext, page: Page, server: Server
) -> None:
    base = f"http://localhost:{server.http}"
    sign_in(watched, server, "alice", "wonderland")
    assert watched.violations() == []

    for path in (
        "/",
        "/account/app-passwords/",
        "/account/app-passwords/new/",
        "/account/security/",
        "/account/password/",
        "/account/policy/",
        "/account/log/",
    ):
        watched.goto(base + path)
        expect(page.locator("main h1")).to_be_visible()
        assert watched.violations() == [], path

    # The sessions page's script opens its live WebSocket (connect-src 'self' covers ws://).
    watched.goto(f"{base}/account/sessions/")
    expect(page.get_by_text("Live: this page updates itself")).to_be_visible()
    assert watched.violations() == []

    # The security page's WebAuthn script is wired: a passkey is registered with the virtual authenticator.
    Authenticator(context, page, None)
    watched.goto(f"{base}/account/security/keys/add/")
    page.get_by_label("Name", exact=True).fill("laptop")
    page.get_by_role("button", name="Register").click()
    expect(page.get_by_text("Security key “laptop” added.")).to_be_visible()
    assert watched.violations() == []


def test_the_admin_runs_under_the_policy(watched: Watched, page: Page, server: Server) -> None:
    # the admin's own listener (XMPP_ADMIN_HTTP), which serves the portal's sign-in too
    base = f"http://localhost:{server.admin_http}"
    sign_in(watched, server, "oper", "operator", OPERATOR_SECRET[0], port=server.admin_http)
    for path in (
        "/admin/",
        "/admin/accounts/user/",
        "/admin/sessions_acl/session/",
        "/admin/accounts/user/add/",
    ):
        watched.goto(base + path)
        expect(page.locator("#content")).to_be_visible()
        assert watched.violations() == [], path
    # The admin's scripts run: the sidebar's filter (nav_sidebar.js) and the changelist's action bar.
    watched.goto(f"{base}/admin/accounts/user/")
    expect(page.locator("#nav-filter")).to_be_visible()
    page.locator("#action-toggle").check()
    expect(page.locator(".action-counter")).to_have_text(re.compile(r"\s*([1-9][0-9]*) of \1 selected\s*"))
    assert watched.violations() == []


def test_the_web_client_runs_under_the_policy(watched: Watched, page: Page, server: Server) -> None:
    url = f"http://localhost:{server.http}/static/xmppauth/webclient.html"
    assert sends_the_policy(url)  # the static files carry it too (xmppauth/asgi.py)
    response = watched.goto(url)
    assert response.header_value("content-security-policy") == policy_header()
    page.get_by_label("Address (JID)").fill("bob@localhost")
    page.get_by_label("Password", exact=True).fill("builder")
    page.get_by_role("button", name="Log in").click()
    # Its script ran, opened the WebSocket to this host (connect-src 'self') and logged in.
    expect(page.locator("#log")).to_contain_text("WebSocket open", timeout=15_000)
    expect(page.locator("#log")).to_contain_text("success: logged in as bob@localhost", timeout=15_000)
    assert watched.violations() == []
