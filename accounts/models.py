from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractUser, UserManager
from django.core.exceptions import ValidationError
from django.db import models

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

    objects = AccountManager()  # type: ignore[misc]

    @classmethod
    def normalize_username(cls, username: Any) -> Any:
        try:
            return prep_localpart(str(username))
        except InvalidJID:
            return username  # the field validator reports it

    def set_password(self, raw_password: str | None) -> None:
        super().set_password(raw_password)
        self.scram = scram.derive_all(raw_password) if raw_password is not None else {}

    def set_unusable_password(self) -> None:
        super().set_unusable_password()
        self.scram = {}

    def scram_credentials(self, hash_name: str) -> ScramCredentials | None:
        data = self.scram.get(hash_name)
        return scram.from_json(data) if data else None
