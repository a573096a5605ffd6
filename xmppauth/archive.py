"""The message archive (XEP-0313): what is archived as it is routed, written behind, read for queries.

The router's ``archive``: for a chat or normal message worth keeping (:func:`xep0313_mam.should_store`)
that is delivered or stored between two accounts of this server, :meth:`Archive.prepare` decides, by
each account's preferences (XEP-0441), which archives keep it, and gives the recipient's copy its
``<stanza-id/>`` (XEP-0359: the id its client pages by; any a sender forged in the recipient's name is
removed first); :meth:`Archive.write` then queues the rows. The event loop never waits for the
database for it: one writer task (:class:`_Writer`) inserts what waits in batches, and a query first
waits until what was queued before it is written (:func:`settled`), so a client always finds its
latest messages.

Preferences other than the default (archive everything) are kept in memory for every account that has
them, read at start (:func:`load_prefs`) and kept up to date by :func:`set_prefs` and, from other
processes, the cluster. An account whose default is ``roster`` has the writer check the roster before
its rows go in; its messages carry no ``<stanza-id/>`` (the id could name a message that was not kept).

Retention: ``XMPP_ARCHIVE_DAYS`` (0: keep everything); the writer removes older messages once an hour.

Quota: ``XMPP_ARCHIVE_MAX_BYTES`` per account (0: none). Without one, a user who sends at the read rate
grows two archives, the sender's and the recipient's, for as long as the retention keeps them, and fills
the disk. The writer counts the bytes it writes to each account's archive; once it has written
:func:`check_every` bytes to one since it last looked, it adds the archive up (one query) and, when it is
over the quota, removes its oldest messages until it is down to 7/8 of it (:func:`_trim`), so that a full
archive is not trimmed at every message. No message is refused for it: delivery never depends on the
archive, and the newest messages, the ones clients fetch, stay. Each process counts what it writes, so an
archive can pass its quota by ``check_every`` bytes, and by a batch of the writer's, per serving process
before it is trimmed, and a restart forgets the counts (docs/security.md). The newest message always
stays, and so do, for :data:`KEEP_FOR_FETCHING`, the messages a Bind2 client is to fetch instead of
being sent their stored copies (:func:`keep_for_fetching`; at most the offline store's bound). The cost
per message is one addition in the writer.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NamedTuple

from django.conf import settings
from django.db import connection, transaction
from lxml import etree

from accounts.models import User
from xmppauth import sending, tasks
from xmppauth.models import ArchivedMessage, ArchivePrefs, RosterItem
from xmppauth.offloop import off_loop
from xmppauth.proto import xep0313_mam as mam
from xmppauth.proto.jid import JID
from xmppauth.proto.xml import escape_attr, serialize
from xmppauth.proto.xml_names import parse_element

log = logging.getLogger("xmppauth.archive")

BATCH = 500  # rows inserted at most in one transaction
LINGER = 0.02  # seconds the writer lets rows gather before it writes fewer than BATCH
PRUNE_EVERY = 3600.0  # seconds between two removals of messages older than the retention
TRIM_TO = 7 / 8  # of the quota: what an archive over it is brought down to
KEEP_FOR_FETCHING = timedelta(minutes=10)  # a stored copy cleared for a client to fetch this: not trimmed

_PREFS: dict[JID, mam.Prefs] = {}  # accounts whose preferences are not the default
_DEFAULT = mam.Prefs(default="always")


class Row(NamedTuple):
    """One archive's copy of a message, before it is written (a tuple: made for every message)."""

    account: JID  # whose archive (bare)
    archive_id: str
    contact: JID  # the other party, bare
    peer: JID  # the other party as the stanza had it
    outgoing: bool
    stamp: float  # time.time() when the server routed it
    roster_only: bool  # the account archives only its roster's contacts: the writer checks


def prefs_of(account: JID) -> mam.Prefs:
    return _PREFS.get(account, _DEFAULT)


_EVERYTHING = (True, False)


def _decide(account: JID, contact: JID) -> tuple[bool, bool]:
    """(archived, only if the contact is in the roster)."""
    if not _PREFS:
        return _EVERYTHING  # nobody chose anything but the default
    prefs = _PREFS.get(account)
    if prefs is None:
        return True, False
    if prefs.default == "roster":
        return mam.should_archive(prefs, contact, in_roster=True), not mam.should_archive(
            prefs, contact, in_roster=False
        )
    return mam.should_archive(prefs, contact, in_roster=False), False


