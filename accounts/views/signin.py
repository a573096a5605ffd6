"""The web sign-in: the password step, the second-factor step, cancel, sign-out, and the home page.

The flow (docs/web.md): the password step signs an account without a second factor in at once; for an
account with one it leaves only a pending sign-in (:mod:`.guard`) and sends the person to the second
step, which signs in with ``django.contrib.auth.login`` (a new session key) and ``django_otp.login``
(the device that passed: ``request.user.is_verified()``). Passkeys and security keys answer through
:mod:`.webauthn`, which ends the same way (:func:`finish_signin`).
"""

from __future__ import annotations

import django_otp
from django.contrib import messages
from django.contrib.auth import login, logout
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST
from django_otp.models import Device

from ..forms import SignInForm
from ..models import User
from .account import overview
from .codes import LOG_NAMES, CodeForms
from .guard import (
    PortalRequest,
    announce,
    clear_pending,
    factors_of,
    jid,
    mark_reauthenticated,
    needs_factor,
    pending_signin,
    safe_next,
    second_factor_passed,
    signed_in,
    start_pending,
)
from .password import check_password, known_browser, remember_browser

BACKEND = "django.contrib.auth.backends.ModelBackend"


def finish_signin(request: HttpRequest, user: User, device: Device | None, how: str, next_url: str) -> str:
    """Sign ``user`` in, verified with ``device`` (None: the account has no second factor); the page
    to go to next. ``how`` names the factors for the security log ("password+totp")."""
    clear_pending(request)
    login(request, user, backend=BACKEND)
    if device is not None:
        django_otp.login(request, device)
    mark_reauthenticated(request)
    remember_browser(request, user)  # not held by the account's guessing limit from now on
    announce(request, user, ok=True, detail=f"web sign-in: {how}")
    return safe_next(request, next_url)


@never_cache
def home(request: HttpRequest) -> HttpResponseBase:
    """``/``: the sign-in page for a visitor, a small dashboard for a signed-in account."""
    if request.user.is_authenticated:
        return _dashboard(request)
    return _sign_in_page(request, SignInForm(), request.GET.get("next", ""))


@signed_in
def _dashboard(request: PortalRequest) -> HttpResponse:
    user = request.user
    return render(
        request,
        "accounts/home.html",
        {
            "jid": jid(user),
            "factor_count": len(factors_of(user)),
            "needs_factor": needs_factor(user),
            **overview(user),
        },
    )


@never_cache
@require_http_methods(["GET", "POST"])
def sign_in(request: HttpRequest) -> HttpResponseBase:
    """Step 1: username and password."""
    next_url = request.POST.get("next", request.GET.get("next", ""))
    if request.user.is_authenticated and second_factor_passed(request):
        return HttpResponseRedirect(safe_next(request, next_url))
    form = SignInForm(request.POST if request.method == "POST" else None)
    if not form.is_valid():
        return _sign_in_page(request, form, next_url)
    checked = check_password(
        request, form.cleaned_data["username"], form.cleaned_data["password"], signing_in=True
    )
    if checked.user is None:
        if checked.known is not None:
            announce(request, checked.known, ok=False, detail="web sign-in: password: wrong password")
        form.add_error(None, checked.text)
        return _sign_in_page(request, form, next_url)
    if not factors_of(checked.user):
        return HttpResponseRedirect(finish_signin(request, checked.user, None, "password", next_url))
    start_pending(request, checked.user, next_url)
    return redirect("accounts:signin-verify")


def _sign_in_page(request: HttpRequest, form: SignInForm, next_url: str) -> HttpResponse:
    return render(request, "accounts/sign_in.html", {"form": form, "next": next_url})


@never_cache
@require_http_methods(["GET", "POST"])
def second_factor(request: HttpRequest) -> HttpResponseBase:
    """Step 2: a code from the authenticator app, a recovery code, or (by script) a security key."""
    pending = pending_signin(request)
    if pending is None:
        return redirect("accounts:sign-in")
    user = pending.user
    data = request.POST if request.method == "POST" else None
    codes = CodeForms(user, data, throttled=data is None or not known_browser(request, user.username))
    if not codes.forms and not codes.has_key:  # its factors were removed meanwhile (an operator's reset)
        clear_pending(request)
        messages.info(request, "Your account has no second factor any more: please sign in again.")
        return redirect("accounts:sign-in")
    checked = codes.check()
    if checked is not None:
        how = f"password+{LOG_NAMES[str(codes.submitted)]}"
        if checked.ok:
            if checked.note:
                messages.info(request, checked.note)
            return HttpResponseRedirect(finish_signin(request, user, checked.device, how, pending.next))
        announce(request, user, ok=False, detail=f"web sign-in: {how}: {checked.text}")
    return render(request, "accounts/second_factor.html", {"codes": codes, "jid": jid(user)})


@require_POST
def cancel(request: HttpRequest) -> HttpResponse:
    """Give up a sign-in between its two steps."""
    clear_pending(request)
    messages.info(request, "Sign-in cancelled.")
    return redirect("accounts:sign-in")


@require_POST
def sign_out(request: HttpRequest) -> HttpResponse:
    logout(request)
    messages.info(request, "You are signed out.")
    return redirect("accounts:sign-in")
