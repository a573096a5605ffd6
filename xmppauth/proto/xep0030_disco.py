"""XEP-0030 Service Discovery: the answers the core gives for the server and the account.

Implements §3 (disco#info: identity and features) and §4 (disco#items: none) for the server's
domain and the account's bare JID. Nodes are not the core's: a node the driver claims (e.g.
XEP-0050's command list) goes to it as an :class:`~.events.IqRequest`, any other is
``item-not-found``. States touched: BOUND (through :mod:`.rfc6120_stanzas`).
"""

from __future__ import annotations

from lxml import etree

from . import ns
from .errors import StanzaErrorCondition

INFO = ns.qname(ns.DISCO_INFO, "query")
ITEMS = ns.qname(ns.DISCO_ITEMS, "query")
_IDENTITY = ns.qname(ns.DISCO_INFO, "identity")
_FEATURE = ns.qname(ns.DISCO_INFO, "feature")


def info(
    query: etree._Element,
    category: str,
    kind: str,
    name: str | None,
    features: tuple[str, ...],
    more_identities: tuple[tuple[str, str], ...] = (),
) -> etree._Element | StanzaErrorCondition:
    """``<query/>`` with the identity, ``more_identities`` (category, type) and ``features``; a node
    is not found."""
    if query.get("node"):
        return StanzaErrorCondition.ITEM_NOT_FOUND
    result = etree.Element(INFO, nsmap=ns.default(ns.DISCO_INFO))
    identity = etree.SubElement(result, _IDENTITY, category=category, type=kind)
    if name:
        identity.set("name", name)
    for more_category, more_kind in more_identities:
        etree.SubElement(result, _IDENTITY, category=more_category, type=more_kind)
    for var in features:
        etree.SubElement(result, _FEATURE, var=var)
    return result


def items(query: etree._Element) -> etree._Element | StanzaErrorCondition:
    """An empty ``<query/>``: the server has no items; a node is not found."""
    if query.get("node"):
        return StanzaErrorCondition.ITEM_NOT_FOUND
    return etree.Element(ITEMS, nsmap=ns.default(ns.DISCO_ITEMS))