class Archive:
    """The router's ``archive`` (module docstring)."""

    def prepare(self, sender: JID, to: JID, stanza: etree._Element) -> list[Row]:
        """The rows a message from ``sender`` (full) to ``to`` gets, the recipient's first. The message
        is not changed, but for ``<stanza-id/>`` a sender put there in the recipient's name."""
        worth, ids = mam.archivable(stanza)
        if not worth:
            return []
        now = time.time()
        mine, theirs = sender.bare, to.bare
        if ids:  # rare: a client put ids in; those in the recipient's name go (XEP-0359 §3)
            mam.strip_foreign_stanza_ids(stanza, theirs)
        # one id for both copies: an id is unique within its archive (XEP-0359 §4: per ``by``)
        archive_id = mam.new_archive_id(int(now * 1000))
        rows = []
        keep, roster_only = _decide(theirs, mine)
        if keep:
            rows.append(Row(theirs, archive_id, mine, sender, False, now, roster_only))
        if mine != theirs:
            keep, roster_only = _decide(mine, theirs)
            if keep:
                rows.append(Row(mine, archive_id, theirs, to, True, now, roster_only))
        return rows

    def mark(self, rows: list[Row], stanza: etree._Element) -> None:
        """Give ``stanza`` the recipient's ``<stanza-id/>`` as an element (a message to be stored)."""
        stamped = _stamped(rows)
        if stamped is not None:
            stanza.append(mam.stanza_id_element(stamped.archive_id, stamped.account))

    def write(
        self, rows: list[Row], data: bytes, *, marked: bool = False, plain: bytes | None = None
    ) -> bytes:
        """Queue ``rows`` of the message ``data`` (serialised as routed) for the writer; the message as
        the recipient gets it: with its ``<stanza-id/>`` (XEP-0359), unless ``marked`` already. The
        sender's copy is kept without it (``plain``, when ``data`` was marked): the id is the
        recipient's archive's, not for the sender to see."""
        original = data if plain is None else plain
        stamped = None if marked else _stamped(rows)
        if stamped is not None and data.endswith(_END):
            data = data[: -len(_END)] + _stanza_id(stamped) + _END
        WRITER.queue(rows, data, original)
        return data


_END = b"</message>"


def _stamped(rows: list[Row]) -> Row | None:
    """The recipient's row, when its id goes with the message (not for an archive that keeps only its
    roster's contacts: the writer may drop the row, and the id would then name nothing)."""
    if rows and not rows[0].outgoing and not rows[0].roster_only:
        return rows[0]
    return None


def _stanza_id(row: Row) -> bytes:
    return (
        f"<stanza-id xmlns='{mam.SID}' id='{row.archive_id}' by='{escape_attr(str(row.account))}'/>".encode()
    )


def archive_id_in(data: bytes, account: JID) -> str | None:
    """The id in ``account``'s archive that the stored message ``data`` carries (its ``<stanza-id/>``,
    XEP-0359), if any: a copy went to that archive, and is there unless the quota has removed it since
    (:func:`keep_for_fetching`)."""
    stanza = parse_element(data)
    for found in stanza.iterchildren(mam.STANZA_ID):
        if found.get("by") == str(account):
            return found.get("id")
    return None


async def keep_for_fetching(localpart: str, archive_ids: list[str]) -> set[str]:
    """Which of ``archive_ids`` the account's archive holds now, each kept from the quota for
    :data:`KEEP_FOR_FETCHING` from now: their stored copies are cleared, and the client fetches them from
    the archive. A stored message whose copy the quota removed must be delivered instead (found by a
    black-box attack: with a quota below what waited, hundreds of stored messages were neither delivered
    nor kept; and by a second one: a trim between the login and the client's fetch removed them too)."""
    await settled()  # a copy still in the writer's queue is not in the table yet
    return await _keep(localpart, archive_ids)


