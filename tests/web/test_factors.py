"""The security page and its changes: what it lists, setting up an authenticator app (QR code and
secret), recovery codes shown once, renaming and removing, and the warning before the last factor
goes."""

from __future__ import annotations

import re

from django.test import Client

from accounts import recovery, totp
from accounts.models import PasswordLogin, TotpDevice, User, WebAuthnCredential
from sessions_acl.models import AuthEvent
from tests.web.conftest import (
    app_of,
    key_of,
    password_step,
    redirects_to_sign_in,
    signed_in_as,
    text,
)
from xmppauth.client.tasks import secret_from_base32, totp_code

SECURITY = "/account/security/"


def factor_events(user: User) -> list[tuple[str, str]]:
    rows = AuthEvent.objects.filter(user=user, kind=AuthEvent.Kind.FACTOR_CHANGED).order_by("id")
    return [(event.detail, event.actor) for event in rows]


# -- the list -------------------------------------------------------------------------------------


def test_the_security_page_says_when_there_is_nothing_yet(client: Client, alice: User) -> None:
    page = text(signed_in_as(client, alice).get(SECURITY))
    assert "No authenticator app yet." in page
    assert "No security key or passkey yet." in page
    assert "No recovery codes yet." in page
    assert "its policy asks for one" not in page


def test_the_security_page_warns_when_the_policy_wants_a_factor(client: Client, alice: User) -> None:
    User.objects.filter(pk=alice.pk).update(xmpp_password_login=PasswordLogin.SECOND_FACTOR)
    page = text(signed_in_as(client, alice).get(SECURITY))
    assert "Your account has no second factor, and its policy asks for one" in page


def test_the_security_page_lists_the_factors(client: Client, alice: User) -> None:
    device = app_of(alice)
    key_of(alice)
    codes = recovery.generate(alice)
    recovery.use_code(alice.pk, codes[0])
    page = text(signed_in_as(client, alice, device=device).get(SECURITY))
    assert re.search(r"phone \d+ \w+ 20\d\d, \d\d:\d\d UTC", page), page
    assert re.search(
        r"blue key Single device \d+ \w+ 20\d\d, \d\d:\d\d UTC Never Rename blue key Remove blue key", page
    )
    assert re.search(r"9 of 10 codes unused; generated \d+ \w+ 20\d\d", page)


def test_a_synced_passkey_says_so(client: Client, alice: User) -> None:
    _key, credential = key_of(alice)
    WebAuthnCredential.objects.filter(pk=credential.pk).update(device_type="multi_device")
    device = app_of(alice)
    assert "Passkey, synced between your devices" in text(
        signed_in_as(client, alice, device=device).get(SECURITY)
    )


# -- authenticator apps ---------------------------------------------------------------------------


def test_it_sets_up_an_authenticator_app(client: Client, alice: User) -> None:
    signed_in_as(client, alice)
    response = client.post("/account/security/totp/add/", {"name": "work phone"})
    assert response["Location"] == "/account/security/totp/confirm/"
    page = client.get("/account/security/totp/confirm/")
    assert "no-store" in page["Cache-Control"]
    html = page.content.decode()
    assert "<svg" in html
    assert "<title>QR code</title>" in html
    secret = re.search(r'<code class="secret" id="totp-secret">([A-Z2-7 ]+)</code>', html)
    assert secret is not None
    code = totp_code(secret_from_base32(secret.group(1)))
    response = client.post("/account/security/totp/confirm/", {"code": code}, follow=True)
    assert "Authenticator app “work phone” added." in text(response)
    assert [device.name for device in totp.confirmed_devices(alice)] == ["work phone"]
    assert factor_events(alice) == [("totp enrolled", "alice@localhost (web)")]
    # this session goes on (verified by the new app); the next sign-in asks for a code
    assert client.get(SECURITY).status_code == 200
    client.post("/signout/")
    assert password_step(client)["Location"] == "/signin/verify/"


def test_a_wrong_code_does_not_set_up_the_app(client: Client, alice: User) -> None:
    signed_in_as(client, alice)
    client.post("/account/security/totp/add/", {"name": "phone"})
    response = client.post("/account/security/totp/confirm/", {"code": "12345"})
    assert "Wrong code" in text(response)
    assert "<svg" in response.content.decode()  # scan again
    assert not totp.confirmed_devices(alice).exists()


def test_the_confirm_page_without_a_set_up_goes_to_the_start(client: Client, alice: User) -> None:
    signed_in_as(client, alice)
    assert client.get("/account/security/totp/confirm/")["Location"] == "/account/security/totp/add/"


def test_it_removes_the_authenticator_apps(client: Client, alice: User) -> None:
    device = app_of(alice)
    key_of(alice)
    signed_in_as(client, alice, device=device)
    page = text(client.get("/account/security/totp/remove/"))
    assert "Every authenticator app of your account stops working" in page
    assert "last second factor" not in page  # the key stays
    response = client.post("/account/security/totp/remove/", follow=True)
    assert "Authenticator apps removed." in text(response)
    assert not TotpDevice.objects.filter(user=alice).exists()
    # the app this session signed in with is gone; the session stays (it passed a factor)
    assert client.get(SECURITY).status_code == 200


