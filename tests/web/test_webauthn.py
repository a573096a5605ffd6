"""Security keys and passkeys in the portal, through the JSON endpoints the page's script calls (with
the software authenticator of the reference client): registering, the sign-in's second step, a
passkey sign-in without a password, and the refusals a person sees."""

from __future__ import annotations

import json

from django.test import Client
from django.urls import reverse

from accounts.models import User, WebAuthnCredential
from sessions_acl.models import AuthEvent
from tests.web.conftest import (
    ORIGIN,
    app_of,
    assertion,
    code_of,
    code_step,
    key_of,
    password_step,
    post_json,
    redirects_to_sign_in,
    signed_in_as,
    text,
)
from xmppauth.client.softkey import SoftKey

SIGNIN = ("/signin/key/options/", "/signin/key/verify/")
PASSKEY = ("/signin/passkey/options/", "/signin/passkey/verify/")


def last_event(user: User) -> tuple[str, str]:
    event = AuthEvent.objects.filter(user=user).order_by("-id").first()
    assert event is not None
    return event.kind, event.detail


# -- registering ----------------------------------------------------------------------------------


def test_it_registers_a_key_from_the_security_page(client: Client, alice: User) -> None:
    signed_in_as(client, alice)
    assert "Register" in text(client.get("/account/security/keys/add/"))
    options = post_json(client, "/account/security/keys/add/options/", {"name": "laptop"})
    _key, answer = SoftKey.create(json.dumps(options.json()["publicKey"]), ORIGIN)
    response = post_json(
        client, "/account/security/keys/add/verify/", {"credential": json.loads(answer), "name": "laptop"}
    )
    assert response.json() == {"redirect": "/account/security/"}
    page = text(client.get("/account/security/"))
    assert "Security key “laptop” added." in page
    assert "laptop" in page
    assert "Never" in page
    assert last_event(alice) == (AuthEvent.Kind.FACTOR_CHANGED, "webauthn enrolled: laptop")
    assert AuthEvent.objects.filter(user=alice).order_by("-id")[0].actor == "alice@localhost (web)"
    # the session stays signed in, now verified with the new key; a new sign-in asks for it
    assert client.get("/account/security/").status_code == 200
    client.post("/signout/")
    assert password_step(client)["Location"] == "/signin/verify/"


def test_it_asks_for_a_name_before_the_key(client: Client, alice: User) -> None:
    signed_in_as(client, alice)
    response = post_json(client, "/account/security/keys/add/options/", {"name": "  "})
    assert response.status_code == 400
    assert response.json() == {"error": "Give the security key or passkey a name"}


def test_a_registration_answers_its_own_challenge_once(client: Client, alice: User) -> None:
    signed_in_as(client, alice)
    options = post_json(client, "/account/security/keys/add/options/", {"name": "laptop"})
    _key, answer = SoftKey.create(json.dumps(options.json()["publicKey"]), ORIGIN)
    body = {"credential": json.loads(answer), "name": "laptop"}
    assert post_json(client, "/account/security/keys/add/verify/", body).status_code == 200
    again = post_json(client, "/account/security/keys/add/verify/", body)
    assert again.json() == {
        "error": "The request to the security key has expired or was already answered: start again"
    }


def test_a_registration_from_another_site_is_refused(client: Client, alice: User) -> None:
    signed_in_as(client, alice)
    options = post_json(client, "/account/security/keys/add/options/", {"name": "laptop"})
    _key, answer = SoftKey.create(json.dumps(options.json()["publicKey"]), "https://evil.example")
    response = post_json(
        client, "/account/security/keys/add/verify/", {"credential": json.loads(answer), "name": "x"}
    )
    assert response.json() == {"error": "The security key answered for another site"}
    assert not WebAuthnCredential.objects.exists()


# -- password and security key ----------------------------------------------------------------------


def test_it_signs_in_with_password_and_key(client: Client, alice: User) -> None:
    key, _credential = key_of(alice)
    password_step(client, next="/account/log/")
    assert "Use a security key or passkey" in text(client.get("/signin/verify/"))
    response = assertion(client, key, *SIGNIN)
    assert response.json() == {"redirect": "/account/log/"}
    assert client.get("/account/security/").status_code == 200
    assert last_event(alice) == (AuthEvent.Kind.LOGIN, "web sign-in: password+security key")


