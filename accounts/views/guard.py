"""Who may see a portal page: the sign-in state kept in the session and the decorators every portal
view wears (docs/web.md).

The rules, all enforced here:

- **A portal page is for a signed-in account that passed its second factor in this session**, if it
  has one (``request.user.is_verified()``, django-otp's middleware). A session signed in any other way
  (the admin's password-only login, or signed in before the account got its first factor elsewhere) is
  signed out by :func:`signed_in` and sent to the sign-in page: no page behind sign-in is reached with
  the password alone.
- **Between the password and the second factor the session holds only a pending sign-in**: the
  account's id, when, and the account's session hash (derived from its password hash: a password
  change voids it). It is no login: every portal page treats the visitor as anonymous. It lasts
  ``XMPP_REAUTH_SECONDS`` and ends with the sign-in, a cancel, or a new password step.
- **A change to how the account signs in needs a recent re-authentication** (:func:`reauthenticated`):
  the password or any factor within the last ``XMPP_REAUTH_SECONDS``; a sign-in counts as one.
- **Portal pages are never cached** (``Cache-Control: no-store``): after signing out, the back button
  asks the server again and gets the sign-in page.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Concatenate, ParamSpec
from urllib.parse import urlencode

import django_otp
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponseBase, HttpResponseRedirect
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django.utils.crypto import constant_time_compare
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods
from django_otp.models import Device

from .. import recovery, signals, totp, webauthn
from ..models import PasswordLogin, User

P = ParamSpec("P")

#: Session keys.
PENDING = "portal.pending"
REAUTH_AT = "portal.reauth_at"


class PortalRequest(HttpRequest):
    """A request that :func:`signed_in` let through: ``user`` is the signed-in account."""

    user: User


@dataclass(frozen=True)
class Pending:
    """A sign-in waiting for its second factor: the account, and where to go afterwards."""

    user: User
    next: str


def clock() -> float:
    """The time (Unix seconds) every expiry here is measured with; the tests move it."""
    return time.time()


def _window() -> int:
    return int(settings.XMPP_REAUTH_SECONDS)


def client_address(request: HttpRequest) -> str:
    """The client's address as the server saw it (a proxy in front shows as itself)."""
    return str(request.META.get("REMOTE_ADDR", ""))


def jid(user: User) -> str:
    return f"{user.username}@{settings.XMPP_DOMAIN}"


def actor(request: PortalRequest) -> str:
    """Who made a change, for the security log."""
    return f"{jid(request.user)} (web)"


def safe_next(request: HttpRequest, url: str, default: str = "accounts:home") -> str:
    """``url`` if it leads to a page of this site, else the page named ``default``."""
    if url and url_has_allowed_host_and_scheme(url, {request.get_host()}, require_https=request.is_secure()):
        return url
    return reverse(default)


def announce(request: HttpRequest, user: User, *, ok: bool, detail: str) -> None:
    """A sign-in or a refused attempt, for the security log (:data:`accounts.signals.web_signin`)."""
    signals.web_signin.send(sender=User, user=user, ok=ok, detail=detail, address=client_address(request))


# -- second factors -------------------------------------------------------------------------------


def factors_of(user: User) -> set[str]:
    """The account's second factors that can pass a sign-in: "totp" (any authenticator app),
    "recovery" (unused recovery codes) and "key:<pk>" for each security key or passkey."""
    found = {f"key:{credential.pk}" for credential in webauthn.credentials_of(user)}
    if totp.confirmed_devices(user).exists():
        found.add("totp")
    if recovery.remaining_codes(user):
        found.add("recovery")
    return found


def needs_factor(user: User) -> bool:
    """Whether the account's policy lets XMPP password logins in only with a second factor."""
    return user.xmpp_password_login == PasswordLogin.SECOND_FACTOR


def second_factor_passed(request: HttpRequest) -> bool:
    """Whether the signed-in account passed a second factor in this session, or has none to pass."""
    user = request.user
    if getattr(user, "otp_device", None) is not None:
        return True
    return isinstance(user, User) and not factors_of(user)


def keep_verified(request: PortalRequest, device: Device | None = None) -> None:
    """After a factor was added or removed: a session that passed a factor stays verified when that
    factor is gone (it passed one, and re-authenticated for the change), and a session of an account
    that had none becomes verified with the factor it just set up (``device``)."""
    current = getattr(request.user, "otp_device", None)
    if current is not None and type(current).objects.filter(pk=current.pk).exists():
        return
    replacement = device or next(iter(django_otp.devices_for_user(request.user)), None)
    if replacement is not None:
        django_otp.login(request, replacement)


