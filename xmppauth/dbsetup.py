"""Embedded defaults: bring an SQLite database up to date on its own; ask for ``migrate`` otherwise."""

from __future__ import annotations

from typing import Any

from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor


def pending_migrations() -> bool:
    connection = connections[DEFAULT_DB_ALIAS]
    executor = MigrationExecutor(connection)
    return bool(executor.migration_plan(executor.loader.graph.leaf_nodes()))


def ensure_migrated(out: Any) -> None:
    connection = connections[DEFAULT_DB_ALIAS]
    if not pending_migrations():
        return
    if connection.vendor != "sqlite":
        raise CommandError(
            "the database has unapplied migrations: run `.venv/bin/python manage.py migrate` first "
            "(automatic migration is only done for the embedded SQLite database)"
        )
    out.write("applying database migrations (SQLite)…\n")
    call_command("migrate", interactive=False, verbosity=0)
