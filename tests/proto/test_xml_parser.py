"""Tests for the restricted-XML stream parser (xmppauth.proto.xml): RFC 6120 §11 and RFC 7395."""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from lxml import etree

from xmppauth.proto.errors import LocalProtocolError, StreamError, StreamErrorCondition
from xmppauth.proto.xml import (
    SLICE_BYTES,
    ElementReceived,
    ParseEvent,
    StreamEnded,
    StreamOpened,
    StreamParser,
    escape_attr,
    escape_text,
    serialize,
)

C = StreamErrorCondition
STREAMS = "http://etherx.jabber.org/streams"
FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"

DECL = b"<?xml version='1.0'?>"
HEADER = (
    b"<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'"
    b" to='example.com' version='1.0' xml:lang='en' from='juliet@example.com'>"
)
HDR = DECL + HEADER
MESSAGE = (
    b"<message to='romeo@example.net' type='chat' id='m1'>"
    b"<body>Art thou not Romeo, and a Montague?</body></message>"
)
IQ = b"<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>"
CLOSE = b"</stream:stream>"
NORMAL_STREAM = HDR + MESSAGE + b"\n  \t\r\n" + IQ + b" " + CLOSE

MESSAGE_OUT = (
    b'<message xmlns="jabber:client" to="romeo@example.net" type="chat" id="m1">'
    b"<body>Art thou not Romeo, and a Montague?</body></message>"
)
IQ_OUT = b'<iq xmlns="jabber:client" type="get" id="p1"><ping xmlns="urn:xmpp:ping"/></iq>'

LIMIT = 10_000
DEPTH = 8


# --------------------------------------------------------------------------- helpers


def tcp(limit: int = LIMIT, depth: int = DEPTH) -> StreamParser:
    return StreamParser(max_stanza_bytes=limit, max_depth=depth)


def framed(limit: int = LIMIT, depth: int = DEPTH) -> StreamParser:
    return StreamParser(max_stanza_bytes=limit, max_depth=depth, framed=True)


def chunks(data: bytes, size: int) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def random_chunks(data: bytes, seed: int, largest: int) -> Iterator[bytes]:
    rng = random.Random(seed)
    i = 0
    while i < len(data):
        n = rng.randint(1, largest)
        yield data[i : i + n]
        i += n


def feed_all(parser: StreamParser, pieces: Iterable[bytes]) -> list[ParseEvent]:
    events: list[ParseEvent] = []
    for piece in pieces:
        events += parser.feed(piece)
    return events


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


def feed_until_error(parser: StreamParser, pieces: Iterable[bytes]) -> tuple[int, StreamError]:
    """Feed until a StreamError; return the number of input bytes handed in, and the error."""
    consumed = 0
    for piece in pieces:
        consumed += len(piece)
        try:
            parser.feed(piece)
        except StreamError as exc:
            return consumed, exc
    raise AssertionError("no StreamError raised")


