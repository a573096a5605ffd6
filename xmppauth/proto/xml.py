"""Incremental restricted-XML stream parser (RFC 6120 §11, RFC 7395) on lxml.

RFC 6120 §11 restricts what an XML stream may carry: UTF-8 only (§11.6), no DTDs, comments,
processing instructions, internal or external entity declarations, or entity references other
than the five predefined ones (§11.1, ``<restricted-xml/>``), namespace-well-formed XML (§11.2,
``<not-well-formed/>``) and nothing but whitespace between top-level elements. RFC 7395 carries
the same XML over WebSocket with one complete element per message and ``<open/>``/``<close/>``
(namespace ``urn:ietf:params:xml:ns:xmpp-framing``) in place of the stream header and footer.

This module is sans-IO: the caller hands in bytes and gets back :data:`ParseEvent` objects, after
h11. A new :class:`StreamParser` is made at every stream restart (after STARTTLS and after SASL
success), so there is no reset method.

Theory of operation
-------------------
libxml2 (through lxml's ``XMLPullParser``) does the real parsing, but it is both too permissive and
too generous for an XMPP server: it accepts a DOCTYPE, reports comments and PIs as events, stalls
silently on an undefined entity reference, and its depth (256) and text (10 MB) limits are far too
high. So every byte passes two gates before libxml2 sees it:

1. **Byte scan.** Each chunk (plus a few held-back bytes of the previous one) is searched with
   ``bytes.find`` for ``<!`` (DOCTYPE, ENTITY, comment, CDATA: all rejected, CDATA too, as Prosody
   does), for ``<?`` (PIs; the XML declaration at the very start of a TCP stream is checked
   separately) and for every ``&``: what follows must be ``lt``/``gt``/``amp``/``apos``/``quot``
   or a character reference ``#123``/``#x7B``, then ``;``, within 32 bytes. A trailing ``<`` or an
   unterminated ``&...`` is held back until the next chunk, so constructs split across chunks,
   even one byte at a time, are still seen whole, and libxml2 never receives an entity reference
   it would have to resolve.

2. **Size budget.** Vetted bytes are fed to libxml2 in slices of at most :data:`SLICE_BYTES`.
   A byte counter runs from the end of the previous top-level element (or from the start of the
   stream for the prolog and stream header); a slice is shortened to what is left of
   ``max_stanza_bytes``, and when nothing is left while more bytes wait, the parser raises
   ``<policy-violation/>`` without feeding them. libxml2 reports events only per slice, so when a
   top-level element ends inside a slice the counter restarts at the end of that slice: the next
   element may have up to one slice uncounted. No single element therefore ever has more than
   ``max_stanza_bytes + SLICE_BYTES`` bytes buffered. The stream header's end is located with a
   small quote-aware scan and fed as a slice of its own, so the first stanza is counted exactly.
   Inter-stanza whitespace counts towards the next element's budget.

After each slice the events are drained: element nesting is counted (the stream root is depth 0,
a stanza depth 1) and deeper than ``max_depth`` raises ``<policy-violation/>`` as soon as the start
tag is seen. A completed depth-1 element is handed out as a deep copy rooted in a document of its
own (so it serializes as ``<message xmlns="jabber:client" ...>``, with the namespaces it uses and
their original prefixes) and the original is removed from the stream root (``root.remove``), so
the stream tree does not grow however long the stream lives. Character data at stream level must
be whitespace (``<bad-format/>`` otherwise) and is dropped. The detaching is
arranged so that libxml2's tree builder never finds a different text node at the end of the root
than the one it last wrote: after cleanup the root has either no children at all or only the open
top-level element still being parsed.

Framed mode (RFC 7395) feeds a synthetic ``<stream xmlns='jabber:client' ...>`` root once, then each
WebSocket message as a depth-1 element followed by a tiny probe element ``<_/>``: the message held
exactly one complete element if and only if the message's element and the probe both complete at
depth 1. An incomplete message swallows or breaks the probe, which poisons the parser, but the
resulting ``<not-well-formed/>`` is fatal anyway.

Errors are raised as :class:`~xmppauth.proto.errors.StreamError`. After the first one the parser
is dead: every later ``feed``/``feed_frame`` raises a ``StreamError`` with the same condition and
text again. Events completed earlier in the failing call are discarded (the stream is closing).
Using ``feed`` on a framed parser or ``feed_frame`` on a TCP parser raises
:class:`~xmppauth.proto.errors.LocalProtocolError`.

Choices worth knowing:

* Invalid UTF-8 gives ``<unsupported-encoding/>`` (RFC 6120 §4.9.3.22: "improperly encoded the
  stream (e.g., by violating the rules of the UTF-8 encoding)"), as does an XML declaration naming
  any encoding but UTF-8. A leading UTF-8 byte order mark is tolerated and dropped (XML 1.0 §4.3.3).
* An unterminated ``&`` (no ``;`` within 32 bytes, or a byte that cannot be part of a reference)
  and a malformed character reference such as ``&#;`` are ``<not-well-formed/>``; a reference to
  any named entity but the five predefined ones is ``<restricted-xml/>``.
* An XML declaration anywhere but at the very start of a TCP stream, including inside a WebSocket
  message, is a processing instruction as far as the byte scan is concerned: ``<restricted-xml/>``.
* Undeclared namespace prefixes and other XML-Namespaces errors are ``<not-well-formed/>``.
* Data after the closing ``</stream:stream>`` (or after ``<close/>``) is ignored; the byte scan
  still covers the whole chunk that carried the closing tag.
* libxml2's own limit errors map to ``<policy-violation/>``, its out-of-memory error to
  ``<resource-constraint/>``, every other syntax error to ``<not-well-formed/>`` with libxml2's
  message as text.
* In framed mode, elements without an ``xmlns`` inherit ``jabber:client`` from the synthetic root
  (lenient: RFC 7395 has each message carry its own declarations, ``<message xmlns='jabber:client'>``).

Name dictionaries
-----------------
libxml2 interns names (and some text) in a dictionary that lxml 6 keeps per thread and never frees.
Each libxml2 parser here gets a dictionary of its own instead (:mod:`.xml_names`), current while
:meth:`StreamParser.feed` / :meth:`StreamParser.feed_frame` run, so that the copies handed out use
it too, and every :data:`EPOCH_BYTES` of input the parser moves on to a new libxml2 parser and
dictionary at the next boundary between top-level elements (in TCP mode, found exactly by feeding
slices that end at each ``>`` once a renewal is due), primed with a root that declares what the
stream header declared. A dictionary thus holds the names of one epoch at most.
"""

