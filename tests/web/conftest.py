"""Fixtures and helpers of the portal's tests (Django's test client, the real database).

``alice`` (password "wonderland") and ``bob`` come from tests/conftest.py. Helpers here give an account
a second factor the way the XMPP side would (``totp.enrol``, ``recovery.generate``, a software
security key), sign in through the pages, and read what a person sees.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher, make_password
from django.core.cache import cache
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from accounts import totp, webauthn
from accounts.models import TotpDevice, User, WebAuthnCredential
from accounts.secretbox import unseal
from accounts.urls import PUBLIC
from accounts.views import guard
from tests.helpers import account
from xmppauth.client.softkey import SoftKey

ORIGIN = "http://localhost:8000"  # a page of the portal, as a browser would name it


class FastHasher(PBKDF2PasswordHasher):
    """PBKDF2 with one iteration: the portal's tests check many passwords, and the hasher is not what
    they are about."""

    algorithm = "pbkdf2_fast"
    iterations = 1


@pytest.fixture(autouse=True)
def portal_settings(settings: Any, tmp_path: Path) -> Iterator[None]:
    """Each test's own factor key; a one-second first wait after a wrong code; an empty cache (the
    password throttle's counts); cheap password hashes."""
    settings.PASSWORD_HASHERS = [f"{__name__}.FastHasher", *settings.PASSWORD_HASHERS]
    settings.XMPP_FACTOR_KEY = ""
    settings.XMPP_FACTOR_KEY_FILE = tmp_path / "factor.key"
    settings.XMPP_TOTP_THROTTLE_FACTOR = 1
    settings.XMPP_REAUTH_SECONDS = 300
    cache.clear()
    yield
    cache.clear()


def _fast(user: User, password: str) -> User:
    """The account with its password hashed by :class:`FastHasher` (stored without a save(): that
    would announce a password change)."""
    User.objects.filter(pk=user.pk).update(password=make_password(password))
    user.refresh_from_db()
    return user


@pytest.fixture
def alice(db: None, portal_settings: None) -> User:
    """The account ``alice``, password "wonderland"."""
    return _fast(account("alice"), "wonderland")


@pytest.fixture
def bob(db: None, portal_settings: None) -> User:
    """The account ``bob``, password "builder"."""
    return _fast(account("bob"), "builder")


class Clock:
    """The portal's clock (``guard.clock``), moved forward by tests."""

    def __init__(self) -> None:
        self.offset = 0.0

    def advance(self, seconds: float) -> None:
        self.offset += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    moved = Clock()
    real = guard.clock
    monkeypatch.setattr(guard, "clock", lambda: real() + moved.offset)
    return moved


# -- the portal's URLs ----------------------------------------------------------------------------


def _named(patterns: list[URLPattern | URLResolver], namespace: str = "") -> Iterator[tuple[str, URLPattern]]:
    for entry in patterns:
        if isinstance(entry, URLResolver):
            if entry.namespace == "admin":  # the admin has its own login
                continue
            if entry.namespace == "health":  # public by design: load balancers' probes (test_health.py)
                continue
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from _named(entry.url_patterns, inner)
        elif entry.name:
            yield f"{namespace}{entry.name}", entry


#: Every named page of the site but the admin's, from the URLconf: a new page is tested without a new test.
PORTAL_URLS = dict(_named(get_resolver().url_patterns))
#: The pages behind sign-in.
PROTECTED = sorted(name for name in PORTAL_URLS if name.removeprefix("accounts:") not in PUBLIC)


def url(name: str) -> str:
    """The page's URL (with 1 for any number in it)."""
    return reverse(name, kwargs=dict.fromkeys(PORTAL_URLS[name].pattern.converters, 1))


# -- second factors -------------------------------------------------------------------------------


def app_of(user: User) -> TotpDevice:
    """A confirmed authenticator app for the account."""
    device, _uri = totp.enrol(user, "phone")
    return device


def code_of(device: TotpDevice, step_offset: int = 0) -> str:
    """The device's code now (or ``step_offset`` 30-second steps away)."""
    key = unseal(TotpDevice.objects.get(pk=device.pk).encrypted_key)
    return totp.totp_code(key, totp.time_step(time.time()) + step_offset)


def key_of(user: User) -> tuple[SoftKey, WebAuthnCredential]:
    """A software security key registered for the account."""
    options, ceremony = webauthn.registration_options(user)
    key, answer = SoftKey.create(options, ORIGIN)
    return key, webauthn.register(user, ceremony, answer, "blue key")


# -- pages ----------------------------------------------------------------------------------------


def text(response: Any) -> str:
    """What a person reads on the page: the HTML without tags, whitespace collapsed."""
    body = response.content.decode()
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", body, flags=re.S)
    return " ".join(unescape(re.sub(r"<[^>]+>", " ", body)).split())


def password_step(client: Client, username: str = "alice", password: str = "wonderland", **extra: str) -> Any:
    return client.post(reverse("accounts:sign-in"), {"username": username, "password": password, **extra})


def code_step(client: Client, factor: str, code: str) -> Any:
    return client.post(reverse("accounts:signin-verify"), {"factor": factor, f"{factor}-code": code})


def signed_in_as(client: Client, user: User, *, device: Any = None, recovery_code: str = "") -> Client:
    """The client signed in through the pages: the password, then a code from ``device`` or a
    recovery code if given."""
    response = password_step(client, user.username, "wonderland" if user.username == "alice" else "builder")
    if device is not None:
        response = code_step(client, "totp", code_of(device))
    elif recovery_code:
        response = code_step(client, "recovery", recovery_code)
    assert response.status_code == 302, text(response)
    assert f"Signed in as {user.username}@localhost" in text(client.get(reverse("accounts:home")))
    return client


def post_json(client: Client, url: str, body: dict[str, Any] | None = None) -> Any:
    """What static/accounts/webauthn.js sends."""
    return client.post(url, data=json.dumps(body or {}), content_type="application/json")


def assertion(client: Client, key: SoftKey, options_url: str, verify_url: str, **extra: Any) -> Any:
    """A security key's answer through the portal's two endpoints, as the page's script sends it."""
    options = post_json(client, options_url, extra)
    assert options.status_code == 200, options.content
    answer = key.get(json.dumps(options.json()["publicKey"]), ORIGIN)
    return post_json(client, verify_url, {"credential": json.loads(answer), **extra})


def redirects_to_sign_in(response: Any) -> bool:
    return bool(response.status_code == 302 and response["Location"].startswith(reverse("accounts:sign-in")))