class FeedCounter:
    """Stands in for the lxml pull parser inside a StreamParser and counts the bytes fed to it."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.fed = 0
        self.calls = 0
        self.data = bytearray()

    def feed(self, data: bytes) -> None:
        self.fed += len(data)
        self.calls += 1
        self.data += data
        self.inner.feed(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
def count_fed(monkeypatch: pytest.MonkeyPatch) -> Any:
    def install(parser: StreamParser) -> FeedCounter:
        counter = FeedCounter(parser._parser)
        monkeypatch.setattr(parser, "_parser", counter)
        return counter

    return install


def message_of_size(size: int, *, attr: bool = False) -> bytes:
    """A message stanza of exactly ``size`` bytes, padded in the body (or in an attribute)."""
    if attr:
        head, tail = b"<message to='", b"'/>"
    else:
        head, tail = b"<message to='a@example.com'><body>", b"</body></message>"
    pad = size - len(head) - len(tail)
    assert pad > 0
    stanza = head + b"x" * pad + tail
    assert len(stanza) == size
    return stanza


# --------------------------------------------------------------------------- normal streams


def test_normal_stream_fed_whole() -> None:
    events = tcp().feed(NORMAL_STREAM)
    assert summary(events) == [
        (
            "open",
            f"{{{STREAMS}}}stream",
            {"to": "example.com", "version": "1.0", XML_LANG: "en", "from": "juliet@example.com"},
            "jabber:client",
            STREAMS,
        ),
        ("element", MESSAGE_OUT),
        ("element", IQ_OUT),
        ("end",),
    ]


def test_stream_opened_fields() -> None:
    [opened] = tcp().feed(HDR)
    assert isinstance(opened, StreamOpened)
    assert opened.tag == f"{{{STREAMS}}}stream"
    assert opened.attrs == {
        "to": "example.com",
        "version": "1.0",
        XML_LANG: "en",
        "from": "juliet@example.com",
    }
    assert opened.default_ns == "jabber:client"
    assert opened.stream_prefix_ns == STREAMS


def test_stream_opened_reports_header_as_received() -> None:
    # The caller validates namespaces; the parser only reports them.
    [opened] = tcp().feed(b"<stream:stream xmlns='jabber:server' xmlns:stream='urn:wrong' version='2.0'>")
    assert isinstance(opened, StreamOpened)
    assert opened.tag == "{urn:wrong}stream"
    assert opened.default_ns == "jabber:server"
    assert opened.stream_prefix_ns == "urn:wrong"
    assert opened.attrs == {"version": "2.0"}


def header_declaring(prefixes: int, uri_length: int) -> bytes:
    declared = b"".join(b" xmlns:p%d='urn:%s'" % (n, b"x" * uri_length) for n in range(prefixes))
    return b"<stream:stream xmlns='jabber:client' xmlns:stream='%s'%s version='1.0'>" % (
        STREAMS.encode(),
        declared,
    )


def test_a_header_that_declares_few_short_namespaces_opens_and_its_prefixes_serve_the_stanzas() -> None:
    events = tcp().feed(header_declaring(6, 20) + b"<message to='a@b'><p0:x/></message>")
    assert summary(events)[1][1].startswith(b'<message xmlns="jabber:client" xmlns:p0="urn:')


@pytest.mark.parametrize(("prefixes", "uri_length"), [(7, 10), (3, 400)])
def test_a_header_with_many_or_long_namespace_declarations_is_a_policy_violation(
    prefixes: int, uri_length: int
) -> None:
    """Found by a black-box attack: every stanza copied out carries the declarations of the header's
    prefixes it uses, so 250 header prefixes of 1,000 bytes made each small stanza some 250 KB on its
    way to the recipient (2 KB in, 258 KB out), and a reading recipient was dropped."""
    with pytest.raises(StreamError) as caught:
        tcp().feed(header_declaring(prefixes, uri_length))
    assert caught.value.condition is C.POLICY_VIOLATION
    assert "at most 8" in caught.value.text


def test_header_without_xml_declaration() -> None:
    assert summary(tcp().feed(HEADER + MESSAGE))[1:] == [("element", MESSAGE_OUT)]


def test_normal_stream_one_byte_at_a_time() -> None:
    whole = summary(tcp().feed(NORMAL_STREAM))
    assert summary(feed_all(tcp(), chunks(NORMAL_STREAM, 1))) == whole


@pytest.mark.parametrize("seed", range(12))
def test_normal_stream_random_chunkings(seed: int) -> None:
    whole = summary(tcp().feed(NORMAL_STREAM))
    largest = 7 if seed % 2 else 120
    assert summary(feed_all(tcp(), random_chunks(NORMAL_STREAM, seed, largest))) == whole


@pytest.mark.parametrize("seed", range(4))
def test_long_stream_random_chunkings(seed: int) -> None:
    stanzas = [
        b"<message id='%d'><body>%s &amp; &#x263A;</body></message>" % (i, b"y" * (i % 300))
        for i in range(400)
    ]
    data = HDR + b"".join(s + b" \n" * (i % 3) for i, s in enumerate(stanzas)) + CLOSE
    expected = summary(tcp().feed(data))
    assert len(expected) == 402
    assert summary(feed_all(tcp(), random_chunks(data, seed, 9000))) == expected


def test_element_is_detached_and_standalone() -> None:
    parser = tcp()
    parser.feed(HDR)
    [received] = parser.feed(MESSAGE)
    assert isinstance(received, ElementReceived)
    element = received.element
    assert element.getparent() is None
    assert element.tag == "{jabber:client}message"
    assert element.nsmap == {None: "jabber:client"}
    assert element[0].tag == "{jabber:client}body"
    assert element.tail is None
    root = parser._root
    assert root is not None
    assert len(root) == 0
    assert root.text is None


def test_stream_tree_stays_empty_over_many_stanzas() -> None:
    parser = tcp()
    parser.feed(HDR)
    received = 0
    for i in range(2000):
        events = parser.feed(MESSAGE + b"\n" * (i % 4))
        received += len(events)
        root = parser._root
        assert root is not None
        assert len(root) == 0
    assert received == 2000


def test_element_is_kept_open_across_feeds_and_root_not_touched() -> None:
    parser = tcp()
    parser.feed(HDR)
    assert parser.feed(b"<message><body>part") == []
    root = parser._root
    assert root is not None
    assert len(root) == 1  # the open stanza stays attached while libxml2 builds it
    [received] = parser.feed(b" two</body></message>")
    assert isinstance(received, ElementReceived)
    assert received.element.findtext("{jabber:client}body") == "part two"
    assert len(root) == 0


def test_whitespace_keepalives_between_stanzas() -> None:
    parser = tcp()
    parser.feed(HDR)
    for _ in range(50):
        assert parser.feed(b" ") == []
    assert summary(parser.feed(b"\r\n\t" + MESSAGE + b"\n")) == [("element", MESSAGE_OUT)]
    root = parser._root
    assert root is not None
    assert root.text is None  # stream-level whitespace is dropped, not accumulated
    assert len(root) == 0


@pytest.mark.parametrize("text", [b"hello", b" x ", b"&amp;", b"&#65;"])
def test_text_at_stream_level_is_bad_format(text: bytes) -> None:
    parser = tcp()
    parser.feed(HDR + MESSAGE)
    with pytest.raises(StreamError) as info:
        parser.feed(text + MESSAGE)
    assert info.value.condition is C.BAD_FORMAT


def test_text_right_after_header_is_bad_format() -> None:
    with pytest.raises(StreamError) as info:
        feed_all(tcp(), chunks(HDR + b"hi" + MESSAGE, 1))
    assert info.value.condition is C.BAD_FORMAT


def test_empty_root_opens_and_ends() -> None:
    assert summary(tcp().feed(b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams'/>")) == [
        ("open", f"{{{STREAMS}}}stream", {}, None, STREAMS),
        ("end",),
    ]


def test_data_after_stream_end_is_ignored() -> None:
    parser = tcp()
    events = parser.feed(HDR + MESSAGE + CLOSE + b"<garbage")
    assert summary(events)[-1] == ("end",)
    assert parser.feed(b"more garbage & <<") == []


def test_header_with_gt_in_attribute_value() -> None:
    header = HEADER.replace(b" to='example.com'", b" to='a>b' id=\"x'>y\"")
    for pieces in ([header + MESSAGE], list(chunks(header + MESSAGE, 1))):
        events = feed_all(tcp(), pieces)
        assert isinstance(events[0], StreamOpened)
        assert events[0].attrs["to"] == "a>b"
        assert events[0].attrs["id"] == "x'>y"
        assert summary(events[1:]) == [("element", MESSAGE_OUT)]


# --------------------------------------------------------------------------- XML declaration, encoding


@pytest.mark.parametrize(
    "decl",
    [
        b"<?xml version='1.0'?>",
        b'<?xml version="1.0" encoding="UTF-8"?>',
        b"<?xml version='1.0' encoding='utf-8' standalone='yes' ?>",
        b"\xef\xbb\xbf<?xml version='1.0'?>",
    ],
)
@pytest.mark.parametrize("size", [1, 1000])
def test_accepted_xml_declarations(decl: bytes, size: int) -> None:
    events = feed_all(tcp(), chunks(decl + HEADER + MESSAGE, size))
    assert summary(events)[1:] == [("element", MESSAGE_OUT)]


@pytest.mark.parametrize("size", [1, 1000])
@pytest.mark.parametrize("encoding", [b"ISO-8859-1", b"UTF-16", b"US-ASCII"])
def test_non_utf8_encoding_declaration(encoding: bytes, size: int) -> None:
    data = b"<?xml version='1.0' encoding='" + encoding + b"'?>" + HEADER
    _, exc = feed_until_error(tcp(), chunks(data, size))
    assert exc.condition is C.UNSUPPORTED_ENCODING


@pytest.mark.parametrize("size", [1, 1000])
@pytest.mark.parametrize(
    "bad",
    [
        b"\xff",  # never valid in UTF-8
        b"\xc3(",  # truncated two-byte sequence
        b"\xc0\x80",  # overlong NUL
        b"\xed\xa0\x80",  # UTF-16 surrogate
        "é".encode("latin-1"),
    ],
)
def test_invalid_utf8_is_unsupported_encoding(bad: bytes, size: int) -> None:
    data = HDR + b"<message><body>caf" + bad + b"</body></message>"
    _, exc = feed_until_error(tcp(), chunks(data, size))
    assert exc.condition is C.UNSUPPORTED_ENCODING


def test_valid_utf8_passes() -> None:
    text = "café ☺ 😀 Ελληνικά"
    data = HDR + b"<message><body>" + text.encode() + b"</body></message>"
    events = feed_all(tcp(), chunks(data, 1))
    assert isinstance(events[1], ElementReceived)
    assert events[1].element.findtext("{jabber:client}body") == text


@pytest.mark.parametrize(
    "decl",
    [
        b"<?xml encoding='UTF-8'?>",  # version is mandatory
        b"<?xml version='1.0' foo='bar'?>",
        b"<?xml version='1.0'" + b" " * 300 + b"?>",  # too long
    ],
)
def test_malformed_xml_declaration(decl: bytes) -> None:
    with pytest.raises(StreamError) as info:
        tcp().feed(decl + HEADER)
    assert info.value.condition is C.NOT_WELL_FORMED


@pytest.mark.parametrize("data", [b" " + DECL + HEADER, HEADER[:-1] + b" " + DECL + b">", HDR + DECL])
def test_xml_declaration_not_at_start_is_restricted(data: bytes) -> None:
    with pytest.raises(StreamError) as info:
        tcp().feed(data)
    assert info.value.condition is C.RESTRICTED_XML


# --------------------------------------------------------------------------- restricted XML

BILLION_LAUGHS = (
    b'<!DOCTYPE lolz [<!ENTITY lol "lol">'
    b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
    b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">'
    b'<!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]>'
)
XXE_DTD = b'<!DOCTYPE stream [<!ENTITY xxe SYSTEM "file:///etc/hostname">]>'

# name -> (bytes placed between the XML declaration and the stream header, bytes inside a stanza)
RESTRICTED = {
    "doctype": (b"<!DOCTYPE stream:stream>", b"<!DOCTYPE message>"),
    "billion-laughs": (BILLION_LAUGHS, BILLION_LAUGHS + b"&lol4;"),
    "xxe": (XXE_DTD, b'<!ENTITY xxe SYSTEM "file:///etc/hostname">&xxe;'),
    "comment": (b"<!-- hello -->", b"<!-- hello -->"),
    "pi": (b"<?xml-stylesheet href='x.xsl'?>", b"<?php system('id'); ?>"),
    "cdata": (b"<![CDATA[<x/>]]>", b"<![CDATA[<x/>]]>"),
    "entity-ref": (b"&foo;", b"&foo;"),
    "entity-ref-xxe": (b"&xxe;", b"&xxe;"),
    "entity-ref-nbsp": (b"&nbsp;", b"&nbsp;"),
}


def _restricted_streams() -> Iterator[Any]:
    for name, (pre_root, in_stanza) in RESTRICTED.items():
        yield pytest.param(DECL + pre_root + HEADER + MESSAGE, len(DECL), id=f"{name}-pre-root")
        prefix = HDR + b"<message><body>"
        yield pytest.param(prefix + in_stanza + b"</body></message>", len(prefix), id=f"{name}-in-stanza")


@pytest.mark.parametrize(("data", "offset"), list(_restricted_streams()))
@pytest.mark.parametrize("size", [1, 2, 3, 5, 100_000])
def test_restricted_constructs(data: bytes, offset: int, size: int, count_fed: Any) -> None:
    parser = tcp()
    counter = count_fed(parser)
    _, exc = feed_until_error(parser, chunks(data, size))
    assert exc.condition is C.RESTRICTED_XML
    # Caught by the byte scan before libxml2 saw any byte of the construct.
    assert counter.fed <= offset
    assert bytes(counter.data) == data[: counter.fed]


def test_pi_and_comment_events_are_restricted_too() -> None:
    # Belt and braces: should a comment ever slip past the byte scan, the event is rejected.
    parser = tcp()
    parser.feed(HDR)
    parser._parser.feed(b"<!-- sneaked in -->")
    with pytest.raises(StreamError) as info:
        parser.feed(b"<a/>")
    assert info.value.condition is C.RESTRICTED_XML


@pytest.mark.parametrize("size", [1, 100_000])
def test_predefined_entities_and_character_references(size: int) -> None:
    stanza = (
        b"<message to='a&amp;b&#65;&#x42;&apos;&quot;&lt;&gt;'>"
        b"<body>&amp; &lt; &gt; &apos; &quot; &#65; &#x41; &#x1F600; &#0000000065;</body></message>"
    )
    events = feed_all(tcp(), chunks(HDR + stanza, size))
    element = events[1]
    assert isinstance(element, ElementReceived)
    assert element.element.get("to") == "a&bAB'\"<>"
    assert element.element.findtext("{jabber:client}body") == "& < > ' \" A A \U0001f600 A"


@pytest.mark.parametrize("size", [1, 100_000])
@pytest.mark.parametrize(
    "body",
    [
        b"fish & chips",  # bare ampersand
        b"&amp",  # unterminated at a '<'
        b"&" + b"a" * 40 + b";",  # longer than 32 bytes
        b"&#;",
        b"&#xZZ;",
        b"&;",
        b"&#0;",  # not an XML Char (libxml2 reports it)
    ],
)
def test_malformed_references_are_not_well_formed(body: bytes, size: int) -> None:
    data = HDR + b"<message><body>" + body + b"</body></message>"
    _, exc = feed_until_error(tcp(), chunks(data, size))
    assert exc.condition is C.NOT_WELL_FORMED


def test_unterminated_reference_fails_within_32_bytes() -> None:
    parser = tcp()
    parser.feed(HDR + b"<message><body>")
    consumed, exc = feed_until_error(parser, chunks(b"&" + b"a" * 1000, 1))
    assert exc.condition is C.NOT_WELL_FORMED
    assert consumed <= 1 + 33


def test_reference_split_across_feeds_is_held_back(count_fed: Any) -> None:
    parser = tcp()
    counter = count_fed(parser)
    parser.feed(HDR + b"<message><body>x&am")
    assert bytes(counter.data).endswith(b"<body>x")  # "&am" not handed to libxml2 yet
    [received] = parser.feed(b"p;y</body></message>")
    assert isinstance(received, ElementReceived)
    assert received.element.findtext("{jabber:client}body") == "x&y"


def test_entity_reference_split_one_byte_at_a_time_is_restricted() -> None:
    parser = tcp()
    parser.feed(HDR + b"<message><body>")
    consumed, exc = feed_until_error(parser, chunks(b"&foo;</body></message>", 1))
    assert exc.condition is C.RESTRICTED_XML
    assert consumed == len(b"&foo;")


# --------------------------------------------------------------------------- size limits


@pytest.mark.parametrize("size", [LIMIT + 10, 1000])
def test_stanza_of_limit_plus_one_bytes(size: int, count_fed: Any) -> None:
    parser = tcp()
    counter = count_fed(parser)
    data = HDR + message_of_size(LIMIT + 1)
    _, exc = feed_until_error(parser, chunks(data, size))
    assert exc.condition is C.POLICY_VIOLATION
    assert counter.fed <= len(HDR) + LIMIT + SLICE_BYTES
    # The stanza directly after the header is counted exactly.
    assert counter.fed == len(HDR) + LIMIT


@pytest.mark.parametrize("size", [LIMIT + 10, 1000, 7])
def test_stanza_just_under_limit_passes(size: int) -> None:
    stanza = message_of_size(LIMIT - 100)
    parser = tcp()
    events = feed_all(parser, chunks(HDR + stanza + b"\n" + stanza + stanza, size))
    assert [type(e) for e in events] == [StreamOpened, ElementReceived, ElementReceived, ElementReceived]
    assert all(len(serialize(e.element)) >= LIMIT - 100 for e in events[1:] if isinstance(e, ElementReceived))


def test_stanza_of_exactly_limit_bytes_passes() -> None:
    events = tcp().feed(HDR + message_of_size(LIMIT))
    assert isinstance(events[-1], ElementReceived)


def test_big_stanza_after_small_ones_in_one_chunk(count_fed: Any) -> None:
    parser = tcp()
    parser.feed(HDR)
    counter = count_fed(parser)
    small = MESSAGE * 5
    _, exc = feed_until_error(parser, [small + message_of_size(10 * LIMIT)])
    assert exc.condition is C.POLICY_VIOLATION
    # At most one slice of the big stanza can go uncounted.
    assert counter.fed <= len(small) + LIMIT + SLICE_BYTES


def test_64k_chunk_of_300_small_stanzas_passes() -> None:
    body = b"h" * 151
    stanzas = [
        b"<message to='user%03d@example.com' id='%03d'><body>%s</body></message>" % (i, i, body)
        for i in range(300)
    ]
    chunk = b"\n".join(stanzas)
    assert 64 * 1024 - 300 < len(chunk) <= 64 * 1024
    chunk += b" " * (64 * 1024 - len(chunk))
    assert len(chunk) == 64 * 1024
    parser = tcp(limit=LIMIT)
    parser.feed(HDR)
    events = parser.feed(chunk)
    assert len(events) == 300
    assert all(isinstance(e, ElementReceived) for e in events)


@pytest.mark.parametrize("size", [100_000, 1000, 1])
def test_huge_attribute_value(size: int, count_fed: Any) -> None:
    limit = 2000
    parser = tcp(limit=limit)
    counter = count_fed(parser)
    data = HDR + message_of_size(1_000_000 if size > 1 else 5000, attr=True)
    _, exc = feed_until_error(parser, chunks(data, size))
    assert exc.condition is C.POLICY_VIOLATION
    assert counter.fed == len(HDR) + limit


def test_huge_attribute_value_with_gt_characters(count_fed: Any) -> None:
    parser = tcp(limit=2000)
    parser.feed(HDR + MESSAGE)
    counter = count_fed(parser)
    _, exc = feed_until_error(parser, chunks(b"<message to='" + b">" * 100_000, 100))
    assert exc.condition is C.POLICY_VIOLATION
    assert counter.fed <= 2000


def test_declaration_and_header_reach_libxml2_in_one_call(count_fed: Any) -> None:
    parser = tcp()
    counter = count_fed(parser)
    events = parser.feed(HDR)
    assert isinstance(events[0], StreamOpened)
    assert (counter.calls, bytes(counter.data)) == (1, HDR)
    parser = tcp()
    counter = count_fed(parser)
    assert parser.feed(DECL) == []  # the declaration alone waits for the header
    assert parser.feed(HEADER)[0] == events[0]
    assert (counter.calls, bytes(counter.data)) == (1, HDR)


def test_huge_stream_header(count_fed: Any) -> None:
    limit = 2000
    parser = tcp(limit=limit)
    counter = count_fed(parser)
    header = HEADER[:-1] + b" x='" + b"y" * 1_000_000 + b"'>"
    _, exc = feed_until_error(parser, chunks(DECL + header, 64 * 1024))
    assert exc.condition is C.POLICY_VIOLATION
    assert counter.fed == limit  # the XML declaration and the header are counted


def test_many_small_feeds_of_one_stanza() -> None:
    parser = tcp(limit=2000)
    parser.feed(HDR + b"<message><body>")
    consumed, exc = feed_until_error(parser, chunks(b"z" * 10_000, 3))
    assert exc.condition is C.POLICY_VIOLATION
    assert consumed <= 2000


def test_raising_the_limit_at_runtime() -> None:
    big = message_of_size(5000)
    parser = tcp(limit=1000)
    parser.feed(HDR + MESSAGE)
    parser.max_stanza_bytes = 10_000
    [received] = parser.feed(big)
    assert isinstance(received, ElementReceived)
    parser.max_stanza_bytes = 1000
    with pytest.raises(StreamError) as info:
        parser.feed(big)
    assert info.value.condition is C.POLICY_VIOLATION


def test_limit_resets_after_each_stanza() -> None:
    parser = tcp(limit=1000)
    parser.feed(HDR)
    stanza = message_of_size(900)
    for _ in range(30):
        assert len(parser.feed(stanza)) == 1
    for piece in chunks(stanza * 30, 250):
        parser.feed(piece)


# --------------------------------------------------------------------------- depth limits


def nested(levels: int) -> bytes:
    return b"<a>" * levels + b"</a>" * levels


def test_depth_at_limit_passes() -> None:
    # The stanza is depth 1, so DEPTH levels of <a> reach exactly depth DEPTH.
    events = tcp().feed(HDR + nested(DEPTH))
    assert isinstance(events[-1], ElementReceived)


@pytest.mark.parametrize("size", [100_000, 1])
def test_depth_over_limit(size: int) -> None:
    _, exc = feed_until_error(tcp(), chunks(HDR + nested(DEPTH + 1), size))
    assert exc.condition is C.POLICY_VIOLATION


def test_nesting_bomb_one_byte_at_a_time_fails_early() -> None:
    parser = tcp()
    parser.feed(HDR)
    consumed, exc = feed_until_error(parser, chunks(b"<a>" * 10_000, 1))
    assert exc.condition is C.POLICY_VIOLATION
    assert consumed <= (DEPTH + 2) * len(b"<a>")


def test_nesting_bomb_in_one_chunk_feeds_at_most_one_slice(count_fed: Any) -> None:
    parser = tcp()
    parser.feed(HDR)
    counter = count_fed(parser)
    _, exc = feed_until_error(parser, [b"<a>" * 100_000])
    assert exc.condition is C.POLICY_VIOLATION
    assert counter.fed <= SLICE_BYTES


def test_libxml2_limits_map_to_policy_violation() -> None:
    parser = tcp(limit=200_000, depth=1000)  # deeper than libxml2's own limit of 256
    parser.feed(HDR)
    with pytest.raises(StreamError) as info:
        parser.feed(b"<a>" * 400)
    assert info.value.condition is C.POLICY_VIOLATION
    parser = tcp(limit=200_000)
    parser.feed(HDR)
    with pytest.raises(StreamError) as info:
        parser.feed(b"<" + b"n" * 60_000 + b"/>")  # libxml2 caps names at 50,000
    assert info.value.condition is C.POLICY_VIOLATION


# --------------------------------------------------------------------------- not well-formed


@pytest.mark.parametrize(
    "data",
    [
        b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello on the plain port
        HDR + b"<message></iq>",
        HDR + b"<message to='a' to='b'/>",
        HDR + b"<message to=a/>",
        HDR + b"<foo:bar/>",  # undeclared prefix (XML Namespaces)
        HDR + b"<message xmlns:p='urn:p' p:a='1' xmlns:q='urn:p' q:a='2'/>",
        HDR + b"<message><body>\x01</body></message>",
        HDR + b"<message><body>]]></body></message>",
        HDR + b"</stream:streamx>",
    ],
)
def test_not_well_formed(data: bytes) -> None:
    for pieces in ([data], list(chunks(data, 1))):
        _, exc = feed_until_error(tcp(), pieces)
        assert exc.condition in (C.NOT_WELL_FORMED, C.UNSUPPORTED_ENCODING)
        if b"\x16\x03" not in data:
            assert exc.condition is C.NOT_WELL_FORMED


def test_namespace_error_after_many_warnings_is_still_caught() -> None:
    parser = tcp()
    parser.feed(HDR)
    for _ in range(150):  # relative namespace URIs only warn; lxml keeps 100 warnings at most
        parser.feed(b"<x xmlns='relative'/>")
    with pytest.raises(StreamError) as info:
        parser.feed(b"<p:x/>")
    assert info.value.condition is C.NOT_WELL_FORMED


def test_syntax_error_text_carries_libxml2_message() -> None:
    with pytest.raises(StreamError) as info:
        tcp().feed(HDR + b"<message></iq>")
    assert "mismatch" in info.value.text


# --------------------------------------------------------------------------- parser life cycle


def test_dead_parser_raises_again() -> None:
    parser = tcp()
    with pytest.raises(StreamError) as first:
        parser.feed(HDR + b"<!-- x -->")
    with pytest.raises(StreamError) as second:
        parser.feed(MESSAGE)
    assert second.value.condition is first.value.condition is C.RESTRICTED_XML
    assert second.value.text == first.value.text


def test_wrong_mode_calls_are_local_errors() -> None:
    with pytest.raises(LocalProtocolError):
        tcp().feed_frame(MESSAGE)
    with pytest.raises(LocalProtocolError):
        framed().feed(MESSAGE)


def test_constructor_validates_limits() -> None:
    with pytest.raises(ValueError, match="positive"):
        StreamParser(max_stanza_bytes=0, max_depth=5)


# --------------------------------------------------------------------------- framed mode (RFC 7395)

OPEN_FRAME = (
    b"<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='example.com' version='1.0' xml:lang='en'/>"
)
CLOSE_FRAME = b"<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>"
WS_MESSAGE = b"<message xmlns='jabber:client' to='romeo@example.net' type='chat'><body>hi</body></message>"


def test_framed_session() -> None:
    parser = framed()
    [opened] = parser.feed_frame(OPEN_FRAME)
    assert opened == StreamOpened(
        tag=f"{{{FRAMING}}}open",
        attrs={"to": "example.com", "version": "1.0", XML_LANG: "en"},
        default_ns=None,
        stream_prefix_ns=None,
    )
    [received] = parser.feed_frame(WS_MESSAGE)
    assert isinstance(received, ElementReceived)
    assert serialize(received.element) == (
        b'<message xmlns="jabber:client" to="romeo@example.net" type="chat"><body>hi</body></message>'
    )
    assert received.element.getparent() is None
    assert parser.feed_frame(b"\r\n " + IQ + b"\n") != []
    assert parser.feed_frame(CLOSE_FRAME) == [StreamEnded()]
    assert parser.feed_frame(b"<anything after close/>") == []
    root = parser._root
    assert root is not None
    assert len(root) == 0


def test_framed_element_without_xmlns_inherits_jabber_client() -> None:
    [received] = framed().feed_frame(b"<presence/>")
    assert isinstance(received, ElementReceived)
    assert serialize(received.element) == b'<presence xmlns="jabber:client"/>'


def test_framed_many_frames_keep_tree_empty() -> None:
    parser = framed()
    for _ in range(500):
        assert len(parser.feed_frame(WS_MESSAGE)) == 1
    root = parser._root
    assert root is not None
    assert len(root) == 0


@pytest.mark.parametrize(
    "frame",
    [
        b"",
        b" \r\n ",
        b"<a/><b/>",
        b"<a/> <b/>",
        b"<message>",
        b"<message><body>hi</body>",
        b"<message to='>'",
        b"<message to='x'",
        b"<message/><",
        b"<message>&am",
        b"hello <a/>",
        b"<a/> hello",
        b"hello",
        b"</stream>",
        b"<stream:stream xmlns:stream='http://etherx.jabber.org/streams' to='example.com'>",
    ],
)
def test_frame_must_hold_exactly_one_complete_element(frame: bytes) -> None:
    parser = framed()
    parser.feed_frame(OPEN_FRAME)
    with pytest.raises(StreamError) as info:
        parser.feed_frame(frame)
    assert info.value.condition is C.NOT_WELL_FORMED
    assert "exactly one complete XML element" in info.value.text
    with pytest.raises(StreamError):
        parser.feed_frame(WS_MESSAGE)  # dead


@pytest.mark.parametrize(
    "frame",
    [
        b"<message><!-- x --></message>",
        b"<!-- x --><message/>",
        b"<?xml version='1.0'?><message/>",  # an XML declaration inside a frame is a PI here
        b"<message><body>&foo;</body></message>",
        b"<message><![CDATA[x]]></message>",
        b"<!DOCTYPE message><message/>",
    ],
)
def test_frame_restricted_xml(frame: bytes) -> None:
    with pytest.raises(StreamError) as info:
        framed().feed_frame(frame)
    assert info.value.condition is C.RESTRICTED_XML


def test_frame_size_limit(count_fed: Any) -> None:
    parser = framed(limit=1000)
    counter = count_fed(parser)
    assert len(parser.feed_frame(message_of_size(1000))) == 1
    fed = counter.fed
    with pytest.raises(StreamError) as info:
        parser.feed_frame(message_of_size(1001))
    assert info.value.condition is C.POLICY_VIOLATION
    assert counter.fed == fed  # rejected before anything was fed


def test_frame_size_limit_raised_at_runtime() -> None:
    parser = framed(limit=1000)
    parser.max_stanza_bytes = 5000
    assert len(parser.feed_frame(message_of_size(4000))) == 1


def test_frame_depth_limit() -> None:
    assert len(framed().feed_frame(nested(DEPTH))) == 1
    with pytest.raises(StreamError) as info:
        framed().feed_frame(nested(DEPTH + 1))
    assert info.value.condition is C.POLICY_VIOLATION


def test_frame_nesting_bomb(count_fed: Any) -> None:
    parser = framed(limit=1_000_000)
    counter = count_fed(parser)
    with pytest.raises(StreamError) as info:
        parser.feed_frame(b"<a>" * 300_000)
    assert info.value.condition is C.POLICY_VIOLATION
    assert counter.fed <= SLICE_BYTES


def test_frame_invalid_utf8() -> None:
    with pytest.raises(StreamError) as info:
        framed().feed_frame(b"<message><body>\xff</body></message>")
    assert info.value.condition is C.UNSUPPORTED_ENCODING


# --------------------------------------------------------------------------- output helpers


def test_serialize_shape_of_detached_stanza() -> None:
    stanza = (
        b"<message to='a@b' type='chat'><body>caf\xc3\xa9 &amp; &lt;</body>"
        b"<x xmlns='urn:x'><y/></x><z xmlns=''/><stream:s/></message>\n"
    )
    [received] = tcp().feed(HDR + stanza)[1:]
    assert isinstance(received, ElementReceived)
    assert serialize(received.element) == (
        b'<message xmlns="jabber:client" xmlns:stream="http://etherx.jabber.org/streams"'
        b' to="a@b" type="chat"><body>caf\xc3\xa9 &amp; &lt;</body>'
        b'<x xmlns="urn:x"><y/></x><z xmlns=""/><stream:s/></message>'
    )


def test_serialize_omits_tail_and_declaration() -> None:
    root = etree.fromstring(b"<r xmlns='jabber:client'><iq/>tail</r>")
    assert serialize(root[0]) == b'<iq xmlns="jabber:client"/>'


NASTY = "a&b<c>d\"e'f\tg\nh\ri ]]> é \U0001f600"


@pytest.mark.parametrize("quote", ["'", '"'])
def test_escape_round_trip(quote: str) -> None:
    doc = f"<r a={quote}{escape_attr(NASTY)}{quote}>{escape_text(NASTY)}</r>"
    root = etree.fromstring(doc.encode())
    assert root.get("a") == NASTY
    assert root.text == NASTY


def test_escape_exact_output() -> None:
    assert escape_text("<a&b>\r") == "&lt;a&amp;b&gt;&#13;"
    assert escape_attr("<'\"&>\t\n") == "&lt;&apos;&quot;&amp;&gt;&#9;&#10;"


def test_escape_replaces_characters_xml_cannot_carry() -> None:
    bad = "a\x00b\x1bc\ud800d\uffff"
    assert escape_text(bad) == "a\ufffdb\ufffdc\ufffdd\ufffd"
    assert escape_attr(bad) == "a\ufffdb\ufffdc\ufffdd\ufffd"
    etree.fromstring(f"<r a='{escape_attr(bad)}'>{escape_text(bad)}</r>".encode("utf-8", "surrogatepass"))
