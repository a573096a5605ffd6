"""``manage.py revoke session|client|grant|app-password ID`` or ``revoke user NAME``.

Commits the revocation and publishes it; a running server closes the affected streams within a
second (``XMPP_REVOCATION_POLL_MS`` when it cannot hear the channel layer of this process).
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.lookup import BadName, existing_user
from sessions_acl import revocation
from xmppauth.dbsetup import ensure_migrated

KINDS = ("session", "client", "grant", "app-password", "user")


class Command(BaseCommand):
    help = (
        "Revoke a session, a client (its sessions, tokens and grant), a grant, an app password, "
        "or every session and FAST token of a user. Ids come from `listsessions` and the admin."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("kind", choices=KINDS)
        parser.add_argument("target", help="the id (for user: the account name)")
        parser.add_argument("--reason", default="", help="shown to the client in the stream error")
        parser.add_argument(
            "--actor", default="the operator (manage.py revoke)", help="recorded in the security log"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        ensure_migrated(self.stdout)
        kind, target = options["kind"], options["target"]
        actor, reason = options["actor"], options["reason"]
        try:
            if kind == "user":
                user = existing_user(target)
                revocation.end_user_sessions(user, actor=actor, reason=reason)
                self.stdout.write(f"revoked every session and FAST token of {user.username}")
                return
            if not target.isdigit():
                raise CommandError(f"{kind} ids are numbers (see `manage.py listsessions`), not {target!r}")
            pk = int(target)
            if kind == "session":
                session = revocation.revoke_session(pk, actor=actor, reason=reason)
                self.stdout.write(f"revoked session {pk} ({session.jid})")
            elif kind == "client":
                client = revocation.revoke_client(pk, actor=actor, reason=reason)
                self.stdout.write(f"revoked client {pk} ({client}) of {client.user.username}")
            elif kind == "grant":
                grant = revocation.revoke_grant(pk, actor=actor, reason=reason)
                self.stdout.write(f"revoked {grant}")
            else:
                app = revocation.revoke_app_password(pk, actor=actor, reason=reason)
                self.stdout.write(f"revoked {app}")
        except (revocation.NotFound, BadName) as exc:
            raise CommandError(str(exc)) from None
