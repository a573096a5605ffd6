"""RFC 6120 §8 stanzas from a bound client: the checks, and the answers the core gives itself.

Implements §8.1 (the three kinds and their types), §8.1.2.1 (``from`` stamped, or refused when it
is not this session), §8.2.3 (iq: an id, one child for get/set; results and errors to the server
end here), §8.3 (errors, never in answer to an error), and RFC 6121 §8.5 (the server answers for
an account, and for nothing on behalf of other accounts). Each stanza is put to the session's
access policy (:mod:`.access`) before anything else looks at it. The core answers XEP-0199 pings,
XEP-0030 disco, XEP-0280 carbons and the legacy session iq itself; iqs in the namespaces the
driver claims go to it as :class:`~.events.IqRequest`; everything else for another address is a
:class:`~.events.StanzaReceived` for the router. States touched: BOUND.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from lxml import etree

from . import ns, xep0030_disco, xep0198_sm, xep0199_ping, xep0280_carbons, xep0352_csi
from .errors import StanzaErrorCondition, StreamError, StreamErrorCondition
from .events import ClientStateChanged, Event, IqAnswered, IqRequest, StanzaReceived
from .jid import JID, InvalidJID, parse_jid
from .rfc6120_bind import SESSION
from .rfc6120_sasl import is_auth_element

if TYPE_CHECKING:
    from .stream import C2SStream

__all__ = ["ACCOUNT_FEATURES", "NONZAS", "SERVER_FEATURES", "StanzaHandler"]

_STANZA_KINDS = frozenset({"message", "presence", "iq"})
_IQ_TYPES = frozenset({"get", "set", "result", "error"})
_PRESENCE_TYPES = frozenset(
    {"available", "unavailable", "probe", "subscribe", "subscribed", "unsubscribe", "unsubscribed", "error"}
)
NONZAS = xep0198_sm.NONZAS | xep0352_csi.NONZAS
_CLIENT = "{" + ns.CLIENT + "}"  # the stanza kinds' namespace, as a Clark-notation prefix
_CLIENT_LENGTH = len(_CLIENT)

SERVER_FEATURES = (xep0280_carbons.FEATURE, ns.DISCO_INFO, ns.DISCO_ITEMS, xep0199_ping.FEATURE)
ACCOUNT_FEATURES = (ns.DISCO_INFO, xep0199_ping.FEATURE)

# An iq the core answers: (handler, the iq types it takes; others are feature-not-implemented)
_Answer = Callable[["StanzaHandler", etree._Element, etree._Element, str], "Event | None"]


class StanzaHandler:
    """The bound stream's stanza path (the hot path: keep it lean, measure changes in bench/)."""

    __slots__ = ("stream",)

    def __init__(self, stream: C2SStream) -> None:
        self.stream = stream

    def on_stanza(self, el: etree._Element) -> Event | None:
        stream = self.stream
        tag = el.tag
        if tag in NONZAS:
            assert isinstance(tag, str)
            return self.on_nonza(el, tag)
        if stream.sm is not None:
            stream.sm.stanza_received()
        if not isinstance(tag, str) or not tag.startswith(_CLIENT):
            if is_auth_element(el):
                raise StreamError(StreamErrorCondition.POLICY_VIOLATION, "already authenticated")
            raise StreamError(StreamErrorCondition.UNSUPPORTED_STANZA_TYPE, f"unexpected element {tag}")
        kind = tag[_CLIENT_LENGTH:]
        if kind not in _STANZA_KINDS:
            raise StreamError(StreamErrorCondition.UNSUPPORTED_STANZA_TYPE, f"<{kind}/> is not a stanza")
        jid = stream.jid
        assert jid is not None
        claimed = el.get("from")
        if claimed is not None:
            # §8.1.2.1: the server stamps the full JID, or refuses a from that is not ours.
            try:
                claimed_jid: JID | None = parse_jid(claimed)
            except InvalidJID:
                claimed_jid = None
            if claimed_jid != jid and claimed_jid != jid.bare:
                raise StreamError(StreamErrorCondition.INVALID_FROM, "'from' does not match this session")
        el.set("from", str(jid))
        for name in el.keys():  # noqa: SIM118 (iterating an element gives its children)
            if name[0] == "{" and name != _XML_LANG:  # rare: a namespaced attribute on the stanza
                _drop_look_alike(el, str(name))
        stanza_type = el.get("type") or ("available" if kind == "presence" else "normal")
        raw_to = el.get("to")
        to: JID | None = None
        if raw_to is not None:
            try:
                to = parse_jid(raw_to)
            except InvalidJID as exc:
                stream.reply_error(el, StanzaErrorCondition.JID_MALFORMED, str(exc))
                return None
        if kind == "iq":
            return self.on_iq(el, stanza_type, to)
        if kind == "presence":
            return self.on_presence(el, stanza_type, to)
        if stream.access is not None and self.denied(el, kind, stanza_type, to, None):
            return None
        # message; RFC 6121 §8.1.1.1: no 'to' means the sender's own bare JID
        if to is None:
            to = jid.bare
            el.set("to", str(to))
        if not self.is_local(to):
            stream.reply_error(el, StanzaErrorCondition.REMOTE_SERVER_NOT_FOUND, "no federation")
            return None
        if to.local is None:
            stream.reply_error(el, StanzaErrorCondition.SERVICE_UNAVAILABLE, "the server takes no messages")
            return None
        return StanzaReceived(kind=kind, type=stanza_type, to=to, stanza=el)

    def on_presence(self, el: etree._Element, stanza_type: str, to: JID | None) -> Event | None:
        stream = self.stream
        if stanza_type not in _PRESENCE_TYPES:
            stream.reply_error(el, StanzaErrorCondition.BAD_REQUEST, f"unknown presence type {stanza_type}")
            return None
        if stream.access is not None and self.denied(el, "presence", stanza_type, to, None):
            return None
        if to is not None and not self.is_local(to):
            stream.reply_error(el, StanzaErrorCondition.REMOTE_SERVER_NOT_FOUND, "no federation")
            return None
        return StanzaReceived(kind="presence", type=stanza_type, to=to, stanza=el)

    def on_nonza(self, el: etree._Element, tag: str) -> Event | None:
        """XEP-0198 and XEP-0352 elements between stanzas (``tag`` is one of :data:`NONZAS`)."""
        stream = self.stream
        if tag in xep0198_sm.NONZAS:
            xep0198_sm.on_bound_nonza(stream, el, tag)
            return None
        active = tag == xep0352_csi.ACTIVE
        changed = active != stream.csi_active
        stream.csi_active = active
        return ClientStateChanged(active=active) if changed else None

    def on_iq(self, el: etree._Element, iq_type: str, to: JID | None) -> Event | None:
        stream = self.stream
        iq_id = el.get("id")
        if not iq_id or iq_type not in _IQ_TYPES:
            stream.reply_error(el, StanzaErrorCondition.BAD_REQUEST, "an iq needs an id and a valid type")
            return None
        children = [child for child in el if isinstance(child.tag, str)]
        payload = children[0] if len(children) == 1 else None
        if iq_type in ("get", "set") and payload is None:
            stream.reply_error(el, StanzaErrorCondition.BAD_REQUEST, "get and set need exactly one child")
            return None
        if stream.access is not None and self.denied(
            el, "iq", iq_type, to, payload.tag if payload is not None else None
        ):
            return None
        if to is not None and not self.is_local(to):
            stream.reply_error(el, StanzaErrorCondition.REMOTE_SERVER_NOT_FOUND, "no federation")
            return None
        if to is not None and to.resource is not None:
            return StanzaReceived(kind="iq", type=iq_type, to=to, stanza=el)
        assert stream.jid is not None
        if iq_type in ("result", "error"):
            # answers to the server or a bare JID end here (§8.2.3); the driver may be waiting for one
            if to is None or to.local is None or to == stream.jid.bare:
                return IqAnswered(stanza=el)
            return None
        assert payload is not None
        if to is None or to.local is None:
            return self.server_iq(el, iq_type, payload)
        if to == stream.jid.bare:
            return self.account_iq(el, iq_type, payload)
        if _namespace(payload) in stream.config.driver_contact_namespaces:
            return IqRequest(stanza=el, payload=payload, target="contact")
        # RFC 6121 §8.5.2.1.3: the server answers on behalf of the account and implements
        # nothing else on behalf of other accounts; the same answer whether or not the account exists.
        stream.reply_error(el, StanzaErrorCondition.SERVICE_UNAVAILABLE)
        return None

    def denied(
        self, el: etree._Element, kind: str, stanza_type: str, to: JID | None, payload: str | None
    ) -> bool:
        """Put the stanza to the access policy; on a denial answer with its error and say True."""
        stream = self.stream
        assert stream.access is not None
        denial = stream.access.check_inbound(kind, stanza_type, self.target(to), payload, to, el.get("id"))
        if denial is None:
            return False
        stream.reply_error(el, denial.condition, denial.text)  # never for error (or result) stanzas
        return True

    def target(self, to: JID | None) -> str:
        """``"server"``, ``"account"``, ``"contact"`` or ``"peer"``: see :mod:`xmppauth.proto.access`."""
        if to is None:
            return "server"
        if to.local is None:
            return "server" if to.resource is None and self.is_local(to) else "peer"
        jid = self.stream.jid
        if jid is not None and to == jid.bare:
            return "account"
        return "contact" if to.resource is None and self.is_local(to) else "peer"

    def is_local(self, jid: JID) -> bool:
        return jid.domain in self.stream.config.domains

    # ------------------------------------------------------------------ the core's own answers
    def server_iq(self, el: etree._Element, iq_type: str, payload: etree._Element) -> Event | None:
        tag = payload.tag
        config = self.stream.config
        if (
            tag in (xep0030_disco.INFO, xep0030_disco.ITEMS)
            and payload.get("node") in config.driver_disco_nodes
        ):
            return IqRequest(stanza=el, payload=payload, target="server")
        answer = _SERVER_ANSWERS.get(tag)
        if answer is None:
            return self.driver_iq(el, payload, "server")
        return answer(self, el, payload, iq_type)

    def account_iq(self, el: etree._Element, iq_type: str, payload: etree._Element) -> Event | None:
        answer = _ACCOUNT_ANSWERS.get(payload.tag)
        if answer is None:
            return self.driver_iq(el, payload, "account")
        return answer(self, el, payload, iq_type)

    def driver_iq(self, el: etree._Element, payload: etree._Element, target: str) -> Event | None:
        """An iq nobody in the core answers: the driver's if it claimed the namespace."""
        if _namespace(payload) in self.stream.config.driver_iq_namespaces:
            return IqRequest(stanza=el, payload=payload, target=target)
        self.stream.reply_error(el, StanzaErrorCondition.SERVICE_UNAVAILABLE)
        return None

    def answer_get(
        self, el: etree._Element, iq_type: str, payload: etree._Element | StanzaErrorCondition | None
    ) -> None:
        """Answer a get with ``payload``; a set on a get-only namespace is not implemented."""
        stream = self.stream
        if iq_type != "get":
            stream.reply_error(
                el, StanzaErrorCondition.FEATURE_NOT_IMPLEMENTED, "only 'get' is supported here"
            )
            return
        if isinstance(payload, StanzaErrorCondition):
            stream.reply_error(el, payload)
            return
        reply = stream.iq_result(el.get("id", ""), to=el.get("from"), sender=el.get("to"))
        if payload is not None:
            reply.append(payload)
        stream.emit_stanza(reply)

    def answer_set(self, el: etree._Element) -> None:
        """An empty result to a set the core accepts (carbons, the legacy session)."""
        self.stream.emit_stanza(self.stream.iq_result(el.get("id", ""), to=el.get("from")))

    def ping(self, el: etree._Element, payload: etree._Element, iq_type: str) -> Event | None:
        self.answer_get(el, iq_type, None)  # XEP-0199 §4.2: an empty result
        return None

    def server_info(self, el: etree._Element, payload: etree._Element, iq_type: str) -> Event | None:
        config = self.stream.config
        features = SERVER_FEATURES + config.extra_server_features
        self.answer_get(
            el, iq_type, xep0030_disco.info(payload, "server", "im", config.server_name, features)
        )
        return None

    def account_info(self, el: etree._Element, payload: etree._Element, iq_type: str) -> Event | None:
        config = self.stream.config
        features = ACCOUNT_FEATURES + config.extra_account_features
        identities = config.extra_account_identities
        self.answer_get(
            el, iq_type, xep0030_disco.info(payload, "account", "registered", None, features, identities)
        )
        return None

    def items(self, el: etree._Element, payload: etree._Element, iq_type: str) -> Event | None:
        self.answer_get(el, iq_type, xep0030_disco.items(payload))
        return None

    def session(self, el: etree._Element, payload: etree._Element, iq_type: str) -> Event | None:
        if iq_type != "set":
            return self.driver_iq(el, payload, "server")
        self.answer_set(el)
        return None

    def carbons(self, el: etree._Element, payload: etree._Element, iq_type: str) -> Event | None:
        if iq_type != "set":
            return self.driver_iq(el, payload, "server")
        # XEP-0280 §4: per session, answered with an empty result
        self.stream.carbons = payload.tag == xep0280_carbons.ENABLE
        self.answer_set(el)
        return None


