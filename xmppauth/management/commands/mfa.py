"""``manage.py mfa list NAME`` and ``mfa reset NAME``: an account's second factors."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts import totp
from accounts.lookup import BadName, existing_user
from accounts.models import TotpDevice
from xmppauth.dbsetup import ensure_migrated

ACTOR = "manage.py mfa reset"


class Command(BaseCommand):
    help = (
        "List an account's second factors, or remove them all (the account logs in with its password alone)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        listing = sub.add_parser("list", help="each factor: kind, name, confirmed, created")
        listing.add_argument("name", help="the account (alice or alice@domain)")
        reset = sub.add_parser("reset", help="remove every factor (e.g. the user lost the phone)")
        reset.add_argument("name", help="the account (alice or alice@domain)")

    def handle(self, *args: Any, **options: Any) -> None:
        ensure_migrated(self.stdout)
        try:
            user = existing_user(options["name"])
        except BadName as exc:
            raise CommandError(str(exc)) from None
        if options["action"] == "reset":
            removed = totp.remove_all(user, actor=ACTOR)
            self.stdout.write(f"removed {removed} second factor(s) of {user.username}")
            return
        devices = TotpDevice.objects.filter(user=user).order_by("pk")
        if not devices:
            self.stdout.write(f"{user.username} has no second factors")
        for device in devices:
            confirmed = "confirmed" if device.confirmed else "not confirmed (being set up)"
            self.stdout.write(f"totp  {device.name}  {confirmed}  created {device.created:%Y-%m-%d %H:%M}")
