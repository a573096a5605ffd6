"""The portal's forms: what a person types to sign in, re-authenticate, name or set up a factor,
create an app password, change the password and choose the XMPP login policy.

They only check that something sensible was typed; whether a password or code is right is decided
by the views with Django's ``authenticate`` and :mod:`accounts.totp` / :mod:`accounts.recovery`
(which count and throttle wrong codes). What may be granted (scopes, roles) and which clients may be
revoked is given to the forms by the views: the forms know nothing of sessions and grants.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth import password_validation

from xmppauth.proto.sasl import saslprep

from .lookup import BadName, localpart_from
from .models import PasswordLogin, User
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

    @property
    def signup_open(self) -> bool:
        """Whether visitors may create an account here (``XMPP_WEB_SIGNUP``, read at each request):
        the sign-in page then links to the sign-up page."""
        return bool(settings.XMPP_WEB_SIGNUP)


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


class AppPasswordForm(_PortalForm):
    """A new app password: a label, a role or a set of scopes (one of the two), an expiry.

    ``scopes``: the scopes this account may grant, in order, with what each means; ``roles``: the
    named bundles of them (a role naming any other scope is not offered). ``once`` carries the token
    that lets the form be sent once (the view keeps it in the session)."""

    label = forms.CharField(
        label="Label",
        max_length=100,
        help_text="What it is for, e.g. “backup bot”: it names the app password in your lists and log.",
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
    role = forms.ChoiceField(label="Role", required=False, widget=forms.RadioSelect)
    scopes = forms.MultipleChoiceField(
        label="Or choose the scopes",
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="What a program logged in with it may do. Leave them all unticked when you chose a role.",
    )
    expires_days = forms.IntegerField(
        label="Expires after (days)",
        required=False,
        min_value=1,
        max_value=3650,
        help_text="Leave empty for an app password that never expires.",
        widget=forms.NumberInput(attrs={"inputmode": "numeric"}),
    )
    once = forms.CharField(widget=forms.HiddenInput)

    def __init__(
        self,
        *args: Any,
        scopes: dict[str, str],
        roles: dict[str, frozenset[str]],
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.roles = roles
        role_field = self.fields["role"]
        assert isinstance(role_field, forms.ChoiceField)
        role_field.choices = [("", "None: I choose the scopes below")] + [
            (name, f"{name}: {', '.join(scopes[s] for s in scopes if s in bundle).lower()}")
            for name, bundle in roles.items()
        ]
        scope_field = self.fields["scopes"]
        assert isinstance(scope_field, forms.MultipleChoiceField)
        scope_field.choices = [(name, f"{meaning} ({name})") for name, meaning in scopes.items()]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        role, scopes = data.get("role") or "", data.get("scopes") or []
        if "role" in data and "scopes" in data:
            if role and scopes:
                raise forms.ValidationError("Choose a role or scopes, not both.", code="role_and_scopes")
            if not role and not scopes:
                raise forms.ValidationError("Choose a role or at least one scope.", code="nothing_chosen")
        data["chosen"] = sorted(self.roles[role]) if role else sorted(scopes)
        return data


def _new_password_field(label: str, help_text: str = "") -> forms.CharField:
    return forms.CharField(
        label=label,
        max_length=1024,
        strip=False,
        help_text=help_text,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )


#: What a person is told of a name that is taken: nothing more (not whose, not since when).
TAKEN = "That username is taken."


def _xmpp_password(password: str) -> None:
    """What XMPP needs of a password (as XEP-0077 checks): SCRAM and PLAIN take it through SASLprep
    (RFC 4013); one it refuses could never log in over XMPP."""
    try:
        saslprep(password)
    except ValueError as exc:
        raise forms.ValidationError(
            f"This password cannot be used over XMPP: {exc}.", code="not_saslprep"
        ) from None


class SignUpForm(_PortalForm):
    """A new account (``XMPP_WEB_SIGNUP``): a username (the localpart, checked as ``manage.py
    adduser`` and ``User.username`` check it, and not taken) and a password twice (SASLprep, and
    Django's validators if configured). Whether the name is free is checked again when the account is
    stored (the view): two sign-ups for one name at once get one account between them."""

    username = forms.CharField(
        label="Username",
        max_length=150,
        help_text="The part of your XMPP address before the @: lower case, no spaces or @ / : < > & ' \".",
        widget=forms.TextInput(
            attrs={"autocomplete": "username", "autocapitalize": "none", "autofocus": True}
        ),
    )
    password1 = _new_password_field(
        "Password", "Used by your XMPP clients and this site. Any characters but control characters."
    )
    password2 = _new_password_field("Password again")

    def clean_username(self) -> str:
        name = str(self.cleaned_data["username"]).strip()
        try:
            localpart = localpart_from(name)
        except BadName as exc:  # what is wrong with it, as adduser says it
            reason = str(exc)
            raise forms.ValidationError(
                f"{reason[:1].upper()}{reason[1:]}", code="invalid_localpart"
            ) from None
        if User.objects.filter(username__iexact=localpart).exists():
            raise forms.ValidationError(TAKEN, code="taken")
        return localpart

    def clean_password1(self) -> str:
        password = str(self.cleaned_data["password1"])
        _xmpp_password(password)
        return password

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        first, second = data.get("password1"), data.get("password2")
        if first is not None and second is not None and first != second:
            self.add_error("password2", forms.ValidationError("The two passwords differ.", code="mismatch"))
        elif first is not None and "username" in data:
            try:  # with the name, for the validators that compare the password with it
                password_validation.validate_password(first, User(username=data["username"]))
            except forms.ValidationError as exc:
                self.add_error("password1", exc)
        return data


class PasswordChangeForm(_PortalForm):
    """The current password (the view checks it), a new one twice, whether the other sessions end,
    and a client to revoke in the same step (``clients``: id and label of each of the account's
    clients that may be revoked)."""

    current = forms.CharField(
        label="Current password",
        max_length=4096,
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
    )
    new_password1 = _new_password_field(
        "New password",
        "Used by your XMPP clients and this site. Any characters but control characters.",
    )
    new_password2 = _new_password_field("New password again")
    end_other_sessions = forms.BooleanField(
        label="End my other sessions",
        required=False,
        initial=True,
        help_text="Every other XMPP session and FAST token of your account ends now: your clients have "
        "to log in again with the new password. App passwords keep working.",
    )
    revoke_client = forms.TypedChoiceField(
        label="Also revoke this client",
        required=False,
        coerce=int,
        empty_value=None,
        help_text="A client you lost or no longer trust: it is revoked in the same step, so that it "
        "cannot log in again with the password it knew.",
    )

    def __init__(self, *args: Any, user: User, clients: list[tuple[int, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user
        revoke = self.fields["revoke_client"]
        assert isinstance(revoke, forms.TypedChoiceField)
        revoke.choices = [("", "No client")] + [(str(pk), label) for pk, label in clients]
        if not clients:
            del self.fields["revoke_client"]

    def clean_new_password1(self) -> str:
        password = str(self.cleaned_data["new_password1"])
        # What XMPP needs (as XEP-0077's change checks): SCRAM and PLAIN take the password through
        # SASLprep (RFC 4013); one it refuses could never log in over XMPP.
        try:
            saslprep(password)
        except ValueError as exc:
            raise forms.ValidationError(
                f"This password cannot be used over XMPP: {exc}.", code="not_saslprep"
            ) from None
        password_validation.validate_password(password, self.user)
        return password

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        first, second = data.get("new_password1"), data.get("new_password2")
        if first is not None and second is not None and first != second:
            self.add_error(
                "new_password2", forms.ValidationError("The two new passwords differ.", code="mismatch")
            )
        return data


#: What each XMPP login policy means to a person, in the order offered.
POLICY_EXPLANATIONS: dict[str, str] = {
    PasswordLogin.ALLOWED: "XMPP clients log in with your password alone (and then may get a FAST "
    "token to reconnect). The simplest, and the least protected: whoever learns your password can "
    "log in.",
    PasswordLogin.SECOND_FACTOR: "An XMPP login with your password must also pass a second factor (a "
    "code from your authenticator app, a security key, or a recovery code); the client then gets a "
    "FAST token and reconnects without asking again. Clients that cannot ask for a factor (RFC 6120 "
    "SASL) are refused: give them an app password.",
    PasswordLogin.OFF: "Your password does not log in over XMPP at all: only app passwords and the FAST "
    "tokens of clients that already logged in. Your password still signs in here.",
}


class PolicyForm(_PortalForm):
    xmpp_password_login = forms.ChoiceField(
        label="Password logins over XMPP",
        choices=PasswordLogin.choices,
        widget=forms.RadioSelect,
    )
