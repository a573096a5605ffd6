"""The password page: the current password and the new one twice, what XMPP needs of it, through the one
password door (new SCRAM keys, the security log), the other sessions ended or kept, a client revoked
in the same step, this browser signed in and the others signed out."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from accounts.models import User
from sessions_acl import credentials, records
from sessions_acl.login import Authorization, authorize
from sessions_acl.models import AuthEvent, FastToken, Grant, Revocation
from sessions_acl.models import Client as XmppClient
from tests.web.conftest import Clock, signed_in_as, text

PAGE = "/account/password/"
NEW = "through the looking-glass"


def xmpp_login(user: User, ua: str, software: str = "Chat") -> Authorization:
    """A password login over XMPP of client ``ua``, with a FAST token, and its live session."""
    auth = authorize(
        user.username,
        credential_id="",
        mechanism="SCRAM-SHA-256",
        user_agent_id=ua,
        software=software,
        device="phone",
        fast_request="HT-SHA-256-NONE",
    )
    assert isinstance(auth, Authorization), auth
    records.open_session(
        auth,
        jid=f"{user.username}@localhost/{ua}",
        transport="tcp-tls",
        address="::1",
        mechanism="PLAIN",
        node="n",
    )
    return auth


def field_errors(response: Any, field: str) -> str:
    """The errors the page shows under the field ``field``."""
    found = re.search(
        rf'<ul class="errorlist" id="id_{field}_error">(.*?)</ul>', response.content.decode(), re.S
    )
    return re.sub(r"<[^>]+>", " ", found.group(1)).strip() if found else ""


def client_id(auth: Authorization) -> int:
    assert auth.client_id is not None
    return auth.client_id


def change(client: Client, **fields: Any) -> Any:
    data = {
        "current": "wonderland",
        "new_password1": NEW,
        "new_password2": NEW,
        "end_other_sessions": "on",
        **fields,
    }
    return client.post(PAGE, {k: v for k, v in data.items() if v is not None})


def test_it_changes_the_password_and_ends_the_other_sessions(client: Client, alice: User) -> None:
    xmpp_login(alice, "phone-1")
    signed_in_as(client, alice)
    page = text(client.get(PAGE))
    assert "Current password" in page
    assert re.search(
        r'<input type="checkbox" name="end_other_sessions"[^>]* checked>', client.get(PAGE).content.decode()
    )
    response = change(client)
    assert response["Location"] == "/"
    home = text(client.get("/"))
    assert "Password changed. Your other sessions have ended" in home
    assert "Signed in as alice@localhost" in home  # this browser stays signed in
    # the XMPP credentials are the new password's
    assert credentials.check_plain("alice", "alice", NEW) == ""
    assert credentials.check_plain("alice", "alice", "wonderland") is None
    # every other XMPP session and FAST token ended
    assert not FastToken.objects.exists()
    ended = Revocation.objects.get()
    assert (ended.all_sessions, ended.text) == (
        True,
        "the account password was changed by alice@localhost (web)",
    )
    event = AuthEvent.objects.get(kind=AuthEvent.Kind.PASSWORD_CHANGED)
    assert (event.detail, event.actor) == ("other sessions ended", "alice@localhost (web)")
    # and the web sign-in takes the new password
    client.post("/signout/")
    assert client.post("/signin/", {"username": "alice", "password": "wonderland"}).status_code == 200
    assert client.post("/signin/", {"username": "alice", "password": NEW})["Location"] == "/"


def test_it_keeps_the_other_xmpp_sessions_when_asked(client: Client, alice: User) -> None:
    xmpp_login(alice, "phone-1")
    signed_in_as(client, alice)
    response = change(client, end_other_sessions=None)
    assert response["Location"] == "/"
    assert "Your XMPP sessions go on" in text(client.get("/"))
    assert credentials.check_plain("alice", "alice", NEW) == ""
    assert FastToken.objects.count() == 1
    assert not Revocation.objects.exists()
    event = AuthEvent.objects.get(kind=AuthEvent.Kind.PASSWORD_CHANGED)
    assert (event.detail, event.actor) == ("sessions kept", "alice@localhost (web)")


def test_other_browsers_are_signed_out(client: Client, alice: User) -> None:
    other = signed_in_as(Client(), alice)
    signed_in_as(client, alice)
    change(client, end_other_sessions=None)
    assert client.get("/account/security/").status_code == 200
    assert other.get("/account/security/")["Location"].startswith("/signin/")


def test_it_revokes_a_client_in_the_same_step(client: Client, alice: User, bob: User) -> None:
    lost = xmpp_login(alice, "lost-phone", software="Lost")
    kept = xmpp_login(alice, "laptop", software="Kept")
    theirs = xmpp_login(bob, "bobs-phone", software="Bob's")
    signed_in_as(client, alice)
    page = client.get(PAGE).content.decode()
    assert "Lost on phone (last seen" in page
    assert "Bob&#x27;s" not in page
    response = change(client, revoke_client=str(client_id(lost)), end_other_sessions=None)
    assert response["Location"] == "/"
    assert "The client “Lost on phone” is revoked." in text(client.get("/"))
    assert XmppClient.objects.get(pk=client_id(lost)).revoked is not None
    assert Grant.objects.get(pk=lost.grant_id).revoked_by == "alice@localhost (web)"
    assert XmppClient.objects.get(pk=client_id(kept)).revoked is None
    assert FastToken.objects.filter(client_id=client_id(kept)).exists()  # its sessions were kept
    assert credentials.check_plain("alice", "alice", NEW) == ""
    revoked = AuthEvent.objects.get(kind=AuthEvent.Kind.REVOKED)
    assert revoked.detail == "client Lost on phone: revoked with a password change"
    # another account's client is no choice
    assert XmppClient.objects.get(pk=client_id(theirs)).revoked is None
    refused = change(client, current=NEW, revoke_client=str(client_id(theirs)))
    assert field_errors(refused, "revoke_client").startswith("Select a valid choice.")
    assert XmppClient.objects.get(pk=client_id(theirs)).revoked is None


def test_nothing_changes_when_the_client_cannot_be_revoked(
    client: Client, alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The revocation and the new password are one transaction: when one fails, neither happens."""
    lost = xmpp_login(alice, "lost-phone")
    signed_in_as(client, alice)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(User, "set_password", broken)
    with pytest.raises(RuntimeError):
        change(client, revoke_client=str(client_id(lost)))
    assert XmppClient.objects.get(pk=client_id(lost)).revoked is None
    assert not Revocation.objects.exists()


