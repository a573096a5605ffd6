"""Browser tests of the portal: Playwright's sync API driving Debian's Chromium (never ``playwright
install``; ../shared/spec/BROWSER-AND-WEBAUTHN.md), against pytest-django's live server at
``http://localhost:<port>`` (a secure context without TLS, so WebAuthn works), with the Chrome DevTools
Protocol's virtual authenticator for security keys and passkeys. One browser per module."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

# Where Debian's Chromium is, how it is launched and its virtual authenticator, as for the XMPP web
# client's browser tests.
from tests.chromium import CHROMIUM, CHROMIUM_ARGS, Authenticator
from tests.web.conftest import alice, portal_settings  # noqa: F401  (fixtures, shared with tests/web)

if not CHROMIUM.exists():
    pytest.skip(
        f"{CHROMIUM} is missing: install Debian's chromium to run the browser tests", allow_module_level=True
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Playwright's sync API runs an event loop in this thread; Django refuses ORM calls from a thread
    # with a running loop unless told that this is safe (it is: nothing here is a coroutine).
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            launched = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
            )
            yield launched
            launched.close()
    finally:
        del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    made = browser.new_context()
    made.set_default_timeout(15_000)
    yield made
    made.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


@pytest.fixture
def authenticator(context: BrowserContext, page: Page) -> Authenticator:
    """A virtual platform authenticator (a passkey store with user verification) for the page."""
    return Authenticator(context, page, None)
