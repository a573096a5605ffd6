"""The portal's forms: what a person types to sign in, re-authenticate, and name or set up a factor.

They only check that something sensible was typed; whether a password or code is right is decided
by the views with Django's ``authenticate`` and :mod:`accounts.totp` / :mod:`accounts.recovery`
(which count and throttle wrong codes).
"""

from __future__ import annotations

from typing import Any

from django import forms

from .webauthn import NAME_MAX


class _PortalForm(forms.Form):
    """Labels as written, without Django's trailing colon."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)


def _code_field(label: str, max_length: int, help_text: str, **attrs: str) -> forms.CharField:
    """A field for a code a person copies from an app or a list (``attrs``: hints for their keyboard)."""
    return forms.CharField(
        label=label, max_length=max_length, help_text=help_text, widget=forms.TextInput(attrs=attrs)
    )


class PasswordForm(_PortalForm):
    password = forms.CharField(
        label="Password",
        max_length=4096,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )


class SignInForm(PasswordForm):
    field_order = ["username", "password"]

    username = forms.CharField(
        label="Username",
        max_length=300,
        help_text="The part of your XMPP address before the @, or the whole address.",
        widget=forms.TextInput(
            attrs={"autocomplete": "username", "autocapitalize": "none", "autofocus": True}
        ),
    )


class TotpCodeForm(_PortalForm):
    code = _code_field(
        "Code from your authenticator app",
        20,
        "Six digits; a new one every 30 seconds.",
        autocomplete="one-time-code",
        inputmode="numeric",
        pattern="[0-9 ]*",
    )

    def clean_code(self) -> str:
        return "".join(str(self.cleaned_data["code"]).split())  # "123 456" as some apps show it


class RecoveryCodeForm(_PortalForm):
    code = _code_field(
        "Recovery code",
        40,
        "Like k7m2-x9qp-4tzd-wb3c. Each code works once.",
        autocomplete="off",
        autocapitalize="none",
        spellcheck="false",
    )


class NameForm(_PortalForm):
    name = forms.CharField(
        label="Name",
        max_length=NAME_MAX,
        help_text="So that you can tell it from your others, e.g. “phone” or “blue key”.",
    )
