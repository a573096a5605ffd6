"""The serving process's ear for control messages: revocations, from the channel layer and the table.

One listener per process (not one channel per stream): it joins the channel-layer group
``xmppauth.control`` and also reads the ``Revocation`` table when the stamp file in the data
directory changes (checked every ``XMPP_REVOCATION_POLL_MS``), and every few seconds regardless.
Either way a revocation is applied once, to the sessions of its account in this process's
router — hibernating stream-management sessions included, so a revoked session cannot be
resumed either.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from channels.layers import get_channel_layer
from django.conf import settings
from django.utils import timezone

from sessions_acl.revocation import CONTROL_GROUP, stamp_mtime
from xmppauth import tasks
from xmppauth.offloop import off_loop
from xmppauth.proto.errors import StreamErrorCondition
from xmppauth.proto.jid import JID
from xmppauth.router import ROUTER, Session

log = logging.getLogger("xmppauth.control")

# The process's channels all take this prefix: channels_redis reads every channel of a process that
# shares a prefix with one blocking pop, and one prefix's pop holds the others' messages back.
CHANNEL_PREFIX = "xmppauth"
WINDOW = timedelta(seconds=60)  # how far back the poll looks (commits can land out of id order)
GROUP_REFRESH = 3600.0  # channel layers expire group membership (a day by default); renew hourly
FULL_POLL = 5.0  # seconds: read the outbox at least this often, stamp or not
STILL_FAILING_EVERY = 60.0  # seconds: while the channel layer stays away, one line this often


def _recent_sync(since: Any) -> list[dict[str, object]]:
    """The outbox rows since ``since``: usually none, so the cheapest query first (the ORM would
    spend a millisecond building it, four times a second in every process)."""
    from django.db import connection

    from sessions_acl.models import Revocation

    table = Revocation._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT id FROM {table} WHERE created >= %s",  # noqa: S608 - the table name is ours
            [connection.ops.adapt_datetimefield_value(since)],
        )
        ids = [row[0] for row in cursor.fetchall()]
    if not ids:
        return []
    return [r.message() for r in Revocation.objects.filter(id__in=ids).order_by("id")]


_recent = off_loop(_recent_sync)


@off_loop
def _prune() -> None:
    from sessions_acl.models import Revocation
    from sessions_acl.records import forget_old_records

    Revocation.objects.filter(created__lt=timezone.now() - timedelta(days=1)).delete()
    forget_old_records()


class Control:
    def __init__(self) -> None:
        self._applied: dict[int, float] = {}
        # What recent revocations named, for streams that were between authentication and binding
        # (not yet in the router) when one was applied: key -> (monotonic time, text, and for "every
        # session" when it committed: logins that began later are not meant).
        self._recent: dict[tuple[str, object], tuple[float, str, float]] = {}
        self._started = timezone.now()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        """Start listening (once per process) on the running event loop."""
        if self._tasks:
            return
        self._tasks = [
            tasks.start(self._listen(), name="control: channel-layer listener"),
            tasks.start(self._poll(), name="control: revocation poll"),
        ]

    async def _listen(self) -> None:
        layer = get_channel_layer()
        if layer is None:
            return
        channel = await layer.new_channel(CHANNEL_PREFIX)
        log.info(
            "control messages: channel layer %s, and the database every %d ms",
            type(layer).__name__,
            settings.XMPP_REVOCATION_POLL_MS,
        )
        await listen(layer, channel, CONTROL_GROUP, self._heard, "control channel", "the poll still runs")

    async def _heard(self, message: dict[str, Any]) -> None:
        if message.get("type") == "control.revoke":
            await self.apply(message)

    async def _poll(self) -> None:
        """Read the outbox when the stamp file says something was committed (a stat every
        ``XMPP_REVOCATION_POLL_MS``, no thread, no query), and anyway every FULL_POLL seconds."""
        interval = settings.XMPP_REVOCATION_POLL_MS / 1000
        last_read = time.monotonic()
        last_prune = last_read - 3600 + 60  # the first clean-up a minute after start, then hourly
        stamp = stamp_mtime()
        while True:
            await asyncio.sleep(interval)
            try:
                now = time.monotonic()
                current = stamp_mtime()
                if current == stamp and now - last_read < FULL_POLL:
                    continue
                stamp, last_read = current, now
                since = max(self._started, timezone.now() - WINDOW)
                for message in await _recent(since):
                    await self.apply(message)
                if now - last_prune > 3600:
                    last_prune = now
                    await _prune()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("revocation poll failed; retrying")

    async def apply(self, message: dict[str, Any]) -> int:
        """Close the streams a revocation names (or give them new scopes); returns how many."""
        key = int(message["id"])
        now = time.monotonic()
        if key in self._applied:
            return 0
        self._applied[key] = now
        if len(self._applied) > 1000:
            horizon = now - WINDOW.total_seconds() * 2
            self._applied = {k: t for k, t in self._applied.items() if t > horizon}
        bare = JID(str(message["username"]), settings.XMPP_DOMAIN)
        session_ids = set(message.get("session_ids") or ())
        grant_ids = set(message.get("grant_ids") or ())
        everything = bool(message.get("all_sessions"))
        spared = message.get("except_session")
        text = str(message.get("text") or "revoked")
        scopes = message.get("scopes")
        # A login whose credential read began after the commit saw the change (the new password, the
        # tokens gone): "every session" does not mean it. Not stamped: the time we heard, later still.
        committed = float(message.get("committed") or time.time())
        closed = 0
        if scopes is None:
            self._remember(str(message["username"]), grant_ids, everything, text, now, committed)
        for session in list(ROUTER.here(bare).values()):  # another process applies it to its own
            sid = getattr(session, "session_id", None)
            gid = getattr(session, "grant_id", None)
            hit = (
                (sid is not None and sid in session_ids)
                or (gid is not None and gid in grant_ids)
                or (everything and sid != spared and getattr(session, "login_began", 0.0) <= committed)
            )
            if not hit:
                continue
            closed += 1
            try:
                if scopes is not None:
                    session.regrant(frozenset(scopes))
                else:
                    await session.revoke(text)
            except Exception:  # that session ends; the others named still get the message
                log.exception("control message %s failed on %s", key, session.jid)
                await _end(session)
        if closed:
            what = "changed the grant of" if scopes is not None else "closed"
            log.info("control message %s %s %d stream(s) of %s: %s", key, what, closed, bare, text)
        return closed

    def _remember(
        self, username: str, grant_ids: set[int], everything: bool, text: str, now: float, committed: float
    ) -> None:
        if len(self._recent) > 10_000:
            horizon = now - WINDOW.total_seconds()
            self._recent = {k: v for k, v in self._recent.items() if v[0] > horizon}
        for grant_id in grant_ids:
            self._recent[("grant", grant_id)] = (now, text, float("inf"))
        if everything:
            self._recent[("user", username)] = (now, text, committed)

    def revoked_since(self, since: float, began: float, username: str, grant_id: int) -> str | None:
        """The text of a revocation applied after ``since`` (time.monotonic()) that covers a stream
        of ``username`` holding ``grant_id`` whose credential read began at ``began`` (time.time()),
        or None. For a stream binding after authorizing."""
        for key in (("grant", grant_id), ("user", username)):
            seen = self._recent.get(key)
            if seen is not None and seen[0] >= since and began <= seen[2]:
                return seen[1]
        return None


async def listen(
    layer: Any,
    channel: str,
    group: str,
    handle: Callable[[dict[str, Any]], Awaitable[None]],
    what: str,
    meanwhile: str,
) -> None:
    """Receive on ``channel``, a member of ``group``, for as long as the process serves, and hand each
    message to ``handle``. While the channel layer is away it retries every second (logged as an
    :class:`Outage` of ``what``; ``meanwhile`` says what still works); membership is renewed hourly
    (channel layers expire it). A message ``handle`` fails on is logged and the next one comes."""
    joined: float | None = None
    outage = Outage(what)
    while True:
        try:
            if joined is None or time.monotonic() - joined > GROUP_REFRESH:
                await layer.group_add(group, channel)
                joined = time.monotonic()
                outage.over()
            message = await layer.receive(channel)
            outage.over()
        except asyncio.CancelledError:
            raise
        except Exception:
            outage.failed(f"retrying every second ({meanwhile})")
            joined = None
            await asyncio.sleep(1)
            continue
        try:
            await handle(message)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: handling %s failed", what, message.get("type"))


class Outage:
    """The log of something that keeps failing while it is away (Redis, say): the first failure with its
    traceback, then one line every STILL_FAILING_EVERY seconds, and one when it works again; not a
    traceback a second for as long as it lasts."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.since: float | None = None
        self.said = 0.0

    def failed(self, then: str) -> None:
        now = time.monotonic()
        if self.since is None:
            self.since = self.said = now
            log.exception("%s failed; %s", self.what, then)
        elif now - self.said >= STILL_FAILING_EVERY:
            self.said = now
            reason = type(sys.exc_info()[1]).__name__
            log.warning("%s still failing after %d s (%s); %s", self.what, now - self.since, reason, then)

    def over(self) -> None:
        if self.since is not None:
            log.info("%s works again after %.1f s", self.what, time.monotonic() - self.since)
            self.since = None


async def _end(session: Session) -> None:
    """A session that could not take a control message ends: it must not go on with the access it had."""
    try:
        await session.kick(StreamErrorCondition.INTERNAL_SERVER_ERROR, "internal server error")
    except Exception:
        log.exception("ending %s failed", session.jid)
        ROUTER.unbind(session)


CONTROL = Control()