from __future__ import annotations

import copy
import re
from typing import Any, Final

from lxml import etree

from xmppauth.proto import xml_names
from xmppauth.proto.errors import LocalProtocolError, StreamError, StreamErrorCondition
from xmppauth.proto.ns import CLIENT, FRAMING, STREAMS, qname
from xmppauth.proto.xml_events import ElementReceived, ParseEvent, StreamEnded, StreamOpened
from xmppauth.proto.xml_out import escape_attr, escape_text, serialize  # here for the callers' sake

__all__ = [
    "EPOCH_BYTES",
    "SLICE_BYTES",
    "ElementReceived",
    "ParseEvent",
    "StreamEnded",
    "StreamOpened",
    "StreamParser",
    "escape_attr",
    "escape_text",
    "serialize",
]

SLICE_BYTES: Final = 4096
"""Largest piece handed to libxml2 in one call; also the slack of the size accounting."""

EPOCH_BYTES: Final = 64 * 1024
"""Input after which a stream parser moves on to a new libxml2 parser and name dictionary."""

_MAX_REF: Final = 32  # longest accepted body of &...; (the longest legitimate one is 10)
_MAX_DECL: Final = 256  # longest accepted XML declaration
_BOM: Final = b"\xef\xbb\xbf"
_DECL_OPEN: Final = b"<?xml"
_WS: Final = b" \t\r\n"
_WS_STR: Final = " \t\r\n"
_PREDEFINED: Final = frozenset((b"lt", b"gt", b"amp", b"apos", b"quot"))
_REF_BODY: Final = re.compile(rb"[^;&<>'\"\x00-\x20]{0,%d}" % (_MAX_REF + 1))
_CHAR_REF: Final = re.compile(rb"#(?:[0-9]+|x[0-9A-Fa-f]+)")
_TAG_DELIM: Final = re.compile(rb"[>'\"]")
# A whole start tag after optional non-'<' bytes, with quoted attribute values; the header lexer's fast path.
# The classes exclude each other, so a failed match backtracks in linear time.
_HEADER_TAG: Final = re.compile(rb"[^<]*<[^>'\"]*(?:(?:'[^']*'|\"[^\"]*\")[^>'\"]*)*>")
_XML_DECL: Final = re.compile(
    rb"<\?xml[ \t\r\n]+version[ \t\r\n]*=[ \t\r\n]*(?:'1\.[0-9]+'|\"1\.[0-9]+\")"
    rb"(?:[ \t\r\n]+encoding[ \t\r\n]*=[ \t\r\n]*"
    rb"(?:'([A-Za-z][A-Za-z0-9._-]*)'|\"([A-Za-z][A-Za-z0-9._-]*)\"))?"
    rb"(?:[ \t\r\n]+standalone[ \t\r\n]*=[ \t\r\n]*(?:'(?:yes|no)'|\"(?:yes|no)\"))?"
    rb"[ \t\r\n]*\?>"
)

