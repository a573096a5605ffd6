"""XEP-0198 Stream Management: counters, the unacknowledged queue and the nonzas (sans-IO).

Implements §3 (enabling, also inline in Bind2 and resuming inline in SASL2, XEP-0388), §4
(``<r/>``, ``<a/>`` and ``h``), §5 (resumption) and §6 (what is left unacknowledged goes back to
the driver). States touched: EXPECT_BIND (``<resume/>`` instead of binding; ``<enable/>`` is too
early), TASKS/TASK (a ``<resume/>`` in ``<authenticate/>``) → BOUND, and BOUND (the nonzas).

One :class:`StreamManagement` belongs to a session, not to a connection: when a client resumes,
the new stream adopts the old one's object with its counters and queue.

- ``inbound`` counts stanzas received from the client since SM was enabled; it is what we
  answer to ``<r/>`` and what goes into ``<resumed h=…/>``.
- ``unacked`` holds the stanzas sent to the client that it has not acknowledged yet, oldest
  first; ``outbound_acked`` is the client's last ``h``. All counters wrap at 2^32 (§4).
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from lxml import etree

from . import ns
from .errors import LocalProtocolError, StreamError, StreamErrorCondition
from .events import ResumeRequested
from .jid import JID
from .numbers import parse_uint
from .states import Waiting
from .xml import escape_text

if TYPE_CHECKING:
    from .stream import C2SStream

NS = ns.SM
R = ns.qname(NS, "r")
A = ns.qname(NS, "a")
ENABLE = ns.qname(NS, "enable")
RESUME = ns.qname(NS, "resume")
NONZAS = frozenset({R, A, ENABLE, RESUME})
FEATURE = f"<sm xmlns='{NS}'/>"
WRAP = 2**32
# Ask for an acknowledgement after this many unacknowledged stanzas; the driver also asks once a
# few seconds have passed with stanzas unacknowledged (``request_due``), so quiet sessions settle too.
REQUEST_EVERY = 5
# The most stanzas we keep for a client that does not acknowledge; beyond it the stream ends.
MAX_UNACKED = 1000


@dataclass(slots=True)
class StreamManagement:
    resume_id: str | None
    max_seconds: int
    inbound: int = 0
    outbound_acked: int = 0
    unacked: deque[bytes] = field(default_factory=deque)
    _requested_at: int = 0  # len(unacked) when we last sent <r/>

    @classmethod
    def enable(cls, *, resume: bool, max_seconds: int) -> StreamManagement:
        return cls(resume_id=secrets.token_urlsafe(18) if resume else None, max_seconds=max_seconds)

    @property
    def outbound(self) -> int:
        return (self.outbound_acked + len(self.unacked)) % WRAP

    def enabled_element(self) -> str:
        if self.resume_id is None:
            return f"<enabled xmlns='{NS}'/>"
        return f"<enabled xmlns='{NS}' id='{self.resume_id}' resume='true' max='{self.max_seconds}'/>"

    def stanza_received(self) -> None:
        self.inbound = (self.inbound + 1) % WRAP

    def stanza_sent(self, data: bytes) -> bool:
        """Queue a sent stanza; True when it is time to ask the client for an acknowledgement."""
        if len(self.unacked) >= MAX_UNACKED:
            raise StreamError(StreamErrorCondition.RESOURCE_CONSTRAINT, "too many unacknowledged stanzas")
        self.unacked.append(data)
        if len(self.unacked) - self._requested_at >= REQUEST_EVERY:
            self._requested_at = len(self.unacked)
            return True
        return False

    def request_due(self) -> bool:
        """Stanzas were sent since we last asked; mark them asked for (the caller sends ``<r/>``)."""
        if len(self.unacked) > self._requested_at:
            self._requested_at = len(self.unacked)
            return True
        return False

    def check_acknowledgement(self, h_text: str | None) -> tuple[int, int]:
        """``(h, how many it newly acknowledges)``, or the StreamError :meth:`acknowledge` would
        raise; changes nothing (a resume checks ``h`` before it takes the session over)."""
        h = _parse_h(h_text)
        newly = (h - self.outbound_acked) % WRAP
        if newly > len(self.unacked):
            # XEP-0198 §4: an h above what we sent is a protocol violation
            raise StreamError(
                StreamErrorCondition.UNDEFINED_CONDITION,
                f"handled-count-too-high: h={h}, send-count={self.outbound}",
            )
        return h, newly

    def acknowledge(self, h_text: str | None) -> None:
        """Apply the client's ``h`` (from ``<a/>`` or a resume); §4: h counts what it handled."""
        h, newly = self.check_acknowledgement(h_text)
        for _ in range(newly):
            self.unacked.popleft()
        self.outbound_acked = h
        self._requested_at = max(0, self._requested_at - newly)

    def acknowledged_through(self, mark: int) -> bool:
        """Whether the client has acknowledged every stanza up to the ``mark`` (an :attr:`outbound`
        read after the last of them was sent), counting modulo 2**32 as §4 does."""
        return (self.outbound_acked - mark) % WRAP < WRAP // 2

    def withhold(self, keep: Callable[[bytes], bool]) -> list[bytes]:
        """Take out of the unacknowledged queue what ``keep`` refuses, before a resume retransmits
        it (the session may no longer receive it). The client never sees these, so the counts stay
        in step: ours and its own both count only what is retransmitted."""
        kept: deque[bytes] = deque()
        withheld: list[bytes] = []
        for data in self.unacked:
            (kept if keep(data) else withheld).append(data)
        if withheld:
            self.unacked = kept
            self._requested_at = min(self._requested_at, len(kept))
        return withheld

    def ack_element(self) -> str:
        return f"<a xmlns='{NS}' h='{self.inbound}'/>"

    def resumed_element(self) -> str:
        return f"<resumed xmlns='{NS}' h='{self.inbound}' previd='{self.resume_id}'/>"


