"""Answers to the iq requests handled outside the core: roster, commands, client management."""

from __future__ import annotations

from lxml import etree

from xmppauth.proto import ns
from xmppauth.proto.errors import StanzaErrorCondition

_Q_IQ = ns.qname(ns.CLIENT, "iq")
_Q_ERROR = ns.qname(ns.CLIENT, "error")
_Q_XML_LANG = ns.qname(ns.XML, "lang")


class Refusal(Exception):
    """A request answered with an RFC 6120 §8.3 stanza error.

    ``error_type`` overrides the condition's usual type; ``application`` is an application-specific
    condition as (namespace, local name), e.g. XEP-0050's ``bad-sessionid``.
    """

    def __init__(
        self,
        condition: StanzaErrorCondition,
        text: str,
        *,
        error_type: str | None = None,
        application: tuple[str, str] | None = None,
    ) -> None:
        super().__init__(text)
        self.condition = condition
        self.text = text
        self.error_type = error_type or condition.error_type
        self.application = application


def iq_reply(stanza: etree._Element, iq_type: str) -> etree._Element:
    """An iq answering ``stanza``: same id, to the sender, from what it was addressed to (if anything)."""
    reply = etree.Element(_Q_IQ, nsmap=ns.default(ns.CLIENT))
    reply.set("type", iq_type)
    reply.set("id", stanza.get("id", ""))
    if stanza.get("to"):
        reply.set("from", stanza.get("to", ""))
    if stanza.get("from"):
        reply.set("to", stanza.get("from", ""))
    return reply


def iq_error(stanza: etree._Element, refusal: Refusal) -> etree._Element:
    """RFC 6120 §8.3.2: ``<error type>`` with the condition, a text, then the application condition."""
    reply = iq_reply(stanza, "error")
    error = etree.SubElement(reply, _Q_ERROR)
    error.set("type", refusal.error_type)
    etree.SubElement(
        error, ns.qname(ns.STANZA_ERRORS, refusal.condition.value), nsmap=ns.default(ns.STANZA_ERRORS)
    )
    text = etree.SubElement(error, ns.qname(ns.STANZA_ERRORS, "text"), nsmap=ns.default(ns.STANZA_ERRORS))
    text.set(_Q_XML_LANG, "en")
    text.text = refusal.text
    if refusal.application is not None:
        namespace, local = refusal.application
        etree.SubElement(error, ns.qname(namespace, local), nsmap=ns.default(namespace))
    return reply
