"""Self sign-up (``XMPP_WEB_SIGNUP``, off by default): a visitor creates an account and is signed in.

Off, ``/signup/`` is a 404 (the setting is read at each request). On, the form (:class:`SignUpForm`)
checks the name as ``manage.py adduser`` does (a valid, prepared localpart) and that it is free; the
account is made as adduser makes it (``User.set_password``, the one password door, sets Django's hash
and the SCRAM keys, so XMPP logins work at once). The new account has no second factor, so signing in
is complete with ``django.contrib.auth.login``; the dashboard then suggests adding one.

Throttled per client address in Django's cache (fixed windows of :data:`WINDOW` seconds, counted with
the atomic ``cache.add`` + ``cache.incr``): at most :data:`LIMITS` ``["attempt"]`` sent forms (each
tells whether a name is taken) and ``["account"]`` accounts made. The same limits as the password
throttle's apply: with the default local-memory cache each process counts on its own; the address is
``REMOTE_ADDR`` (a proxy in front counts its clients together).
"""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from ..forms import TAKEN, SignUpForm
from ..models import User
from .guard import announce, clear_pending, client_address, mark_reauthenticated, second_factor_passed
from .signin import BACKEND

#: Per client address and window: sign-up forms sent, accounts made.
LIMITS = {"attempt": 20, "account": 3}
WINDOW = 3600

THROTTLED = "Too many sign-ups from your address: try again in an hour."
WELCOME = (
    "Welcome! Your account {jid} is ready, and your XMPP clients can log in with it. "
    "Anyone who learns your password can sign in: add a second factor on the security page."
)


def enabled() -> bool:
    return bool(getattr(settings, "XMPP_WEB_SIGNUP", False))


@never_cache
@require_http_methods(["GET", "POST"])
def sign_up(request: HttpRequest) -> HttpResponseBase:
    """``/signup/``: the form; on success a new account, signed in, on its dashboard."""
    if not enabled():
        raise Http404("Sign-up is not open on this server.")
    if request.user.is_authenticated and second_factor_passed(request):
        return redirect("accounts:home")
    if request.method != "POST":
        return _page(request, SignUpForm())
    form = SignUpForm(request.POST)
    address = client_address(request)
    if not _count(address, "attempt"):
        unchecked = SignUpForm(initial={"username": request.POST.get("username", "")})
        return _page(request, unchecked, status=429, refused=THROTTLED)
    if not form.is_valid():
        return _page(request, form)
    if not _count(address, "account"):
        return _page(request, form, status=429, refused=THROTTLED)
    user = _create(form.cleaned_data["username"], form.cleaned_data["password1"])
    if user is None:  # taken between the check and the save
        form.add_error("username", TAKEN)
        return _page(request, form)
    clear_pending(request)
    login(request, user, backend=BACKEND)  # no factor yet: nothing else to pass
    mark_reauthenticated(request)
    announce(request, user, ok=True, detail="web sign-up")
    messages.success(request, WELCOME.format(jid=f"{user.username}@{settings.XMPP_DOMAIN}"))
    return redirect("accounts:home")


def _create(username: str, password: str) -> User | None:
    """The account, made as ``manage.py adduser`` makes it; None if the name was taken meanwhile."""
    try:
        with transaction.atomic():
            if User.objects.filter(username__iexact=username).exists():
                return None
            user = User(username=username)
            user.set_password(password)  # Django's hash and the SCRAM keys
            user.save()
    except IntegrityError:
        return None
    return user


def _count(address: str, kind: str) -> bool:
    """Count one ``kind`` for the address; False when that is over its limit in this window."""
    key = f"portal.signup.{kind}.{hashlib.sha256(address.encode()).hexdigest()}"
    cache.add(key, 0, WINDOW)
    try:
        count = cache.incr(key)
    except ValueError:  # the window ended between the two calls
        cache.add(key, 1, WINDOW)
        count = 1
    return count <= LIMITS[kind]


def _page(request: HttpRequest, form: SignUpForm, *, status: int = 200, refused: str = "") -> HttpResponse:
    """The form; ``refused``: why the sent form was refused before (or after) it was checked."""
    context = {"form": form, "domain": settings.XMPP_DOMAIN, "refused": refused}
    return render(request, "accounts/sign_up.html", context, status=status)
