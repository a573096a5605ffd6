"""XEP-0386 Bind 2: binding a resource inside SASL2, with the session's features inline.

Implements §2.1 (the ``<bind/>`` inline feature with its own inline features: stream management,
carbons, CSI), §2.2 (the client's ``<bind/>`` in ``<authenticate/>``, its ``<tag/>`` and inline
requests), §2.4 (the resource the server chooses and ``<bound/>`` inside ``<success/>``) and the
``<failed/>`` answer. States touched: TASKS/TASK (the exchange ends in a bind) → BOUND, or →
EXPECT_BIND after a failure (the client can still bind the RFC 6120 way; :mod:`.rfc6120_bind`).
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lxml import etree

from . import ns, xep0280_carbons, xep0352_csi
from .events import UserAgent
from .jid import InvalidJID, prep_resource
from .xep0198_sm import StreamManagement

if TYPE_CHECKING:
    from .stream import C2SStream

__all__ = ["Bind2Request", "bound_element", "failed_element", "parse", "resource_for"]

_Q_BIND = ns.qname(ns.BIND2, "bind")
_Q_TAG = ns.qname(ns.BIND2, "tag")
_Q_SM_ENABLE = ns.qname(ns.SM, "enable")
_MAX_TAG = 64

ADVERTISEMENT = (
    f"<bind xmlns='{ns.BIND2}'><inline>"
    f"<feature var='{ns.SM}'/><feature var='{ns.CARBONS}'/><feature var='{ns.CSI}'/>"
    "</inline></bind>"
)


@dataclass(frozen=True, kw_only=True, slots=True)
class Bind2Request:
    tag: str | None  # prepared (RFC 7622 §3.4) and cut to _MAX_TAG characters
    tag_problem: str = ""  # why the <tag> cannot go into a resource: the <authenticate/> is refused
    sm_enable: bool = False
    carbons: bool = False
    csi_active: bool | None = None


def parse(authenticate: etree._Element) -> Bind2Request | None:
    """The client's ``<bind/>`` in ``<authenticate/>``, or None when it sent none."""
    bind = authenticate.find(_Q_BIND)
    if bind is None:
        return None
    csi: bool | None = None
    if bind.find(xep0352_csi.ACTIVE) is not None:
        csi = True
    elif bind.find(xep0352_csi.INACTIVE) is not None:
        csi = False
    tag, tag_problem = _tag(bind)
    return Bind2Request(
        tag=tag,
        tag_problem=tag_problem,
        sm_enable=bind.find(_Q_SM_ENABLE) is not None,
        carbons=bind.find(xep0280_carbons.ENABLE) is not None,
        csi_active=csi,
    )


def resource_for(request: Bind2Request, user_agent: UserAgent | None, localpart: str) -> str:
    """§2.4: the client's tag, then a suffix stable per account and user-agent id, or random
    without an id. The suffix is a hash: the id itself must never be revealed, and with the
    account hashed in, one installation cannot be linked across the accounts it uses."""
    if user_agent is not None and user_agent.id:
        material = f"xmppauth-bind2\0{localpart}\0{user_agent.id}".encode()
        digest = hashlib.sha256(material).digest()[:9]
        suffix = base64.urlsafe_b64encode(digest).decode()
    else:
        suffix = secrets.token_urlsafe(9)
    tag = request.tag
    return f"{tag}~{suffix}" if tag else suffix


def bound_element(stream: C2SStream, request: Bind2Request, extra: str = "") -> str:
    """§2.4: switch on what the client asked inline and say so in ``<bound/>``, after ``extra`` (the
    driver's: the archive's ``<metadata/>``, which §2.4 says the element SHOULD hold)."""
    answers = extra
    if request.sm_enable:
        stream.sm = StreamManagement.enable(resume=True, max_seconds=stream.config.sm_resume_seconds)
        answers += stream.sm.enabled_element()
    if request.carbons:
        stream.carbons = True  # carbons enable succeeds, no answer needed
    if request.csi_active is not None:
        stream.csi_active = request.csi_active
    return f"<bound xmlns='{ns.BIND2}'>{answers}</bound>" if answers else f"<bound xmlns='{ns.BIND2}'/>"


def failed_element() -> str:
    return f"<failed xmlns='{ns.BIND2}'/>"


def _tag(bind: etree._Element) -> tuple[str | None, str]:
    """The ``<tag>``, prepared as a resourcepart, or why it cannot be one.

    §2.2.1: the tag "SHOULD be included as-is in the final resource identifier, subject to the
    necessary validation for resource identifiers" (RFC 7622 §3.4, OpaqueString). A tag that
    fails refuses the <authenticate/> with the reason, rather than binding a resource without it.
    The whole tag is checked (so at most 1023 bytes); at most 64 characters of it go into the resource.
    """
    child = bind.find(_Q_TAG)
    text = (child.text or "").strip() if child is not None else ""
    if not text:
        return None, ""
    try:
        tag = prep_resource(text)
        if len(tag) > _MAX_TAG:
            tag = prep_resource(tag[:_MAX_TAG])  # a cut can strand a context-bound code point
    except InvalidJID as exc:
        return None, f"the Bind2 <tag> cannot be part of a resource: {exc}"
    return tag, ""
