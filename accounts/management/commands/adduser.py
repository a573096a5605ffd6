"""``manage.py adduser NAME PASSWORD``: create an account, or set the password of an existing one."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import User, validate_localpart
from xmppauth.dbsetup import ensure_migrated
from xmppauth.proto.jid import InvalidJID, prep_localpart


class Command(BaseCommand):
    help = "Create an XMPP account NAME@XMPP_DOMAIN with PASSWORD, or update its password. Never prompts."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="localpart of the JID (e.g. alice), or a full alice@domain")
        parser.add_argument("password")
        parser.add_argument("--staff", action="store_true", help="also give access to the admin site")

    def handle(self, *args: Any, **options: Any) -> None:
        ensure_migrated(self.stdout)
        name: str = options["name"]
        password: str = options["password"]
        if "@" in name:
            name, _, domain = name.partition("@")
            if domain.lower() != settings.XMPP_DOMAIN:
                raise CommandError(f"this server serves {settings.XMPP_DOMAIN}, not {domain}")
        try:
            localpart = prep_localpart(name)
            validate_localpart(localpart)
        except (InvalidJID, ValidationError) as exc:
            raise CommandError(f"invalid username {name!r}: {exc}") from None
        if not password:
            raise CommandError("the password must not be empty")
        user, created = User.objects.get_or_create(username=localpart)
        user.set_password(password)
        if options["staff"]:
            user.is_staff = True
            user.is_superuser = True
        user.save()
        verb = "created" if created else "updated"
        self.stdout.write(f"{verb} {localpart}@{settings.XMPP_DOMAIN}")
