"""The security page and the changes made from it: set up or remove authenticator apps, generate or
remove recovery codes, rename or remove security keys (registering one is in :mod:`.webauthn`).

Every change needs a recent re-authentication (:func:`.guard.reauthenticated`) and is a POST; each
removal first shows a page that says what goes, and warns when it is the account's last second factor.
The security log hears of each change from :data:`accounts.signals.factor_changed`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import segno
from django.contrib import messages
from django.http import HttpResponse, HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.safestring import mark_safe
from django.utils.text import capfirst

from .. import recovery, totp, webauthn
from ..forms import NameForm, TotpCodeForm
from ..models import RecoveryCodes, TotpDevice, User, WebAuthnCredential
from ..secretbox import SecretBoxError
from ..webauthn import WebAuthnError
from .guard import PortalRequest, actor, change_page, factors_of, keep_verified, needs_factor, signed_in

log = logging.getLogger(__name__)

UNAVAILABLE = "Authenticator apps cannot be set up on this server right now: its operator has been told."


@signed_in
def security(request: PortalRequest) -> HttpResponse:
    user = request.user
    codes = RecoveryCodes.objects.filter(user=user).first()
    return render(
        request,
        "accounts/security.html",
        {
            "apps": totp.confirmed_devices(user),
            "keys": webauthn.credentials_of(user),
            "recovery": codes,
            "recovery_left": recovery.remaining_codes(user),
            "recovery_total": codes.codes.count() if codes else 0,
            "no_factor_but_needed": not factors_of(user) and needs_factor(user),
        },
    )


# -- authenticator apps ---------------------------------------------------------------------------


@change_page
def totp_add(request: PortalRequest) -> HttpResponseBase:
    """Name the new authenticator app; the POST makes its secret and goes on to :func:`totp_confirm`."""
    form = NameForm(request.POST if request.method == "POST" else None, initial={"name": "Authenticator app"})
    if form.is_valid():
        try:
            totp.start_setup(request.user, form.cleaned_data["name"])
        except SecretBoxError:
            log.exception("setting up an authenticator app: the factor key is not usable")
            form.add_error(None, UNAVAILABLE)
        else:
            return redirect("accounts:totp-confirm")
    return render(request, "accounts/totp_add.html", {"form": form})


@change_page
def totp_confirm(request: PortalRequest) -> HttpResponseBase:
    """The QR code and secret of the app being set up, and the code from it that confirms it."""
    device = TotpDevice.objects.filter(user=request.user, confirmed=False).order_by("-pk").first()
    if device is None:
        return redirect("accounts:totp-add")
    form = TotpCodeForm(request.POST if request.method == "POST" else None)
    if form.is_valid():
        check = totp.confirm_setup(request.user, form.cleaned_data["code"], actor=actor(request))
        if check.ok:
            device.confirmed = True
            keep_verified(request, device)
            messages.success(request, f"Authenticator app “{device.name}” added.")
            return redirect("accounts:security")
        form.add_error("code", capfirst(check.text))
    try:
        uri = totp.provisioning_uri(device)
    except SecretBoxError:
        log.exception("showing an authenticator app's secret: the factor key is not usable")
        messages.error(request, UNAVAILABLE)
        return redirect("accounts:security")
    secret = parse_qs(urlsplit(uri).query)["secret"][0]
    context = {
        "form": form,
        "device": device,
        "qr": _qr_code(uri),
        "secret": " ".join(secret[i : i + 4] for i in range(0, len(secret), 4)),
    }
    return render(request, "accounts/totp_confirm.html", context)


def _qr_code(uri: str) -> str:
    """The URI as a QR code in inline SVG (segno writes it whole: nothing of ours is in the markup)."""
    svg = segno.make(uri, error="m", micro=False).svg_inline(scale=5, border=2, light="#fff", title="QR code")
    return mark_safe(svg)  # noqa: S308


@change_page
def factor_remove(request: PortalRequest, factor: str) -> HttpResponseBase:
    """Remove the authenticator apps (``factor`` "totp") or the recovery codes ("recovery")."""
    removal = _REMOVALS[factor]
    if not removal.present(request.user):
        return redirect("accounts:security")
    return _removal(request, factor, removal)


# -- recovery codes -------------------------------------------------------------------------------


@change_page
def recovery_generate(request: PortalRequest) -> HttpResponse:
    """A new set of recovery codes, shown once (never stored by the browser); the old set stops working."""
    if request.method == "GET":
        return render(
            request, "accounts/recovery_generate.html", {"left": recovery.remaining_codes(request.user)}
        )
    codes = recovery.generate(request.user, actor=actor(request))
    keep_verified(request, RecoveryCodes.objects.get(user=request.user))
    return render(request, "accounts/recovery_codes.html", {"codes": codes})


# -- security keys and passkeys -------------------------------------------------------------------


@change_page
def key_rename(request: PortalRequest, pk: int) -> HttpResponseBase:
    credential = get_object_or_404(WebAuthnCredential, pk=pk, user=request.user)
    form = NameForm(request.POST if request.method == "POST" else None, initial={"name": credential.name})
    if form.is_valid():
        try:
            webauthn.rename(request.user, pk, form.cleaned_data["name"], actor=actor(request))
        except WebAuthnError as exc:
            form.add_error("name", str(exc))
        else:
            messages.success(request, "Security key renamed.")
            return redirect("accounts:security")
    return render(request, "accounts/key_rename.html", {"form": form, "credential": credential})


@change_page
def key_remove(request: PortalRequest, pk: int) -> HttpResponseBase:
    credential = get_object_or_404(WebAuthnCredential, pk=pk, user=request.user)
    removal = _Removal(
        f"Remove the security key “{credential.name}”",
        "It stops working for sign-ins; to use it again, register it again.",
        f"Security key “{credential.name}” removed.",
        present=lambda user: True,
        remove=lambda user, who: webauthn.remove(user, pk, actor=who),
    )
    return _removal(request, f"key:{pk}", removal)


# -- removals -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Removal:
    """What a removal page says (``title``, ``what`` goes, ``done`` afterwards), whether there is
    anything to remove, and how (with the actor for the security log)."""

    title: str
    what: str
    done: str
    present: Callable[[User], bool]
    remove: Callable[[User, str], object]


_REMOVALS = {
    "totp": _Removal(
        "Remove your authenticator apps",
        "Every authenticator app of your account stops working for sign-ins.",
        "Authenticator apps removed.",
        present=lambda user: totp.confirmed_devices(user).exists(),
        remove=lambda user, who: totp.remove_all(user, actor=who),
    ),
    "recovery": _Removal(
        "Remove your recovery codes",
        "Every recovery code of your account, used or not, stops working.",
        "Recovery codes removed.",
        present=lambda user: RecoveryCodes.objects.filter(user=user).exists(),
        remove=lambda user, who: recovery.remove(user, actor=who),
    ),
}


def _removal(request: PortalRequest, factor: str, removal: _Removal) -> HttpResponseBase:
    """A removal's page (GET), with a warning when ``factor`` is the account's last; or the removal
    itself (POST)."""
    if request.method == "POST":
        removal.remove(request.user, actor(request))
        keep_verified(request)
        messages.success(request, removal.done)
        return redirect("accounts:security")
    context = {
        "title": removal.title,
        "what": removal.what,
        "last": factors_of(request.user) <= {factor},
        "policy": needs_factor(request.user),
    }
    return render(request, "accounts/remove.html", context)
