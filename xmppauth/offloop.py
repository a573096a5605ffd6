"""Synchronous Django code called from the event loop: one helper, with the signature kept for mypy.

The ORM must not run on the event loop (Django raises ``SynchronousOnlyOperation``); the stream
consumer, the control loop and the server features call it through :func:`off_loop`, as a
decorator or as a wrapper (``authorize = off_loop(login.authorize)``).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar, cast

from channels.db import database_sync_to_async

P = ParamSpec("P")
R = TypeVar("R")


def off_loop(func: Callable[P, R]) -> Callable[P, Coroutine[Any, Any, R]]:
    """``func`` as a coroutine function: each call runs it in Django's one thread for synchronous
    code (``thread_sensitive``) and closes stale database connections before and after
    (``channels.db.database_sync_to_async``)."""
    return cast(Callable[P, Coroutine[Any, Any, R]], database_sync_to_async(func))