# -- the pending sign-in --------------------------------------------------------------------------


def start_pending(request: HttpRequest, user: User, next_url: str) -> None:
    """The password was right and the account has a second factor: remember whose sign-in waits."""
    request.session.cycle_key()
    request.session[PENDING] = {
        "user": user.pk,
        "at": clock(),
        "hash": user.get_session_auth_hash(),
        "next": next_url,
    }


def pending_signin(request: HttpRequest) -> Pending | None:
    """The sign-in waiting for its second factor, or None. One that has expired, whose account's
    password changed or that is no longer active is removed, and the person is told."""
    raw = request.session.get(PENDING)
    if not isinstance(raw, dict):
        return None
    user_id = raw.get("user")
    user = User.objects.filter(pk=user_id, is_active=True).first() if isinstance(user_id, int) else None
    if (
        user is None
        or clock() - float(raw.get("at", 0)) > _window()
        or not constant_time_compare(str(raw.get("hash", "")), user.get_session_auth_hash())
    ):
        clear_pending(request)
        messages.warning(request, "Your sign-in took too long or is no longer valid: please start again.")
        return None
    return Pending(user, str(raw.get("next", "")))


def clear_pending(request: HttpRequest) -> None:
    request.session.pop(PENDING, None)


# -- re-authentication ----------------------------------------------------------------------------


def mark_reauthenticated(request: HttpRequest) -> None:
    request.session[REAUTH_AT] = clock()


def recently_authenticated(request: HttpRequest) -> bool:
    at = request.session.get(REAUTH_AT)
    return isinstance(at, int | float) and clock() - at <= _window()


# -- decorators -----------------------------------------------------------------------------------


def signed_in(
    view: Callable[Concatenate[PortalRequest, P], HttpResponseBase],
) -> Callable[Concatenate[HttpRequest, P], HttpResponseBase]:
    """The door of every portal page: a signed-in account that passed its second factor, else the
    sign-in page (coming back here afterwards for a page, not for a form's POST)."""

    @wraps(view)
    def guarded(request: HttpRequest, /, *args: P.args, **kwargs: P.kwargs) -> HttpResponseBase:
        if not request.user.is_authenticated:
            return _to_sign_in(request)
        if not second_factor_passed(request):
            logout(request)
            messages.info(request, "Your account has a second factor now: please sign in with it.")
            return _to_sign_in(request)
        assert isinstance(request.user, User)
        response = view(request, *args, **kwargs)  # type: ignore[arg-type]  # checked just above
        add_never_cache_headers(response)
        return response

    return guarded


def _to_sign_in(request: HttpRequest) -> HttpResponseRedirect:
    """To the sign-in page, and back to this page afterwards (not to a form's POST)."""
    if request.method == "GET":
        return redirect_to_login(request.get_full_path())
    return HttpResponseRedirect(reverse("accounts:sign-in"))


def reauthenticated(
    back: str | None = None,
) -> Callable[
    [Callable[Concatenate[PortalRequest, P], HttpResponseBase]],
    Callable[Concatenate[PortalRequest, P], HttpResponseBase],
]:
    """For a view that changes how the account signs in (under :func:`signed_in`): without a recent
    re-authentication, to the re-authentication page, and from there back to this page (or to the
    page named ``back``: for views that only answer a page's script)."""

    def decorate(
        view: Callable[Concatenate[PortalRequest, P], HttpResponseBase],
    ) -> Callable[Concatenate[PortalRequest, P], HttpResponseBase]:
        @wraps(view)
        def guarded(request: PortalRequest, /, *args: P.args, **kwargs: P.kwargs) -> HttpResponseBase:
            if recently_authenticated(request):
                return view(request, *args, **kwargs)
            target = reverse(back) if back else request.path
            return HttpResponseRedirect(f"{reverse('accounts:reauth')}?{urlencode({'next': target})}")

        return guarded

    return decorate


def change_page(
    view: Callable[Concatenate[PortalRequest, P], HttpResponseBase],
) -> Callable[Concatenate[HttpRequest, P], HttpResponseBase]:
    """A page that changes how the account signs in: signed in, recently re-authenticated; GET shows
    the form or the question, POST makes the change."""
    return signed_in(reauthenticated()(require_http_methods(["GET", "POST"])(view)))
