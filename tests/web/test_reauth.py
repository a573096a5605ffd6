"""Re-authentication: every change to how the account signs in needs the password or a second
factor within the last XMPP_REAUTH_SECONDS (a sign-in counts); the re-authentication page, and the
way back to the change."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts import recovery, totp
from accounts.models import User
from sessions_acl.models import AuthEvent
from tests.web.conftest import PROTECTED, Clock, app_of, assertion, code_of, key_of, signed_in_as, text, url

#: Pages behind sign-in that change nothing: everything else is a change and needs a re-authentication.
READING = {
    "accounts:home",
    "accounts:security",
    "accounts:app-passwords",
    "accounts:reauth",
    "accounts:reauth-key-options",
    "accounts:reauth-key-verify",
    "security-log",
    "sessions",
}
CHANGES = [name for name in PROTECTED if name not in READING]
#: Where a change that only answers a page's script comes back to.
BACK = {
    "accounts:key-add-options": "/account/security/keys/add/",
    "accounts:key-add-verify": "/account/security/keys/add/",
    "session-end": "/account/sessions/",
    "client-revoke": "/account/sessions/",
    "sign-out-others": "/account/sessions/",
}


def test_the_changes_are_all_there() -> None:
    assert {
        "accounts:totp-add",
        "accounts:recovery-generate",
        "accounts:key-remove",
        "accounts:key-rename",
        "accounts:app-password-create",
        "accounts:app-password-revoke",
        "accounts:password",
        "accounts:policy",
        "session-end",
        "client-revoke",
        "sign-out-others",
    } <= set(CHANGES)
    assert len(CHANGES) == 17


@pytest.fixture
def stale(client: Client, alice: User, clock: Clock) -> Client:
    """Signed in (verified), longer ago than the re-authentication window."""
    signed_in_as(client, alice, device=app_of(alice))
    clock.advance(301)
    return client


@pytest.mark.parametrize("method", ["get", "post"])
@pytest.mark.parametrize("name", CHANGES)
def test_each_change_needs_a_recent_reauthentication(
    stale: Client, alice: User, name: str, method: str
) -> None:
    recovery.generate(alice)
    response = getattr(stale, method)(url(name), {"name": "x", "code": "123456"})
    back = BACK.get(name, url(name))
    assert response.status_code == 302
    assert response["Location"] == f"/account/reauth/?next={back.replace('/', '%2F')}"
    assert recovery.remaining_codes(alice) == 10  # nothing changed
    assert totp.confirmed_devices(alice).count() == 1


def test_the_sign_in_counts_as_a_reauthentication(client: Client, alice: User, clock: Clock) -> None:
    signed_in_as(client, alice)
    clock.advance(299)
    assert "Add an authenticator app" in text(client.get("/account/security/totp/add/"))


def test_a_password_reauthenticates_and_comes_back(stale: Client) -> None:
    response = stale.get("/account/security/totp/add/", follow=True)
    page = text(response)
    assert "Confirm it is you" in page
    assert "Code from your authenticator app" in page
    assert "Recovery code" not in page  # alice has none
    response = stale.post(
        response.redirect_chain[-1][0], {"factor": "password", "password-password": "wonderland"}
    )
    assert response["Location"] == "/account/security/totp/add/"
    assert "Add an authenticator app" in text(stale.get("/account/security/totp/add/"))


def test_a_wrong_password_is_refused_and_logged(stale: Client, alice: User) -> None:
    response = stale.post("/account/reauth/", {"factor": "password", "password-password": "nope"})
    assert "Wrong password." in text(response)
    event = AuthEvent.objects.filter(user=alice).order_by("-id")[0]
    assert (event.kind, event.detail) == (
        AuthEvent.Kind.LOGIN_FAILED,
        "web re-authentication: password: wrong password",
    )
    assert stale.get("/account/security/totp/add/").status_code == 302


def test_a_code_from_the_app_reauthenticates(stale: Client, alice: User) -> None:
    device = totp.confirmed_devices(alice).get()
    response = stale.post(
        "/account/reauth/?next=/account/security/recovery/",
        {"factor": "totp", "totp-code": code_of(device, 1)},
    )
    assert response["Location"] == "/account/security/recovery/"


def test_a_wrong_code_is_refused(stale: Client) -> None:
    response = stale.post("/account/reauth/", {"factor": "totp", "totp-code": "abc"})
    assert "Wrong code" in text(response)


def test_a_recovery_code_reauthenticates_and_is_used_up(stale: Client, alice: User) -> None:
    codes = recovery.generate(alice)
    response = stale.post("/account/reauth/", {"factor": "recovery", "recovery-code": codes[2]}, follow=True)
    assert "You have 9 unused recovery codes left." in text(response)
    assert not recovery.use_code(alice.pk, codes[2]).ok


def test_a_security_key_reauthenticates(client: Client, alice: User, clock: Clock) -> None:
    key, _credential = key_of(alice)
    signed_in_as(client, alice, device=app_of(alice))
    clock.advance(301)
    assert "Use a security key or passkey" in text(client.get("/account/reauth/"))
    response = assertion(
        client,
        key,
        "/account/reauth/key/options/",
        "/account/reauth/key/verify/",
        next="/account/security/keys/add/",
    )
    assert response.json() == {"redirect": "/account/security/keys/add/"}
    assert client.get("/account/security/keys/add/").status_code == 200


def test_it_ignores_a_next_of_another_site(stale: Client) -> None:
    response = stale.post(
        "/account/reauth/?next=https://evil.example/",
        {"factor": "password", "password-password": "wonderland"},
    )
    assert response["Location"] == "/account/security/"
