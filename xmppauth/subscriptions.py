"""Presence subscriptions between local accounts (RFC 6121 §3) and the presence they carry (§4).

The router's ``presences`` (:class:`Presences`): the one door through which subscription state
changes. A subscription stanza a session sends (``subscribe``, ``subscribed``, ``unsubscribe``,
``unsubscribed``) moves the sender's side by Appendix A.2 and, when it is routed, the contact's side by
A.3 (:mod:`xmppauth.proto.rfc6121_subscriptions` decides), both in one transaction with both accounts
locked; then:

* the stanza, stamped with the sender's bare JID (§3.1.2), goes to the contact's available resources
  when A.3 says to deliver it. A ``subscribe`` nobody is there to see waits as the contact's pending
  request and comes with its next available presence (§3.1.3);
* each side whose visible state changed gets a roster push on its interested resources (§2.1.6); a
  request or an approval the account sends lists the contact in its roster (§3.1.2, §3.1.5), a
  request that only waits for the account does not;
* a side that starts to receive the other's presence gets it from each of the other's available
  resources at once, and one that stops gets ``unavailable`` from each (§3.1.5, §3.2.2, §3.3.3);
* the contact's server answers on the contact's behalf: ``subscribed`` to a request it pre-approved or
  already granted (§3.4, §3.1.3), ``unsubscribed`` when there is no such account (§3.1.3).

Broadcast presence (:meth:`Presences.broadcast`) goes to the account's subscribers' available
resources (§4.2.2, §4.4.2, §4.5.2); an account's first available presence also brings it the presence
of everyone it is subscribed to (the probe of §4.3, answered here from the router's state; for a
contact with no available resource, its last unavailable presence with a XEP-0203 ``<delay/>``,
§4.3.2) and the requests that waited for it. Only local accounts exist (no server-to-server), so both
sides of every subscription are this server's and are kept consistent together.

Roster versions (§2.6): every change a roster get would show raises the account's version in the
transaction that writes it (:func:`bump_version`), and its push carries the new version.
"""

from __future__ import annotations

import functools
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Iterable
from copy import deepcopy
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, runtime_checkable

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Exists, OuterRef
from lxml import etree

from accounts.models import User
from sessions_acl.access import ROSTER_READ, SessionAccess
from xmppauth import blocking, tasks
from xmppauth.models import BlockedJid, LastPresence, RosterItem, RosterVersion
from xmppauth.offloop import off_loop
from xmppauth.proto import ns, xep0191_blocking
from xmppauth.proto import rfc6121_subscriptions as rules
from xmppauth.proto.events import StanzaReceived
from xmppauth.proto.jid import JID, InvalidJID
from xmppauth.proto.rfc6121_roster import INITIAL, INTERESTED, Item, push_iq, push_payload, version
from xmppauth.proto.routing import addressed
from xmppauth.proto.xep0203_delay import with_delay
from xmppauth.proto.xml import serialize
from xmppauth.router import ROUTER, Router, Session

log = logging.getLogger("xmppauth.router")

_Q_PRESENCE = ns.qname(ns.CLIENT, "presence")


# ---------------------------------------------------------------------------------- roster pushes
@runtime_checkable
class Resource(Protocol):
    """A bound session of the account, as a roster push sees it (a local session or a stand-in)."""

    jid: JID | None
    access: SessionAccess | None
    feature_state: dict[str, object]

    async def deliver(self, data: bytes, urgent: bool = True) -> None: ...


async def push_roster(
    sessions: Iterable[Resource], push: etree._Element, interested: str = INTERESTED
) -> None:
    """RFC 6121 §2.1.6: every interested resource among the account's ``sessions`` hears of the change
    (those that asked for the roster, or for what ``interested`` names, e.g. the XEP-0191 blocklist, and
    may still read it: ``roster.read``), wherever their process is."""
    for session in sessions:
        access = session.access
        if (
            session.feature_state.get(interested)
            and access is not None
            and access.allows(ROSTER_READ)
            and session.jid
        ):
            iq = push_iq(push, session.jid, f"push-{secrets.token_hex(6)}")
            await session.deliver(serialize(iq))


def item_of(row: RosterItem) -> Item:
    groups = row.groups if isinstance(row.groups, list) else []
    return Item(row.jid, row.name, tuple(str(g) for g in groups), row.subscription, row.ask, row.approved)


