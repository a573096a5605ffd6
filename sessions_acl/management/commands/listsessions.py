"""``manage.py listsessions [--user NAME] [--all]``: the live (or all recent) XMPP sessions."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from accounts.lookup import command_user
from sessions_acl.models import Session
from xmppauth.dbsetup import ensure_migrated


class Command(BaseCommand):
    help = "List XMPP sessions: id, address, how they logged in, grant and client (for `revoke`)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--user", help="only this account (alice or alice@domain)")
        parser.add_argument("--all", action="store_true", help="include ended sessions (newest first)")
        parser.add_argument("--limit", type=int, default=200, help="at most this many rows (default 200)")

    def handle(self, *args: Any, **options: Any) -> None:
        ensure_migrated(self.stdout)
        sessions = Session.objects.select_related("client", "grant").order_by("-started")
        if options["user"]:
            sessions = sessions.filter(user=command_user(options["user"]))
        if not options["all"]:
            sessions = sessions.filter(ended__isnull=True)
        rows = list(sessions[: max(1, options["limit"])])
        if not rows:
            self.stdout.write("no sessions" if options["all"] else "no live sessions")
            return
        header = ("session", "jid", "transport", "address", "login", "grant", "client", "started", "state")
        table = [header]
        for s in rows:
            state = "live" if s.ended is None else f"ended {s.ended:%Y-%m-%d %H:%M:%S} ({s.end_reason})"
            table.append(
                (
                    str(s.pk),
                    s.jid,
                    s.transport,
                    s.address,
                    f"{s.mechanism} ({s.credential})",
                    str(s.grant_id or "-"),
                    str(s.client_id or "-"),
                    f"{s.started:%Y-%m-%d %H:%M:%S}",
                    state,
                )
            )
        widths = [max(len(row[i]) for row in table) for i in range(len(header) - 1)]
        for row in table:
            cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
            self.stdout.write("  ".join([*cells, row[-1]]))
