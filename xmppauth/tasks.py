"""Background asyncio tasks that are kept until they finish and whose failures are seen.

(Not XEP-0388 SASL2 tasks: those are ``proto`` business.)

The event loop keeps only a weak reference to a task, so ``asyncio.ensure_future(coro)`` with the
result dropped can be garbage-collected before it is done, and its exception is never retrieved.
:func:`start` keeps every task in a set until it is done, then hands its exception to ``on_error``
or, without one, logs it with its traceback. A caller that owns several tasks (a stream's session)
passes its own ``group`` set too, and cancels what is left in it when it ends (:func:`cancel`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger("xmppauth.tasks")

_RUNNING: set[asyncio.Task[Any]] = set()  # the strong references


def start(
    coro: Coroutine[Any, Any, Any],
    *,
    name: str,
    on_error: Callable[[BaseException], object] | None = None,
    group: set[asyncio.Task[Any]] | None = None,
) -> asyncio.Task[Any]:
    """Run ``coro`` as a task; ``name`` says what it does, for the log.

    Like ``asyncio.ensure_future``, this also works before the loop runs (``manage.py serve``
    starts the control listener from a reactor start-up callback)."""
    task = asyncio.ensure_future(coro)
    task.set_name(name)
    _RUNNING.add(task)
    if group is not None:
        group.add(task)
    task.add_done_callback(functools.partial(_done, on_error, group))
    return task


def cancel(group: set[asyncio.Task[Any]]) -> None:
    """Cancel the tasks of ``group`` that are still pending, except the one running this call."""
    current = asyncio.current_task()
    for task in list(group):
        if task is not current and not task.done():
            task.cancel()


def _done(
    on_error: Callable[[BaseException], object] | None,
    group: set[asyncio.Task[Any]] | None,
    task: asyncio.Task[Any],
) -> None:
    _RUNNING.discard(task)
    if group is not None:
        group.discard(task)
    if task.cancelled():
        return
    exc = task.exception()
    if exc is None:
        return
    if on_error is None:
        log.error("background task %r failed", task.get_name(), exc_info=exc)
        return
    try:
        on_error(exc)
    except Exception:
        log.error("background task %r failed", task.get_name(), exc_info=exc)
        log.exception("... and so did its error handler")