def request_element() -> str:
    return f"<r xmlns='{NS}'/>"


def failed_element(condition: str = "item-not-found", h: int | None = None, text: str = "") -> str:
    h_attr = f" h='{h}'" if h is not None else ""
    text_el = f"<text xmlns='{ns.STANZA_ERRORS}' xml:lang='en'>{text}</text>" if text else ""
    return f"<failed xmlns='{NS}'{h_attr}><{condition} xmlns='{ns.STANZA_ERRORS}'/>{text_el}</failed>"


def _parse_h(text: str | None) -> int:
    value = parse_uint(text)
    if value is None:
        raise StreamError(StreamErrorCondition.INVALID_XML, "'h' must be a number")
    if value >= WRAP:
        raise StreamError(StreamErrorCondition.INVALID_XML, "'h' must be between 0 and 2^32-1")
    return value


# ---------------------------------------------------------------------- the stream's side
def on_bound_nonza(stream: C2SStream, el: etree._Element, tag: str) -> None:
    """§4 ``<r/>`` and ``<a/>``, and §3/§5 elements that come too late, on a bound stream."""
    sm = stream.sm
    if tag in (R, A):
        if sm is None:
            raise StreamError(
                StreamErrorCondition.UNSUPPORTED_STANZA_TYPE, "stream management is not enabled"
            )
        if tag == R:
            stream.emit(sm.ack_element().encode())
        else:
            sm.acknowledge(el.get("h"))
    elif tag == ENABLE:
        if sm is not None:
            stream.emit(failed_element("unexpected-request", text="already enabled").encode())
            return
        resume = el.get("resume") in ("true", "1")
        stream.sm = StreamManagement.enable(resume=resume, max_seconds=stream.config.sm_resume_seconds)
        stream.emit(stream.sm.enabled_element().encode())
    elif tag == RESUME:
        stream.emit(failed_element("unexpected-request", text="this stream is bound").encode())
    else:  # pragma: no cover - the caller passes one of NONZAS
        raise LocalProtocolError(f"not a stream management element: {tag}")


def before_bind(stream: C2SStream, el: etree._Element) -> ResumeRequested | None:
    """§5 ``<resume/>`` instead of binding (a request for the driver); §3 ``<enable/>`` is too early."""
    if el.tag == ENABLE:
        stream.emit(failed_element("unexpected-request", text="bind a resource first").encode())
        return None
    previd = el.get("previd")
    if not previd:
        stream.emit(failed_element("bad-request", text="previd is missing").encode())
        return None
    stream.sasl2.resume_inline = False
    stream.wait(Waiting.RESUME)
    return ResumeRequested(previd=previd, h=el.get("h"), inline=False)


def inline_resume(authenticate: etree._Element) -> tuple[str, str | None] | None:
    """XEP-0388 / §5: the ``<resume previd h/>`` child of ``<authenticate/>``, if any."""
    resume = authenticate.find(RESUME)
    if resume is None or not resume.get("previd"):
        return None
    return resume.get("previd", ""), resume.get("h")


def resumed(
    stream: C2SStream, jid: JID, sm: StreamManagement, h: str | None, keep: Callable[[bytes], bool] | None
) -> list[bytes]:
    """§5: adopt the hibernated session's JID and counters, answer, retransmit (see
    :meth:`C2SStream.resume_succeeded`); returns what ``keep`` refused."""
    if h is not None:
        sm.acknowledge(h)
    withheld = sm.withhold(keep) if keep is not None else []
    stream.jid = jid
    stream.sm = sm
    if stream.sasl2.resume_inline:
        # §9 / XEP-0388: <resumed/> inside <success/>, Bind2 skipped, no features.
        stream.sasl2.resume_inline = False
        stream.binding.inline = False
        stream.sasl2.success(str(jid), sm.resumed_element())
    else:
        stream.emit(sm.resumed_element().encode())
    stream.bound()
    for data in sm.unacked:
        stream.emit(data)
    return withheld


def resume_failed(stream: C2SStream, text: str) -> None:
    """§5: ``<failed/>``; inline, the login goes on to Bind2 or to RFC 6120 binding."""
    failed = failed_element("item-not-found", text=escape_text(text))
    sasl2 = stream.sasl2
    if not sasl2.resume_inline:
        stream.emit(failed.encode())
        return
    sasl2.resume_inline = False
    sasl2.failed_inline = failed
    stream.push_event(sasl2.bind_or_succeed())