def test_a_wrong_current_password_is_refused(client: Client, alice: User) -> None:
    signed_in_as(client, alice)
    response = change(client, current="not it")
    assert response.status_code == 200
    assert field_errors(response, "current") == "Wrong password."
    assert credentials.check_plain("alice", "alice", "wonderland") == ""
    assert not AuthEvent.objects.filter(kind=AuthEvent.Kind.PASSWORD_CHANGED).exists()
    failed = AuthEvent.objects.get(kind=AuthEvent.Kind.LOGIN_FAILED)
    assert failed.detail == "web password change: wrong current password"


def test_wrong_current_passwords_are_throttled(client: Client, alice: User) -> None:
    signed_in_as(client, alice)
    for _ in range(6):  # the account's 5 free attempts (accounts/guessing.py), and one that starts a wait;
        # the browser signed in, but a known browser is spared the account's limit only when signing in
        change(client, current="not it")
    response = change(client)  # the right one, too soon
    assert "Too many failed attempts: try again in" in text(response)
    assert credentials.check_plain("alice", "alice", NEW) is None


@pytest.mark.parametrize(
    ("fields", "field", "error"),
    [
        ({"new_password2": "something else"}, "new_password2", "The two new passwords differ."),
        ({"new_password1": "", "new_password2": ""}, "new_password1", "This field is required."),
        (
            {"new_password1": "bell\x07", "new_password2": "bell\x07"},
            "new_password1",
            "This password cannot be used over XMPP: SASLprep: prohibited ASCII control character.",
        ),
        ({"current": ""}, "current", "This field is required."),
    ],
)
def test_it_refuses_a_new_password_that_will_not_do(
    client: Client, alice: User, fields: dict[str, str], field: str, error: str
) -> None:
    signed_in_as(client, alice)
    response = change(client, **fields)
    assert response.status_code == 200
    assert field_errors(response, field) == error
    assert credentials.check_plain("alice", "alice", "wonderland") == ""
    assert not AuthEvent.objects.filter(kind=AuthEvent.Kind.PASSWORD_CHANGED).exists()


def test_it_applies_the_configured_password_validators(client: Client, alice: User, settings: Any) -> None:
    settings.AUTH_PASSWORD_VALIDATORS = [
        {
            "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
            "OPTIONS": {"min_length": 12},
        }
    ]
    signed_in_as(client, alice)
    response = change(client, new_password1="short", new_password2="short")
    assert field_errors(response, "new_password1") == (
        "This password is too short. It must contain at least 12 characters."
    )
    assert credentials.check_plain("alice", "alice", "short") is None


def test_it_needs_a_recent_reauthentication(client: Client, alice: User, clock: Clock) -> None:
    signed_in_as(client, alice)
    clock.advance(301)
    for method in ("get", "post"):
        response = getattr(client, method)(
            PAGE, {"current": "wonderland", "new_password1": NEW, "new_password2": NEW}
        )
        assert response["Location"] == "/account/reauth/?next=%2Faccount%2Fpassword%2F"
    assert credentials.check_plain("alice", "alice", NEW) is None
