"""``manage.py totp add NAME [--device-name LABEL]``: set up an authenticator app for an account."""

from __future__ import annotations

import io
from typing import Any

import segno
from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts import totp
from accounts.lookup import command_user
from accounts.secretbox import SecretBoxError
from xmppauth.dbsetup import ensure_migrated

ACTOR = "the operator (manage.py totp add)"


class Command(BaseCommand):
    help = (
        "Set up and confirm a TOTP authenticator app (XEP-0400) for an account: prints its otpauth:// URI "
        "and QR code once. From then on every password login of the account asks for a code."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="enrol an authenticator app and print its secret (shown only once)")
        add.add_argument("name", help="the account (alice or alice@domain)")
        add.add_argument(
            "--device-name", default="authenticator", help="what the user calls it, e.g. 'phone' (64 at most)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        ensure_migrated(self.stdout)
        label: str = options["device_name"].strip()
        if not label or len(label) > 64:
            raise CommandError("--device-name must have 1 to 64 characters")
        user = command_user(options["name"])
        try:
            device, uri = totp.enrol(user, label, actor=ACTOR)
        except SecretBoxError as exc:
            raise CommandError(str(exc)) from None
        qr = io.StringIO()
        segno.make(uri, error="m").terminal(out=qr, compact=True)
        self.stdout.write(f"TOTP authenticator {device.pk} ({label}) for {user.username}, confirmed:")
        self.stdout.write(qr.getvalue(), ending="")
        self.stdout.write(uri)
        self.stdout.write(
            "The secret is shown only now: scan the QR code (or enter the URI) in the authenticator app, "
            "then clear this screen. From now on every password login of the account asks for a code."
        )
