"""Failed logins reach the security log in batches, after the client has its answer.

A failure used to be answered only once its security-log row was written: a read and a write for an
existing account, a read alone for a name that does not exist, so a wrong password came back about
0.8 ms later than an unknown name (SECURITY.md A5 row 11, measured by ``bench/hardening.py``). Now
:func:`record` only notes the failure; a background task (kept, its failure logged: ``xmppauth.tasks``)
writes what has gathered every :data:`DELAY` seconds in one trip off the event loop, whatever the names.
At most :data:`MAX_PENDING` wait (the guessing limits keep checked failures to a few a minute per name and
address, so this bound only matters against a flood of distinct addresses); beyond it they are counted
and the count logged. What is pending when the process is killed is lost with it.
"""

from __future__ import annotations

import asyncio
import logging

from xmppauth import services, tasks

log = logging.getLogger("xmppauth.c2s")

DELAY = 0.5
MAX_PENDING = 10_000

_pending: list[tuple[str | None, str, str, str, str]] = []
_dropped = 0
_writer: asyncio.Task[None] | None = None


def record(
    localpart: str | None, mechanism: str, condition: str, address: str, factor_failed: str = ""
) -> None:
    """Note a failed login for the security log (see ``sessions_acl.securitylog.login_failed``)."""
    global _writer, _dropped
    if len(_pending) >= MAX_PENDING:
        _dropped += 1
        return
    _pending.append((localpart, mechanism, condition, address, factor_failed))
    if _writer is None or _writer.done():
        _writer = tasks.start(_write_soon(), name="writing failed logins to the security log")


async def flush() -> None:
    """Write what waits now (at a stop: xmppauth/shutdown.py)."""
    writer = _writer
    if writer is not None and not writer.done():
        writer.cancel()
    await _drain()


async def _drain() -> None:
    while _pending:
        batch = _pending[:]
        del _pending[: len(batch)]
        await services.logins_failed(batch)


async def _write_soon() -> None:
    global _dropped
    await asyncio.sleep(DELAY)
    await _drain()
    if _dropped:
        log.warning("%d failed logins were not written to the security log (too many at once)", _dropped)
        _dropped = 0
