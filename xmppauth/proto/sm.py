"""XEP-0198 stream management: counters, the unacknowledged queue and the nonzas (sans-IO).

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

from . import ns
from .errors import StreamError, StreamErrorCondition
from .numbers import parse_uint

NS = "urn:xmpp:sm:3"
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
