"""RFC 6121 §8.5 delivery rules for stanzas between local accounts, as a pure decision.

The router holds the live sessions; this module only says, for one stanza and the resources of
the addressed account, who gets it and whether the sender gets an error back. Cases:

- a full JID whose resource is online gets the stanza (iq, message, presence alike);
- a full JID whose resource is not online: message chat/normal falls back to the bare JID
  (§8.5.3.2.1), headline and error are dropped, groupchat is refused; presence is dropped
  (§8.5.3.2.3); an iq gets ``service-unavailable`` (§8.5.3.2.2);
- a bare JID: message chat/normal/headline goes to every available resource with a
  non-negative priority (§8.5.2.1.1 allows all of them), groupchat is refused, error is dropped;
  with no such resource, chat/normal is for offline storage (``store``: XEP-0160, §8.5.2.2.1; the
  router's keeper stores it, or refuses it with ``service-unavailable`` when the account does not
  exist or its storage is full) and headline is dropped; presence goes to every available resource
  (§8.5.2.1.2).

The same answer is given whether the account does not exist or has no session, so routing never
reveals which accounts exist.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from .errors import StanzaErrorCondition
from .xml_out import escape_attr


class Presence(Protocol):
    """What routing needs to know of a connected resource (a live session satisfies it as is)."""

    @property
    def available(self) -> bool: ...

    @property
    def priority(self) -> int: ...


@dataclass(frozen=True, kw_only=True, slots=True)
class ResourceState:
    available: bool
    priority: int


@dataclass(frozen=True, kw_only=True, slots=True)
class Delivery:
    resources: tuple[str, ...] = ()
    error: StanzaErrorCondition | None = None
    text: str = ""
    store: bool = False  # for the account's offline storage (XEP-0160)


_NOTHING = Delivery()


def decide(kind: str, stanza_type: str, resource: str | None, online: Mapping[str, Presence]) -> Delivery:
    """Who receives a stanza of ``kind``/``stanza_type`` sent to ``resource`` (None: the bare JID)."""
    if resource is not None:
        if resource in online:
            return Delivery(resources=(resource,))
        if kind == "iq":
            return Delivery(error=StanzaErrorCondition.SERVICE_UNAVAILABLE, text="no such resource")
        if kind == "presence" or stanza_type in ("headline", "error"):
            return _NOTHING
        if stanza_type == "groupchat":
            return Delivery(error=StanzaErrorCondition.SERVICE_UNAVAILABLE, text="not a group chat")
    if kind == "presence":
        return Delivery(resources=tuple(r for r, s in online.items() if s.available))
    if kind == "iq":  # pragma: no cover - the stream answers iqs to bare JIDs itself
        return Delivery(error=StanzaErrorCondition.SERVICE_UNAVAILABLE)
    if stanza_type == "error":
        return _NOTHING
    if stanza_type == "groupchat":
        return Delivery(error=StanzaErrorCondition.SERVICE_UNAVAILABLE, text="not a group chat")
    targets = tuple(r for r, s in online.items() if s.available and s.priority >= 0)
    if targets:
        return Delivery(resources=targets)
    if stanza_type == "headline":
        return _NOTHING
    return _STORE


_STORE = Delivery(store=True)


_TO = re.compile(rb"\sto\s*=")


def addressed(data: bytes, to: str) -> bytes:
    """The serialised stanza ``data`` with ``to`` as its 'to' address, unless it has one: presence the
    server broadcasts on a client's behalf is addressed to each recipient's bare JID (RFC 6121 §4.2.2,
    §4.4.2; clients file presence by it: slixmpp under the roster of its 'to'). ``to`` is escaped."""
    end = data.find(b">")
    if end < 0 or _TO.search(data, 0, end):
        return data
    if data[end - 1 : end] == b"/":
        end -= 1
    return data[:end] + f" to='{escape_attr(to)}'".encode() + data[end:]
