"""The portal in a real browser: setting up an authenticator app and signing in with it, registering a
passkey and signing in with password and key, and a passkey sign-in without a password."""

from __future__ import annotations

import time
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from accounts.models import User, WebAuthnCredential
from sessions_acl.models import AuthEvent
from xmppauth.client.tasks import secret_from_base32, totp_code

pytestmark = pytest.mark.usefixtures("transactional_db")


def sign_in_with_password(page: Page, base: str) -> None:
    page.goto(f"{base}/")
    page.get_by_label("Username", exact=True).fill("alice")
    page.get_by_label("Password", exact=True).fill("wonderland")
    page.get_by_role("button", name="Sign in", exact=True).click()


def sign_out(page: Page) -> None:
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_text("You are signed out.")).to_be_visible()


def register_passkey(page: Page, base: str, name: str) -> None:
    sign_in_with_password(page, base)
    expect(page.get_by_text("Signed in as alice@localhost")).to_be_visible()
    page.get_by_role("link", name="Security", exact=True).first.click()
    page.get_by_role("link", name="Add a security key or passkey").click()
    page.get_by_label("Name", exact=True).fill(name)
    page.get_by_role("button", name="Register").click()
    expect(page.get_by_text(f"Security key “{name}” added.")).to_be_visible()


def test_it_sets_up_an_authenticator_app_and_signs_in_with_it(
    page: Page, live_server: Any, alice: User
) -> None:
    sign_in_with_password(page, live_server.url)
    expect(page.get_by_text("Signed in as alice@localhost")).to_be_visible()
    page.get_by_role("link", name="Security", exact=True).first.click()
    page.get_by_role("link", name="Add an authenticator app").click()
    page.get_by_label("Name", exact=True).fill("phone")
    page.get_by_role("button", name="Next: show the QR code").click()
    expect(page.locator("figure.qr svg")).to_be_visible()
    secret = secret_from_base32(page.locator("#totp-secret").inner_text())
    page.get_by_label("Code from your authenticator app").fill(totp_code(secret))
    page.get_by_role("button", name="Confirm and add the app").click()
    expect(page.get_by_text("Authenticator app “phone” added.")).to_be_visible()

    sign_out(page)
    sign_in_with_password(page, live_server.url)
    expect(page.get_by_role("heading", name="Second step")).to_be_visible()
    page.get_by_label("Code from your authenticator app").fill(totp_code(secret, time.time() + 30))
    page.get_by_role("button", name="Confirm with this code").click()
    expect(page.get_by_text("Signed in as alice@localhost")).to_be_visible()
    assert AuthEvent.objects.filter(user=alice, detail="web sign-in: password+totp").exists()


@pytest.mark.usefixtures("authenticator")
def test_it_registers_a_passkey_and_signs_in_with_password_and_key(
    page: Page, live_server: Any, alice: User
) -> None:
    register_passkey(page, live_server.url, "laptop")
    assert WebAuthnCredential.objects.get(user=alice).name == "laptop"
    expect(page.get_by_role("cell", name="laptop", exact=True)).to_be_visible()

    sign_out(page)
    sign_in_with_password(page, live_server.url)
    expect(page.get_by_role("heading", name="Second step")).to_be_visible()
    page.get_by_role("button", name="Use a security key or passkey").click()
    expect(page.get_by_text("Signed in as alice@localhost")).to_be_visible()
    assert AuthEvent.objects.filter(user=alice, detail="web sign-in: password+security key").exists()


@pytest.mark.usefixtures("authenticator")
def test_it_signs_in_with_a_passkey_alone(page: Page, live_server: Any, alice: User) -> None:
    register_passkey(page, live_server.url, "this computer")
    sign_out(page)
    page.get_by_role("button", name="Sign in with a passkey").click()
    expect(page.get_by_text("Signed in as alice@localhost")).to_be_visible()
    assert AuthEvent.objects.filter(user=alice, detail="web sign-in: passkey").exists()
