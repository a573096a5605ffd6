"""In-process registry of bound sessions and delivery between them (RFC 6121 §4 and §8.5).

Local delivery is a direct call: ARCHITECTURE.md measured the channel layer at ~90 µs a hop,
against well under a microsecond for a call, so the layer is kept for what must cross processes
(revocation and, with several processes, routing) and never used between two local sessions.

With several processes (``CHANNEL_LAYER_URL``), the sessions bound in the others are here too, as
stand-ins (xmppauth/cluster.py) kept apart from the local ones: :meth:`Router.resources` gives both,
so every decision below is the same whichever process holds a session, and a stand-in's ``deliver``
carries the stanza to its process through the channel layer. The router tells its ``watcher`` (the
cluster) when a local session's routing state changes, so that the others' stand-ins follow.

Resource conflicts (RFC 6120 §7.7.2.2): the newer session wins. Binding a full JID that is
already bound closes the older stream with a ``<conflict/>`` stream error before the new one is
registered, so two routable sessions never share a full JID.
"""

from __future__ import annotations

import hmac
import logging
import secrets
from typing import Any, Protocol

from lxml import etree

from xmppauth.proto import ns, xep0191_blocking, xep0280_carbons
from xmppauth.proto.access import Admission
from xmppauth.proto.errors import StanzaErrorCondition, StreamErrorCondition
from xmppauth.proto.events import StanzaReceived
from xmppauth.proto.jid import JID
from xmppauth.proto.numbers import parse_uint
from xmppauth.proto.replies import error_element
from xmppauth.proto.routing import addressed, decide
from xmppauth.proto.xml import serialize
from xmppauth.proto.xml_names import parse_element

log = logging.getLogger("xmppauth.router")

_Q_PRIORITY = ns.qname(ns.CLIENT, "priority")
_Q_BODY = ns.qname(ns.CLIENT, "body")
_Q_ERROR = ns.qname(ns.CLIENT, "error")
_REPLACED = "replaced by a new session with the same resource"
_SUBSCRIPTION_TYPES = frozenset({"subscribe", "subscribed", "unsubscribe", "unsubscribed"})
_HELD = "that resource is held by another client or app password of this account"


class Session(Protocol):
    jid: JID | None
    available: bool
    priority: int
    last_presence: bytes | None
    directed_to: set[JID]

    @property
    def carbons(self) -> bool: ...

    @property
    def grant_id(self) -> int | None:
        """The grant the session holds: a full JID is taken over only within one grant."""
        ...

    @property
    def resume_id(self) -> str | None: ...

    async def deliver(self, data: bytes, urgent: bool = True) -> None: ...

    async def deliver_offline(self) -> None: ...

    async def bounce(self, stanza: etree._Element, condition: object, text: str) -> None: ...

    async def kick(self, condition: StreamErrorCondition, text: str) -> None: ...

    async def revoke(self, text: str) -> None: ...

    def regrant(self, scopes: frozenset[str]) -> None:
        """The session's grant now has these scopes."""
        ...

    def may_receive(self, kind: str, stanza_type: str) -> bool:
        """The session's grant lets it receive this (sessions_acl.access decides)."""
        ...

    async def deliver_paired(
        self, kind: str, stanza_type: str, sender: JID | None, stanza_id: str | None, data: bytes
    ) -> None:
        """An iq, or a message error: delivered whole if it is an answer this session waits for or
        a request (noted as owed), as a bare error if only that may reach it, else dropped
        (sessions_acl.access decides)."""
        ...


class Keeper(Protocol):
    """Keeps what no session can take now (xmppauth/offline.py): XEP-0160 offline messages."""

    async def keep(self, to: JID, stanza: etree._Element) -> tuple[StanzaErrorCondition, str] | None:
        """Store the message ``stanza`` for the account ``to`` (bare); None once stored (or dropped as
        not worth storing), else the error its sender gets and its text."""
        ...


class Presences(Protocol):
    """Presence subscriptions and who hears an account's presence (xmppauth/subscriptions.py)."""

    async def subscription(self, router: Router, sender: Session, event: StanzaReceived) -> None:
        """A ``subscribe``, ``subscribed``, ``unsubscribe`` or ``unsubscribed`` the session sent."""
        ...

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
        """The session's broadcast presence ``data`` for the account's subscribers; ``initial``: its
        first available presence (it then learns its contacts' presence and waiting requests)."""
        ...