@off_loop
def _keep(localpart: str, archive_ids: list[str]) -> set[str]:
    rows = ArchivedMessage.objects.filter(user__username=localpart, archive_id__in=archive_ids)
    # kept first, then read: a trim after the update spares them, one before it leaves them unread (sent)
    rows.update(kept_until=datetime.now(UTC) + KEEP_FOR_FETCHING)
    return set(rows.values_list("archive_id", flat=True))


async def bound_metadata(user_id: int) -> str:
    """XEP-0386 §2.4: the archive's ``<metadata/>`` (XEP-0313 §5) for a Bind2 ``<bound/>``."""
    first, last = await bounds(user_id)
    return serialize(mam.metadata(first, last)).decode()


class _Writer:
    def __init__(self) -> None:
        self._waiting: list[tuple[Row, bytes]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._queued = 0  # rows queued since start
        self._written = 0  # rows handled (written, or dropped by a roster check or a failure)
        self._progress = asyncio.Event()
        self._pruned = 0.0
        self._unchecked: dict[int, int] = {}  # account (user id) -> bytes written since its quota was checked

    def queue(self, rows: list[Row], data: bytes, plain: bytes) -> None:
        """The recipient's rows keep ``data``, the sender's ``plain``."""
        self._waiting.extend((row, plain if row.outgoing else data) for row in rows)
        self._queued += len(rows)
        if self._task is None or self._task.done():
            self._task = tasks.start(self._run(), name="archive: writer")
        self._wake.set()

    async def settled(self) -> None:
        """Wait until every row queued before this call is written."""
        target = self._queued
        while self._written < target:
            self._progress.clear()
            await self._progress.wait()

    async def flush(self) -> None:
        """Write what waits now (a normal stop)."""
        while self._waiting:
            await self._write_some()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            if len(self._waiting) < BATCH:
                await asyncio.sleep(LINGER)  # a busy server's messages go in fewer, larger batches
            self._wake.clear()
            while self._waiting:
                await self._write_some()

    async def _write_some(self) -> None:
        batch, self._waiting = self._waiting[:BATCH], self._waiting[BATCH:]
        try:
            written = await _insert(batch, self._prune_due())
            due = self._count(written)
            if due:
                await _trim(due, int(settings.XMPP_ARCHIVE_MAX_BYTES))
        except Exception:
            log.exception("archive: %d message copies could not be written", len(batch))
        self._written += len(batch)
        self._progress.set()

    def _count(self, written: dict[int, tuple[str, int]]) -> dict[int, str]:
        """Add what was ``written`` (user id -> name, bytes) to each account's count: the accounts whose
        archives are due for a look at their quota (user id -> name), their counts started again."""
        quota = int(settings.XMPP_ARCHIVE_MAX_BYTES)
        if quota <= 0:
            return {}
        every, unchecked, due = check_every(quota), self._unchecked, {}
        for user_id, (name, size) in written.items():
            held = unchecked.get(user_id, 0) + size
            if held >= every:
                due[user_id] = name
                held = 0
            unchecked[user_id] = held
        return due

    def _prune_due(self) -> float | None:
        days = float(settings.XMPP_ARCHIVE_DAYS)
        now = time.monotonic()
        if days <= 0 or now - self._pruned < PRUNE_EVERY:
            return None
        self._pruned = now
        return days


def check_every(quota: int) -> int:
    """Bytes written to an archive between two looks at its quota: a sixteenth of it (at least 4 KiB,
    and never more than the quota)."""
    return min(quota, max(quota // 16, 4096))


WRITER = _Writer()


async def settled() -> None:
    await WRITER.settled()


@functools.cache
def _insert_sql() -> str:
    table = ArchivedMessage._meta.db_table
    columns = "user_id, archive_id, with_jid, peer, outgoing, stamp, stanza, size"
    return f"INSERT INTO {table} ({columns}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"  # noqa: S608 - the table's name


@off_loop
def _insert(batch: list[tuple[Row, bytes]], prune_days: float | None) -> dict[int, tuple[str, int]]:
    """Write ``batch`` (and remove what is past the retention, when ``prune_days``): the bytes written to
    each account's archive (user id -> name, bytes)."""
    names = {row.account.local or "" for row, _ in batch}
    users = dict(User.objects.filter(username__in=names).values_list("username", "id"))
    checks = [(users.get(row.account.local or ""), str(row.contact)) for row, _ in batch if row.roster_only]
    in_roster = set()
    if checks:
        pairs = RosterItem.objects.filter(
            user_id__in={user for user, _ in checks if user is not None},
            jid__in={jid for _, jid in checks},
            listed=True,
        )
        in_roster = set(pairs.values_list("user_id", "jid"))
    adapt = connection.ops.adapt_datetimefield_value
    values = []
    written: dict[int, tuple[str, int]] = {}
    for row, data in batch:
        name = row.account.local or ""
        user_id = users.get(name)
        if user_id is None or (row.roster_only and (user_id, str(row.contact)) not in in_roster):
            continue
        stamp = adapt(datetime.fromtimestamp(row.stamp, UTC))
        size = len(data)
        values.append(
            (
                user_id,
                row.archive_id,
                str(row.contact),
                str(row.peer),
                row.outgoing,
                stamp,
                data.decode(),
                size,
            )
        )
        written[user_id] = (name, written.get(user_id, (name, 0))[1] + size)
    # written out: model instances and the ORM's bulk insert cost more than the database's work here
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.executemany(_insert_sql(), values)
    if prune_days is not None:
        cutoff = datetime.now(UTC) - timedelta(days=prune_days)
        removed, _ = ArchivedMessage.objects.filter(stamp__lt=cutoff).delete()
        if removed:
            log.info("archive: %d messages older than %g days removed", removed, prune_days)
    return written


@functools.cache
def _trim_sql() -> tuple[str, str, str]:
    table = ArchivedMessage._meta.db_table
    total = f"SELECT COALESCE(SUM(size), 0) FROM {table} WHERE user_id = %s"  # noqa: S608 - the table's name
    # the newest message that no longer fits in what is kept: it and everything older go; but never the
    # newest of all, even larger than the quota (found by a black-box attack: it removed itself)
    cut = (
        f"SELECT id FROM (SELECT id, SUM(size) OVER (ORDER BY id DESC) AS newer, "  # noqa: S608
        f"ROW_NUMBER() OVER (ORDER BY id DESC) AS place FROM {table} WHERE user_id = %s) AS kept "
        "WHERE newer > %s AND place > 1 ORDER BY id DESC LIMIT 1"
    )
    remove = (
        f"DELETE FROM {table} WHERE user_id = %s AND id <= %s "  # noqa: S608 - the table's name
        "AND (kept_until IS NULL OR kept_until < %s)"
    )
    return total, cut, remove


@off_loop
def _trim(accounts: dict[int, str], quota: int) -> None:
    """Bring each of these archives (user id -> name) that holds more than ``quota`` bytes down to
    :data:`TRIM_TO` of it, oldest messages first (the module's docstring)."""
    total_sql, cut_sql, remove_sql = _trim_sql()
    keep = int(quota * TRIM_TO)
    for user_id, name in accounts.items():
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(total_sql, [user_id])
            held = int(cursor.fetchone()[0])
            if held <= quota:
                continue
            cursor.execute(cut_sql, [user_id, keep])
            found = cursor.fetchone()
            if found is None:
                continue
            now = connection.ops.adapt_datetimefield_value(datetime.now(UTC))
            cursor.execute(remove_sql, [user_id, found[0], now])
            removed = cursor.rowcount
        log.info(
            "archive of %s over its quota (%d bytes, the quota %d): its %d oldest messages removed",
            name,
            held,
            quota,
            removed,
        )


# ---------------------------------------------------------------------------------- preferences
def load_prefs() -> None:
    """Read every account's preferences that are not the default (at start, before any routing)."""
    _PREFS.clear()
    for prefs in ArchivePrefs.objects.select_related("user"):
        _remember(JID(prefs.user.username, settings.XMPP_DOMAIN), prefs)


def _remember(account: JID, row: ArchivePrefs | None) -> None:
    if row is None or (row.default == "always" and not row.always and not row.never):
        _PREFS.pop(account, None)
        return
    _PREFS[account] = mam.Prefs(default=row.default, always=frozenset(row.always), never=frozenset(row.never))  # type: ignore[arg-type]


@off_loop
def _read_prefs(localpart: str) -> ArchivePrefs | None:
    return ArchivePrefs.objects.filter(user__username=localpart).first()


async def reload_prefs(account: JID) -> None:
    """Another process changed the account's preferences."""
    _remember(account, await _read_prefs(account.local or ""))


@off_loop
def _store_prefs(user_id: int, prefs: mam.Prefs) -> ArchivePrefs:
    row, _ = ArchivePrefs.objects.update_or_create(
        user_id=user_id,
        defaults={"default": prefs.default, "always": sorted(prefs.always), "never": sorted(prefs.never)},
    )
    return row


async def set_prefs(user_id: int, account: JID, prefs: mam.Prefs) -> None:
    _remember(account, await _store_prefs(user_id, prefs))


# ---------------------------------------------------------------------------------- reading
@dataclass(frozen=True, slots=True)
class Page:
    messages: list[tuple[str, datetime, bytes]]  # archive id, stamp, stanza; oldest first
    complete: bool


@off_loop
def query(user_id: int, account: JID, request: mam.Query) -> Page:
    """The page of the account's archive ``request`` asks for (XEP-0313 §4, XEP-0059)."""
    rows = ArchivedMessage.objects.filter(user_id=user_id)
    contact = request.with_jid
    if contact is not None:
        if contact.resource is not None:
            rows = rows.filter(peer=str(contact))
        else:
            rows = rows.filter(with_jid=str(contact))
    if request.start is not None:
        rows = rows.filter(stamp__gte=request.start)
    if request.end is not None:
        rows = rows.filter(stamp__lte=request.end)
    if request.ids:
        rows = rows.filter(archive_id__in=request.ids)
    named = ArchivedMessage.objects.filter(user_id=user_id, archive_id__in=mam.referenced_ids(request))
    positions = dict(named.values_list("archive_id", "id"))
    mam.require_ids(request, positions.keys())  # item-not-found for an id this archive does not hold
    for bound in (request.after_id, request.page.after):
        if bound is not None:
            rows = rows.filter(id__gt=positions[bound])
    for bound in (request.before_id, request.page.before or None):
        if bound is not None:
            rows = rows.filter(id__lt=positions[bound])
    size = request.page.max
    backwards = request.page.backwards
    ordered = rows.order_by("-id" if backwards else "id").values_list("archive_id", "stamp", "stanza")
    got: list[tuple[str, datetime, bytes]] = []
    complete, held, budget = True, 0, sending.piece_bytes()
    for archive_id, stamp, stanza in ordered[: size + 1]:
        data = stanza.encode()
        held += len(data)
        if len(got) == size or (got and held > budget):
            # fewer than asked, complete='false': the client asks for the next page from the last it got
            # (XEP-0059 §2.6 lets a page be smaller), rather than megabytes at once (xmppauth/sending.py)
            complete = False
            break
        got.append((archive_id, stamp, data))
    if backwards:
        got.reverse()
    return Page(got, complete)


@functools.cache
def _bounds_sql() -> str:
    table = ArchivedMessage._meta.db_table
    pick = f"SELECT id FROM {table} WHERE user_id = %s ORDER BY archive_id {{}} LIMIT 1"  # noqa: S608 - ours
    # ids are time-ordered, and (user, archive_id) is indexed: two index probes, no sort
    first, last = pick.format("ASC"), pick.format("DESC")
    return f"SELECT archive_id, stamp FROM {table} WHERE id IN (({first}), ({last}))"  # noqa: S608 - ours


@off_loop
def bounds(user_id: int) -> tuple[tuple[str, datetime] | None, tuple[str, datetime] | None]:
    """The oldest and newest message of the archive (XEP-0313 §5), in one query: a Bind2 login asks
    (the ORM's two queries cost 673 µs a login, this 140, docs/performance.md)."""
    with connection.cursor() as cursor:
        cursor.execute(_bounds_sql(), [user_id, user_id])
        rows = sorted((archive_id, _aware(stamp)) for archive_id, stamp in cursor.fetchall())
    return (rows[0], rows[-1]) if rows else (None, None)


def _aware(stamp: datetime | str) -> datetime:
    """A ``stamp`` as the database driver returns it, as an aware UTC datetime (SQLite: ISO text)."""
    moment = datetime.fromisoformat(stamp) if isinstance(stamp, str) else stamp
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
