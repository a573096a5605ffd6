"""``manage.py mfa list NAME``, ``mfa reset NAME`` and ``mfa recovery NAME [--count N]``: an account's
second factors."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from accounts import recovery, totp, webauthn
from accounts.lookup import command_user
from accounts.models import RecoveryCodes, TotpDevice, User, WebAuthnCredential
from xmppauth.dbsetup import ensure_migrated

ACTOR = "manage.py mfa reset"
RECOVERY_ACTOR = "manage.py mfa recovery"
MAX_CODES = 100


class Command(BaseCommand):
    help = (
        "List an account's second factors, remove them all (the account logs in with its password alone), "
        "or generate a new set of recovery codes."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        listing = sub.add_parser("list", help="each factor: kind, name, state, created")
        listing.add_argument("name", help="the account (alice or alice@domain)")
        reset = sub.add_parser("reset", help="remove every factor (e.g. the user lost the phone)")
        reset.add_argument("name", help="the account (alice or alice@domain)")
        codes = sub.add_parser(
            "recovery", help="generate a new set of recovery codes and print them (shown only once)"
        )
        codes.add_argument("name", help="the account (alice or alice@domain)")
        codes.add_argument("--count", type=int, default=10, help=f"how many codes (1 to {MAX_CODES})")

    def handle(self, *args: Any, **options: Any) -> None:
        ensure_migrated(self.stdout)
        user = command_user(options["name"])
        if options["action"] == "reset":
            with transaction.atomic():
                removed = totp.remove_all(user, actor=ACTOR)
                removed += webauthn.remove(user, actor=ACTOR)
                removed += 1 if recovery.remove(user, actor=ACTOR) else 0
            self.stdout.write(f"removed {removed} second factor(s) of {user.username}")
        elif options["action"] == "recovery":
            self._generate(user, options["count"])
        else:
            self._list(user)

    def _generate(self, user: User, count: int) -> None:
        if not 1 <= count <= MAX_CODES:
            raise CommandError(f"--count must be 1 to {MAX_CODES}")
        codes = recovery.generate(user, count=count, actor=RECOVERY_ACTOR)
        self.stdout.write(f"{count} recovery codes for {user.username}:")
        for code in codes:
            self.stdout.write(f"  {code}")
        self.stdout.write(
            "Each code works once, in place of another second factor. They are shown only now: give them "
            "to the user to store safely (printed, or in a password manager), then clear this screen. "
            "Any codes generated before for this account no longer work."
        )

    def _list(self, user: User) -> None:
        devices = TotpDevice.objects.filter(user=user).order_by("pk")
        keys = WebAuthnCredential.objects.filter(user=user).order_by("pk")
        codes = RecoveryCodes.objects.filter(user=user).first()
        if not devices and not keys and codes is None:
            self.stdout.write(f"{user.username} has no second factors")
        for device in devices:
            confirmed = "confirmed" if device.confirmed else "not confirmed (being set up)"
            self.stdout.write(f"totp  {device.name}  {confirmed}  created {device.created:%Y-%m-%d %H:%M}")
        for key in keys:
            used = f"last used {key.last_used:%Y-%m-%d %H:%M}" if key.last_used else "never used"
            flag = (
                "  REFUSED: its signature counter went backwards (copied?)" if key.counter_regressed else ""
            )
            kind = "passkey (synced)" if key.device_type == "multi_device" else "security key"
            self.stdout.write(
                f"webauthn  {key.name}  {kind}  created {key.created:%Y-%m-%d %H:%M}  {used}{flag}"
            )
        if codes is not None:
            unused = recovery.remaining_codes(user)
            self.stdout.write(
                f"recovery  {codes.name}  {unused} of {codes.codes.count()} unused  "
                f"generated {codes.generated:%Y-%m-%d %H:%M}"
            )