class Eventing(Protocol):
    """XEP-0163 PEP (xmppauth/pep.py): what a resource's available presence says it wants to hear."""

    def presence(self, router: Router, sender: Session, stanza: etree._Element, initial: bool) -> None:
        """The session sent available presence ``stanza`` (``initial``: its first); must not block."""
        ...


class Blocking(Protocol):
    """XEP-0191 blocklists of the accounts bound here (xmppauth/blocking.py), asked from memory."""

    def blocks(self, account: JID, to: JID) -> bool:
        """The account (bare) blocks ``to``: its stanza to it comes back."""
        ...

    def refuses(self, account: JID, sender: JID) -> bool:
        """The account (bare, bound here) blocks ``sender``: nothing of the sender reaches it."""
        ...


class Archive(Protocol):
    """The accounts' message archives (xmppauth/archive.py, XEP-0313)."""

    def prepare(self, sender: JID, to: JID, stanza: etree._Element) -> list[Any]:
        """The archive rows a message gets, before it is serialised."""
        ...

    def mark(self, rows: list[Any], stanza: etree._Element) -> None:
        """Give the message its ``<stanza-id/>`` as an element (before it is stored offline)."""
        ...

    def write(
        self, rows: list[Any], data: bytes, *, marked: bool = False, plain: bytes | None = None
    ) -> bytes:
        """Keep the rows of the message ``data``; the message as delivered (with its ``<stanza-id/>``)."""
        ...


class Watcher(Protocol):
    """Told when a local session's routing state changes (xmppauth/cluster.py)."""

    def changed(self, session: Session) -> None: ...

    def gone(self, session: Session) -> None: ...

    def contacts_changed(self, account: JID) -> None:
        """The presence subscriptions of ``account`` (bare) changed here (xmppauth/subscriptions.py)."""
        ...


