"""Migration sessions_acl 0008: the grants of the ``full`` and ``admin`` roles gain ``pep.write`` (PEP changes
moved to it from ``presence``), so clients that logged in before go on publishing; grants of chosen scopes or
other roles keep exactly what they were given."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.db import connections
from django.db.migrations.executor import MigrationExecutor

from tests.races import default_database, sqlite_database

BEFORE = [("sessions_acl", "0007_revocation_committed")]
AFTER = [("sessions_acl", "0008_grants_pep_write")]
OLD_FULL = ["clients.manage", "messages.receive", "messages.send", "presence", "roster.read", "roster.write"]


def migrate(target: list[tuple[str, str]]) -> Any:
    executor = MigrationExecutor(connections["default"])
    executor.loader.build_graph()
    executor.migrate(target)
    return executor.loader.project_state(target).apps


def test_full_and_admin_grants_gain_pep_write_and_chosen_scopes_stay(
    tmp_path: Path, django_db_blocker: Any
) -> None:
    with sqlite_database(tmp_path) as config, django_db_blocker.unblock(), default_database(config):
        apps = migrate(BEFORE)
        user = apps.get_model("accounts", "User").objects.create(username="ann")
        Grant = apps.get_model("sessions_acl", "Grant")
        made = {
            "full": Grant.objects.create(user=user, origin="password", role="full", scopes=OLD_FULL),
            "admin": Grant.objects.create(
                user=user, origin="password", role="admin", scopes=[*OLD_FULL, "admin"]
            ),
            "read-only": Grant.objects.create(
                user=user, origin="app-password", role="read-only", scopes=["messages.receive", "presence"]
            ),
            "chosen": Grant.objects.create(user=user, origin="app-password", role="", scopes=["presence"]),
        }
        apps = migrate(AFTER)
        Grant = apps.get_model("sessions_acl", "Grant")
        after = {name: Grant.objects.get(pk=grant.pk).scopes for name, grant in made.items()}
        assert after == {
            "full": sorted([*OLD_FULL, "pep.write"]),
            "admin": sorted([*OLD_FULL, "admin", "pep.write"]),
            "read-only": ["messages.receive", "presence"],
            "chosen": ["presence"],
        }
        migrate(BEFORE)  # and back
        Grant = apps.get_model("sessions_acl", "Grant")
        assert Grant.objects.get(pk=made["full"].pk).scopes == OLD_FULL