_FRAMED_ROOT: Final = f"<stream xmlns='{CLIENT}' xmlns:stream='{STREAMS}'>".encode()
_FRAMED_END: Final = b"</stream>"
_PROBE: Final = b"<_/>"
_FRAMING_OPEN: Final = qname(FRAMING, "open")
_FRAMING_CLOSE: Final = qname(FRAMING, "close")
_ONE_ELEMENT: Final = "a WebSocket message must hold exactly one complete XML element"

# libxml2 numbers (xmlerror.h); lxml-stubs does not type etree.ErrorTypes / ErrorLevels.
_XML_ERR_ERROR_LEVEL: Final = 2
_XML_ERR_NO_MEMORY: Final = 2
_XML_ERR_UNKNOWN_ENCODING: Final = 31
_XML_ERR_UNSUPPORTED_ENCODING: Final = 32
_XML_ERR_INVALID_ENCODING: Final = 81
_XML_ERR_NAME_TOO_LONG: Final = 110
_XML_ERR_RESOURCE_LIMIT: Final = 114

_C = StreamErrorCondition

#: Namespace declarations a stream header may carry, and their bytes: a stanza using a header prefix carries
#: its declaration once copied out (_standalone), so more would multiply every stanza routed on (found by a
#: black-box attack: 2 KB in, 258 KB out). Clients declare two (jabber:client and the stream prefix).
MAX_HEADER_NAMESPACES = 8
MAX_HEADER_NAMESPACE_BYTES = 1024

# Phases of a TCP stream.
_PROLOG: Final = 0  # waiting to know whether an XML declaration comes first
_HEADER: Final = 1  # looking for the end of the stream header
_BODY: Final = 2  # stanzas


def _standalone(element: etree._Element) -> etree._Element:
    """A deep copy of a complete top-level element as the root of a document of its own.

    ``root.remove(element)`` alone would leave lxml to re-declare the inherited default namespace
    under a generated prefix (``<ns0:message xmlns:ns0="jabber:client">``, which RFC 6120 §4.8.3
    forbids on the wire); a libxml2 copy re-declares exactly the namespaces the subtree uses, with
    their original prefixes. The original is still detached afterwards, to free the stream tree.
    """
    copied = copy.copy(element)  # lxml's __copy__ copies the whole subtree, without deepcopy's memo
    copied.tail = None
    return copied