# ---------------------------------------------------------------------------------- roster versions
@functools.cache
def _bump_sql() -> str:
    table = RosterVersion._meta.db_table
    return (
        f"INSERT INTO {table} (user_id, counter, tag) VALUES (%s, 1, %s) "  # noqa: S608 - the table's name
        f"ON CONFLICT (user_id) DO UPDATE SET counter = {table}.counter + 1 RETURNING counter, tag"
    )


def bump_version(user_id: int) -> str:
    """The account's roster just changed in what a roster get shows: its new version (RFC 6121 §2.6),
    for the push. Call it in the transaction that writes the change, so that the version and the change
    are committed (or rolled back) together.

    Written out: the ORM has neither an upsert that raises a counter nor UPDATE ... RETURNING, and
    would need three statements (update, create on the first change, read back). This one is atomic in
    the database itself: two changes of one account never read the same counter, whichever processes
    make them (PostgreSQL locks the row until the commit; SQLite has one writer; the callers also hold
    the account's row). RETURNING needs SQLite 3.35 or PostgreSQL 9.5."""
    with connection.cursor() as cursor:
        cursor.execute(_bump_sql(), [user_id, secrets.token_hex(4)])
        counter, tag = cursor.fetchone()
    return version(int(counter), str(tag))


def roster_version(user_id: int) -> str:
    """The current version of the account's roster; :data:`INITIAL` before its first versioned change.
    Read it before the items: a change committed in between then makes the items newer than the version
    (the client's next get sends the full roster again), never the reverse."""
    row = RosterVersion.objects.filter(user_id=user_id).values_list("counter", "tag").first()
    return INITIAL if row is None else version(*row)


# ---------------------------------------------------------------------------------- the database side
def _state(row: RosterItem | None) -> rules.State:
    if row is None:
        return rules.State()
    try:
        return rules.State(
            subscription=row.subscription,  # type: ignore[arg-type]
            pending_out=row.ask,
            pending_in=row.pending_in,
            approved=row.approved,
        )
    except ValueError:  # a state Appendix A does not have: only this module writes them
        log.error("roster item %s of user %s holds an impossible state; read as none", row.jid, row.user_id)
        return rules.State()


@dataclass
class _Side:
    """One account's side of a subscription change, as stored."""

    account: JID
    contact: JID
    before: rules.State
    after: rules.State
    push: Item | None = None
    ver: str | None = None  # the roster version the change made, when it showed (push, or removal)


def _store(user: User, contact: JID, row: RosterItem | None, side: _Side, *, lists: bool = False) -> None:
    """Write ``side.after``. The contact is listed when its visible state has something to show, or
    when ``lists`` (the account sent it a request or an approval: §3.1.2, §3.1.5, even one answered
    at once); an unlisted row with nothing left goes. Sets ``side.push`` when the roster shows a
    change (a newly listed contact included)."""
    after = side.after
    shows = lists or rules.visible(after) != ("none", None, False)
    was_listed = row is not None and row.listed
    if row is None:
        if after == rules.State() and not shows:
            return
        row = RosterItem(user=user, jid=str(contact), listed=shows)
    elif after == rules.State() and not row.listed and not shows:
        row.delete()
        return
    row.subscription, row.ask = after.subscription, after.pending_out
    row.pending_in, row.approved = after.pending_in, after.approved
    row.listed = row.listed or shows
    row.save()
    if row.listed and (not was_listed or rules.visible(after) != rules.visible(side.before)):
        side.push = item_of(row)
        side.ver = bump_version(user.pk)


@dataclass
class _Change:
    user: _Side
    contact: _Side | None  # None: no such account here
    delivered: list[str]  # the presence types that go to the contact's available resources
    replies: list[str]  # presence types the contact's side answers the user with


def _lock(*localparts: str) -> dict[str, User]:
    """The active accounts among ``localparts``, locked in one order (two changes between the same two
    accounts, from either side, never deadlock)."""
    users = User.objects.select_for_update().filter(username__in=localparts, is_active=True).order_by("pk")
    return {user.username: user for user in users}


def _local(jid: JID) -> bool:
    return jid.domain == settings.XMPP_DOMAIN and bool(jid.local)


