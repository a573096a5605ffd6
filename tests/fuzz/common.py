"""Settings and strategies shared by the fuzz tests: XML trees, streams, chunkings, mutations.

Every fuzz test is decorated with ``@fuzz(weight)``: the selected profile's settings
(``tests/fuzz/conftest.py``) with ``weight`` times its base number of examples, so that a slow property
(a SCRAM exchange runs PBKDF2 three times) and a fast one (a JID) cost about the same.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from lxml import etree

from xmppauth.proto.errors import StreamError
from xmppauth.proto.xml import ElementReceived, ParseEvent, StreamEnded, StreamOpened, StreamParser, serialize

CLIENT = "jabber:client"
STREAMS = "http://etherx.jabber.org/streams"
XML_NS = "http://www.w3.org/XML/1998/namespace"


def rarely(n: int) -> st.SearchStrategy[bool]:
    """True about once in ``n`` draws. Not ``integers(0, n - 1) == 0``: Hypothesis draws the simplest
    value, 0, far more often than 1 in n, so the rare branch would be the usual one."""
    return st.integers(1, n).map(lambda i: i == n)


def fuzz(weight: float = 1.0) -> settings:
    """The selected profile's settings, with ``weight`` times its number of examples."""
    profile = settings.get_profile(f"xmppauth-fuzz-{os.environ.get('XMPP_FUZZ') or 'short'}")
    return settings(profile, max_examples=max(1, round(profile.max_examples * weight)))


# ------------------------------------------------------------------------------ characters and text

# XML 1.0 §2.2 Char, minus nothing: tab, LF, CR, and everything from U+0020 but surrogates, U+FFFE, U+FFFF.
xml_chars = st.one_of(
    st.sampled_from("\t\n\r <>&'\"]=;#/:x"),  # the characters escaping is about, often
    st.characters(min_codepoint=0x20, exclude_categories=("Cs",), exclude_characters="\ufffe\uffff"),
)
xml_text = st.text(xml_chars, max_size=24)

_NAME_START = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_éπж"
names = st.builds(
    lambda first, rest: first + rest,
    st.sampled_from(_NAME_START),
    st.text(st.sampled_from(_NAME_START + "0123456789.-"), max_size=8),
)
namespaces = st.sampled_from(
    [CLIENT, "urn:xmpp:ping", "urn:xmpp:sm:3", "urn:x", "urn:y:0", "http://example.com/ns#frag", "urn:%C3%BC"]
)
prefixes = names.filter(lambda p: not p.lower().startswith("xml"))


@st.composite
def elements(draw: st.DrawFn, depth: int = 2, namespace: str | None = None) -> etree._Element:
    """A random element tree, every element in a namespace (lxml cannot write an un-namespaced child of
    a default-namespaced parent: it drops the ``xmlns=""``), with attributes, text and tails.

    A namespaced attribute gets a prefix declared on its own element: left to invent one, lxml may
    reuse ``ns0`` for two namespaces on the same path and write a document that means something else.
    """
    ns = namespace or draw(namespaces)
    nsmap: dict[Any, str] = {}
    if draw(st.booleans()):
        nsmap[draw(prefixes)] = ns
    else:
        nsmap[None] = ns
    attr_ns = draw(st.none() | namespaces)
    if attr_ns is not None:
        attr_prefix = draw(prefixes.filter(lambda p: p not in nsmap))
        nsmap[attr_prefix] = attr_ns
    el = etree.Element(f"{{{ns}}}{draw(names)}", nsmap=nsmap)
    for name in draw(st.lists(names, max_size=3, unique=True)):
        el.set(name, draw(xml_text))
    if draw(st.booleans()):
        el.set(f"{{{XML_NS}}}lang", draw(st.sampled_from(["en", "de-CH", ""])))
    if attr_ns is not None:
        el.set(f"{{{attr_ns}}}{draw(names)}", draw(xml_text))
    el.text = draw(xml_text) or None
    if depth > 0:
        for _ in range(draw(st.integers(0, 2))):
            child = draw(elements(depth - 1))
            child.tail = draw(xml_text) or None
            el.append(child)
    return el


def key(el: etree._Element) -> tuple[Any, ...]:
    """What a parse must give back: names, attributes, text and tails, recursively (no prefixes)."""
    return (
        el.tag,
        sorted(el.attrib.items()),
        el.text or "",
        [(key(child), child.tail or "") for child in el],
    )


def _faithful(el: etree._Element) -> bool:
    """Whether lxml writes ``el`` as it is: a tree built in memory can bind a moved child to an
    ancestor's declaration of its namespace that a nearer one shadows (``<a xmlns='urn:x'
    xmlns:p='jabber:client'><a/></a>`` for a ``jabber:client`` child): not the parser's business."""
    return key(etree.fromstring(serialize(el))) == key(el)


stanzas = st.one_of(elements(namespace=CLIENT), elements()).filter(_faithful)


# ------------------------------------------------------------------------------ streams

DECL = b"<?xml version='1.0'?>"


def header(extra: bytes = b"") -> bytes:
    return (
        b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'"
        b" to='localhost' version='1.0'" + extra + b">"
    )


whitespace = st.text(st.sampled_from(" \t\r\n"), max_size=3).map(str.encode)


