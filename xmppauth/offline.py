"""What becomes of stanzas a session can no longer take: kept offline, or answered with an error.

When a session ends with stanzas the client never acknowledged (XEP-0198 §6) or that were held
for an inactive client (XEP-0352), and when a resumed session's grant no longer lets it receive
some of them, they are not dropped: a message with a body goes to the offline store, readdressed
to the account's bare JID, and comes out marked with when the server received it (XEP-0203); an
iq request is answered ``service-unavailable`` for its sender. Presence, errors, groupchat, headlines
(XEP-0160 §3: not stored) and messages without a body (chat states, receipts) are dropped, as RFC 6121
allows.
"""

from __future__ import annotations

import contextlib
import logging
from copy import deepcopy
from dataclasses import dataclass, field

from django.conf import settings
from lxml import etree

from sessions_acl.access import SessionAccess
from xmppauth import blocking, services
from xmppauth.proto import ns
from xmppauth.proto.errors import StanzaErrorCondition
from xmppauth.proto.jid import JID, InvalidJID
from xmppauth.proto.xep0198_sm import StreamManagement
from xmppauth.proto.xml import serialize
from xmppauth.proto.xml_names import parse_element
from xmppauth.router import ROUTER

log = logging.getLogger("xmppauth.c2s")

_Q_BODY = ns.qname(ns.CLIENT, "body")
_Q_STORE = ns.qname(ns.HINTS, "store")  # XEP-0334 hints
_Q_NO_STORE = ns.qname(ns.HINTS, "no-store")
_UNKNOWN = (StanzaErrorCondition.SERVICE_UNAVAILABLE, "no account of this server has that address")
_REFUSED = (StanzaErrorCondition.SERVICE_UNAVAILABLE, "")
_NOT_STORED = (
    StanzaErrorCondition.SERVICE_UNAVAILABLE,
    "the recipient is offline and the message asked not to be stored (XEP-0334 no-store)",
)


class Keeper:
    """The router's keeper (``Router.keeper``): a chat or normal message for a local account with no
    available resource is stored (XEP-0160) and delivered, stamped with when it came (XEP-0203), to the
    account's next resource that sends available presence with a non-negative priority.

    A message without a body (a chat state, a receipt) is not worth storing and is dropped, unless it
    carries XEP-0334's ``<store/>``; one with ``<no-store/>`` is refused. An account stores at most
    ``XMPP_MAX_OFFLINE_MESSAGES``, of ``XMPP_MAX_OFFLINE_BYTES`` in all; beyond that, and for an address
    that is no account here, the sender gets ``service-unavailable`` (RFC 6121 §8.5.2.2.1, XEP-0160 §3)
    with a text that says which."""

    async def keep(self, to: JID, stanza: etree._Element) -> tuple[StanzaErrorCondition, str] | None:
        if to.domain != settings.XMPP_DOMAIN or not to.local:
            return _UNKNOWN
        if stanza.find(_Q_NO_STORE) is not None:
            return _NOT_STORED
        if stanza.find(_Q_BODY) is None and stanza.find(_Q_STORE) is None:
            return None
        with contextlib.suppress(InvalidJID):
            if await blocking.refuses_stored(to, JID.parse(stanza.get("from", ""))):
                return _REFUSED  # XEP-0191 §3.3: as if nobody were there
        copy = deepcopy(stanza)  # the sender's stanza stays as it came (an error may quote it)
        copy.set("to", str(to))
        limits = bounds()
        data = serialize(copy)
        outcome = await services.store_offline_message(to.local, data, limits.messages, limits.size)
        if outcome == "unknown":
            return _UNKNOWN
        if outcome == "full":
            return _full(to, limits)
        return None


def bounds(besides: int | None = None) -> services.StoreBounds:
    """The bounds of an account's store (settings); ``besides``: a session whose taken rows go."""
    return services.StoreBounds(
        int(settings.XMPP_MAX_OFFLINE_MESSAGES), int(settings.XMPP_MAX_OFFLINE_BYTES), besides
    )


def _full(to: JID, limits: services.StoreBounds) -> tuple[StanzaErrorCondition, str]:
    log.info(
        "offline storage of %s is full (%d messages, %d bytes): a message was refused",
        to.bare,
        limits.messages,
        limits.size,
    )
    return (
        StanzaErrorCondition.SERVICE_UNAVAILABLE,
        f"the recipient is offline and cannot store more messages (at most {limits.messages}, "
        f"{limits.size} bytes in all)",
    )


async def _return_full(stanzas: list[bytes], jid: JID) -> None:
    """Messages that did not fit in ``jid``'s store go back to their senders, saying why."""
    if not stanzas:
        return
    condition, text = _full(jid, bounds())
    for data in stanzas:
        await ROUTER.return_error(parse_element(data), condition, text)