class Router:
    def __init__(self) -> None:
        self._accounts: dict[JID, dict[str, Session]] = {}
        self._remote: dict[JID, dict[str, Session]] = {}  # stand-ins for other processes' sessions
        self.watcher: Watcher | None = None
        self.keeper: Keeper | None = None  # without one, a message for an offline account is refused
        self.presences: Presences | None = None  # without, presence stays within the account
        self.blocking: Blocking | None = None  # without, nobody blocks anybody
        self.archive: Archive | None = None  # without, no message is archived
        self.eventing: Eventing | None = None  # without, presence asks for no PEP notifications

    # ------------------------------------------------------------------ registry
    def resources(self, bare: JID) -> dict[str, Session]:
        """The account's bound sessions, in this process and (as stand-ins) in the others."""
        local = self._accounts.get(bare, {})
        remote = self._remote.get(bare)
        if not remote:
            return local
        return {**remote, **local}  # a resource both claim (for a moment) is the local session's

    def here(self, bare: JID) -> dict[str, Session]:
        """The account's sessions bound in this process."""
        return self._accounts.get(bare, {})

    def local(self, jid: JID) -> Session | None:
        """The session bound to the full JID ``jid`` in this process."""
        return self._accounts.get(jid.bare, {}).get(jid.resource or "")

    def sessions(self) -> list[Session]:
        """Every session bound in this process (a copy: the caller may end them)."""
        return [session for online in self._accounts.values() for session in online.values()]

    def changed(self, session: Session) -> None:
        """A local session's routing state (availability, priority, carbons, scopes) changed."""
        if self.watcher is not None and session.jid is not None and self.local(session.jid) is session:
            self.watcher.changed(session)

    # ------------------------------------------------------------------ other processes' sessions
    def stand_in(self, session: Session) -> Session | None:
        """Route the full JID of another process's session to its stand-in ``session`` (no watcher
        is told); the stand-in it replaces, if any."""
        return _put(self._remote, session)

    def stand_in_for(self, jid: JID) -> Session | None:
        return self._remote.get(jid.bare, {}).get(jid.resource or "")

    def drop_stand_in(self, session: Session) -> bool:
        """Another process's session ended: its stand-in goes."""
        return _remove(self._remote, session)

    def stand_ins(self) -> list[Session]:
        return [session for online in self._remote.values() for session in online.values()]

    def session_count(self) -> int:
        return sum(len(r) for r in self._accounts.values())

    def online_counts(self) -> tuple[int, int]:
        """(accounts with a session, sessions) in this process (XEP-0133 statistics)."""
        return len(self._accounts), self.session_count()

    async def bind(self, session: Session, localpart: str, domain: str, wish: str | None) -> str:
        """Pick the resource for a new session and take it from an older holder of the same grant.

        RFC 6120 §7.7.2.2 lets the server choose between replacing the older session and giving the
        new one another resource. Within one grant (the same client, or the same app password) the
        newer wins; a session of another grant keeps its resource and the new one gets a generated
        one, so that a narrower credential cannot end (or take the place of) a wider session."""
        bare = JID(localpart, domain)
        online = self.resources(bare)
        resource = wish or _generated_resource()
        while (
            (holder := online.get(resource)) is not None
            and holder is not session
            and holder.grant_id != session.grant_id
        ):
            resource = _generated_resource()
        if holder is not None and holder is not session:
            log.info("resource conflict on %s/%s: the older session is replaced", bare, resource)
            await holder.kick(StreamErrorCondition.CONFLICT, _REPLACED)
            self.unbind(holder)
        return resource

    def register(self, session: Session) -> Session | None:
        """Route the session's full JID to it from now on; the session it displaced, if any."""
        older = _put(self._accounts, session)
        self.changed(session)
        return older if older is not session else None

    async def claim(self, session: Session) -> None:
        """Register a newly bound session; whoever held its full JID meanwhile is replaced.

        :meth:`bind` already replaced the holder it saw, but a login awaits the database between
        its ``bind`` and this call, and so may another login of the same full JID: registering and
        finding the displaced session is one step here, so the last to register holds the JID and
        every other one is told (never two routable sessions, and none left connected unrouted)."""
        older = self.register(session)
        if older is not None and older.grant_id != session.grant_id:
            # Another grant's session bound it meanwhile: it keeps it (see bind), this one goes.
            self.register(older)
            log.info("resource conflict on %s: held by another grant, the new session ends", session.jid)
            await session.kick(StreamErrorCondition.CONFLICT, _HELD)
            return
        if older is not None:
            log.info("resource conflict on %s: the older session is replaced", session.jid)
            await older.kick(StreamErrorCondition.CONFLICT, _REPLACED)
            await self.retract_presence(older)  # it no longer ends as the JID's holder

    def find_resumable(self, bare: JID, resume_id: str) -> Session | None:
        """XEP-0198 §5: the session of this account (and only this one) with that resumption id."""
        for session in self.resources(bare).values():
            if session.resume_id is not None and hmac.compare_digest(session.resume_id, resume_id):
                return session
        return None

    def replace(self, old: Session, new: Session) -> None:
        """A resumed session continues on a new stream: the registry now points at ``new``."""
        jid = old.jid
        assert jid is not None
        assert jid.resource is not None
        online = self._accounts.get(jid.bare, {})
        if online.get(jid.resource) is old:
            online[jid.resource] = new
            self.changed(new)

    def unbind(self, session: Session) -> bool:
        if not _remove(self._accounts, session):
            return self.drop_stand_in(session)  # a stand-in, replaced here (bind) before its own news
        if self.watcher is not None:
            self.watcher.gone(session)
        return True

    # ------------------------------------------------------------------ delivery
    async def route(self, sender: Session, event: StanzaReceived) -> None:
        if event.kind == "presence" and event.to is None:
            await self._broadcast_presence(sender, event)
            return
        if event.kind == "presence" and self.presences is not None:
            if event.type in _SUBSCRIPTION_TYPES:
                await self.presences.subscription(self, sender, event)
                return
            if event.type == "probe":
                return  # the server probes, on a first available presence (RFC 6121 §4.3); clients need not
        to = event.to
        assert to is not None
        kind, stanza_type = event.kind, event.type
        if self.blocking is not None and await self._blocked(sender, event, to):
            return
        online = self.resources(to.bare)
        if not all(s.may_receive(kind, stanza_type) for s in online.values()):
            # A session whose grant does not let it receive this is, for routing, not there.
            online = {r: s for r, s in online.items() if s.may_receive(kind, stanza_type)}
        decision = decide(kind, stanza_type, to.resource, online)  # sessions carry their presence
        if decision.error is not None:
            await sender.bounce(event.stanza, decision.error, decision.text)
            return
        archive, jid = self.archive, sender.jid
        rows: list[Any] = []
        if (
            archive is not None
            and jid is not None
            and kind == "message"
            and (decision.store or decision.resources)
        ):
            rows = archive.prepare(jid, to, event.stanza)  # XEP-0313: this one is kept, by whom
        if decision.store:
            plain = b""
            if rows and archive is not None:
                plain = serialize(event.stanza)  # the sender's copy, without the recipient's id
                archive.mark(rows, event.stanza)
            if await self._keep(sender, to, event.stanza) and rows and archive is not None:
                archive.write(rows, serialize(event.stanza), marked=True, plain=plain)
            return
        if event.kind == "presence":
            self._track_directed(sender, to, event.type)
        if not decision.resources:
            return
        stanza = event.stanza
        data = serialize(stanza)
        if rows and archive is not None:
            data = archive.write(rows, data)  # with the recipient's <stanza-id/>
        if kind == "iq" or (stanza_type == "error" and kind == "message"):
            # Requests and answers are paired per session (sessions_acl.access, "answers only to
            # questions"); other stanzas are decided by may_receive above alone.
            recipients = [online[r] for r in decision.resources]
            await self._deliver_paired(sender, event, data, recipients)
            return
        # XEP-0352: presence and messages without a body (chat states) can wait for an inactive client
        urgent = kind == "message" and stanza.find(_Q_BODY) is not None
        for resource in decision.resources:
            await online[resource].deliver(data, urgent)
        if event.kind == "message" and event.type == "chat":
            await self._carbons(sender, to, decision.resources, data, stanza)

    async def _blocked(self, sender: Session, event: StanzaReceived, to: JID) -> bool:
        """XEP-0191 §3.3: a stanza to a JID the sender's account blocks comes back ``not-acceptable``
        with ``<blocked/>``; one to an account (bound here) that blocks the sender is dropped or, for a
        message or a request, answered ``service-unavailable`` as if nobody were there."""
        blocking, jid = self.blocking, sender.jid
        assert blocking is not None
        assert jid is not None
        if to.bare == jid.bare:
            return False  # never between an account's own resources (§5)
        if blocking.blocks(jid.bare, to):
            await sender.bounce(event.stanza, xep0191_blocking.blocked_refusal(), "")
            return True
        if blocking.refuses(to.bare, jid):
            if xep0191_blocking.inbound_decision(event.kind, event.type) == "error":
                await sender.bounce(event.stanza, StanzaErrorCondition.SERVICE_UNAVAILABLE, "")
            return True
        return False

    async def _keep(self, sender: Session, to: JID, stanza: etree._Element) -> bool:
        """Offline storage for a message to an account with no available resource; whether it was
        accepted (stored, or dropped as not worth storing) rather than refused."""
        refusal = (
            (StanzaErrorCondition.SERVICE_UNAVAILABLE, "the recipient is offline and offline storage is off")
            if self.keeper is None
            else await self.keeper.keep(to.bare, stanza)
        )
        if refusal is not None:
            await sender.bounce(stanza, *refusal)
        return refusal is None

    @staticmethod
    async def _deliver_paired(
        sender: Session, event: StanzaReceived, data: bytes, recipients: list[Session]
    ) -> None:
        stanza_id = event.stanza.get("id")
        for session in recipients:
            await session.deliver_paired(event.kind, event.type, sender.jid, stanza_id, data)

    async def _carbons(
        self, sender: Session, to: JID, delivered: tuple[str, ...], data: bytes, stanza: etree._Element
    ) -> None:
        """XEP-0280 §6: copies for the carbons-enabled resources that did not get the message."""
        jid = sender.jid
        assert jid is not None
        own = jid.bare == to.bare
        sent = [
            (resource, session)
            for resource, session in self.resources(jid.bare).items()
            if session is not sender
            and session.carbons
            and not (own and resource in delivered)
            and session.may_receive("message", "chat")
        ]
        received = (
            []
            if own
            else [
                (r, s)
                for r, s in self.resources(to.bare).items()
                if r not in delivered and s.carbons and s.may_receive("message", "chat")
            ]
        )
        if not (sent or received) or not xep0280_carbons.eligible(stanza):
            return  # the usual case: nobody asked for copies
        for resource, session in sent:
            await session.deliver(
                xep0280_carbons.wrap("sent", jid.bare, jid.bare.with_resource(resource), data)
            )
        for resource, session in received:
            await session.deliver(
                xep0280_carbons.wrap("received", to.bare, to.bare.with_resource(resource), data)
            )

    async def return_error(self, stanza: etree._Element, condition: StanzaErrorCondition, text: str) -> None:
        """Answer a stanza that could not be handled with an error to its (local) sender."""
        sender = stanza.get("from")
        if not sender or stanza.get("type") in ("error", "result"):
            return
        try:
            sender_jid = JID.parse(sender)
        except ValueError:
            return
        session = self.resources(sender_jid.bare).get(sender_jid.resource or "")
        if session is None:
            return
        reply = etree.Element(stanza.tag, nsmap=ns.default(ns.CLIENT))
        stanza_id = stanza.get("id")
        if stanza_id is not None:
            reply.set("id", stanza_id)
        reply.set("type", "error")
        reply.set("from", stanza.get("to", ""))
        reply.set("to", sender)
        error = etree.SubElement(reply, ns.qname(ns.CLIENT, "error"), type=condition.error_type)
        etree.SubElement(
            error, ns.qname(ns.STANZA_ERRORS, condition.value), nsmap=ns.default(ns.STANZA_ERRORS)
        )
        if text:
            text_el = etree.SubElement(
                error, ns.qname(ns.STANZA_ERRORS, "text"), nsmap=ns.default(ns.STANZA_ERRORS)
            )
            text_el.text = text
        await session.deliver(serialize(reply))

    @staticmethod
    def _track_directed(sender: Session, to: JID, presence_type: str) -> None:
        # RFC 6121 §4.6: remember directed presence so the recipient hears when we leave.
        if presence_type == "available":
            sender.directed_to.add(to)
        elif presence_type == "unavailable":
            sender.directed_to.discard(to)

    async def _broadcast_presence(self, sender: Session, event: StanzaReceived) -> None:
        """RFC 6121 §4.2.2 and §4.5.2: to all available resources of the account, itself included,
        and to its subscribers (``presences``)."""
        jid = sender.jid
        assert jid is not None
        stanza = event.stanza
        data = serialize(stanza)
        was_available = sender.available
        if event.type == "unavailable":
            sender.available = False
            sender.last_presence = None
        elif event.type == "available":
            sender.available = True
            sender.priority = _priority(stanza)
            sender.last_presence = data
        else:
            return
        self.changed(sender)
        own = addressed(data, str(jid.bare))  # RFC 6121 §4.2.2: to each recipient's bare JID
        for session in list(self.resources(jid.bare).values()):
            if (session.available or session is sender) and session.may_receive("presence", event.type):
                await session.deliver(own, urgent=False)
            if not was_available and sender.available and session is not sender and session.last_presence:
                await sender.deliver(addressed(session.last_presence, str(jid.bare)), urgent=False)
        if self.presences is not None and (sender.available or was_available):
            initial = not was_available and sender.available
            await self.presences.broadcast(self, sender, data, event.type, initial=initial)
        if self.eventing is not None and sender.available:
            self.eventing.presence(self, sender, stanza, not was_available)
        if event.type == "unavailable":
            await self._tell_directed(sender, data)
        elif not was_available and sender.priority >= 0:
            # RFC 6121 §8.5.2.1.1 / XEP-0160: stored messages go to the first available resource
            await sender.deliver_offline()

    async def _tell_directed(self, sender: Session, data: bytes) -> None:
        targets, sender.directed_to = sender.directed_to, set()
        for target in targets:
            recipients = self.resources(target.bare)
            to_it = addressed(data, str(target))
            if target.resource is not None:
                session = recipients.get(target.resource)
                if session is not None and session.may_receive("presence", "unavailable"):
                    await session.deliver(to_it)
            else:
                for session in recipients.values():
                    if session.available and session.may_receive("presence", "unavailable"):
                        await session.deliver(to_it)

    async def session_ended(self, session: Session) -> None:
        """Unregister; if it was available, tell the account's other resources and directed contacts."""
        if self.unbind(session):
            await self.retract_presence(session)

    async def retract_presence(self, session: Session, only_here: bool = False) -> None:
        """The session is no longer available (it left, or may no longer share presence): say so,
        as if it had sent unavailable presence (RFC 6121 §4.5.2); ``only_here``: to this process's
        sessions only (another process's session whose process is gone: each process tells its own)."""
        if not session.available or session.jid is None:
            return
        session.available = False
        session.last_presence = None
        self.changed(session)
        unavailable = etree.Element(ns.qname(ns.CLIENT, "presence"), nsmap=ns.default(ns.CLIENT))
        unavailable.set("from", str(session.jid))
        unavailable.set("type", "unavailable")
        data = serialize(unavailable)
        others = self.here(session.jid.bare) if only_here else self.resources(session.jid.bare)
        own = addressed(data, str(session.jid.bare))
        for other in list(others.values()):
            if other.available and other.may_receive("presence", "unavailable"):
                await other.deliver(own)
        if self.presences is not None:
            await self.presences.broadcast(
                self, session, data, "unavailable", initial=False, only_here=only_here
            )
        await self._tell_directed(session, data)