def _apply_sync(account: JID, contact: JID, kind: str | None) -> _Change | None:
    """Apply the subscription stanza ``kind`` that ``account`` sends ``contact`` (both bare); None:
    take the contact out of the account's roster, after the stanzas §2.5.2 sends on its behalf.
    None when the account is gone or, for a removal, when the contact is not in its roster."""
    remove = kind is None
    with transaction.atomic():
        names = {account.local or "", contact.local or ""} if _local(contact) else {account.local or ""}
        users = _lock(*names)
        user = users.get(account.local or "")
        if user is None:
            return None
        peer = users.get(contact.local or "") if _local(contact) else None
        row = RosterItem.objects.filter(user=user, jid=str(contact)).first()
        if remove and (row is None or not row.listed):
            return None
        peer_row = RosterItem.objects.filter(user=peer, jid=str(account)).first() if peer else None
        mine = _Side(account, contact, _state(row), _state(row))
        theirs = _Side(contact, account, _state(peer_row), _state(peer_row)) if peer else None
        delivered: list[str] = []
        replies: list[str] = []
        for sent in rules.roster_removed(mine.before) if remove else (kind or "",):
            out = rules.outbound(mine.after, sent)
            mine.after = out.state
            if not out.forward:
                continue
            if theirs is None:
                if sent == "subscribe":  # §3.1.3: no such contact, answered "unsubscribed" on its behalf
                    answer = rules.inbound(mine.after, "unsubscribed")
                    mine.after = answer.state
                    replies.append("unsubscribed")
                continue
            got = rules.inbound(theirs.after, sent)
            theirs.after = got.state
            if got.deliver:
                delivered.append(sent)
            if got.auto_reply is not None:
                answer = rules.inbound(mine.after, got.auto_reply)
                mine.after = answer.state
                if answer.deliver:
                    replies.append(got.auto_reply)
        if remove:
            assert row is not None
            row.delete()
            mine.after = rules.State()
            mine.ver = bump_version(user.pk)
        else:
            _store(user, contact, row, mine, lists=kind in ("subscribe", "subscribed"))
        if theirs is not None and peer is not None:
            _store(peer, account, peer_row, theirs)
        return _Change(mine, theirs, delivered, replies)


_apply = off_loop(_apply_sync)


@dataclass(frozen=True)
class Contacts:
    """Whom an account's presence goes to, whose it receives, who waits for its answer."""

    subscribers: tuple[JID, ...]  # subscription from or both (§4.2.2)
    subscribed_to: tuple[JID, ...]  # subscription to or both (§4.3)
    requests: tuple[JID, ...]  # pending in: their requests wait for the account (§3.1.3)


# Each broadcast presence needs the account's subscribers (1.7 ms a read with 100 contacts, docs/
# performance.md): kept per account, forgotten by the one door that changes them (_act, on every process:
# the router's watcher tells the others), and read again after FRESH seconds whatever happened.
FRESH = 300.0
KEPT = 20_000
_known: OrderedDict[JID, tuple[float, Contacts]] = OrderedDict()
_generation: dict[JID, int] = {}  # a read that began before a forget must not be kept


async def _contacts(account: JID) -> Contacts:
    """``account``'s subscribers, those it is subscribed to and the requests waiting for it."""
    now = time.monotonic()
    known = _known.get(account)
    if known is not None and now - known[0] < FRESH:
        return known[1]
    generation = _generation.get(account, 0)
    contacts = await _read_contacts(account)
    if _generation.get(account, 0) == generation:
        _known[account] = (now, contacts)
        _known.move_to_end(account)
        if len(_known) > KEPT:
            _known.popitem(last=False)
    return contacts


def forget_contacts(account: JID) -> None:
    """The subscriptions of ``account`` changed (here, or on another process): read them again."""
    _known.pop(account, None)
    _generation[account] = _generation.get(account, 0) + 1
    if len(_generation) > KEPT:
        _generation.clear()  # a read in flight may then keep what it read: FRESH bounds it


@off_loop
def _read_contacts(account: JID) -> Contacts:
    rows = RosterItem.objects.filter(user__username=account.local or "", user__is_active=True).filter(
        subscription__in=("from", "to", "both")
    ) | RosterItem.objects.filter(user__username=account.local or "", pending_in=True)
    subscribers, subscribed_to, requests = [], [], []
    for jid, subscription, pending_in in rows.values_list("jid", "subscription", "pending_in"):
        try:
            contact = JID.parse(jid)
        except InvalidJID:
            continue
        if subscription in ("from", "both"):
            subscribers.append(contact)
        if subscription in ("to", "both"):
            subscribed_to.append(contact)
        if pending_in:
            requests.append(contact)
    return Contacts(tuple(subscribers), tuple(subscribed_to), tuple(requests))