def _new_parser() -> etree.XMLPullParser:
    return etree.XMLPullParser(
        events=("start", "end", "comment", "pi"),
        encoding="utf-8",
        resolve_entities=False,
        load_dtd=False,
        no_network=True,
        huge_tree=False,
        collect_ids=False,
        remove_comments=False,
        remove_pis=False,
    )


def _start_tag(root: etree._Element) -> tuple[bytes, bytes]:
    """A start tag with the name and namespace declarations (not the attributes) of ``root``; its end tag."""
    local = etree.QName(root).localname
    name = f"{root.prefix}:{local}" if root.prefix else local
    decls = "".join(
        f" xmlns{':' + prefix if prefix else ''}='{escape_attr(uri)}'" for prefix, uri in root.nsmap.items()
    )
    return f"<{name}{decls}>".encode(), f"</{name}>".encode()


def _attrs(element: etree._Element) -> dict[str, str]:
    return {str(key): str(value) for key, value in element.items()}


def _restricted(text: str) -> StreamError:
    return StreamError(_C.RESTRICTED_XML, text)


def _not_well_formed(text: str) -> StreamError:
    return StreamError(_C.NOT_WELL_FORMED, text)


def _from_syntax_error(exc: etree.XMLSyntaxError) -> StreamError:
    """Map a libxml2 fatal error to the stream error condition it deserves."""
    code: int = getattr(exc, "code", 0)
    message = str(getattr(exc, "msg", "") or exc).strip()
    if code == _XML_ERR_INVALID_ENCODING:
        return StreamError(_C.UNSUPPORTED_ENCODING, f"input is not valid UTF-8: {message}")
    if code in (_XML_ERR_UNKNOWN_ENCODING, _XML_ERR_UNSUPPORTED_ENCODING):
        return StreamError(_C.UNSUPPORTED_ENCODING, message)
    if code in (_XML_ERR_RESOURCE_LIMIT, _XML_ERR_NAME_TOO_LONG):
        return StreamError(_C.POLICY_VIOLATION, message)
    if code == _XML_ERR_NO_MEMORY:
        return StreamError(_C.RESOURCE_CONSTRAINT, message)
    return _not_well_formed(message)


def _scan(buf: bytes) -> int:
    """Vet ``buf`` for restricted XML; return how many leading bytes are safe to parse.

    The rest (a trailing ``<`` or an unterminated ``&...``) must be held back and scanned again
    together with the next chunk.
    """
    i = buf.find(b"<!")
    if i != -1:
        head = buf[i : i + 9]
        if head.startswith(b"<!--"):
            what = "comments are"
        elif head == b"<![CDATA[":
            what = "CDATA sections are"
        elif head.startswith(b"<!DOCTYPE"):
            what = "DTDs are"
        else:
            what = "markup declarations are"
        raise _restricted(f"{what} not allowed (RFC 6120 §11.1)")
    if buf.find(b"<?") != -1:
        raise _restricted("processing instructions are not allowed (RFC 6120 §11.1)")
    safe = len(buf) - 1 if buf.endswith(b"<") else len(buf)
    amp = buf.find(b"&")
    while amp != -1:
        m = _REF_BODY.match(buf, amp + 1)
        end = m.end() if m is not None else amp + 1
        if end - amp - 1 > _MAX_REF:
            raise _not_well_formed(
                f"'&' is not followed by a reference ending with ';' within {_MAX_REF} bytes"
            )
        if end == len(buf):
            return min(safe, amp)  # incomplete: wait for more bytes
        if buf[end] != 0x3B:  # ';'
            raise _not_well_formed("'&' must start an entity or character reference ending with ';'")
        name = buf[amp + 1 : end]
        if name not in _PREDEFINED and _CHAR_REF.fullmatch(name) is None:
            if not name or name.startswith(b"#"):
                raise _not_well_formed("malformed character reference")
            shown = name.decode("utf-8", "replace")
            raise _restricted(
                f"entity reference &{shown}; is not allowed: only lt, gt, amp, apos, quot "
                "and character references are (RFC 6120 §11.1)"
            )
        amp = buf.find(b"&", end + 1)
    return safe