# -- the last factor ------------------------------------------------------------------------------


def test_it_warns_before_the_last_factor_goes(client: Client, alice: User) -> None:
    device = app_of(alice)
    signed_in_as(client, alice, device=device)
    page = text(client.get("/account/security/totp/remove/"))
    assert "This is your account's last second factor." in page
    assert "your next XMPP login with the password will ask you to set up" not in page


def test_it_says_what_the_policy_does_without_a_factor(client: Client, alice: User) -> None:
    User.objects.filter(pk=alice.pk).update(xmpp_password_login=PasswordLogin.SECOND_FACTOR)
    device = app_of(alice)
    signed_in_as(client, alice, device=device)
    page = text(client.get("/account/security/totp/remove/"))
    assert "This is your account's last second factor." in page
    assert "your next XMPP login with the password will ask you to set up an authenticator app" in page
    client.post("/account/security/totp/remove/")  # allowed all the same
    assert "Its policy asks for one" in text(client.get("/"))
    client.post("/signout/")
    assert password_step(client)["Location"] == "/"  # the web asks for the password only


# -- recovery codes -------------------------------------------------------------------------------


def test_recovery_codes_are_shown_once_and_not_stored(client: Client, alice: User) -> None:
    signed_in_as(client, alice)
    assert "Generate the codes" in text(client.get("/account/security/recovery/"))
    response = client.post("/account/security/recovery/")
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    codes = re.findall(r"<li><code>([a-z2-9-]{19})</code></li>", response.content.decode())
    assert len(codes) == 10
    assert "this is the only time they are shown" in text(response)
    page = client.get(SECURITY)
    assert not any(code in page.content.decode() for code in codes)
    assert "10 of 10 codes unused" in text(page)
    assert recovery.use_code(alice.pk, codes[3]).ok
    assert factor_events(alice) == [("recovery generated", "alice@localhost (web)")]


def test_new_recovery_codes_void_the_old_ones(client: Client, alice: User) -> None:
    old = recovery.generate(alice)
    signed_in_as(client, alice, recovery_code=old[0])
    page = text(client.get("/account/security/recovery/"))
    assert "Your current codes (9 unused) stop working" in page
    client.post("/account/security/recovery/")
    assert not recovery.use_code(alice.pk, old[5]).ok


def test_it_removes_the_recovery_codes(client: Client, alice: User) -> None:
    codes = recovery.generate(alice)
    signed_in_as(client, alice, recovery_code=codes[0])
    assert "Every recovery code of your account" in text(client.get("/account/security/recovery/remove/"))
    client.post("/account/security/recovery/remove/")
    assert "No recovery codes yet." in text(client.get(SECURITY))
    assert not recovery.use_code(alice.pk, codes[1]).ok


# -- security keys --------------------------------------------------------------------------------


def test_it_renames_a_key(client: Client, alice: User) -> None:
    _key, credential = key_of(alice)
    device = app_of(alice)
    signed_in_as(client, alice, device=device)
    url = f"/account/security/keys/{credential.pk}/rename/"
    assert 'value="blue key"' in client.get(url).content.decode()
    assert "This field is required." in text(client.post(url, {"name": "   "}))
    response = client.post(url, {"name": "red key"}, follow=True)
    assert "Security key renamed." in text(response)
    assert "red key" in text(response)
    assert factor_events(alice)[-1] == ("webauthn renamed: blue key → red key", "alice@localhost (web)")


def test_it_removes_a_key(client: Client, alice: User) -> None:
    _key, credential = key_of(alice)
    device = app_of(alice)
    signed_in_as(client, alice, device=device)
    url = f"/account/security/keys/{credential.pk}/remove/"
    assert "Remove the security key “blue key”" in text(client.get(url))
    assert "Security key “blue key” removed." in text(client.post(url, follow=True))
    assert not WebAuthnCredential.objects.filter(user=alice).exists()


def test_another_accounts_key_is_not_found(client: Client, alice: User, bob: User) -> None:
    _key, credential = key_of(bob)
    signed_in_as(client, alice)
    for action in ("rename", "remove"):
        assert client.get(f"/account/security/keys/{credential.pk}/{action}/").status_code == 404
        assert (
            client.post(f"/account/security/keys/{credential.pk}/{action}/", {"name": "mine"}).status_code
            == 404
        )
    assert WebAuthnCredential.objects.get(pk=credential.pk).name == "blue key"


def test_changes_need_a_post(client: Client, alice: User) -> None:
    signed_in_as(client, alice)
    recovery.generate(alice)
    client.get("/account/security/recovery/remove/")
    assert recovery.remaining_codes(alice) == 10
    assert redirects_to_sign_in(Client().post("/account/security/recovery/remove/"))
