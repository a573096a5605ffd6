"""``manage.py setscopes GRANT_ID SCOPE[,SCOPE…]``: change what a grant allows, live."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from sessions_acl import access, revocation
from xmppauth.dbsetup import ensure_migrated


class Command(BaseCommand):
    help = (
        "Give a grant (see `listsessions`, `apppassword list`) other scopes; its live sessions use them "
        f"within a second. Scopes: {', '.join(access.SCOPES)}."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("grant", type=int)
        parser.add_argument("scopes", help="comma-separated, e.g. messages.send,presence")
        parser.add_argument("--actor", default="the operator (manage.py setscopes)")

    def handle(self, *args: Any, **options: Any) -> None:
        ensure_migrated(self.stdout)
        scopes = [part.strip() for part in options["scopes"].split(",") if part.strip()]
        try:
            grant = revocation.change_grant_scopes(options["grant"], scopes, actor=options["actor"])
        except (revocation.NotFound, ValueError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"grant {grant.pk} of {grant.user.username} now allows {', '.join(grant.scopes) or 'nothing'}"
        )
