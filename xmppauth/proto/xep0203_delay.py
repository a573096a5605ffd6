"""XEP-0203 Delayed Delivery: the ``<delay/>`` a stored message carries when it is delivered late.

Implements §3 (``<delay xmlns='urn:xmpp:delay' from stamp/>``, ``stamp`` an XEP-0082 DateTime in UTC).
States touched: none; the driver stamps messages it takes out of the offline store.
"""

from __future__ import annotations

from lxml import etree

from . import ns
from .xml import serialize
from .xml_names import parse_element

__all__ = ["with_delay"]

_Q_DELAY = ns.qname(ns.DELAY, "delay")


def with_delay(data: bytes, domain: str, stamp: str) -> bytes:
    """The serialised stanza ``data`` with a ``<delay/>`` saying ``domain`` held it since ``stamp``."""
    stanza = parse_element(data)  # a stored stanza: its names in a dictionary of its own (xml_names.py)
    delay = etree.SubElement(stanza, _Q_DELAY, nsmap=ns.default(ns.DELAY))
    delay.set("from", domain)
    delay.set("stamp", stamp)
    return serialize(stanza)