# ---------------------------------------------------------------------------------- last presence (§4.3.2)
@off_loop
def _keep_last(localpart: str, stanza: str, stamp: datetime) -> None:
    user_id = User.objects.filter(username=localpart).values_list("pk", flat=True).first()
    if user_id is not None:
        LastPresence.objects.update_or_create(user_id=user_id, defaults={"stanza": stanza, "stamp": stamp})


def _remember_last(account: JID, data: bytes) -> None:
    """The account's last available resource went unavailable with ``data`` (as broadcast): keep it, with
    the time, for its subscribers' probes. Written behind the event loop (a background task, whose
    failure is logged): the unavailable presence goes on meanwhile."""
    write = _keep_last(account.local or "", data.decode(), datetime.now(UTC))
    tasks.start(write, name="presence: keeping the last unavailable presence")


@off_loop
def _last_presences(localparts: list[str], keys: tuple[str, ...]) -> list[tuple[str, datetime]]:
    """The kept last unavailable presence, and its time, of each active account among ``localparts``
    that has one and does not block the JID whose XEP-0191 match keys are ``keys``: one query."""
    refuses = BlockedJid.objects.filter(user_id=OuterRef("user_id"), jid__in=keys)
    rows = LastPresence.objects.filter(user__username__in=localparts, user__is_active=True)
    return list(rows.filter(~Exists(refuses)).values_list("stanza", "stamp"))


def _delayed(stanza: str, stamp: datetime) -> bytes:
    """A kept presence with the XEP-0203 ``<delay/>`` saying since when this server has held it."""
    when = stamp.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return with_delay(stanza.encode(), settings.XMPP_DOMAIN, when)


# ---------------------------------------------------------------------------------- the router's side
def _presence(sender: JID, to: JID, kind: str, original: etree._Element | None = None) -> bytes:
    """A subscription stanza from ``sender`` (bare, §3.1.2) to ``to``; with the original's children."""
    stanza = etree.Element(_Q_PRESENCE, nsmap=ns.default(ns.CLIENT))
    stanza.set("from", str(sender))
    stanza.set("to", str(to))
    stanza.set("type", kind)
    if original is not None:
        stanza.extend(deepcopy(child) for child in original)
    return serialize(stanza)


def _available(router: Router, account: JID, only_here: bool = False) -> list[Session]:
    sessions = router.here(account) if only_here else router.resources(account)
    return [s for s in list(sessions.values()) if s.available]


async def _to_available(router: Router, account: JID, data: bytes, stanza_type: str) -> None:
    data = addressed(data, str(account))  # broadcast presence names its recipient (RFC 6121 §4.2.2)
    for session in _available(router, account):
        if session.may_receive("presence", stanza_type):
            await session.deliver(data, urgent=False)


async def _presence_of(router: Router, of: JID, to: JID, gained: bool) -> None:
    """``to`` starts (or stops) receiving the presence of ``of``: each of ``of``'s available resources'
    last presence (or ``unavailable`` from it) goes to ``to``'s available resources."""
    for session in _available(router, of):
        if gained:
            data = session.last_presence
        else:
            gone = etree.Element(_Q_PRESENCE, nsmap=ns.default(ns.CLIENT))
            gone.set("from", str(session.jid))
            gone.set("type", "unavailable")
            data = serialize(gone)
        if data is not None:
            await _to_available(router, to, data, "available" if gained else "unavailable")


async def _act(router: Router, change: _Change, original: etree._Element | None = None) -> None:
    """What a committed change means for the sessions of both accounts; ``original``: the stanza the
    account sent (its children, a status or a nick, go with it)."""
    mine, theirs = change.user, change.contact
    sides = [side for side in (mine, theirs) if side is not None]
    for side in sides:
        forget_contacts(side.account)
        if router.watcher is not None:
            router.watcher.contacts_changed(side.account)  # the other processes forget theirs
    for side in sides:  # the roster first (§3.1.5: the push, then the stanza)
        if side.push is not None:
            assert side.ver is not None
            sessions = [s for s in router.resources(side.account).values() if isinstance(s, Resource)]
            await push_roster(sessions, push_payload(side.push, ver=side.ver))
    for kind in change.delivered:
        await _to_available(router, mine.contact, _presence(mine.account, mine.contact, kind, original), kind)
    for reply in change.replies:
        await _to_available(router, mine.account, _presence(mine.contact, mine.account, reply), reply)
    for side in sides:  # then the presence the new (or lost) subscription brings (§3.2.2, §3.3.3)
        before, after = rules.receives_presence_from(side.before), rules.receives_presence_from(side.after)
        if before != after:
            await _presence_of(router, side.contact, side.account, gained=after)