class StreamParser:
    """Incremental parser for one XML stream (TCP) or one WebSocket session stream (RFC 7395).

    ``max_stanza_bytes`` bounds the bytes of one top-level element (the stream header counts too)
    and may be raised at any time (the stream machine does after authentication); ``max_depth``
    bounds element nesting, the stream root being depth 0 and a stanza depth 1.
    """

    def __init__(self, *, max_stanza_bytes: int, max_depth: int, framed: bool = False) -> None:
        if max_stanza_bytes < 1 or max_depth < 1:
            raise ValueError("max_stanza_bytes and max_depth must be positive")
        self.max_stanza_bytes = max_stanza_bytes
        self._max_depth = max_depth
        self._framed = framed
        self._names = xml_names.new_dictionary()  # the current libxml2 parser's name dictionary
        self._parser = _new_parser()
        self._root: etree._Element | None = None
        self._open: etree._Element | None = None  # the depth-1 element being parsed, if any
        self._completed: list[etree._Element] = []  # depth-1 elements still attached to the root
        self._depth = 0  # elements open according to the events drained so far
        self._fed = 0  # bytes handed to libxml2
        self._anchor = 0  # where the byte budget of the current top-level element started
        self._log_seen = 0  # entries of the parser's error log already inspected
        self._pending = b""  # bytes held back by the byte scan (or the prolog check)
        self._decl = b""  # the XML declaration, fed to libxml2 together with the stream header
        self._phase = _PROLOG
        self._hdr_state = 0  # header lexer: 0 before '<', 1 in the tag, 2 in a quoted value
        self._hdr_quote = b""
        self._ended = False
        self._error: StreamError | None = None
        self._epoch = 0  # self._fed when the current libxml2 parser took over
        # The root a new libxml2 parser is primed with, and its end tag (TCP: the header's name).
        self._reopen, self._reclose = _FRAMED_ROOT, _FRAMED_END
        if framed:
            self._phase = _BODY
            own = xml_names.enter(self._names)
            try:
                self._feed_slice(_FRAMED_ROOT, [])
            finally:
                xml_names.leave(own)
            self._anchor = self._epoch = self._fed

    @property
    def max_depth(self) -> int:
        return self._max_depth

    @property
    def framed(self) -> bool:
        return self._framed

    # ----------------------------------------------------------------------------- public API

    def feed(self, data: bytes) -> list[ParseEvent]:
        """Parse the next raw bytes of a TCP stream; return the events they complete."""
        if self._framed:
            raise LocalProtocolError("feed() on a framed (RFC 7395) parser; use feed_frame()")
        if self._error is not None:
            self._check_alive()
        if self._ended:
            return []
        own = xml_names.enter(self._names)
        try:
            return self._feed_tcp(data)
        except StreamError as exc:
            self._error = exc
            raise
        finally:
            xml_names.leave(own)

    def feed_frame(self, data: bytes) -> list[ParseEvent]:
        """Parse one RFC 7395 WebSocket message, which must hold exactly one complete element."""
        if not self._framed:
            raise LocalProtocolError("feed_frame() on a TCP parser; use feed()")
        self._check_alive()
        if self._ended:
            return []
        own = xml_names.enter(self._names)
        try:
            return self._feed_frame(data)
        except StreamError as exc:
            self._error = exc
            raise
        finally:
            xml_names.leave(own)

    # ----------------------------------------------------------------------------- TCP mode

    def _check_alive(self) -> None:
        if self._error is not None:
            raise StreamError(self._error.condition, self._error.text)

    def _feed_tcp(self, data: bytes) -> list[ParseEvent]:
        buf = self._pending + data if self._pending else data
        self._pending = b""
        events: list[ParseEvent] = []
        if self._phase == _PROLOG:
            rest = self._prolog(buf, events)
            if rest is None:
                return events
            buf = rest
        safe = _scan(buf)
        if safe < len(buf):
            self._pending = buf[safe:]
            buf = buf[:safe]
        pos = 0
        while pos < len(buf) and not self._ended:
            if self._phase == _HEADER:
                end = self._header_end(buf, pos)
                stop = len(buf) if end == -1 else end
                if self._decl:  # one libxml2 call for declaration and header instead of two
                    piece, self._decl = self._decl + buf[pos:stop], b""
                    self._feed_budgeted(piece, 0, len(piece), events)
                else:
                    self._feed_budgeted(buf, pos, stop, events)
                pos = stop
                if end != -1:
                    self._phase = _BODY
                    self._anchor = self._fed
            else:
                self._feed_budgeted(buf, pos, len(buf), events)
                pos = len(buf)
        if self._ended:
            self._pending = b""
        return events

    def _prolog(self, buf: bytes, events: list[ParseEvent]) -> bytes | None:
        """Handle an optional BOM and XML declaration; ``None`` means "need more bytes"."""
        if buf.startswith(_BOM):
            rest = buf[len(_BOM) :]
        elif _BOM.startswith(buf):  # also true for b""
            self._pending = buf
            return None
        else:
            rest = buf
        if len(rest) <= len(_DECL_OPEN) and _DECL_OPEN.startswith(rest[: len(_DECL_OPEN)]):
            self._pending = buf  # could still become "<?xml "
            return None
        if rest.startswith(_DECL_OPEN) and rest[len(_DECL_OPEN)] in _WS:
            end = rest.find(b"?>", 0, _MAX_DECL)
            if end == -1:
                if len(rest) >= _MAX_DECL:
                    raise _not_well_formed(f"XML declaration not terminated within {_MAX_DECL} bytes")
                self._pending = buf
                return None
            decl = rest[: end + 2]
            m = _XML_DECL.fullmatch(decl)
            if m is None:
                raise _not_well_formed("malformed XML declaration")
            encoding = m.group(1) or m.group(2)
            if encoding is not None and encoding.lower() not in (b"utf-8", b"utf8"):
                shown = encoding.decode("ascii")
                raise StreamError(_C.UNSUPPORTED_ENCODING, f"encoding {shown!r}: only UTF-8 is supported")
            self._decl = decl
            rest = rest[end + 2 :]
        self._phase = _HEADER
        return rest

    def _header_end(self, data: bytes, pos: int) -> int:
        """Advance the header lexer over ``data[pos:]``; offset just past the header's ``>`` or -1."""
        if self._hdr_state == 0:
            m = _HEADER_TAG.match(data, pos)  # the usual case: the whole start tag is here
            if m is not None:
                return m.end()
        n = len(data)
        while pos < n:
            if self._hdr_state == 0:
                i = data.find(b"<", pos)
                if i == -1:
                    return -1
                self._hdr_state = 1
                pos = i + 1
            elif self._hdr_state == 1:
                m = _TAG_DELIM.search(data, pos)
                if m is None:
                    return -1
                delim = data[m.start() : m.end()]
                if delim == b">":
                    return m.end()
                self._hdr_state = 2
                self._hdr_quote = delim
                pos = m.end()
            else:
                i = data.find(self._hdr_quote, pos)
                if i == -1:
                    return -1
                self._hdr_state = 1
                pos = i + 1
        return -1

    def _feed_budgeted(self, data: bytes, start: int, stop: int, events: list[ParseEvent]) -> None:
        """Feed ``data[start:stop]`` in slices, never past ``max_stanza_bytes`` for one element."""
        pos = start
        while pos < stop and not self._ended:
            budget = self.max_stanza_bytes - (self._fed - self._anchor)
            if budget <= 0:
                what = "stream header" if self._phase != _BODY else "top-level element"
                raise StreamError(_C.POLICY_VIOLATION, f"{what} larger than {self.max_stanza_bytes} bytes")
            n = min(SLICE_BYTES, stop - pos, budget)
            renew = self._phase == _BODY and self._fed - self._epoch >= EPOCH_BYTES
            if renew:  # slices that end at each '>', so that a top-level element ends at a slice's end
                gt = data.find(b">", pos, pos + n)
                if gt != -1:
                    n = gt + 1 - pos
            self._feed_slice(data if n == len(data) else data[pos : pos + n], events)
            pos += n
            # A top-level element ended in this slice (so at its last byte) and no other one is open.
            if renew and self._anchor == self._fed and self._open is None and not self._ended:
                self._renew()

    # ----------------------------------------------------------------------------- framed mode

    def _feed_frame(self, data: bytes) -> list[ParseEvent]:
        if len(data) > self.max_stanza_bytes:
            raise StreamError(
                _C.POLICY_VIOLATION, f"WebSocket message larger than {self.max_stanza_bytes} bytes"
            )
        frame = data.strip(_WS)
        if not frame:
            raise _not_well_formed(_ONE_ELEMENT)
        if _scan(frame) != len(frame):
            raise _not_well_formed(f"{_ONE_ELEMENT} (it ends inside a tag or reference)")
        received: list[ParseEvent] = []
        for pos in range(0, len(frame), SLICE_BYTES):
            self._feed_slice(frame[pos : pos + SLICE_BYTES], received)
            if len(received) > 1 or (received and self._open is not None):
                raise _not_well_formed(_ONE_ELEMENT)
        try:
            self._feed_slice(_PROBE, received)
        except StreamError as exc:
            detail = "" if exc.text.startswith(_ONE_ELEMENT) else f": {exc.text}"
            raise _not_well_formed(_ONE_ELEMENT + detail) from None
        if len(received) != 2 or self._open is not None or self._depth != 1:
            raise _not_well_formed(_ONE_ELEMENT)
        first = received[0]
        assert isinstance(first, ElementReceived)
        element = first.element
        tag = element.tag
        if tag == _FRAMING_OPEN:
            return [StreamOpened(tag=tag, attrs=_attrs(element), default_ns=None, stream_prefix_ns=None)]
        if tag == _FRAMING_CLOSE:
            self._ended = True
            return [StreamEnded()]
        if self._fed - self._epoch >= EPOCH_BYTES:
            self._renew()
        return [first]

    # ----------------------------------------------------------------------------- both modes

    def _renew(self) -> None:
        """Go on with a new libxml2 parser and name dictionary, between two top-level elements.

        The new parser is primed with a root declaring the same namespaces; its bytes are not counted.
        """
        xml_names.finish(self._parser, self._reclose)
        self._names = xml_names.new_dictionary()
        xml_names.enter(self._names)  # the caller's xml_names.leave() restores the thread's own
        self._parser = _new_parser()
        self._root = None
        self._depth = 0
        self._log_seen = 0
        fed = self._fed
        self._feed_slice(self._reopen, [])
        if self._root is None or self._depth != 1:  # pragma: no cover - libxml2 reports a start tag at once
            raise LocalProtocolError("a renewed parser did not open its root")
        self._fed = self._anchor = self._epoch = fed

    def __del__(self) -> None:
        # A stream that ends (or restarts) between two top-level elements frees its parser at once.
        try:
            if self._root is not None and self._error is None and self._open is None and self._depth < 2:
                own = xml_names.enter(self._names)
                try:
                    xml_names.finish(self._parser, self._reclose if self._depth == 1 else b"")
                finally:
                    xml_names.leave(own)
        except Exception:  # noqa: S110 - never raise from a finalizer (e.g. at interpreter exit)
            pass

    def _feed_slice(self, piece: bytes, events: list[ParseEvent]) -> None:
        """Hand one vetted slice to libxml2 and turn what it completed into events."""
        try:
            self._parser.feed(piece)
        except etree.XMLSyntaxError as exc:
            self._fed += len(piece)
            self._drain(events)
            if self._ended:
                return  # junk after </stream:stream> is ignored
            raise _from_syntax_error(exc) from None
        self._fed += len(piece)
        self._drain(events)

    def _drain(self, events: list[ParseEvent]) -> None:
        parser: Any = self._parser  # lxml-stubs types read_events' pairs as a loose union
        for action, element in parser.read_events():
            if action == "start":
                level = self._depth
                self._depth += 1
                if level == 0:
                    self._root = element
                    if not self._framed:
                        events.append(self._opened(element))
                elif level > self._max_depth:
                    raise StreamError(
                        _C.POLICY_VIOLATION, f"elements nested deeper than {self._max_depth} levels"
                    )
                elif level == 1:
                    self._open = element
            elif action == "end":
                self._depth -= 1
                level = self._depth
                if level == 1:
                    self._open = None
                    self._completed.append(element)
                    self._anchor = self._fed
                    if self._framed and events:
                        # Only the probe or a surplus element, about to be rejected: no copy.
                        events.append(ElementReceived(element=element))
                    else:
                        events.append(ElementReceived(element=_standalone(element)))
                elif level == 0:
                    if self._framed:
                        raise _not_well_formed(_ONE_ELEMENT)
                    self._ended = True
                    events.append(StreamEnded())
            else:  # "comment" / "pi": the byte scan should have caught them already
                raise _restricted(f"{action} not allowed (RFC 6120 §11.1)")
        self._check_error_log()
        self._detach()

    def _opened(self, root: etree._Element) -> StreamOpened:
        nsmap = root.nsmap
        declared = sum(len(prefix or "") + len(uri) for prefix, uri in nsmap.items())
        if len(nsmap) > MAX_HEADER_NAMESPACES or declared > MAX_HEADER_NAMESPACE_BYTES:
            too_many = f"{len(nsmap)} namespaces ({declared} bytes) declared in the stream header"
            raise StreamError(
                _C.POLICY_VIOLATION,
                f"{too_many}: at most {MAX_HEADER_NAMESPACES} ({MAX_HEADER_NAMESPACE_BYTES} bytes)",
            )
        if not str(root.tag).startswith("{") and ":" in str(root.tag):
            # libxml2 keeps <stream:stream> without xmlns:stream as a name with a colon in no namespace
            # (an XML Namespaces error it only logs): found by the fuzz tests, it escaped as a ValueError
            raise _not_well_formed(f"the prefix of <{root.tag}> is not declared")
        self._reopen, self._reclose = _start_tag(root)
        return StreamOpened(
            tag=root.tag,
            attrs=_attrs(root),
            default_ns=nsmap.get(None),
            stream_prefix_ns=nsmap.get("stream"),
        )

    def _check_error_log(self) -> None:
        """Non-fatal libxml2 errors (XML Namespaces violations) are not-well-formed too."""
        log = self._parser.feed_error_log
        n = len(log)
        if n != self._log_seen:
            for i in range(self._log_seen, n):
                entry = log[i]
                if entry.level == _XML_ERR_ERROR_LEVEL:  # fatal ones arrive as XMLSyntaxError
                    raise _not_well_formed(str(entry.message))
            self._log_seen = n

    def _detach(self) -> None:
        """Check and drop stream-level text, detach completed top-level elements.

        Afterwards the root holds nothing or only the open top-level element, so libxml2 never
        appends text to a node other than the one it last wrote.
        """
        root = self._root
        if root is None:
            return
        text = root.text
        if text is not None:
            if text.strip(_WS_STR):
                raise self._stream_text_error()
            root.text = None
        if not self._completed:
            return
        for element in self._completed:
            tail = element.tail
            if tail is not None and tail.strip(_WS_STR):
                raise self._stream_text_error()
            root.remove(element)
        self._completed.clear()

    def _stream_text_error(self) -> StreamError:
        if self._framed:
            return _not_well_formed(_ONE_ELEMENT)
        return StreamError(_C.BAD_FORMAT, "only whitespace is allowed between top-level elements")
