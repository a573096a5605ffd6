"""In-process registry of bound sessions and delivery between them (RFC 6121 §4 and §8.5).

Local delivery is a direct call: ARCHITECTURE.md measured the channel layer at ~90 µs a hop,
against well under a microsecond for a call, so the layer is kept for what must cross processes
(revocation and, with several processes, routing) and never used between two local sessions.

Resource conflicts (RFC 6120 §7.7.2.2): the newer session wins. Binding a full JID that is
already bound closes the older stream with a ``<conflict/>`` stream error before the new one is
registered, so two routable sessions never share a full JID.
"""

from __future__ import annotations

import logging
import secrets
from typing import Protocol

from lxml import etree

from xmppauth.proto import ns
from xmppauth.proto.errors import StreamErrorCondition
from xmppauth.proto.events import StanzaReceived
from xmppauth.proto.jid import JID
from xmppauth.proto.routing import ResourceState, decide
from xmppauth.proto.xml import serialize

log = logging.getLogger("xmppauth.router")

_Q_PRIORITY = ns.qname(ns.CLIENT, "priority")


class Session(Protocol):
    jid: JID | None
    available: bool
    priority: int
    last_presence: bytes | None
    directed_to: set[JID]

    async def deliver(self, data: bytes) -> None: ...

    async def bounce(self, stanza: etree._Element, condition: object, text: str) -> None: ...

    async def kick(self, condition: StreamErrorCondition, text: str) -> None: ...


class Router:
    def __init__(self) -> None:
        self._accounts: dict[JID, dict[str, Session]] = {}

    # ------------------------------------------------------------------ registry
    def resources(self, bare: JID) -> dict[str, Session]:
        return self._accounts.get(bare, {})

    def session_count(self) -> int:
        return sum(len(r) for r in self._accounts.values())

    async def bind(self, session: Session, localpart: str, domain: str, wish: str | None) -> str:
        """Pick the resource for a new session and take it from any older holder."""
        bare = JID(localpart, domain)
        resource = wish or secrets.token_urlsafe(9)
        holder = self.resources(bare).get(resource)
        if holder is not None and holder is not session:
            log.info("resource conflict on %s/%s: the older session is replaced", bare, resource)
            await holder.kick(
                StreamErrorCondition.CONFLICT, "replaced by a new session with the same resource"
            )
            self.unbind(holder)
        return resource

    def register(self, session: Session) -> None:
        jid = session.jid
        assert jid is not None
        assert jid.resource is not None
        self._accounts.setdefault(jid.bare, {})[jid.resource] = session

    def unbind(self, session: Session) -> bool:
        jid = session.jid
        if jid is None or jid.resource is None:
            return False
        online = self._accounts.get(jid.bare)
        if not online or online.get(jid.resource) is not session:
            return False
        del online[jid.resource]
        if not online:
            del self._accounts[jid.bare]
        return True

    # ------------------------------------------------------------------ delivery
    async def route(self, sender: Session, event: StanzaReceived) -> None:
        if event.kind == "presence" and event.to is None:
            await self._broadcast_presence(sender, event)
            return
        to = event.to
        assert to is not None
        online = self.resources(to.bare)
        decision = decide(
            event.kind,
            event.type,
            to.resource,
            {r: ResourceState(available=s.available, priority=s.priority) for r, s in online.items()},
        )
        if decision.error is not None:
            await sender.bounce(event.stanza, decision.error, decision.text)
            return
        if event.kind == "presence":
            self._track_directed(sender, to, event.type)
        if decision.resources:
            data = serialize(event.stanza)
            for resource in decision.resources:
                await online[resource].deliver(data)

    @staticmethod
    def _track_directed(sender: Session, to: JID, presence_type: str) -> None:
        # RFC 6121 §4.6: remember directed presence so the recipient hears when we leave.
        if presence_type == "available":
            sender.directed_to.add(to)
        elif presence_type == "unavailable":
            sender.directed_to.discard(to)

    async def _broadcast_presence(self, sender: Session, event: StanzaReceived) -> None:
        """RFC 6121 §4.2.2 and §4.5.2: to all available resources of the account, itself included."""
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
        for session in list(self.resources(jid.bare).values()):
            if session.available or session is sender:
                await session.deliver(data)
            if not was_available and sender.available and session is not sender and session.last_presence:
                await sender.deliver(session.last_presence)
        if event.type == "unavailable":
            await self._tell_directed(sender, data)

    async def _tell_directed(self, sender: Session, data: bytes) -> None:
        targets, sender.directed_to = sender.directed_to, set()
        for target in targets:
            recipients = self.resources(target.bare)
            if target.resource is not None:
                session = recipients.get(target.resource)
                if session is not None:
                    await session.deliver(data)
            else:
                for session in recipients.values():
                    if session.available:
                        await session.deliver(data)

    async def session_ended(self, session: Session) -> None:
        """Unregister; if it was available, tell the account's other resources and directed contacts."""
        removed = self.unbind(session)
        if not removed or not session.available or session.jid is None:
            return
        session.available = False
        unavailable = etree.Element(ns.qname(ns.CLIENT, "presence"), nsmap=ns.default(ns.CLIENT))
        unavailable.set("from", str(session.jid))
        unavailable.set("type", "unavailable")
        data = serialize(unavailable)
        for other in list(self.resources(session.jid.bare).values()):
            if other.available:
                await other.deliver(data)
        await self._tell_directed(session, data)


def _priority(stanza: etree._Element) -> int:
    """RFC 6121 §4.7.2.3: an integer from -128 to 127, 0 when absent or invalid."""
    el = stanza.find(_Q_PRIORITY)
    if el is None or not el.text:
        return 0
    try:
        value = int(el.text.strip())
    except ValueError:
        return 0
    return value if -128 <= value <= 127 else 0


ROUTER = Router()