async def remove_contact(account: JID, contact: JID) -> str | None:
    """RFC 6121 §2.5.2: ``account`` removes ``contact`` from its roster; the server first sends the
    contact, on the account's behalf, what ends their subscriptions and requests. The roster version
    the removal made; None when the contact was not in the roster (the caller answers item-not-found).
    The removal's own push is the caller's."""
    change = await _apply(account, contact, None)
    if change is None:
        return None
    await _act(ROUTER, change)
    return change.user.ver


class Presences:
    """The router's ``presences``: subscription stanzas and broadcast presence (module docstring)."""

    async def subscription(self, router: Router, sender: Session, event: StanzaReceived) -> None:
        jid, to = sender.jid, event.to
        assert jid is not None
        assert to is not None
        account, contact = jid.bare, to.bare
        if contact == account:
            return  # one's own presence is not a subscription (RFC 6121 §3 is between two entities)
        if router.blocking is not None and router.blocking.blocks(account, contact):
            await sender.bounce(event.stanza, xep0191_blocking.blocked_refusal(), "")
            return  # XEP-0191 §3.3: not sent to a JID the account blocks
        if await blocking.refuses_stored(contact, jid):
            return  # nor to one that blocks the account: dropped, as presence from it is (§3.3)
        change = await _apply(account, contact, event.type)
        if change is not None:
            await _act(router, change, event.stanza)

    async def broadcast(
        self,
        router: Router,
        sender: Session,
        data: bytes,
        stanza_type: str,
        *,
        initial: bool,
        only_here: bool = False,
    ) -> None:
        """The account's subscribers' available resources get the broadcast presence ``data`` (§4.2.2,
        §4.5.2); with ``initial`` (its first available presence) the sender gets the presence of those
        it is subscribed to and the requests that wait for it (§4.3, §3.1.3)."""
        jid = sender.jid
        assert jid is not None
        account = jid.bare
        contacts = await _contacts(account)
        shield = router.blocking
        for contact in contacts.subscribers:
            if shield is not None and (shield.blocks(account, contact) or shield.refuses(contact, jid)):
                continue  # XEP-0191 §3.3 (an account bound elsewhere is checked by its own process)
            to_contact = addressed(data, str(contact))
            for session in _available(router, contact, only_here):
                if session.may_receive("presence", stanza_type):
                    await session.deliver(to_contact, urgent=False)
        if stanza_type == "unavailable" and not _available(router, account):
            _remember_last(account, data)  # its last available resource is gone (§4.3.2)
        if not initial:
            return
        # the contacts' presence, as their probe answers (§4.3): not of one blocked either way
        online = [c for c in contacts.subscribed_to if _available(router, c)]
        refusing = await blocking.refusing(online, jid) if online else set()
        for contact in online:
            if contact in refusing or (shield is not None and shield.blocks(account, contact)):
                continue
            for session in _available(router, contact):
                if session.last_presence is not None:
                    await sender.deliver(addressed(session.last_presence, str(account)), urgent=False)
        # §4.3.2: a contact with no available resource answers the probe either with the last unavailable
        # presence the server received from it or not at all. We answer with it, the whole stanza as it was
        # broadcast, so 'from' is the full JID of the resource that sent it (as in the RFC's example),
        # and with a XEP-0203 <delay/> saying since when (the RFC's example carries one too).
        seen = set(online)
        offline = [
            contact.local or ""
            for contact in contacts.subscribed_to
            if contact not in seen
            and _local(contact)
            and not (shield is not None and shield.blocks(account, contact))
        ]
        if offline:
            for stanza, stamp in await _last_presences(offline, xep0191_blocking.match_keys(jid)):
                await sender.deliver(addressed(_delayed(stanza, stamp), str(account)), urgent=False)
        for contact in contacts.requests:
            if shield is None or not shield.blocks(account, contact):
                await sender.deliver(_presence(contact, account, "subscribe"), urgent=False)


async def blocklist_changed(account: JID, jids: list[str], *, blocked: bool) -> None:
    """XEP-0191 §3.3, §3.4: the account's subscribers among the JIDs it just blocked see it go (an
    ``unavailable`` from each of its available resources); those it unblocked see it again."""
    contacts = await _contacts(account)
    for contact in contacts.subscribers:
        if any(xep0191_blocking.matches(item, contact) for item in jids):
            await _presence_of(ROUTER, account, contact, gained=not blocked)