def test_another_accounts_key_does_not_pass_the_second_step(client: Client, alice: User, bob: User) -> None:
    key_of(alice)
    bobs_key, _credential = key_of(bob)
    password_step(client)
    options = post_json(client, SIGNIN[0]).json()["publicKey"]
    options["allowCredentials"] = []  # bob's key answers whatever it is asked
    answer = bobs_key.get(json.dumps(options), ORIGIN)
    response = post_json(client, SIGNIN[1], {"credential": json.loads(answer)})
    assert response.status_code == 400
    assert response.json()["error"] == "This security key or passkey is not registered for this account"
    assert redirects_to_sign_in(client.get("/account/security/"))
    assert last_event(alice)[0] == AuthEvent.Kind.LOGIN_FAILED


def test_an_assertion_is_used_once(client: Client, alice: User) -> None:
    key, _credential = key_of(alice)
    password_step(client)
    options = post_json(client, SIGNIN[0]).json()["publicKey"]
    answer = json.loads(key.get(json.dumps(options), ORIGIN))
    post_json(client, SIGNIN[1], {"credential": {**answer, "id": "x", "rawId": "x"}})  # refused
    response = post_json(client, SIGNIN[1], {"credential": answer})
    assert response.json() == {
        "error": "The request to the security key has expired or was already answered: start again"
    }


def test_the_key_endpoints_need_a_pending_sign_in(client: Client, alice: User) -> None:
    key_of(alice)
    assert redirects_to_sign_in(post_json(client, SIGNIN[0]))
    assert redirects_to_sign_in(post_json(client, SIGNIN[1]))


def test_a_copied_key_is_refused_and_shown_on_the_security_page(client: Client, alice: User) -> None:
    key, _credential = key_of(alice)
    device = app_of(alice)
    password_step(client)
    assert "redirect" in assertion(client, key, *SIGNIN).json()
    client.post("/signout/")
    key.sign_count -= 1  # a clone that fell behind the original
    password_step(client)
    response = assertion(client, key, *SIGNIN)
    assert "signature counter went backwards" in response.json()["error"]
    code_step(client, "totp", code_of(device))
    page = text(client.get("/account/security/"))
    assert "Warning: this key's signature counter went backwards" in page
    assert "It is refused until you remove it and register it again." in page


# -- passkeys -------------------------------------------------------------------------------------


def test_it_signs_in_with_a_passkey_alone(client: Client, alice: User) -> None:
    key, _credential = key_of(alice)
    response = assertion(client, key, *PASSKEY, next="/account/security/")
    assert response.json() == {"redirect": "/account/security/"}
    assert "Signed in as alice@localhost" in text(client.get("/"))
    assert last_event(alice) == (AuthEvent.Kind.LOGIN, "web sign-in: passkey")


def test_a_passkey_sign_in_ignores_a_next_of_another_site(client: Client, alice: User) -> None:
    key, _credential = key_of(alice)
    assert assertion(client, key, *PASSKEY, next="https://evil.example/").json() == {"redirect": "/"}


def test_a_passkey_must_verify_its_user(client: Client, alice: User) -> None:
    key, _credential = key_of(alice)
    key.user_verified = False
    response = assertion(client, key, *PASSKEY)
    assert response.json() == {"error": "The security key did not verify its user (PIN or biometrics)"}
    assert "Signed in as" not in text(client.get("/"))
    assert last_event(alice) == (
        AuthEvent.Kind.LOGIN_FAILED,
        "web sign-in: passkey: the security key did not verify its user (PIN or biometrics)",
    )


def test_an_unknown_passkey_is_refused(client: Client, alice: User) -> None:
    key, credential = key_of(alice)
    credential.delete()
    response = assertion(client, key, *PASSKEY)
    assert response.json() == {"error": "This security key or passkey is not registered for this account"}


def test_a_passkey_sign_in_without_options_is_refused(client: Client, alice: User) -> None:
    key, _credential = key_of(alice)
    answer = key.get(json.dumps({"challenge": "AAAA", "rpId": "localhost"}), ORIGIN)
    response = post_json(client, PASSKEY[1], {"credential": json.loads(answer)})
    assert response.json() == {
        "error": "The request to the security key has expired or was already answered: start again"
    }
    assert reverse("accounts:passkey-verify") == PASSKEY[1]


def test_an_answer_nested_too_deep_is_a_clear_refusal_not_a_server_error(client: Client, alice: User) -> None:
    key_of(alice)
    password_step(client)  # the second step waits for the key
    deep = "[" * 100_000 + "]" * 100_000
    for name in ("accounts:passkey-verify", "accounts:signin-key-verify"):
        for body in (deep, '{"credential": ' + deep + "}"):
            response = client.post(reverse(name), data=body, content_type="application/json")
            assert response.status_code == 400, (name, response.status_code)
            assert "error" in response.json()
