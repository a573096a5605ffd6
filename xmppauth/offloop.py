"""Synchronous Django code called from the event loop: one helper, with the signature kept for mypy.

The ORM must not run on the event loop (Django raises ``SynchronousOnlyOperation``); the stream
consumer, the control loop and the server features call it through :func:`off_loop`, as a
decorator or as a wrapper (``authorize = off_loop(login.authorize)``).

**A connection the database server dropped.** Connections are kept open between calls
(``CONN_MAX_AGE``). When PostgreSQL restarts while one sits idle, the next statement sent on it
fails, although the server is back. Django notices only afterwards, so that call (a login, say)
would fail for nothing. :func:`off_loop` runs the call once more on a new connection in exactly
that case: the connection was opened before this call, the very first statement of the call failed
with a connection error, and the connection no longer answers. Nothing of the call reached the
database then (the first statement is also the one that would have opened its transaction), so
running it again does nothing twice there; what the call did before it elsewhere (a count of the
guessing limits in a Redis cache, say) is done again. Any other error is the caller's, as before.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar, cast

from channels.db import database_sync_to_async
from django.db import DEFAULT_DB_ALIAS, DatabaseError, InterfaceError, OperationalError, connections

P = ParamSpec("P")
R = TypeVar("R")

log = logging.getLogger("xmppauth.db")

_CONNECTION_ERRORS = (OperationalError, InterfaceError)


def off_loop(func: Callable[P, R]) -> Callable[P, Coroutine[Any, Any, R]]:
    """``func`` as a coroutine function: each call runs it in Django's one thread for synchronous
    code (``thread_sensitive``) and closes stale database connections before and after
    (``channels.db.database_sync_to_async``); a connection the server dropped while it was idle is
    replaced and the call run again (see the module's docstring)."""
    return cast(Callable[P, Coroutine[Any, Any, R]], database_sync_to_async(_reconnecting(func)))


class _FirstStatement:
    """A Django execute wrapper: whether the first statement of the call failed with a connection error."""

    def __init__(self) -> None:
        self.statements = 0
        self.first_failed = False

    def __call__(self, execute: Callable[..., Any], sql: Any, params: Any, many: bool, context: Any) -> Any:
        self.statements += 1
        try:
            return execute(sql, params, many, context)
        except _CONNECTION_ERRORS:
            self.first_failed = self.statements == 1
            raise


def _reconnecting(func: Callable[P, R]) -> Callable[P, R]:
    @functools.wraps(func)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        connection = connections[DEFAULT_DB_ALIAS]
        reused = connection.connection is not None
        watch = _FirstStatement()
        try:
            with connection.execute_wrapper(watch):
                return func(*args, **kwargs)
        except _CONNECTION_ERRORS:
            if not (reused and watch.first_failed) or connection.in_atomic_block or _answers(connection):
                raise
        log.warning("the database connection was lost while idle (did the database restart?); reconnecting")
        with contextlib.suppress(DatabaseError):
            connection.close()
        return func(*args, **kwargs)

    return run


def _answers(connection: Any) -> bool:
    """Whether the connection is open and still usable (one ``SELECT 1``: only after a failure)."""
    return connection.connection is not None and bool(connection.is_usable())
