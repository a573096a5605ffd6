"""App passwords: a password for one program, with its own grant, shown once (docs/access.md).

Listing and revoking them is elsewhere (``xep0494.py``, ``revocation.py``, the admin); an app
password's login is :mod:`sessions_acl.login`'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from accounts import scram
from accounts.models import User
from xmppauth.proto.sasl import derive_credentials

from . import access, tokens
from .models import AppPassword, AuthEvent, Grant
from .securitylog import log_event


@dataclass(frozen=True, kw_only=True)
class NewAppPassword:
    """A new app password and its secret, which only its creator ever sees."""

    app_password: AppPassword
    secret: str = field(repr=False)  # shown once, never stored


def create_app_password(
    user: User,
    label: str,
    scopes: list[str] | frozenset[str],
    *,
    expires: datetime | None = None,
    role: str = "",
    actor: str = "",
) -> NewAppPassword:
    """A new app password with exactly ``scopes`` (never ``admin`` or ``clients.manage``).

    Raises ValueError with a message for a person for bad input.
    """
    label = label.strip()
    if not label:
        raise ValueError("an app password needs a label (what it is for, e.g. 'backup bot')")
    if len(label) > 100:
        raise ValueError("the label is longer than 100 characters")
    chosen = access.validate_scopes(scopes, app_password=True)
    if not chosen:
        raise ValueError("an app password needs at least one scope")
    if expires is not None and expires <= timezone.now():
        raise ValueError("the expiry is in the past")
    if not user.scram:
        raise ValueError("the account has no password yet; set one first")
    secret = tokens.new_app_password()
    keys: dict[str, Any] = {}
    for hash_name, entry in user.scram.items():
        reference = scram.from_json(entry)
        keys[hash_name] = scram.to_json(
            derive_credentials(secret, hash_name, salt=reference.salt, iterations=reference.iterations)
        )
    with transaction.atomic():
        grant = Grant.objects.create(
            user=user, origin=Grant.Origin.APP_PASSWORD, role=role, scopes=sorted(chosen), expires=expires
        )
        app = AppPassword.objects.create(user=user, grant=grant, label=label, scram=keys)
        log_event(
            user,
            AuthEvent.Kind.APP_PASSWORD_CREATED,
            f"{label!r} with {', '.join(sorted(chosen))}"
            + (f", expires {expires:%Y-%m-%d %H:%M} UTC" if expires else ""),
            actor=actor,
        )
    return NewAppPassword(app_password=app, secret=secret)


def expiry_from_days(days: float | None) -> datetime | None:
    """The expiry ``days`` from now (fractions welcome); none for 0 or None."""
    return None if not days else timezone.now() + timedelta(days=days)