def _put(accounts: dict[JID, dict[str, Session]], session: Session) -> Session | None:
    """``session`` holds its full JID in ``accounts`` from now on; the session that held it, if any."""
    jid = session.jid
    assert jid is not None
    assert jid.resource is not None
    online = accounts.setdefault(jid.bare, {})
    older = online.get(jid.resource)
    online[jid.resource] = session
    return older


def _remove(accounts: dict[JID, dict[str, Session]], session: Session) -> bool:
    """Take ``session`` out of ``accounts`` if it holds its full JID there; whether it did."""
    jid = session.jid
    if jid is None or jid.resource is None:
        return False
    online = accounts.get(jid.bare)
    if not online or online.get(jid.resource) is not session:
        return False
    del online[jid.resource]
    if not online:
        del accounts[jid.bare]
    return True


def _generated_resource() -> str:
    """A resource the server makes up: 9 random bytes, 12 characters of base64url."""
    return secrets.token_urlsafe(9)


async def deliver_by_admission(session: Session, admission: Admission, data: bytes) -> None:
    """Deliver ``data`` (an iq or a message error) to ``session`` as ``admission`` says."""
    if admission is Admission.WHOLE:
        await session.deliver(data)
    elif admission is Admission.ERROR_ONLY:
        await session.deliver(error_only(parse_element(data)))


