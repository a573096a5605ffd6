"""The portal's pages of sessions_acl: the account's clients and sessions (with their revocations) and
its security log (docs/portal-sessions.md).

Every view wears :func:`accounts.views.guard.signed_in`; the revocations also need a recent
re-authentication and a POST, and call :mod:`sessions_acl.revocation` (directly, or through the
XEP-0494 flow for clients) with the portal as the actor: nothing is revoked here by a path of its own.
A user only ever reaches their own rows: another account's id is a 404, like an id that does not exist.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from importlib import import_module
from typing import Any, Concatenate, ParamSpec

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import SESSION_KEY
from django.core.paginator import Paginator
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts.views import guard
from accounts.views.guard import PortalRequest, signed_in

from . import revocation, xep0494
from .models import AuthEvent, Client, Session

log = logging.getLogger("xmppauth.portal")

P = ParamSpec("P")

PER_PAGE = 50
PAST_PER_PAGE = 25

#: A time younger than this is shown as "just now" rather than "0 minutes ago".
JUST_NOW = timedelta(seconds=60)

TRANSPORTS = {"tcp-starttls": "TCP, STARTTLS", "tcp-tls": "TCP, direct TLS", "websocket": "WebSocket"}
CREDENTIALS = {"password": "password", "fast": "FAST token", "app-password": "app password"}


# -- the clients and sessions page --------------------------------------------------------------


def row_context(now: datetime | None = None) -> dict[str, Any]:
    """What the row templates (``_client_row.html``, ``_session_row.html``) need besides the row; the
    live consumer renders the same rows with it."""
    moment = now or timezone.now()
    return {"recent": moment - JUST_NOW, "transports": TRANSPORTS, "credentials": CREDENTIALS}


def sessions_of(user_id: int) -> Any:
    """The account's session rows with what a row shows (client, and the app password of its grant)."""
    return Session.objects.filter(user_id=user_id).select_related("client", "grant__app_password")


def clients_of(user_id: int) -> Any:
    return Client.objects.filter(user_id=user_id).select_related("grant")


@signed_in
def sessions_page(request: PortalRequest) -> HttpResponse:
    user = request.user
    live = list(sessions_of(user.pk).filter(ended__isnull=True).order_by("-started", "-id"))
    online = {session.client_id for session in live if session.client_id is not None}
    clients = list(clients_of(user.pk).order_by("revoked", "-last_seen", "-id"))
    past = sessions_of(user.pk).filter(ended__isnull=False).order_by("-ended", "-id")
    page = Paginator(past, PAST_PER_PAGE).get_page(request.GET.get("page"))
    return render(
        request,
        "sessions_acl/sessions.html",
        {
            "clients": clients,
            "live": live,
            "online": online,
            "page": page,
            "live_seconds": live_seconds(),
            "record_days": settings.XMPP_SESSION_RECORD_DAYS,
            **row_context(),
        },
    )


def live_seconds() -> float:
    """How often the live view looks at the account's sessions (``XMPP_PORTAL_LIVE_SECONDS``)."""
    return float(getattr(settings, "XMPP_PORTAL_LIVE_SECONDS", 2))


def _back() -> HttpResponseRedirect:
    return HttpResponseRedirect(reverse("sessions"))


def revocation_view(
    view: Callable[Concatenate[PortalRequest, P], HttpResponseBase],
) -> Callable[Concatenate[HttpRequest, P], HttpResponseBase]:
    """A revocation from the page: signed in (with its second factor), a recent re-authentication
    (after which the person comes back to the sessions page), and a POST (with Django's CSRF check)."""
    return signed_in(guard.reauthenticated(back="sessions")(require_POST(view)))


@revocation_view
def end_session(request: PortalRequest, pk: int) -> HttpResponseBase:
    session = get_object_or_404(Session, pk=pk, user=request.user)
    if session.ended is not None:
        messages.info(request, f"The session {session.jid} had already ended.")
        return _back()
    try:
        revocation.revoke_session(
            session.pk, actor=guard.actor(request), reason="ended in the portal", user=request.user
        )
    except revocation.NotFound as exc:
        raise Http404 from exc
    messages.success(request, f"The session {session.jid} is being ended: its connection closes now.")
    return _back()


