"""``manage.py adduser NAME PASSWORD``: create an account, or set the password of an existing one."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.lookup import BadName, localpart_from
from accounts.models import PasswordLogin, User
from xmppauth.dbsetup import ensure_migrated


class Command(BaseCommand):
    help = "Create an XMPP account NAME@XMPP_DOMAIN with PASSWORD, or update its password. Never prompts."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="localpart of the JID (e.g. alice), or a full alice@domain")
        parser.add_argument("password")
        parser.add_argument("--staff", action="store_true", help="also give access to the admin site")
        parser.add_argument(
            "--password-login",
            choices=[choice.value for choice in PasswordLogin],
            help="account policy for XMPP logins with this password: allowed (default), "
            "second-factor (only with a second factor), off (app passwords and FAST tokens only)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        ensure_migrated(self.stdout)
        name: str = options["name"]
        password: str = options["password"]
        try:
            localpart = localpart_from(name)
        except BadName as exc:
            raise CommandError(str(exc)) from None
        if not password:
            raise CommandError("the password must not be empty")
        user, created = User.objects.get_or_create(username=localpart)
        user.set_password(password)
        if options["staff"]:
            user.is_staff = True
            user.is_superuser = True
        if options["password_login"]:
            user.xmpp_password_login = options["password_login"]
        user.save()
        verb = "created" if created else "updated"
        self.stdout.write(f"{verb} {localpart}@{settings.XMPP_DOMAIN}")