def error_only(stanza: etree._Element) -> bytes:
    """The error stanza with nothing but its addresses, id, type and a bare ``<error/>``: its
    ``type`` and its defined condition (RFC 6120 §8.3.2), empty. An error may carry the original
    payload (§8.3.1), a ``<text/>`` and an application-specific condition, all of which the sender
    chooses; to a session that may not receive messages none of it goes."""
    bare = etree.Element(stanza.tag, nsmap=ns.default(ns.CLIENT))
    for name in ("from", "to", "id", "type"):
        value = stanza.get(name)
        if value is not None:
            bare.set(name, value)
    original = stanza.find(_Q_ERROR)
    condition = "undefined-condition"
    error_type = ""
    if original is not None:
        given = original.get("type")
        if given is not None and given in _ERROR_TYPES:
            error_type = given
        for child in original:
            qname = etree.QName(child)
            if qname.namespace == ns.STANZA_ERRORS and qname.localname in _CONDITIONS:
                condition = qname.localname
                break
    bare.append(error_element(condition, error_type=error_type))
    return serialize(bare)


_ERROR_TYPES = frozenset({"auth", "cancel", "continue", "modify", "wait"})
_CONDITIONS = frozenset(condition.value for condition in StanzaErrorCondition)


def _priority(stanza: etree._Element) -> int:
    """RFC 6121 §4.7.2.3: an integer from -128 to 127, 0 when absent or invalid."""
    el = stanza.find(_Q_PRIORITY)
    if el is None or not el.text:
        return 0
    text = el.text.strip()
    negative = text.startswith("-")
    value = parse_uint(text[1:] if negative else text, maximum=128 if negative else 127)
    if value is None:
        return 0
    return -value if negative else value


ROUTER = Router()