@st.composite
def valid_streams(draw: st.DrawFn) -> tuple[bytes, list[etree._Element]]:
    """A well-formed TCP stream (declaration, header, stanzas, maybe the footer) and its stanzas."""
    body = [draw(stanzas) for _ in range(draw(st.integers(0, 4)))]
    data = draw(st.sampled_from([b"", DECL, b"\xef\xbb\xbf" + DECL, b"\xef\xbb\xbf"]))
    data += header(draw(st.sampled_from([b"", b" xml:lang='en'", b" from='a@localhost' id=\"x>y\""])))
    for el in body:
        data += draw(whitespace) + serialize(el)
    if draw(st.booleans()):
        data += draw(whitespace) + b"</stream:stream>"
    return data, body


@st.composite
def chunkings(draw: st.DrawFn, data: bytes, bytewise: bool = True) -> list[bytes]:
    """``data`` cut at random places (now and then one byte at a time, if ``bytewise``)."""
    if not data:
        return [data]
    cuts = sorted(set(draw(st.lists(st.integers(0, len(data)), max_size=12))))
    if bytewise and draw(rarely(10)):
        cuts = list(range(len(data) + 1))  # one byte at a time, now and then
    pieces, start = [], 0
    for cut in [*cuts, len(data)]:
        pieces.append(data[start:cut])
        start = cut
    return pieces


# Byte sequences a mutation inserts: XML syntax, the restricted constructs, broken UTF-8.
TOKENS = [
    b"<",
    b">",
    b"/>",
    b"</",
    b"&",
    b";",
    b"'",
    b'"',
    b"=",
    b"<!--",
    b"-->",
    b"<![CDATA[",
    b"]]>",
    b"<!DOCTYPE x>",
    b"<!ENTITY",
    b"<?xml version='1.0'?>",
    b"<?pi?>",
    b"&amp;",
    b"&lt;",
    b"&#60;",
    b"&#x3C;",
    b"&#0;",
    b"&#xD800;",
    b"&#;",
    b"&foo;",
    b"&#x110000;",
    b"\x00",
    b"\xff",
    b"\xc3",
    b"\xed\xa0\x80",
    b"\xef\xbb\xbf",
    b" xmlns:p='urn:p'",
    b" xmlns=''",
    b" p:a='1'",
    b" a='1' a='2'",
    b"<p:x/>",
    b"</stream:stream>",
    b"<stream:stream>",
    b"<a><b></a></b>",
    b"x" * 40,
    b"&" + b"a" * 40,
]


@st.composite
def mutated(draw: st.DrawFn, data: bytes, max_mutations: int = 3) -> bytes:
    """``data`` with a few insertions, deletions, replacements or duplications."""
    buf = bytearray(data)
    for _ in range(draw(st.integers(1, max_mutations))):
        pos = draw(st.integers(0, len(buf)))
        op = draw(st.sampled_from(["insert", "delete", "replace", "duplicate", "bytes"]))
        if op == "insert":
            buf[pos:pos] = draw(st.sampled_from(TOKENS))
        elif op == "bytes":
            buf[pos:pos] = draw(st.binary(min_size=1, max_size=4))
        elif op == "delete":
            buf[pos : pos + draw(st.integers(1, 8))] = b""
        elif op == "replace" and pos < len(buf):
            buf[pos] = draw(st.integers(0, 255))
        elif op == "duplicate":
            end = draw(st.integers(pos, min(len(buf), pos + 40)))
            buf[pos:pos] = buf[pos:end]
    return bytes(buf)


# ------------------------------------------------------------------------------ feeding the parser


def summary(events: Iterable[ParseEvent]) -> list[tuple[Any, ...]]:
    out: list[tuple[Any, ...]] = []
    for event in events:
        if isinstance(event, StreamOpened):
            out.append(("open", event.tag, dict(event.attrs), event.default_ns, event.stream_prefix_ns))
        elif isinstance(event, ElementReceived):
            out.append(("element", serialize(event.element)))
        else:
            assert isinstance(event, StreamEnded)
            out.append(("end",))
    return out


def run_parser(
    pieces: Iterable[bytes], *, framed: bool = False, limit: int = 1 << 20, depth: int = 12
) -> tuple[list[ParseEvent], StreamError | None]:
    """Feed every piece (one frame each when ``framed``); the events, and the error that ended it."""
    events, error, _ = feed_pieces(pieces, framed=framed, limit=limit, depth=depth)
    return events, error


def feed_pieces(
    pieces: Iterable[bytes], *, framed: bool = False, limit: int = 1 << 20, depth: int = 12
) -> tuple[list[ParseEvent], StreamError | None, int]:
    """:func:`run_parser`, and the index of the piece that failed (or the number of pieces).

    Anything but a StreamError escapes and fails the calling test. After an error the parser must
    stay dead: the next feed raises the same condition.
    """
    parser = StreamParser(max_stanza_bytes=limit, max_depth=depth, framed=framed)
    events: list[ParseEvent] = []
    pieces = list(pieces)
    for index, piece in enumerate(pieces):
        try:
            events += parser.feed_frame(piece) if framed else parser.feed(piece)
        except StreamError as exc:
            _stays_dead(parser, framed, exc)
            return events, exc, index
    return events, None, len(pieces)


def _stays_dead(parser: StreamParser, framed: bool, error: StreamError) -> None:
    with pytest.raises(StreamError) as again:
        parser.feed_frame(b"<x/>") if framed else parser.feed(b"<x/>")
    assert again.value.condition is error.condition
