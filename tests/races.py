"""Races between database connections, as between serving processes: a fresh database for one test
that every thread's default connection opens, and threads that start their work together.

The fresh database is a SQLite file with the embedded default's options, or a new PostgreSQL database
on 127.0.0.1:5432 (as tests/integration/test_postgres.py uses). Django's default connection points at
it for the test's duration, in every thread: like ``django_db(transaction=True)``, nothing is wrapped
in a test transaction, but not on the test database, which is SQLite in memory (where the shared
cache locks whole tables and does not wait for them) and cannot be PostgreSQL in the same run.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import dj_database_url
import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connections

from tests.integration.server import fresh_postgres_database

AT_ONCE = 8
VENDORS = ["sqlite", "postgresql"]

T = TypeVar("T")


@contextmanager
def default_database(config: dict[str, Any]) -> Iterator[None]:
    """Django's default connection, in this thread and in every thread started meanwhile, opens
    ``config`` instead of the test database."""
    saved = connections.settings["default"]
    connections["default"].close()
    del connections["default"]
    connections.settings["default"] = connections.configure_settings({"default": config})["default"]
    try:
        yield
    finally:
        connections["default"].close()
        del connections["default"]
        connections.settings["default"] = saved


@contextmanager
def sqlite_database(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A SQLite file with the embedded default's options (xmppauth/settings.py: WAL mode, IMMEDIATE
    transactions, a busy timeout)."""
    config = dict(settings.DATABASES["default"])
    if config["ENGINE"] != "xmppauth.sqlite_backend":  # the embedded default (xmppauth/settings.py)
        pytest.skip(
            f"this run's database is {config['ENGINE']} (DATABASE_URL is set): unset DATABASE_URL to run "
            "the SQLite case (the PostgreSQL case runs either way)"
        )
    config.update(NAME=str(tmp_path / "race.sqlite3"), TEST={})
    yield config


@contextmanager
def postgresql_database() -> Iterator[dict[str, Any]]:
    with fresh_postgres_database("xmppauth_race") as url:
        yield dict(dj_database_url.parse(url, conn_max_age=600))


@contextmanager
def fresh_database(vendor: str, tmp_path: Path, django_db_blocker: Any) -> Iterator[str]:
    """A fresh, migrated database of ``vendor`` (one of :data:`VENDORS`) as the default connection's
    for the duration; yields its vendor as Django names it."""
    fresh = sqlite_database(tmp_path) if vendor == "sqlite" else postgresql_database()
    with fresh as config, django_db_blocker.unblock(), default_database(config):
        call_command("migrate", verbosity=0)
        yield str(connections["default"].vendor)


def in_threads(count: int, work: Callable[[int], T]) -> list[T]:
    """``work(i)`` for i < count, AT_ONCE at a time, started together; each thread closes its
    connection when it ends."""
    barrier = threading.Barrier(min(count, AT_ONCE))

    def run(i: int) -> T:
        try:
            if i < AT_ONCE:
                barrier.wait(timeout=30)
            return work(i)
        finally:
            connections.close_all()

    with ThreadPoolExecutor(max_workers=AT_ONCE) as pool:
        return list(pool.map(run, range(count)))
