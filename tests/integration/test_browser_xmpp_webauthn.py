"""WebAuthn over XMPP in a real browser (issue 10, item 8): the page xmppauth/static/xmppauth/webclient.html,
served by the server itself, logs in over /xmpp-websocket (RFC 7395) with SASL2 (SCRAM-SHA-256) and answers the
X-WEBAUTHN task with navigator.credentials.get() in headless Chromium, whose virtual authenticator (Chrome
DevTools Protocol) holds the very credential the server registered for the account (docs/protocol/webclient.md).

What a user sees is asserted from the page's log; what the server recorded from ``listsessions``. A wrong
password and an authenticator without the account's key fail visibly and record no session.
Chromium comes from Debian (/usr/bin/chromium), never from ``playwright install``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.chromium import CHROMIUM, CHROMIUM_ARGS, Authenticator, b64
from tests.integration.server import ACCOUNTS, Server, running_server
from tests.integration.test_grants import manage
from tests.integration.test_mfa import enrolled, fresh_code
from tests.integration.test_webauthn_task import PASSWORD, origin, with_key
from xmppauth.client.softkey import SoftKey, unb64url

LOGIN_DEADLINE_MS = 30_000  # the page gives up on a silent server after 30 s per answer itself

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="/usr/bin/chromium is missing: the browser tests need Debian's chromium (apt-get install chromium); "
        "never `playwright install`",
    ),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("browser-webauthn")) as srv:
        yield srv


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh profile per test: its own storage (user-agent id) and its own authenticators."""
    ctx = browser.new_context()
    try:
        yield ctx
    finally:
        ctx.close()


def open_client(page: Page, server: Server) -> None:
    page.goto(f"{origin(server)}/static/xmppauth/webclient.html")
    assert page.title().startswith("xmppauth web client")


def log_in(page: Page, jid: str, password: str) -> str:
    """Type the address and password as a user would, log in, wait for the end; the log's text."""
    page.get_by_label("Address (JID)", exact=True).fill(jid)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_selector("#log[data-state='closed']", timeout=LOGIN_DEADLINE_MS * 2)
    return page.get_by_role("log").inner_text()


def sessions(server: Server, name: str) -> str:
    return manage(server, "listsessions", "--all", "--user", name)


def ended_sessions(server: Server, name: str, deadline: float = 10.0) -> str:
    """The account's session records once none is live: the end is recorded just after the socket closes."""
    give_up = time.monotonic() + deadline
    while True:
        record = sessions(server, name)
        if " live" not in record or time.monotonic() > give_up:
            return record
        time.sleep(0.2)


def test_the_page_logs_in_with_the_security_key_in_the_browser(
    server: Server, context: BrowserContext, tmp_path: Path
) -> None:
    name, path = with_key(server, tmp_path)
    key = SoftKey.load(path)
    assert key.rp_id == "localhost"
    page = context.new_page()
    authenticator = Authenticator(context, page, key)
    open_client(page, server)
    log = log_in(page, f"{name}@localhost", PASSWORD)
    assert "connected: WebSocket open with subprotocol xmpp" in log, log
    assert re.search(r"mechanisms offered: .*SCRAM-SHA-256", log), log
    assert f"authenticating as {name}@localhost with SCRAM-SHA-256" in log, log
    assert "tasks offered: X-WEBAUTHN" in log, log
    assert "task X-WEBAUTHN: asking the server" in log, log
    assert "security key: the authenticator signed" in log, log
    assert "the server proved that it knows the password" in log, log  # SCRAM's v= in <continue/>
    assert re.search(rf"success: logged in as {name}@localhost/web~\S+ \(bound with Bind2\)", log), log
    assert "second factor: X-WEBAUTHN" in log, log
    assert re.search(r"ping: the server answered in \d+ ms", log), log
    assert log.rstrip().endswith("closed: the stream and the WebSocket are closed"), log
    assert "failure" not in log, log
    assert "error" not in log, log
    assert page.get_by_role("log").get_attribute("data-outcome") == "success"
    # the browser's authenticator signed with the server's credential, and its counter moved on
    [credential] = authenticator.credentials()
    assert credential["credentialId"] == b64(unb64url(key.credential_id))
    assert credential["signCount"] == key.sign_count + 1
    record = ended_sessions(server, name)
    assert "SCRAM-SHA-256+X-WEBAUTHN" in record, record
    assert "websocket" in record, record
    assert re.search(rf"{name}@localhost/web~\S+", record), record
    assert "(closed by the client)" in record, record  # the page closed the stream cleanly


def test_a_wrong_password_shows_the_servers_failure(
    server: Server, context: BrowserContext, tmp_path: Path
) -> None:
    name, path = with_key(server, tmp_path)
    page = context.new_page()
    Authenticator(context, page, SoftKey.load(path))
    open_client(page, server)
    log = log_in(page, f"{name}@localhost", "not-" + PASSWORD)
    assert "failure: not-authorized: invalid credentials" in log, log  # the server's <text/>
    assert "tasks offered" not in log, log  # the key is never asked for after a wrong password
    assert "success" not in log, log
    assert log.rstrip().endswith("closed: the stream and the WebSocket are closed"), log
    assert page.get_by_role("log").get_attribute("data-outcome") == "failure"
    assert "no sessions" in sessions(server, name)


def test_an_authenticator_without_the_accounts_key_fails_visibly(
    server: Server, context: BrowserContext, tmp_path: Path
) -> None:
    name, _ = with_key(server, tmp_path)
    page = context.new_page()
    authenticator = Authenticator(context, page, None)  # a key, but not this account's
    open_client(page, server)
    log = log_in(page, f"{name}@localhost", PASSWORD)
    assert "tasks offered: X-WEBAUTHN" in log, log
    assert "aborting the login: the browser gave no assertion (NotAllowedError" in log, log
    assert "failure: aborted: the browser gave no assertion" in log, log
    assert "success" not in log, log
    assert page.get_by_role("log").get_attribute("data-outcome") == "failure"
    assert authenticator.credentials() == []
    assert "no sessions" in sessions(server, name)


def test_an_account_without_a_second_factor_needs_no_task(server: Server, context: BrowserContext) -> None:
    page = context.new_page()
    open_client(page, server)
    log = log_in(page, "carol@localhost", ACCOUNTS["carol"])
    assert "tasks offered" not in log, log
    assert re.search(r"success: logged in as carol@localhost/web~\S+", log), log
    assert re.search(r"ping: the server answered in \d+ ms", log), log
    assert "SCRAM-SHA-256 (" in sessions(server, "carol")


def test_a_code_typed_into_the_page_answers_the_totp_task(server: Server, context: BrowserContext) -> None:
    name, secret = enrolled(server)
    page = context.new_page()
    open_client(page, server)
    log = log_in(page, f"{name}@localhost", PASSWORD)  # no code typed: the page says what to do
    assert "tasks offered: TOTP" in log, log
    assert "failure: aborted: the server asks for a code from your authenticator app" in log, log
    page.get_by_label("Code from an authenticator app").fill(fresh_code(secret))
    log = log_in(page, f"{name}@localhost", PASSWORD)
    assert "task TOTP: answering with the code" in log, log
    assert re.search(rf"success: logged in as {name}@localhost/web~\S+ .*second factor: TOTP", log), log
    assert re.search(r"ping: the server answered in \d+ ms", log), log
    assert "SCRAM-SHA-256+TOTP" in ended_sessions(server, name)
