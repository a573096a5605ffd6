"""WebAuthn ceremonies (issue 10, accounts/webauthn.py) against a software authenticator: registration,
assertions, and each way an answer must fail — another origin or RP id, a reused or expired challenge,
missing user verification, another account's key, a counter that goes backwards (refused, flagged and
logged) — plus renaming and removing keys, and what the login read says about them."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

import pytest
from django.utils import timezone

from accounts import webauthn
from accounts.models import User, WebAuthnCredential
from sessions_acl import loginreads
from sessions_acl.models import AuthEvent
from xmppauth.client.softkey import SoftKey, b64url, unb64url

ORIGIN = "http://localhost:8000"


@pytest.fixture(autouse=True)
def relying_party(settings: Any) -> None:
    settings.XMPP_WEBAUTHN_RP_ID = "localhost"
    settings.XMPP_WEBAUTHN_ORIGINS = ["https://localhost"]
    settings.XMPP_WEBAUTHN_USER_VERIFICATION = "preferred"


def enrol(user: User, name: str = "my key", *, origin: str = ORIGIN, uv: bool = True) -> SoftKey:
    options, ceremony = webauthn.registration_options(user)
    key, answer = SoftKey.create(options, origin, user_verified=uv)
    webauthn.register(user, ceremony, answer, name)
    return key


def assertion(user: User | None, key: SoftKey, origin: str = ORIGIN) -> tuple[webauthn.Ceremony, str]:
    made = webauthn.authentication_options(None if user is None else user.pk)
    assert made is not None
    options, ceremony = made
    return ceremony, key.get(options, origin)


def test_a_registered_key_signs_in_and_its_counter_is_kept(alice: User) -> None:
    key = enrol(alice)
    stored = WebAuthnCredential.objects.get(user=alice)
    assert stored.name == "my key"
    assert stored.confirmed
    assert stored.credential_id == key.credential_id
    assert len(unb64url(stored.user_handle)) == 32  # random, not the username or the row's key
    assert alice.username.encode() not in unb64url(stored.user_handle)
    result = webauthn.authenticate(*assertion(alice, key))
    assert result.ok, result
    assert result.user_id == alice.pk
    stored.refresh_from_db()
    assert stored.sign_count == key.sign_count == 1
    assert stored.last_used is not None


def test_the_options_name_the_accounts_keys_and_the_relying_party(alice: User, bob: User) -> None:
    key = enrol(alice)
    enrol(bob)
    made = webauthn.authentication_options(alice.pk)
    assert made is not None
    options = json.loads(made[0])
    assert options["rpId"] == "localhost"
    assert [c["id"] for c in options["allowCredentials"]] == [key.credential_id]
    assert len(unb64url(options["challenge"])) >= 16
    assert webauthn.authentication_options(User.objects.create(username="nokeys").pk) is None


def test_the_same_accounts_keys_share_one_handle_and_a_key_registers_once(alice: User) -> None:
    first = enrol(alice, "one")
    second = enrol(alice, "two")
    handles = set(WebAuthnCredential.objects.filter(user=alice).values_list("user_handle", flat=True))
    assert handles == {first.user_handle} == {second.user_handle}
    options = json.loads(webauthn.registration_options(alice)[0])
    assert {c["id"] for c in options["excludeCredentials"]} == {first.credential_id, second.credential_id}


def test_an_answer_from_another_origin_is_refused(alice: User) -> None:
    key = enrol(alice)
    result = webauthn.authenticate(*assertion(alice, key, origin="https://evil.example"))
    assert not result.ok
    assert result.reason == "origin"
    assert "another site" in result.text
    # a configured origin is accepted; a localhost origin only while the RP id is localhost
    assert webauthn.authenticate(*assertion(alice, key, origin="https://localhost")).ok
    assert not webauthn.origin_allowed("http://localhost.evil.example:8000")
    assert not webauthn.origin_allowed("http://localhost:8000/path")


def test_a_key_registered_for_another_relying_party_is_refused(alice: User) -> None:
    key = enrol(alice)
    made = webauthn.authentication_options(alice.pk)
    assert made is not None
    options = json.loads(made[0]) | {"rpId": "evil.example"}  # a page of another site asks the key
    signed_elsewhere = replace(key, rp_id="evil.example").get(json.dumps(options), ORIGIN)
    result = webauthn.authenticate(made[1], signed_elsewhere)
    assert not result.ok, result
    assert result.reason == "invalid", result
    assert webauthn.authenticate(*assertion(alice, key)).ok  # control: signed for localhost


def test_a_challenge_is_used_once_and_expires(alice: User, settings: Any) -> None:
    key = enrol(alice)
    ceremony, answer = assertion(alice, key)
    store: dict[str, Any] = {"webauthn": ceremony.to_dict()}
    taken = webauthn.Ceremony.take(store, "webauthn")
    assert taken == ceremony
    assert webauthn.Ceremony.take(store, "webauthn") is None  # gone after the first use
    assert not webauthn.authenticate(None, answer).ok
    # an answer to another challenge (a replay of an earlier login) is not a valid signature for this one
    other, _ = assertion(alice, key)
    replayed = webauthn.authenticate(other, answer)
    assert not replayed.ok
    assert replayed.reason == "invalid"
    expired = replace(ceremony, expires=time.time() - 1)
    late = webauthn.authenticate(expired, answer)
    assert not late.ok
    assert late.reason == "expired"
    assert webauthn.authenticate(ceremony, answer).ok  # control: the same answer, in time


def test_user_verification_is_required_when_configured(alice: User, settings: Any) -> None:
    key = enrol(alice, uv=False)  # registered while the server only preferred it
    assert webauthn.authenticate(*assertion(alice, key)).ok
    settings.XMPP_WEBAUTHN_USER_VERIFICATION = "required"
    result = webauthn.authenticate(*assertion(alice, key))
    assert not result.ok, result
    assert result.reason == "user_verification", result
    key.user_verified = True
    assert webauthn.authenticate(*assertion(alice, key)).ok


def test_a_passkey_sign_in_finds_the_account_by_its_handle_and_needs_verification(alice: User) -> None:
    key = enrol(alice)
    made = webauthn.authentication_options(None)
    assert made is not None
    assert "allowCredentials" not in json.loads(made[0]) or not json.loads(made[0])["allowCredentials"]
    result = webauthn.authenticate(*assertion(None, key))
    assert result.ok
    assert result.user_id == alice.pk
    key.user_verified = False
    assert webauthn.authenticate(*assertion(None, key)).reason == "user_verification"
    key.user_verified = True
    key.user_handle = b64url(b"x" * 32)  # another account's handle with this key
    assert webauthn.authenticate(*assertion(None, key)).reason == "unknown_credential"


def test_another_accounts_key_does_not_answer_for_this_account(alice: User, bob: User) -> None:
    enrol(alice)
    bobs = enrol(bob)
    made = webauthn.authentication_options(alice.pk)
    assert made is not None
    options = json.loads(made[0])
    options["allowCredentials"] = []  # bob's key would otherwise refuse: the server must too
    result = webauthn.authenticate(made[1], bobs.get(json.dumps(options), ORIGIN))
    assert not result.ok
    assert result.reason == "unknown_credential"


def test_a_counter_that_goes_backwards_refuses_and_flags_the_key(alice: User, caplog: Any) -> None:
    key = enrol(alice)
    for _ in range(3):
        assert webauthn.authenticate(*assertion(alice, key)).ok
    clone = replace(key, sign_count=1)  # a copy of the key, behind the original
    result = webauthn.authenticate(*assertion(alice, clone))
    assert not result.ok
    assert result.reason == "counter"
    stored = WebAuthnCredential.objects.get(user=alice)
    assert stored.counter_regressed is not None
    assert stored.sign_count == 3
    assert "counter 2 not above 3" in caplog.text
    logged = AuthEvent.objects.filter(user=alice, kind=AuthEvent.Kind.FACTOR_CHANGED).first()
    assert logged is not None
    assert "signature counter went backwards" in logged.detail
    # the original is refused too now: the owner must look at it
    assert webauthn.authenticate(*assertion(alice, key)).reason == "counter"


def test_authenticators_without_a_counter_keep_working(alice: User) -> None:
    key = enrol(alice)
    key.sign_count = -1  # get() adds one: the authenticator reports 0 every time
    for _ in range(2):
        key.sign_count = -1
        assert webauthn.authenticate(*assertion(alice, key)).ok


def test_malformed_answers_get_a_clear_refusal(alice: User) -> None:
    key = enrol(alice)
    ceremony, _ = assertion(alice, key)
    for bad in ("not json", "{}", json.dumps({"id": "***"}), "[]"):
        result = webauthn.authenticate(ceremony, bad)
        assert not result.ok, (bad, result)
        assert result.reason in {"malformed", "unknown_credential"}, (bad, result)
    _, reg = webauthn.registration_options(alice)
    with pytest.raises(webauthn.WebAuthnError, match="not a WebAuthn credential"):
        webauthn.register(alice, reg, "not json", "x")


def test_registration_checks_origin_challenge_and_name(alice: User) -> None:
    options, ceremony = webauthn.registration_options(alice)
    _, answer = SoftKey.create(options, "https://evil.example")
    with pytest.raises(webauthn.WebAuthnError) as refused:
        webauthn.register(alice, ceremony, answer, "key")
    assert refused.value.reason == "origin"
    _, answer = SoftKey.create(options, ORIGIN)
    with pytest.raises(webauthn.WebAuthnError, match="name"):
        webauthn.register(alice, ceremony, answer, "   ")
    with pytest.raises(webauthn.WebAuthnError) as late:
        webauthn.register(alice, replace(ceremony, expires=time.time() - 1), answer, "key")
    assert late.value.reason == "expired"
    other_options, _ = webauthn.registration_options(alice)
    with pytest.raises(webauthn.WebAuthnError) as wrong:
        webauthn.register(alice, ceremony, SoftKey.create(other_options, ORIGIN)[1], "key")
    assert wrong.value.reason == "invalid"
    assert not WebAuthnCredential.objects.filter(user=alice).exists()


def test_rename_and_remove_are_logged_and_only_for_the_owner(alice: User, bob: User) -> None:
    enrol(alice, "old name")
    stored = WebAuthnCredential.objects.get(user=alice)
    with pytest.raises(WebAuthnCredential.DoesNotExist):
        webauthn.rename(bob, stored.pk, "mine now")
    assert webauthn.remove(bob, stored.pk) == 0
    webauthn.rename(alice, stored.pk, "  new   name ")
    stored.refresh_from_db()
    assert stored.name == "new name"
    assert webauthn.remove(alice, stored.pk, actor="admin") == 1
    details = list(
        AuthEvent.objects.filter(user=alice, kind=AuthEvent.Kind.FACTOR_CHANGED).values_list(
            "detail", "actor"
        )
    )
    assert ("webauthn removed: new name", "admin") in details
    assert ("webauthn renamed: old name → new name", "") in details
    assert ("webauthn enrolled: old name", "") in details


def test_the_login_read_knows_an_account_has_a_key(alice: User) -> None:
    now = timezone.now()
    before = loginreads.password_login(alice.username, "", now)
    assert before is not None
    assert not before.has_webauthn
    enrol(alice)
    after = loginreads.password_login(alice.username, "", now)
    assert after is not None
    assert after.has_webauthn


def test_a_misconfigured_user_verification_is_named(alice: User, settings: Any) -> None:
    from django.core.exceptions import ImproperlyConfigured

    settings.XMPP_WEBAUTHN_USER_VERIFICATION = "always"
    with pytest.raises(ImproperlyConfigured, match="XMPP_WEBAUTHN_USER_VERIFICATION"):
        webauthn.registration_options(alice)


def test_an_answer_nested_too_deep_is_malformed_not_a_crash(alice: User) -> None:
    key = enrol(alice)
    ceremony, _ = assertion(alice, key)
    deep = "[" * 100_000 + "]" * 100_000
    assert webauthn.authenticate(ceremony, deep).reason == "malformed"
    nested = json.dumps({"id": key.credential_id, "response": {"clientDataJSON": "x"}})[:-2] + deep[:5000]
    assert not webauthn.authenticate(ceremony, nested).ok
    _, registering = webauthn.registration_options(alice)
    with pytest.raises(webauthn.WebAuthnError, match="not a WebAuthn credential"):
        webauthn.register(alice, registering, deep, "key")
