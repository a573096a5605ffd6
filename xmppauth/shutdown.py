"""A normal stop (SIGTERM, as systemd and Ctrl-C send): nothing the server accepted is lost.

Before, a stop dropped every connection with the reactor: sessions that could be resumed hibernated in
memory and died with the process, and what their clients had not acknowledged, queued for a sleeping
client or taken from the offline store but not yet acknowledged, was lost (tests/integration/
test_faults.py). Now ``manage.py serve`` runs :func:`stop_serving` before the reactor shuts down:

1. new connections are refused, with ``system-shutdown`` (and ``503`` on the HTTP listener);
2. every bound session ends as on a stream error it was sent: ``<system-shutdown/>`` to a live client,
   then the usual end of a session (xmppauth/consumer.py ``_leave``): its presence withdrawn, its record
   closed, and what its client had not acknowledged stored for the next login (XEP-0198 §6,
   xmppauth/offline.py); a hibernating session ends the same way, its queue stored;
3. the failed logins still waiting for the security log are written.

It is bounded by ``XMPP_SHUTDOWN_SECONDS``: a stop never hangs on a wedged database. A ``kill -9`` is not
a stop; what it loses is the subject of tests/integration/test_faults.py.
"""

from __future__ import annotations

import asyncio
import logging
import time

from xmppauth import archive, failed_logins
from xmppauth.cluster import CLUSTER
from xmppauth.consumer import STREAMS
from xmppauth.proto.errors import StreamErrorCondition
from xmppauth.router import ROUTER, Router, Session
from xmppauth.transport.limits import STOPPING, ConnectionLimits

log = logging.getLogger("xmppauth.shutdown")

SYSTEM_SHUTDOWN = StreamErrorCondition.SYSTEM_SHUTDOWN
TOLD = "the server is shutting down"


async def stop_serving(limits: ConnectionLimits, seconds: float, router: Router = ROUTER) -> None:
    """End every stream and session for a stop, storing what was accepted; never raises, never waits
    longer than ``seconds`` in all."""
    started = time.monotonic()
    limits.stopping = STOPPING
    ending: dict[int, Session] = {id(stream): stream for stream in STREAMS}  # the streams, bound or not
    ending.update((id(session), session) for session in router.sessions())  # and the hibernating ones
    log.info("stopping: ending %d stream(s) and session(s)", len(ending))
    work = [asyncio.ensure_future(session.kick(SYSTEM_SHUTDOWN, TOLD)) for session in ending.values()]
    work.append(asyncio.ensure_future(failed_logins.flush()))
    done, pending = await asyncio.wait(work, timeout=seconds)
    for future in done:
        if not future.cancelled() and future.exception() is not None:
            log.error("stopping: ending a session failed", exc_info=future.exception())
    for future in pending:
        future.cancel()
    if pending:
        log.error("stopping: %d of %d task(s) did not end within %.0f s", len(pending), len(work), seconds)
    try:  # what the archive was about to write, as the sessions' last stanzas
        await asyncio.wait_for(archive.WRITER.flush(), max(0.5, seconds - (time.monotonic() - started)))
    except Exception:
        log.exception("stopping: the archive's last messages could not be written")
    # the other processes hear that this one's sessions ended, then that it stops
    await CLUSTER.stop(max(0.5, seconds - (time.monotonic() - started)))
    log.info("stopped in %.2f s", time.monotonic() - started)
