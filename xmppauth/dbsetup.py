"""Embedded defaults: bring an SQLite database up to date on its own; ask for ``migrate`` otherwise."""

from __future__ import annotations

from typing import Any

from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.migrations.executor import MigrationExecutor


def pending_migrations() -> int:
    """How many migrations the default database still lacks (the one check; ``serve`` uses it too)."""
    executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
    return len(executor.migration_plan(executor.loader.graph.leaf_nodes()))


def ensure_migrated(out: Any) -> None:
    """For the management commands: migrate an SQLite database, refuse to run on another one."""
    if not pending_migrations():
        return
    if connections[DEFAULT_DB_ALIAS].vendor != "sqlite":
        raise CommandError(
            "the database has unapplied migrations: run `.venv/bin/python manage.py migrate` first "
            "(automatic migration is only done for the embedded SQLite database)"
        )
    out.write("applying database migrations (SQLite)…\n")
    call_command("migrate", interactive=False, verbosity=0)
