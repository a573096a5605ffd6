"""XEP-0191 Blocking Command: the blocklist requests, their pushes, JID matching and what a block does.

Implements (XEP-0191 1.3) §3.2 (``<blocklist/>`` get and its result), §3.3 (``<block/>``: at
least one item, else ``bad-request``), §3.4 and §3.5 (``<unblock/>``, empty for "unblock all"),
the pushes of §3.3-§3.5, the handling of stanzas from and to a blocked JID (§3.3, below) and the
JID matching of §6, which is XEP-0016's: an item ``user@domain/resource`` or ``domain/resource``
matches only that full JID, ``user@domain`` matches it and all its resources, ``domain`` matches
the domain and every JID at it. Pure: the driver keeps the list, decides which sessions asked for
it (they get the pushes) and sends the unavailable/current presence §3.3 and §3.4 require.

Items are kept as :meth:`JID.parse` prepares them (``str(JID.parse(value))``), which is what
:func:`parse` returns; :func:`match_keys` then gives the few strings a stored item must equal to
block a given sender, so the store can be asked with one indexed lookup.

Stanzas from a blocked JID (§3.3, the list after "the user's server shall handle the stanza"):
presence is dropped without an answer (MUST NOT respond); a message is answered with an error,
SHOULD be ``service-unavailable``, except one of type ``error``, which is dropped (RFC 6120 §8.3.1:
an error is never answered with an error); an iq get or set MUST get an error, SHOULD be
``service-unavailable``; an iq result or error is dropped. Stanzas *to* a blocked JID from the
account are not routed and come back ``not-acceptable`` with ``<blocked/>`` (§3.3 example: type
``cancel``). §5 (note): blocking never applies between the account's own resources.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Literal

from lxml import etree

from . import ns
from .errors import StanzaErrorCondition
from .jid import JID, InvalidJID, parse_jid
from .replies import Refusal, error_element
from .xml_out import escape_attr

__all__ = [
    "BLOCK",
    "BLOCKLIST",
    "FEATURE",
    "INBOUND_ERROR",
    "NS",
    "NS_ERRORS",
    "UNBLOCK",
    "Block",
    "GetList",
    "Request",
    "Unblock",
    "blocked",
    "blocked_error",
    "blocked_refusal",
    "blocklist_result",
    "check_size",
    "inbound_decision",
    "match_keys",
    "matches",
    "parse",
    "push",
]

NS = "urn:xmpp:blocking"
NS_ERRORS = "urn:xmpp:blocking:errors"
FEATURE = NS  # §3.1: the server's disco#info feature

BLOCKLIST = ns.qname(NS, "blocklist")
BLOCK = ns.qname(NS, "block")
UNBLOCK = ns.qname(NS, "unblock")
_ITEM = ns.qname(NS, "item")

# What a stanza from a blocked JID gets when it gets an error (§3.3: "SHOULD be service-unavailable").
INBOUND_ERROR = StanzaErrorCondition.SERVICE_UNAVAILABLE
_BLOCKED_TEXT = "you have blocked this address; unblock it to reach it again"


@dataclass(frozen=True, slots=True)
class GetList:
    """§3.2: the client asks for the blocklist."""


@dataclass(frozen=True, slots=True)
class Block:
    """§3.3: block ``jids`` (prepared, in request order, without repeats; never empty)."""

    jids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Unblock:
    """§3.4: unblock ``jids`` (prepared, without repeats); §3.5: empty means unblock everyone."""

    jids: tuple[str, ...] = ()

    @property
    def everything(self) -> bool:
        return not self.jids


Request = GetList | Block | Unblock


def parse(iq_type: str, payload: etree._Element) -> Request:
    """The request in ``payload``, the child of an iq of type ``iq_type`` in :data:`NS`.

    Raises :class:`Refusal`: ``bad-request`` for a request under the wrong iq type, an empty
    ``<block/>`` (§3.3), an ``<item/>`` without a ``jid`` or a stray element of this namespace;
    ``jid-malformed`` for an item that is not a JID; ``feature-not-implemented`` for an element
    XEP-0191 does not define.
    """
    tag = payload.tag
    if tag not in (BLOCKLIST, BLOCK, UNBLOCK):
        raise Refusal(
            StanzaErrorCondition.FEATURE_NOT_IMPLEMENTED,
            f"<{etree.QName(payload).localname}/> is not a request of {NS}",
        )
    want = "get" if tag == BLOCKLIST else "set"
    if iq_type != want:
        raise Refusal(
            StanzaErrorCondition.BAD_REQUEST,
            f"<{etree.QName(payload).localname}/> goes in an iq of type {want}, not {iq_type!r}",
        )
    if tag == BLOCKLIST:
        return GetList()
    jids = _items(payload)
    if tag == UNBLOCK:
        return Unblock(jids)
    if not jids:
        raise Refusal(StanzaErrorCondition.BAD_REQUEST, "<block/> must contain at least one <item/>")
    return Block(jids)


def _items(payload: etree._Element) -> tuple[str, ...]:
    """The prepared ``jid`` of each ``<item/>``, first occurrence kept; other namespaces are ignored."""
    found: dict[str, None] = {}
    name = etree.QName(payload).localname
    for position, child in enumerate(payload.iterchildren("{*}*"), start=1):
        if child.tag != _ITEM:
            if etree.QName(child).namespace == NS:
                raise Refusal(
                    StanzaErrorCondition.BAD_REQUEST,
                    f"<{name}/> holds only <item/> elements, not <{etree.QName(child).localname}/>",
                )
            continue
        value = child.get("jid")
        if value is None:
            raise Refusal(StanzaErrorCondition.BAD_REQUEST, f"<item/> number {position} has no jid attribute")
        try:
            prepared = str(parse_jid(value))
        except InvalidJID as exc:
            raise Refusal(
                StanzaErrorCondition.JID_MALFORMED, f"<item/> number {position} is not a JID: {exc}"
            ) from None
        found[prepared] = None
    return tuple(found)


def check_size(stored: Collection[str], request: Block, max_items: int, max_bytes: int) -> None:
    """Refuse a block that would take the list past ``max_items`` JIDs, the server's own limit, or its
    ``<blocklist/>`` answer past ``max_bytes`` (the answer is one stanza: xmppauth/sending.py).

    XEP-0191 sets no limit and no error for it. ``policy-violation`` (type modify) is used: the
    limit is local policy and the client can comply by unblocking first, where
    ``resource-constraint`` would say "try again later", which would not help. JIDs already on the
    list do not count twice.
    """
    have = set(stored)
    added = [jid for jid in request.jids if jid not in have]
    total = len(have) + len(added)
    if total > max_items:
        raise Refusal(
            StanzaErrorCondition.POLICY_VIOLATION,
            f"a blocklist holds at most {max_items} addresses and this would make it {total}",
        )
    size = sum(_ITEM_BYTES + len(escape_attr(jid).encode()) for jid in (*have, *added))
    if size > max_bytes:
        raise Refusal(
            StanzaErrorCondition.POLICY_VIOLATION,
            f"the blocklist would take {size} bytes to send, more than {max_bytes}: unblock some first",
        )


_ITEM_BYTES = len("<item jid=''/>")


def match_keys(jid: JID) -> tuple[str, ...]:
    """The item strings that block ``jid`` (§6): its full JID, its bare JID and its domain.

    ``domain/resource`` needs no key of its own: it can only match a JID with no localpart, whose
    full JID it already is.
    """
    keys = dict.fromkeys((str(jid), str(jid.bare), jid.domain))
    return tuple(keys)


def matches(item: str, jid: JID) -> bool:
    """Whether the blocklist ``item`` covers ``jid`` by the §6 rules; an item that is not a JID
    matches nothing."""
    try:
        prepared = str(parse_jid(item))
    except InvalidJID:
        return False
    return prepared in match_keys(jid)


def blocked(items: Collection[str], jid: JID, *, owner: JID | None = None) -> bool:
    """Whether any of ``items`` (prepared, as :func:`parse` gives them) blocks ``jid``.

    With ``owner`` (the account), the account's own resources are never blocked (§5 note), even
    by an item naming its domain. A set makes this three lookups.
    """
    if owner is not None and jid.bare == owner.bare:
        return False
    return any(key in items for key in match_keys(jid))


def _list_element(tag: str, jids: Iterable[str]) -> etree._Element:
    element = etree.Element(tag, nsmap=ns.default(NS))
    for jid in jids:
        etree.SubElement(element, _ITEM).set("jid", jid)
    return element


def blocklist_result(items: Iterable[str]) -> etree._Element:
    """§3.2: the ``<blocklist/>`` of the iq result, one ``<item/>`` per blocked JID (maybe none)."""
    return _list_element(BLOCKLIST, items)


def push(block: bool, jids: Iterable[str]) -> etree._Element:
    """§3.3-§3.5: the payload of the iq set pushed to each of the account's sessions that asked for
    the blocklist: ``<block/>`` with the JIDs just blocked, or ``<unblock/>`` with those just
    unblocked (none: everything was unblocked, §3.5)."""
    element = _list_element(BLOCK if block else UNBLOCK, jids)
    if block and len(element) == 0:
        raise ValueError("a block push names at least one JID")
    return element


def blocked_refusal() -> Refusal:
    """§3.3: the answer to the account's own stanza addressed to a JID it blocked."""
    return Refusal(
        StanzaErrorCondition.NOT_ACCEPTABLE,
        _BLOCKED_TEXT,
        error_type="cancel",  # as in the §3.3 example, not RFC 6120's usual "modify"
        application=(NS_ERRORS, "blocked"),
    )


def blocked_error() -> etree._Element:
    """§3.3: ``<error type='cancel'><not-acceptable/><text/><blocked xmlns='urn:xmpp:blocking:errors'/>``
    for a stanza that is not an iq (an iq gets :func:`blocked_refusal` through ``iq_error``)."""
    refusal = blocked_refusal()
    return error_element(
        refusal.condition, refusal.text, error_type=refusal.error_type, application=refusal.application
    )


def inbound_decision(kind: str, stanza_type: str) -> Literal["drop", "error"]:
    """§3.3: what happens to a stanza of ``kind`` (iq, message, presence) and ``stanza_type`` (the
    ``type`` attribute, "" when absent) from a blocked JID. "error" means :data:`INBOUND_ERROR`."""
    if kind == "presence":
        return "drop"
    if kind == "message":
        return "drop" if stanza_type == "error" else "error"
    if kind == "iq":
        return "error" if stanza_type in ("get", "set") else "drop"
    raise ValueError(f"not a stanza kind: {kind!r}")
