"""``manage.py apppassword create NAME LABEL --scopes … | --role …`` and ``apppassword list NAME``."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from accounts.lookup import command_user
from sessions_acl import access, app_passwords
from sessions_acl.models import AppPassword
from xmppauth.dbsetup import ensure_migrated


class Command(BaseCommand):
    help = "Create an app password with chosen scopes (printed once), or list an account's app passwords."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="create one and print its secret (shown only this once)")
        create.add_argument("name", help="the account (alice or alice@domain)")
        create.add_argument("label", help="what it is for, e.g. 'backup bot'")
        create.add_argument(
            "--scopes", default="", help=f"comma-separated, from: {', '.join(sorted(access.SCOPES))}"
        )
        create.add_argument(
            "--role", default="", help=f"a named bundle instead of --scopes: {', '.join(access.ROLES)}"
        )
        create.add_argument("--expires-days", type=float, default=None, help="expire after this many days")
        listing = sub.add_parser("list", help="list an account's app passwords")
        listing.add_argument("name")

    def handle(self, *args: Any, **options: Any) -> None:
        ensure_migrated(self.stdout)
        user = command_user(options["name"])
        if options["action"] == "list":
            self._list(user)
            return
        role: str = options["role"]
        scopes = [part.strip() for part in options["scopes"].split(",") if part.strip()]
        if bool(role) == bool(scopes):
            raise CommandError("give either --scopes or --role")
        try:
            if role:
                scopes = sorted(access.scopes_for_role(role))
            created = app_passwords.create_app_password(
                user,
                options["label"],
                scopes,
                expires=app_passwords.expiry_from_days(options["expires_days"]),
                role=role,
                actor="the operator (manage.py apppassword)",
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        app = created.app_password
        self.stdout.write(f"app password {app.pk} for {user.username} ({app.label}): {created.secret}")
        self.stdout.write("It is shown only now; store it in the program that will use it.")

    def _list(self, user: Any) -> None:
        now = timezone.now()
        rows = AppPassword.objects.filter(user=user).select_related("grant")
        if not rows:
            self.stdout.write(f"{user.username} has no app passwords")
        for app in rows:
            grant = app.grant
            if grant.revoked:
                state = f"revoked {grant.revoked:%Y-%m-%d %H:%M}"
            elif grant.expires and grant.expires <= now:
                state = "expired"
            else:
                state = f"expires {grant.expires:%Y-%m-%d %H:%M}" if grant.expires else "no expiry"
            used = f"last used {grant.last_used:%Y-%m-%d %H:%M}" if grant.last_used else "never used"
            self.stdout.write(
                f"{app.pk}  {app.label}  [{', '.join(grant.scopes)}]  grant {grant.pk}  {state}  {used}"
            )