async def store_or_bounce(
    pending: list[bytes],
    jid: JID,
    access: SessionAccess | None,
    *,
    what: str,
    peer: str,
    besides: int | None = None,
) -> None:
    """Messages of ``pending`` (serialised for the session ``jid``) to the offline store within its
    bounds (``besides``: the session whose taken rows go after this), the rest back to their senders;
    iq requests answered with an error; ``what`` and ``peer`` are for the log."""
    if not pending:
        return
    keep, bounces = unacked_disposition(pending, jid)
    if keep:
        stored = await services.store_offline(jid.local or "", keep, bounds(besides))
        log.info("%s: %d %s message(s) kept offline for %s", peer, stored, what, jid.bare)
        await _return_full(keep[stored:], jid)
    for stanza in bounces:
        if access is not None:  # answered here: a late answer of the session's own would be a second
            with contextlib.suppress(InvalidJID):  # the sender's core stamped it
                access.answered_for_it(JID.parse(stanza.get("from", "")), stanza.get("id"))
        await ROUTER.return_error(stanza, StanzaErrorCondition.SERVICE_UNAVAILABLE, "the recipient went away")


async def keep_now(data: bytes, jid: JID) -> bool:
    """Store ``data`` (a stanza for the session ``jid``) at once if it is a message worth keeping, or
    return it to its sender when the store is full: whether it was dealt with (other stanzas are the
    caller's to hold). Found by a black-box attack: messages for a hibernating session went to the store
    whatever it held (1,000 messages, 257 MB, for a bound of 16 MiB)."""
    keep, _ = unacked_disposition([data], jid)
    if not keep:
        return False
    if not await services.store_offline(jid.local or "", keep, bounds()):
        await _return_full(keep, jid)
    return True


def unacked_disposition(pending: list[bytes], jid: JID) -> tuple[list[bytes], list[etree._Element]]:
    """Split unacknowledged stanzas: messages to keep offline (readdressed to the bare JID),
    iq requests to answer with an error; presence and errors are dropped, as RFC 6121 allows."""
    keep: list[bytes] = []
    bounces: list[etree._Element] = []
    for data in pending:
        try:
            stanza = parse_element(data)  # names in a dictionary of its own (proto/xml_names.py)
        except etree.XMLSyntaxError:  # pragma: no cover - we serialised it ourselves
            continue
        kind = etree.QName(stanza).localname
        stanza_type = stanza.get("type", "normal")
        if kind == "message" and stanza_type not in ("error", "groupchat", "headline"):  # XEP-0160 §3
            if stanza.find(ns.qname(ns.CLIENT, "body")) is None:
                continue  # chat states and receipts without a body are not worth keeping
            stanza.set("to", str(jid.bare))
            keep.append(serialize(stanza))
        elif kind == "iq" and stanza_type in ("get", "set"):
            bounces.append(stanza)
    return keep, bounces


@dataclass
class Taken:
    """The stored messages one session was sent and its client has not acknowledged (XEP-0198).

    They stay in the store, taken by the session (``services.take_offline``), so that a process
    killed meanwhile loses none of them: they leave it when the client acknowledges the count
    ``mark``, or are stored again (with their delay stamp) when the session ends. It moves with the
    session when a resume takes it over.
    """

    ids: list[int] = field(default_factory=list)
    mark: int | None = None  # the stream management count that acknowledges them all

    async def forget_if_acknowledged(self, sm: StreamManagement | None) -> None:
        """The client acknowledged every stored message it was sent: they leave the store."""
        if sm is None or self.mark is None or not sm.acknowledged_through(self.mark):
            return
        ids, self.ids, self.mark = self.ids, [], None
        await services.forget_offline(ids)

    async def forget_all(self) -> None:
        """The session ended and what it had not acknowledged is stored again: the taken rows go."""
        ids, self.ids, self.mark = self.ids, [], None
        if ids:
            await services.forget_offline(ids)

    async def store_copies(self, unacked: list[bytes], mark: int, jid: JID, session_id: int) -> None:
        """A copy of the messages among ``unacked`` (what a session held when it began to hibernate)
        goes to the store, taken by the session, acknowledged with the count ``mark``."""
        keep, _ = unacked_disposition(unacked, jid)
        if not keep:
            return
        self.ids.extend(await services.store_offline_taken(jid.local or "", keep, session_id))
        self.mark = mark  # no earlier than any mark before: counts only grow


async def keep_while_away(data: bytes, jid: JID, peer: str) -> bool:
    """A stanza for the hibernating session ``jid``: to the store at once if it is a message worth
    keeping, not into memory where a crashed process would lose it. True when it went; False for
    other stanzas, and when the store failed (logged: it then waits in memory)."""
    try:
        return await keep_now(data, jid)
    except Exception:
        log.warning("%s: cannot store a message for %s: it waits in memory", peer, jid, exc_info=True)
        return False


async def put_back(jid: JID, rest: list[tuple[int, bytes, str]], holder: int | None) -> None:
    """Stored messages taken for a session that were not sent to it (it ended or went on
    elsewhere) are free again for the next session: released if still stored, else stored again."""
    if holder is not None:
        await services.release_offline([id_ for id_, _, _ in rest])
    else:
        await services.store_offline(jid.local or "", [data for _, data, _ in rest])
