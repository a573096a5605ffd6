from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractUser, UserManager
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from xmppauth.proto.jid import InvalidJID, prep_localpart
from xmppauth.proto.sasl import ScramCredentials

from . import scram


def validate_localpart(value: str) -> None:
    """An account name must be a valid, already prepared JID localpart (RFC 7622 §3.3)."""
    try:
        prepared = prep_localpart(value)
    except InvalidJID as exc:
        raise ValidationError(f"Not a valid XMPP username: {exc}.", code="invalid_localpart") from None
    if prepared != value:
        raise ValidationError(
            f"Not in canonical form; use {prepared!r} (lower case, NFKC).", code="not_canonical_localpart"
        )


class AccountManager(UserManager["User"]):
    pass


class PasswordLogin(models.TextChoices):
    """Account policy for logins over XMPP with the account password (app passwords and FAST
    tokens are not affected)."""

    ALLOWED = "allowed", "Allowed"
    SECOND_FACTOR = "second-factor", "Allowed only with a second factor"
    OFF = "off", "Off: app passwords and FAST tokens only"


class User(AbstractUser):
    """An account; ``username`` is the localpart of the account's JID."""

    username = models.CharField(
        "username",
        max_length=150,
        unique=True,
        validators=[validate_localpart],
        help_text="The part before the @ of the XMPP address: lower case, no spaces or @ / : < > & ' \".",
        error_messages={"unique": "An account with that username already exists."},
    )
    # Hash name -> {salt, iterations, stored_key, server_key}, base64; see accounts/scram.py.
    scram = models.JSONField(default=dict, blank=True, editable=False)

    xmpp_password_login = models.CharField(
        "password logins over XMPP",
        max_length=20,
        choices=PasswordLogin.choices,
        default=PasswordLogin.ALLOWED,
    )

    password_changed = models.DateTimeField(null=True, blank=True, editable=False)

    objects = AccountManager()  # type: ignore[misc]

    @classmethod
    def normalize_username(cls, username: Any) -> Any:
        try:
            return prep_localpart(str(username))
        except InvalidJID:
            return username  # the field validator reports it

    # Set by code that handles the consequences of a password change itself (revocation.change_password).
    keep_sessions_on_password_change = False

    def set_password(self, raw_password: str | None) -> None:
        # A first password is not a change: nothing can have logged in with the account yet.
        self._replacing_password = self.pk is not None and bool(self.scram)
        super().set_password(raw_password)
        if raw_password is None:
            self.scram = {}
            return
        # App passwords are SCRAM keys derived with the account's salts (docs/access.md): while the
        # account has any, a new password keeps the salt and iteration count of each hash.
        keep = self.scram if self.pk is not None and self.app_passwords.exists() else None
        self.scram = scram.derive_all(raw_password, keep_salts=keep)

    def save(self, *args: Any, **kwargs: Any) -> None:
        password_changed = self._password is not None and getattr(self, "_replacing_password", False)  # type: ignore[attr-defined]
        if self._password is not None:  # type: ignore[attr-defined]
            self.password_changed = timezone.now()
            if kwargs.get("update_fields") is not None:
                kwargs["update_fields"] = {*kwargs["update_fields"], "password_changed", "scram"}
        super().save(*args, **kwargs)
        if password_changed and not self.keep_sessions_on_password_change:
            # Any other path (the admin, `manage.py changepassword`): end sessions and tokens.
            from sessions_acl.revocation import end_sessions_after_password_change

            end_sessions_after_password_change(self, actor="")
        self.keep_sessions_on_password_change = False

    def set_unusable_password(self) -> None:
        super().set_unusable_password()
        self.scram = {}

    def scram_credentials(self, hash_name: str) -> ScramCredentials | None:
        data = self.scram.get(hash_name)
        return scram.from_json(data) if data else None
