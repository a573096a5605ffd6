"""RFC 6120 §7 resource binding, and the legacy session iq (RFC 3921 §3, optional).

Implements §7.1-§7.7 (the bind iq, the server-chosen or client-requested resource, its errors) and
answers the session iq of older clients. Also the end of a Bind2 bind (XEP-0386 §2.4), since the
driver answers both with the same :meth:`C2SStream.bind_resource`. States touched: EXPECT_BIND →
BOUND, and TASKS/TASK → BOUND for Bind2.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lxml import etree

from . import ns, rfc6121_roster, xep0198_sm, xep0352_csi, xep0386_bind2
from .errors import StanzaErrorCondition, StreamError, StreamErrorCondition
from .events import BindRequested, Event
from .jid import JID, InvalidJID, prep_resource
from .states import State, Waiting

if TYPE_CHECKING:
    from .stream import C2SStream

__all__ = ["Binding"]

_Q_IQ = ns.qname(ns.CLIENT, "iq")
_Q_BIND = ns.qname(ns.BIND, "bind")
_Q_RESOURCE = ns.qname(ns.BIND, "resource")
_Q_JID = ns.qname(ns.BIND, "jid")
SESSION = ns.qname(ns.SESSION, "session")
_IQ_TYPES = frozenset({"get", "set", "result", "error"})

FEATURES = (
    f"<bind xmlns='{ns.BIND}'/><session xmlns='{ns.SESSION}'><optional/></session>"
    f"{xep0198_sm.FEATURE}{xep0352_csi.FEATURE}{rfc6121_roster.FEATURE}"
)


class Binding:
    """The bind in progress on one stream: by iq (RFC 6120) or inline (XEP-0386)."""

    __slots__ = ("inline", "iq_id", "stream")

    def __init__(self, stream: C2SStream) -> None:
        self.stream = stream
        self.inline = False  # the BindRequested came from Bind2
        self.iq_id = ""

    def offer(self) -> None:
        """§7.2: authenticated, the stream offers binding (and SM, CSI, the optional session)."""
        stream = self.stream
        stream.move(State.EXPECT_BIND)
        stream.emit(stream.features(FEATURES))

    def request_inline(self, request: xep0386_bind2.Bind2Request) -> BindRequested:
        stream = self.stream
        self.inline = True
        stream.wait(Waiting.BIND)
        user_agent = stream.sasl2.user_agent
        resource = xep0386_bind2.resource_for(request, user_agent, stream.authenticated_localpart or "")
        return BindRequested(resource=resource, inline=True)

    def on_element(self, el: etree._Element) -> Event | None:
        """An element in EXPECT_BIND."""
        stream = self.stream
        if el.tag == xep0198_sm.RESUME or el.tag == xep0198_sm.ENABLE:
            return xep0198_sm.before_bind(stream, el)
        if el.tag != _Q_IQ:
            raise StreamError(StreamErrorCondition.NOT_AUTHORIZED, "bind a resource first")
        iq_id = el.get("id")
        if not iq_id or el.get("type") not in _IQ_TYPES:
            stream.emit_stanza(stream.iq_error(iq_id or "", StanzaErrorCondition.BAD_REQUEST, "malformed iq"))
            return None
        children = [child for child in el if isinstance(child.tag, str)]
        payload = children[0] if len(children) == 1 else None
        if el.get("type") == "set" and payload is not None and payload.tag == _Q_BIND:
            resource_el = payload.find(_Q_RESOURCE)
            wish = (resource_el.text or "").strip() if resource_el is not None else ""
            resource: str | None = None
            if wish:
                try:
                    resource = prep_resource(wish)
                except InvalidJID as exc:
                    stream.emit_stanza(stream.iq_error(iq_id, StanzaErrorCondition.BAD_REQUEST, str(exc)))
                    return None
            self.iq_id = iq_id
            stream.wait(Waiting.BIND)
            return BindRequested(resource=resource)
        if el.get("type") == "set" and payload is not None and payload.tag == SESSION:
            stream.emit_stanza(stream.iq_result(iq_id, to=None))
            return None
        stream.emit_stanza(
            stream.iq_error(iq_id, StanzaErrorCondition.NOT_AUTHORIZED, "bind a resource first")
        )
        return None

    def bound(self, resource: str, bound_extra: str = "") -> JID:
        """The driver bound ``resource``: answer, and the stream is BOUND."""
        stream = self.stream
        assert stream.authenticated_localpart is not None
        assert stream.domain is not None
        jid = JID(stream.authenticated_localpart, stream.domain).with_resource(resource)
        stream.jid = jid
        request = stream.sasl2.bind2
        if self.inline and request is not None:
            # XEP-0386 §2.4: <success/> names the full JID and carries <bound/> with the answers
            # of the inline features; no restart, and no resource binding offered afterwards.
            self.inline = False
            bound = xep0386_bind2.bound_element(stream, request, bound_extra)
            stream.sasl2.success(str(jid), bound)
            stream.emit(stream.features(stream.bound_features()))
        else:
            reply = stream.iq_result(self.iq_id, to=None)
            bind = etree.SubElement(reply, _Q_BIND, nsmap=ns.default(ns.BIND))
            etree.SubElement(bind, _Q_JID).text = str(jid)
            stream.emit_stanza(reply)
        stream.bound()
        return jid

    def failed(self, condition: StanzaErrorCondition, text: str) -> None:
        stream = self.stream
        if self.inline:
            # Authenticated all the same; Bind2's failure travels inside <success/> and the
            # client can still bind the RFC 6120 way.
            self.inline = False
            assert stream.authenticated_localpart is not None
            stream.sasl2.success(
                f"{stream.authenticated_localpart}@{stream.domain}", xep0386_bind2.failed_element()
            )
            self.offer()
            return
        stream.emit_stanza(stream.iq_error(self.iq_id, condition, text))