_SERVER_ANSWERS: dict[str, _Answer] = {
    xep0199_ping.QUERY: StanzaHandler.ping,
    xep0030_disco.INFO: StanzaHandler.server_info,
    xep0030_disco.ITEMS: StanzaHandler.items,
    SESSION: StanzaHandler.session,
    xep0280_carbons.ENABLE: StanzaHandler.carbons,
    xep0280_carbons.DISABLE: StanzaHandler.carbons,
}
_ACCOUNT_ANSWERS: dict[str, _Answer] = {
    xep0199_ping.QUERY: StanzaHandler.ping,
    xep0030_disco.INFO: StanzaHandler.account_info,
    xep0030_disco.ITEMS: StanzaHandler.items,
}


def _namespace(payload: etree._Element) -> str:
    tag = payload.tag
    assert isinstance(tag, str)  # element children only
    return tag[1 : tag.find("}")] if tag.startswith("{") else ""


#: The stanza attributes of RFC 6120 §8.1 by local name: in another namespace (``j:from`` with ``j`` bound
#: to jabber:client, say) they are other attributes to an XML parser, but not to a client that matches
#: names as text, which would take a forged sender or id for the one the server stamped.
_STANZA_ATTRIBUTES = frozenset({"to", "from", "id", "type", "lang"})


_XML_LANG = ns.qname(ns.XML, "lang")


def _drop_look_alike(el: etree._Element, name: str) -> None:
    """Remove the namespaced attribute ``name`` if it is named like one of the stanza's own (in any
    namespace, ``xml:`` included: ``xml:from`` is no ``from`` either)."""
    if name.rpartition("}")[2] in _STANZA_ATTRIBUTES:
        del el.attrib[name]