@revocation_view
def revoke_client(request: PortalRequest, pk: int) -> HttpResponseBase:
    client = get_object_or_404(Client, pk=pk, user=request.user)
    if client.revoked is not None:
        messages.info(request, f"{client} was already revoked.")
        return _back()
    outcome = xep0494.revoke(request.user, f"c{client.pk}", actor=guard.actor(request))
    if not outcome.found:
        raise Http404
    text = f"Revoked {client}: its sessions end now, and it must log in with your password again."
    if outcome.password_reset_required:
        text += " It has used your password: if you do not trust it any more, change your password too."
    messages.success(request, text)
    return _back()


@revocation_view
def sign_out_others(request: PortalRequest) -> HttpResponseBase:
    user = request.user
    actor = guard.actor(request)
    with transaction.atomic():
        web = end_other_web_sessions(request)
        clients = list(Client.objects.filter(user=user, revoked__isnull=True).values_list("pk", flat=True))
        for pk in clients:
            revocation.revoke_client(pk, actor=actor, reason="signed out everywhere else", user=user)
        revocation.end_user_sessions(
            user,
            actor=actor,
            reason=f"signed out everywhere else ({_count(web, 'other web session')} ended too)",
        )
    messages.success(
        request,
        f"Signed out everywhere else: every XMPP session ends now, {_count(len(clients), 'client')} "
        f"must log in with your password again, and {_count(web, 'other web session')} ended. "
        "This browser stays signed in.",
    )
    return _back()


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def end_other_web_sessions(request: HttpRequest) -> int:
    """Delete every other portal session of this account (signed in, or a sign-in waiting for its
    second factor), keeping this browser's; how many.

    The session store must keep sessions in the database (``db`` or ``cached_db``, Django's default
    is ``db``): each unexpired row is decoded to find the account's, which reads the whole table of
    live web sessions once. That is a rare action; with another store nothing is ended, and the log
    says so.
    """
    store = import_module(settings.SESSION_ENGINE).SessionStore
    if not hasattr(store, "get_model_class"):
        log.warning(
            "session engine %s keeps no table: other web sessions were not ended", settings.SESSION_ENGINE
        )
        return 0
    mine = str(request.user.pk)
    current = request.session.session_key
    rows = store.get_model_class().objects.filter(expire_date__gt=timezone.now()).exclude(session_key=current)
    ended = 0
    for key, data in rows.values_list("session_key", "session_data").iterator():
        decoded = store().decode(data)
        pending = decoded.get(guard.PENDING)
        pending_user = pending.get("user") if isinstance(pending, dict) else None
        if decoded.get(SESSION_KEY) == mine or str(pending_user) == mine:
            store(session_key=key).delete()
            ended += 1
    return ended


# -- the security log ---------------------------------------------------------------------------


class LogFilter(forms.Form):
    """The security log's filters: a kind of event, and a range of days (UTC, both ends included)."""

    kind = forms.ChoiceField(
        required=False,
        choices=[("", "Every kind"), *AuthEvent.Kind.choices],
        label="Kind",
        error_messages={"invalid_choice": "“%(value)s” is not a kind of event: choose one from the list."},
    )
    since = forms.DateField(
        required=False,
        label="From",
        widget=forms.DateInput(attrs={"type": "date"}),
        error_messages={"invalid": "Enter the first day as a date, for example 2026-12-01."},
    )
    until = forms.DateField(
        required=False,
        label="Until",
        widget=forms.DateInput(attrs={"type": "date"}),
        error_messages={"invalid": "Enter the last day as a date, for example 2026-12-31."},
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        since, until = data.get("since"), data.get("until")
        if since and until and since > until:
            raise forms.ValidationError("The first day is after the last day: swap them.")
        if until and until >= date.max:  # the day after it, where the filter ends, is past any calendar
            data["until"] = None
        return data


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


@signed_in
def security_log(request: PortalRequest) -> HttpResponse:
    events = AuthEvent.objects.filter(user=request.user).order_by("-created", "-id")
    filters = LogFilter(request.GET)
    if not filters.is_valid():
        return render(request, "sessions_acl/log.html", {"filters": filters, "page": None}, status=400)
    chosen = filters.cleaned_data
    if chosen.get("kind"):
        events = events.filter(kind=chosen["kind"])
    if chosen.get("since"):
        events = events.filter(created__gte=_day_start(chosen["since"]))
    if chosen.get("until"):
        events = events.filter(created__lt=_day_start(chosen["until"] + timedelta(days=1)))
    filtered = any(chosen.get(name) for name in ("kind", "since", "until"))
    page = Paginator(events, PER_PAGE).get_page(request.GET.get("page"))
    return render(request, "sessions_acl/log.html", {"filters": filters, "page": page, "filtered": filtered})
