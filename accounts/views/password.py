"""The password step of the web sign-in and of re-authentication: Django's ``authenticate`` behind the
guessing limits that XMPP logins use (:mod:`accounts.guessing`, the one door: a guess over the portal and a
guess over XMPP count on the same keys, the account name and the client's address).

An attempt that comes during a wait is refused unchecked and told how long to wait; a right password gives
its turn back. A browser that signed in to the account before (with every factor the account has) carries a
signed cookie saying so, and is not held by the account's limit, as a known XMPP client is not: someone
guessing at an account cannot lock its owner out of the portal from the owner's own browser
(:class:`KnownBrowserMiddleware` sets it; it proves nothing by itself, the password is still checked).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import authenticate
from django.core import signing
from django.http import HttpRequest, HttpResponse

from .. import guessing
from ..lookup import BadName, localpart_from
from ..models import User
from . import guard

#: Texts for the person, by short code.
MESSAGES = {
    "wrong": "Wrong username or password.",
    "wrong_password": "Wrong password.",
    "throttled": "Too many failed attempts: try again in {seconds} s.",
}

KNOWN_BROWSER_COOKIE = "xmppauth_known"
KNOWN_BROWSER_SALT = "xmppauth.known-browser"
KNOWN_BROWSER_DAYS = 180


@dataclass(frozen=True)
class PasswordCheck:
    """The verdict: the account when the password was right (``user``); when not, ``text`` for the
    person, ``reason`` its short code (a key of :data:`MESSAGES`) and ``known``, the account the name
    belongs to (for its security log), if any."""

    user: User | None
    text: str = ""
    reason: str = ""
    known: User | None = None


def check_password(
    request: HttpRequest, name: str, password: str, *, signing_in: bool = False
) -> PasswordCheck:
    """Check the password of the account ``name`` (a localpart or a whole address), within the limits.
    ``signing_in``: the sign-in's first step, where a known browser is not held by the account's limit (a
    signed-in session re-entering its password, to re-authenticate or to change it, always is: it needs
    no way in, and a stolen session must not guess faster)."""
    try:
        username = localpart_from(name.strip())
    except BadName:
        username = name.strip()
    exempt = _known_browser(request, username) if signing_in else None
    verdict = guessing.claim(guard.client_address(request), username, account_exempt=exempt)
    if verdict.refused:  # the portal takes no app passwords: held by either limit, nothing is checked
        return PasswordCheck(None, MESSAGES["throttled"].format(seconds=verdict.wait), "throttled")
    user = authenticate(request, username=username, password=password)
    if isinstance(user, User):
        verdict.claim.give_back()
        return PasswordCheck(user)
    known = User.objects.filter(username=username).first()
    return PasswordCheck(None, MESSAGES["wrong"], "wrong", known)


def _known_browser(request: HttpRequest, username: str) -> Callable[[], bool]:
    return lambda: known_browser(request, username)


def known_browser(request: HttpRequest, username: str) -> bool:
    """Whether this browser completed a sign-in to ``username`` before (its signed cookie): the account's
    guessing limit and its second factors' wait after wrong codes spare it, so that someone who has the
    password cannot lock the owner out."""
    value = request.COOKIES.get(KNOWN_BROWSER_COOKIE)
    if not value:
        return False
    try:
        pk = signing.loads(value, salt=KNOWN_BROWSER_SALT, max_age=KNOWN_BROWSER_DAYS * 86400)
    except signing.BadSignature:
        return False
    return User.objects.filter(pk=pk, username=username).exists()


def remember_browser(request: HttpRequest, user: User) -> None:
    """The sign-in of ``user`` is complete: the response will mark this browser as known to the account."""
    request.known_browser_of = user.pk  # type: ignore[attr-defined]


class KnownBrowserMiddleware:
    """Sets the known-browser cookie on the response of a completed sign-in (:func:`remember_browser`)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        pk = getattr(request, "known_browser_of", None)
        if pk is not None:
            response.set_cookie(
                KNOWN_BROWSER_COOKIE,
                signing.dumps(pk, salt=KNOWN_BROWSER_SALT),
                max_age=KNOWN_BROWSER_DAYS * 86400,
                httponly=True,
                secure=settings.SESSION_COOKIE_SECURE,
                samesite="Lax",
            )
        return response
