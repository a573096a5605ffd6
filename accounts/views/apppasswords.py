"""App passwords in the portal: the list, creating one (its secret shown once), revoking one
(docs/portal-account.md).

The work is :mod:`sessions_acl`'s, as for ``manage.py apppassword`` and ``manage.py revoke``:
:func:`sessions_acl.app_passwords.create_app_password` makes it (and writes the security log),
:func:`sessions_acl.revocation.revoke_app_password` revokes it (the streams using it close within a
second, and the security log says who). Creating and revoking need a recent re-authentication. An
account only ever reaches its own app passwords: any other id is "not found".

The secret is never stored: the page that shows it is the answer to the POST that made it (sent
with ``Cache-Control: no-store``). A form can be sent once (a token kept in the session, taken by
the POST that uses it), so that reloading that page makes no second app password behind the
person's back.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime

from django.contrib import messages
from django.http import HttpResponse, HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.views.decorators.http import require_GET

from sessions_acl import access, app_passwords, revocation
from sessions_acl.models import AppPassword

from ..forms import AppPasswordForm
from ..models import User
from .guard import PortalRequest, actor, change_page, jid, signed_in

#: Session key of the token that lets the creation form be sent once.
ONCE_KEY = "portal.app_password_form"


def grantable_scopes(user: User) -> dict[str, str]:
    """The scopes the account may put in an app password, in the catalogue's order, with what each
    means: never those an app password can never carry (``admin``, ``clients.manage``), and
    ``admin`` only ever for staff (:func:`sessions_acl.access.validate_scopes` has the last word)."""
    return {
        name: meaning
        for name, meaning in access.SCOPES.items()
        if name not in access.NEVER_FOR_APP_PASSWORDS and (name != access.ADMIN or user.is_staff)
    }


def grantable_roles(scopes: dict[str, str]) -> dict[str, frozenset[str]]:
    """The roles made only of ``scopes``."""
    return {name: bundle for name, bundle in access.ROLES.items() if bundle <= scopes.keys()}


@dataclass(frozen=True)
class Row:
    """One app password as the list shows it."""

    app: AppPassword
    state: str  # "active", "expired" or "revoked"

    @property
    def scopes(self) -> list[str]:
        return list(self.app.grant.scopes)

    @property
    def expires(self) -> datetime | None:
        return self.app.grant.expires


def _rows(user: User) -> list[Row]:
    now = timezone.now()
    rows = []
    for app in AppPassword.objects.filter(user=user).select_related("grant").order_by("-created", "-pk"):
        grant = app.grant
        if grant.revoked is not None:
            state = "revoked"
        elif grant.expires is not None and grant.expires <= now:
            state = "expired"
        else:
            state = "active"
        rows.append(Row(app, state))
    return rows


@signed_in
@require_GET
def app_passwords_list(request: PortalRequest) -> HttpResponse:
    return render(
        request,
        "accounts/app_passwords.html",
        {"rows": _rows(request.user), "scope_names": access.SCOPES, "jid": jid(request.user)},
    )


@change_page
def app_password_create(request: PortalRequest) -> HttpResponseBase:
    """The form (GET); the new app password and its secret, shown this once (POST)."""
    user = request.user
    scopes = grantable_scopes(user)
    roles = grantable_roles(scopes)
    if request.method == "GET":
        token = secrets.token_urlsafe(16)
        request.session[ONCE_KEY] = token
        form = AppPasswordForm(initial={"once": token}, scopes=scopes, roles=roles)
        return render(request, "accounts/app_password_create.html", {"form": form})
    form = AppPasswordForm(request.POST, scopes=scopes, roles=roles)
    if not form.is_valid():
        return render(request, "accounts/app_password_create.html", {"form": form})
    expected = request.session.pop(ONCE_KEY, None)
    if not isinstance(expected, str) or not constant_time_compare(expected, form.cleaned_data["once"]):
        messages.warning(
            request,
            "Nothing was created: that form was sent already (its app password is in the list) "
            "or is out of date. Create another one if you need it.",
        )
        return redirect("accounts:app-passwords")
    data = form.cleaned_data
    role = data["role"] or ""
    try:
        created = app_passwords.create_app_password(
            user,
            data["label"],
            data["chosen"],
            expires=app_passwords.expiry_from_days(data["expires_days"]),
            role=role,
            actor=actor(request),
        )
    except ValueError as exc:  # sessions_acl's last word (a scope it refuses, no password yet)
        request.session[ONCE_KEY] = form.cleaned_data["once"]
        form.add_error(None, str(exc)[:1].upper() + str(exc)[1:] + ".")
        return render(request, "accounts/app_password_create.html", {"form": form})
    return render(
        request,
        "accounts/app_password_created.html",
        {
            "app": created.app_password,
            "secret": created.secret,
            "jid": jid(user),
            "scope_names": access.SCOPES,
        },
    )


@change_page
def app_password_revoke(request: PortalRequest, pk: int) -> HttpResponseBase:
    """What goes (GET); the revocation (POST): the streams using it close within a second."""
    app = get_object_or_404(AppPassword.objects.select_related("grant"), pk=pk, user=request.user)
    if app.grant.revoked is not None:
        messages.info(request, f"The app password “{app.label}” is already revoked.")
        return redirect("accounts:app-passwords")
    if request.method == "POST":
        try:
            revocation.revoke_app_password(pk, actor=actor(request), user=request.user)
        except revocation.NotFound:  # deleted meanwhile
            return redirect("accounts:app-passwords")
        messages.success(
            request, f"App password “{app.label}” revoked: programs using it have been disconnected."
        )
        return redirect("accounts:app-passwords")
    return render(request, "accounts/app_password_revoke.html", {"app": app})
