"""Account names as people type them on the command line: ``alice`` or ``alice@domain``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import CommandError

from xmppauth.proto.jid import InvalidJID, prep_localpart

if TYPE_CHECKING:
    from accounts.models import User


class BadName(ValueError):
    pass


def localpart_from(name: str) -> str:
    """The prepared localpart, or :class:`BadName` with a message for a person."""
    if "@" in name:
        name, _, domain = name.partition("@")
        if domain.lower() != settings.XMPP_DOMAIN:
            raise BadName(f"this server serves {settings.XMPP_DOMAIN}, not {domain}")
    from accounts.models import validate_localpart

    try:
        localpart = prep_localpart(name)
        validate_localpart(localpart)
    except (InvalidJID, ValidationError) as exc:
        message = "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
        raise BadName(f"invalid username {name!r}: {message}") from None
    return localpart


def existing_user(name: str) -> User:
    """The account called ``name``, or :class:`BadName`."""
    from accounts.models import User

    user = User.objects.filter(username=localpart_from(name)).first()
    if user is None:
        raise BadName(f"no account {name!r}")
    return user


def command_user(name: str) -> User:
    """The account called ``name``, for a management command: a :class:`CommandError` that says why not."""
    try:
        return existing_user(name)
    except BadName as exc:
        raise CommandError(str(exc)) from None
