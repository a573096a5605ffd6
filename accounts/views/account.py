"""The account's own settings: its password and its policy for XMPP password logins; and the overview
the dashboard shows (docs/portal-account.md).

**Password change.** The new password goes through ``User.set_password``, the one password door: it
sets Django's hash and the SCRAM keys, and announces the change (the security log, and unless the
person unticks "End my other sessions", the end of every other XMPP session and FAST token). Like
every change, the page needs a recent re-authentication (:func:`.guard.change_page`), and it asks
for the current password as well, always: a re-authentication with a factor proves the person, not
that they know the password, and a session taken over within the window must not be able to lock
the owner out (OWASP ASVS 4.0.3 §2.1.6: the current and the new password). The current password is
checked behind the sign-in throttle, and a wrong one is in the security log. A client may be
revoked in the same transaction ("revoke this client and change my password"), through
:func:`sessions_acl.revocation.revoke_client`. Other web sessions end in any case (Django checks
each session against the password hash); this browser stays signed in
(``update_session_auth_hash``).

**Login policy.** ``User.xmpp_password_login``, behind a recent re-authentication; a change is
announced with :data:`accounts.signals.policy_changed` (the security log writes it).
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth import update_session_auth_hash
from django.db import transaction
from django.http import HttpResponseBase
from django.shortcuts import redirect, render
from django.utils import timezone

from sessions_acl import revocation
from sessions_acl.models import AppPassword, AuthEvent, Client, Grant, Session

from .. import signals
from ..forms import POLICY_EXPLANATIONS, PasswordChangeForm, PolicyForm
from ..models import PasswordLogin, User
from .guard import (
    PortalRequest,
    actor,
    announce,
    change_page,
    factors_of,
    mark_reauthenticated,
)
from .password import MESSAGES, check_password

#: How many recent web sign-ins the dashboard lists.
RECENT_SIGNINS = 3


# -- the dashboard --------------------------------------------------------------------------------


def overview(user: User) -> dict[str, Any]:
    """What the dashboard shows besides the address and the factors: live XMPP sessions, usable app
    passwords, the latest web sign-ins and the latest XMPP login (a fixed number of queries)."""
    now = timezone.now()
    return {
        "online": Session.objects.filter(user=user, ended__isnull=True).count(),
        "app_password_count": AppPassword.objects.filter(
            user=user, grant__in=Grant.objects.live(now).filter(user=user)
        ).count(),
        "recent_signins": list(
            AuthEvent.objects.filter(user=user, kind=AuthEvent.Kind.LOGIN).order_by("-created", "-id")[
                :RECENT_SIGNINS
            ]
        ),
        "last_xmpp_login": Session.objects.filter(user=user).order_by("-started", "-id").first(),
    }


# -- the password ---------------------------------------------------------------------------------


def _revocable_clients(user: User) -> list[tuple[int, str]]:
    clients = Client.objects.filter(user=user, revoked__isnull=True).order_by("-last_seen", "-pk")
    return [(client.pk, f"{client} (last seen {client.last_seen:%Y-%m-%d %H:%M} UTC)") for client in clients]


@change_page
def password_change(request: PortalRequest) -> HttpResponseBase:
    user = request.user
    form = PasswordChangeForm(
        request.POST if request.method == "POST" else None, user=user, clients=_revocable_clients(user)
    )
    if not form.is_valid():
        return render(request, "accounts/password.html", {"form": form})
    checked = check_password(request, user.username, form.cleaned_data["current"])
    if checked.user is None or checked.user.pk != user.pk:
        wrong = checked.reason == "wrong"
        form.add_error("current", MESSAGES["wrong_password"] if wrong else checked.text)
        if wrong:
            announce(request, user, ok=False, detail="web password change: wrong current password")
        return render(request, "accounts/password.html", {"form": form})
    mark_reauthenticated(request)
    data = form.cleaned_data
    end_others = bool(data["end_other_sessions"])
    client_id = data.get("revoke_client")
    who = actor(request)
    try:
        with transaction.atomic():  # the client revoked and the new password, or neither
            revoked = None
            if client_id is not None:
                revoked = revocation.revoke_client(
                    client_id, actor=who, reason="revoked with a password change", user=user
                )
            user.set_password(data["new_password1"], actor=who, keep_other_sessions=not end_others)
            user.save(update_fields=["password"])
    except revocation.NotFound:  # it went meanwhile
        form.add_error("revoke_client", "That client is not there any more: choose again.")
        return render(request, "accounts/password.html", {"form": form})
    update_session_auth_hash(request, user)  # this browser stays signed in
    done = ["Password changed."]
    if revoked is not None:
        done.append(f"The client “{revoked}” is revoked.")
    done.append(
        "Your other sessions have ended: your XMPP clients log in again with the new password."
        if end_others
        else "Your XMPP sessions go on; your clients use the new password at their next login."
    )
    messages.success(request, " ".join(done))
    return redirect("accounts:home")


# -- the XMPP login policy ------------------------------------------------------------------------


@change_page
def policy(request: PortalRequest) -> HttpResponseBase:
    user = request.user
    has_factor = bool(factors_of(user))
    form = PolicyForm(
        request.POST if request.method == "POST" else None,
        initial={"xmpp_password_login": user.xmpp_password_login},
    )
    if form.is_valid():
        new = form.cleaned_data["xmpp_password_login"]
        old = user.xmpp_password_login
        if new == old:
            messages.info(request, "Nothing changed.")
            return redirect("accounts:policy")
        with transaction.atomic():
            User.objects.filter(pk=user.pk).update(xmpp_password_login=new)
            user.xmpp_password_login = new
            signals.policy_changed.send(sender=User, user=user, old=old, new=new, actor=actor(request))
        messages.success(request, f"Password logins over XMPP: {PasswordLogin(new).label}.")
        if new == PasswordLogin.SECOND_FACTOR and not has_factor:
            messages.warning(
                request,
                "Your account has no second factor yet: your next XMPP login with the password will ask "
                "you to set up an authenticator app first (TOTP-INIT).",
            )
        return redirect("accounts:policy")
    choices = [
        {"value": value, "label": label, "explanation": POLICY_EXPLANATIONS[value]}
        for value, label in PasswordLogin.choices
    ]
    return render(
        request,
        "accounts/policy.html",
        {
            "form": form,
            "choices": choices,
            "current": user.xmpp_password_login,
            "has_factor": has_factor,
        },
    )
