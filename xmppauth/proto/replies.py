"""Replies to stanzas, built in one place: iq results and RFC 6120 §8.3 stanza errors.

Every stanza error the server writes, from the core, the router or a server feature, comes from
:func:`error_element`: ``<error type>`` with the defined condition, an optional ``<text
xml:lang>`` and an optional application-specific condition, in the order of RFC 6120 §8.3.2.
"""

from __future__ import annotations

from lxml import etree

from . import ns
from .errors import StanzaErrorCondition

__all__ = ["Refusal", "error_element", "iq_error", "iq_reply"]

_Q_IQ = ns.qname(ns.CLIENT, "iq")
_Q_ERROR = ns.qname(ns.CLIENT, "error")
_Q_TEXT = ns.qname(ns.STANZA_ERRORS, "text")
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


def error_element(
    condition: StanzaErrorCondition | str,
    text: str = "",
    *,
    error_type: str | None = None,
    application: tuple[str, str] | None = None,
    lang: str = "en",
) -> etree._Element:
    """RFC 6120 §8.3.2: ``<error type>``, the defined condition, a ``<text/>`` (when ``text``) in
    ``lang``, then the application-specific condition (when given).

    ``condition`` may be a condition's name as a string (the router repeats one it has checked
    against :class:`StanzaErrorCondition`); ``error_type`` defaults to the condition's usual type,
    and an empty string leaves the attribute out."""
    if isinstance(condition, StanzaErrorCondition):
        name = condition.value
        kind = condition.error_type if error_type is None else error_type
    else:
        name = condition
        kind = error_type or ""
    error = etree.Element(_Q_ERROR)
    if kind:
        error.set("type", kind)
    etree.SubElement(error, ns.qname(ns.STANZA_ERRORS, name), nsmap=ns.default(ns.STANZA_ERRORS))
    if text:
        text_el = etree.SubElement(error, _Q_TEXT, nsmap=ns.default(ns.STANZA_ERRORS))
        text_el.set(_Q_XML_LANG, lang)
        text_el.text = text
    if application is not None:
        namespace, local = application
        etree.SubElement(error, ns.qname(namespace, local), nsmap=ns.default(namespace))
    return error


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
    """The error answer to the iq ``stanza``, for ``refusal``."""
    reply = iq_reply(stanza, "error")
    reply.append(
        error_element(
            refusal.condition,
            refusal.text,
            error_type=refusal.error_type,
            application=refusal.application,
        )
    )
    return reply
