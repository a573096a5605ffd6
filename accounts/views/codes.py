"""The second factors a person types, for the sign-in's second step and for re-authentication: which
forms to offer (only the account's own factors) and the check of a code, with the django-otp device
that passed it. Wrong codes are counted and throttled by :mod:`accounts.totp` and
:mod:`accounts.recovery`; their texts say how long to wait."""

from __future__ import annotations

from dataclasses import dataclass

from django import forms
from django.http import QueryDict
from django.utils.text import capfirst
from django_otp.models import Device

from .. import recovery, totp, webauthn
from ..forms import RecoveryCodeForm, TotpCodeForm
from ..models import RecoveryCodes, User

#: How each factor is named in the security log ("web sign-in: password+totp").
LOG_NAMES = {"totp": "totp", "recovery": "recovery code", "key": "security key"}


@dataclass(frozen=True)
class FactorCheck:
    """The verdict on a code: ``ok`` with the ``device`` that passed it, else ``text`` for the person;
    ``note``, something to tell them either way (how many recovery codes are left)."""

    ok: bool
    text: str = ""
    device: Device | None = None
    note: str = ""


class CodeForms:
    """The code forms for ``user``'s factors, the one a POST names (field ``factor``) bound to it;
    ``has_key`` when the account can answer with a security key or passkey instead."""

    def __init__(self, user: User, data: QueryDict | None = None, *, throttled: bool = True) -> None:
        self.user = user
        self.throttled = (
            throttled  # False: a browser the account knows, which the wait after wrong codes spares
        )
        factor = data.get("factor") if data is not None else None
        self.forms: dict[str, forms.Form] = {}
        if totp.confirmed_devices(user).exists():
            self.forms["totp"] = TotpCodeForm(data if factor == "totp" else None, prefix="totp")
        if recovery.remaining_codes(user):
            self.forms["recovery"] = RecoveryCodeForm(
                data if factor == "recovery" else None, prefix="recovery"
            )
        self.has_key = bool(webauthn.credentials_of(user))
        self.submitted = factor if factor in self.forms else None

    def check(self) -> FactorCheck | None:
        """The submitted code checked (its form shows the refusal); None when no form was submitted
        or it was not filled in (its form says what is missing)."""
        form = self.forms.get(self.submitted or "")
        if form is None or not form.is_valid():
            return None
        result = check_code(
            self.user, str(self.submitted), form.cleaned_data["code"], throttled=self.throttled
        )
        if not result.ok:
            form.add_error("code", result.text)
        return result


def check_code(user: User, factor: str, code: str, *, throttled: bool = True) -> FactorCheck:
    """An authenticator app's code (``factor`` "totp") or a recovery code (used up if right); not
    ``throttled`` for a browser the account knows (``accounts.totp.verify_totp``)."""
    if factor == "totp":
        app = totp.verify_totp(user.pk, code, throttled=throttled)
        device = totp.confirmed_devices(user).first() if app.ok else None
        return FactorCheck(app.ok, capfirst(app.text), device)
    used = recovery.use_code(user.pk, code, throttled=throttled)
    if used.remaining == 0:
        note = "You have no recovery codes left: generate new ones on your security page."
    else:
        note = f"You have {used.remaining} unused recovery code{'s' if used.remaining != 1 else ''} left."
    device = RecoveryCodes.objects.filter(user=user).first() if used.ok else None
    return FactorCheck(used.ok, capfirst(used.text), device, note if used.ok else "")
