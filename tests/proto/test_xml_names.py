"""Distinct names a peer sends do not grow the server for good (xmppauth.proto.xml, .xml_names).

libxml2 interns element and attribute names, prefixes, namespace URIs and whitespace runs of 16-59
bytes; lxml 6 keeps them in one dictionary per thread, never freed. The stream parser gives each
libxml2 parser a dictionary of its own and replaces both every EPOCH_BYTES of input. These tests
check that nothing reaches the thread's dictionary, that parsing across the replacements is
unchanged (TCP and RFC 7395), and, in a fresh interpreter, that a million distinct names leave the
resident set under a stated bound, while the same names through a plain lxml parser do not.
"""

from __future__ import annotations

import functools
import gc
import random
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from xmppauth.proto import xml_names
from xmppauth.proto.errors import StreamError, StreamErrorCondition
from xmppauth.proto.xml import (
    EPOCH_BYTES,
    ElementReceived,
    ParseEvent,
    StreamEnded,
    StreamOpened,
    StreamParser,
    serialize,
)
from xmppauth.proto.xml_names import parse_element

C = StreamErrorCondition
ROOT = Path(__file__).resolve().parents[2]
HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'"
    b" xmlns:db='jabber:server:dialback' to='example.com' version='1.0'>"
)
OPEN = b"<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='example.com' version='1.0'/>"
CLOSE = b"<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>"
LIMIT = 64 * 1024

_WS = " \t\n"


def blank(i: int) -> str:
    """20 whitespace characters, distinct for each i < 3**20 (libxml2 interns blank runs of 16-59)."""
    out = []
    for _ in range(20):
        i, r = divmod(i, 3)
        out.append(_WS[r])
    return "".join(out)


ITEMS: dict[str, Callable[[int], str]] = {
    "element": lambda i: f"<e{i}/>",
    "attribute": lambda i: f"<x a{i}=''/>",
    "prefix": lambda i: f"<p{i}:x xmlns:p{i}='urn:x'/>",
    "namespace": lambda i: f"<x xmlns='urn:x:{i}'/>",
    "blank": lambda i: f"<b>{blank(i)}</b>",
}


def stanzas(kind: str, first: int, count: int, per_stanza: int = 50) -> Iterator[bytes]:
    item = ITEMS[kind]
    for base in range(first, first + count, per_stanza):
        payload = "".join(item(i) for i in range(base, min(base + per_stanza, first + count)))
        yield f"<message id='{base}'>{payload}</message>".encode()


def tcp() -> StreamParser:
    parser = StreamParser(max_stanza_bytes=LIMIT, max_depth=8)
    events = parser.feed(HEADER)
    assert isinstance(events[0], StreamOpened)
    return parser


def framed() -> StreamParser:
    parser = StreamParser(max_stanza_bytes=LIMIT, max_depth=8, framed=True)
    assert isinstance(parser.feed_frame(OPEN)[0], StreamOpened)
    return parser


def feed(parser: StreamParser, data: bytes) -> list[ParseEvent]:
    return parser.feed_frame(data) if parser.framed else parser.feed(data)


def thread_dict_size() -> int:
    return int(etree.memory_debugger.dict_size())


@pytest.fixture
def renewals(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts StreamParser._renew calls (one per replaced libxml2 parser)."""
    calls: list[int] = []
    original = StreamParser._renew

    def counting(self: StreamParser) -> None:
        calls.append(1)
        original(self)

    monkeypatch.setattr(StreamParser, "_renew", counting)
    return calls


# --------------------------------------------------------------------------- the dictionary


def test_lxml_still_lets_parsers_have_dictionaries_of_their_own() -> None:
    # If this fails, lxml's internals changed (see the docstring of xmppauth/proto/xml_names.py):
    # distinct names are interned for good again. Fix xml_names before upgrading lxml.
    assert xml_names.ISOLATED


@pytest.mark.parametrize("make", [tcp, framed], ids=["tcp", "framed"])
@pytest.mark.parametrize("kind", sorted(ITEMS))
def test_names_never_reach_the_thread_dictionary(make: Any, kind: str) -> None:
    parser = make()
    before = thread_dict_size()
    received = 0
    for data in stanzas(kind, 0, 5_000):
        received += sum(isinstance(e, ElementReceived) for e in feed(parser, data))
    assert received == 100
    assert thread_dict_size() == before


def test_stanzas_handed_out_keep_their_names() -> None:
    # The copy handed out lives in the parser's dictionary, which outlives the parser.
    parser = tcp()
    (event,) = parser.feed(b"<message><n1 xmlns='urn:a'/><b>" + blank(7).encode() + b"</b></message>")
    del parser
    gc.collect()
    assert isinstance(event, ElementReceived)
    assert serialize(event.element) == (
        b'<message xmlns="jabber:client"><n1 xmlns="urn:a"/><b>' + blank(7).encode() + b"</b></message>"
    )
    event.element.set("from", "juliet@example.com/balcony")  # names added later go to its dictionary too
    assert event.element.get("from") == "juliet@example.com/balcony"


def test_parse_element_keeps_names_out_of_the_thread_dictionary() -> None:
    before = thread_dict_size()
    elements = [
        parse_element(f"<message xmlns='jabber:client'><q{i} xmlns='urn:q:{i}'/></message>".encode())
        for i in range(200)
    ]
    assert thread_dict_size() == before
    assert serialize(elements[7]) == b'<message xmlns="jabber:client"><q7 xmlns="urn:q:7"/></message>'


def test_replaced_parsers_are_freed_without_the_cycle_collector() -> None:
    # lxml's parser, context and document refer to one another: a parser left alone would keep its
    # dictionary until a full collection.
    gc.collect()
    gc.disable()
    try:
        parser = tcp()
        for data in stanzas("element", 0, 40_000):
            parser.feed(data)
        parser.feed(b"</stream:stream>")
        del parser
        left = gc.collect()
    finally:
        gc.enable()
    assert left == 0


# --------------------------------------------------------------------------- parsing across renewals


def varied(count: int) -> list[bytes]:
    out = []
    for i in range(count):
        if i % 3 == 0:
            out.append(f"<message to='a@b' id='m{i}'><body>hello &amp; {i}</body><e{i}/></message>".encode())
        elif i % 3 == 1:
            out.append(f"<presence id='p{i}'><db:x{i}/><stream:y/></presence>".encode())
        else:
            out.append(f"<iq type='get' id='i{i}'><query xmlns='urn:q:{i}' a{i}='&lt;&gt;'/></iq>".encode())
    return out


@functools.cache
def expected(data: bytes) -> bytes:
    """What a fresh parser (no renewal yet) hands out for ``data``."""
    (event,) = tcp().feed(data)
    assert isinstance(event, ElementReceived)
    return serialize(event.element)


def random_chunks(data: bytes, seed: int) -> Iterator[bytes]:
    rng = random.Random(seed)
    i = 0
    while i < len(data):
        n = rng.choice((1, 2, 7, 300, 5000, 20000))
        yield data[i : i + n]
        i += n


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_tcp_stream_parses_the_same_across_renewals(seed: int, renewals: list[int]) -> None:
    sent = varied(5_000)
    whole = b"".join(s + b"\n " for s in sent) + b"</stream:stream>"
    parser = tcp()
    events: list[ParseEvent] = []
    for chunk in random_chunks(whole, seed):
        events += parser.feed(chunk)
    assert len(renewals) >= len(whole) // EPOCH_BYTES - 1 >= 3
    assert isinstance(events[-1], StreamEnded)
    got = [serialize(e.element) for e in events[:-1] if isinstance(e, ElementReceived)]
    assert got == [expected(s) for s in sent]


def test_framed_stream_parses_the_same_across_renewals(renewals: list[int]) -> None:
    sent = [s.replace(b"<db:x", b"<x").replace(b"<stream:y/>", b"") for s in varied(5_000)]
    parser = framed()
    got = []
    for data in sent:
        (event,) = parser.feed_frame(data)
        assert isinstance(event, ElementReceived)
        got.append(serialize(event.element))
    assert len(renewals) >= 2
    assert parser.feed_frame(CLOSE) == [StreamEnded()]
    assert got == [serialize(e.element) for s in sent for e in framed().feed_frame(s)]  # type: ignore[union-attr]


def renewed_tcp(renewals: list[int]) -> StreamParser:
    parser = tcp()
    for data in stanzas("element", 0, EPOCH_BYTES // 8):
        parser.feed(data)
    assert renewals
    return parser


@pytest.mark.parametrize(
    ("data", "condition"),
    [
        (b"<message/>junk<message/>", C.BAD_FORMAT),
        (b"<message></presence>", C.NOT_WELL_FORMED),
        (b"<x:message/>", C.NOT_WELL_FORMED),
        (b"</stream:streams>", C.NOT_WELL_FORMED),
        (b"<message>" + b"<a/>" * (LIMIT // 4) + b"</message>", C.POLICY_VIOLATION),
        (b"<message><!-- c --></message>", C.RESTRICTED_XML),
    ],
    ids=["text", "mismatch", "prefix", "footer", "size", "comment"],
)
def test_errors_are_the_same_after_a_renewal(data: bytes, condition: C, renewals: list[int]) -> None:
    parser = renewed_tcp(renewals)
    with pytest.raises(StreamError) as exc:
        parser.feed(data)
    assert exc.value.condition == condition


def test_stream_header_is_reported_once(renewals: list[int]) -> None:
    parser = tcp()
    events = []
    for data in stanzas("attribute", 0, EPOCH_BYTES // 4):
        events += parser.feed(data)
    events += parser.feed(b"</stream:stream>")
    assert len(renewals) >= 2
    assert not any(isinstance(e, StreamOpened) for e in events)
    assert isinstance(events[-1], StreamEnded)


def test_renewal_waits_for_the_end_of_a_top_level_element(renewals: list[int]) -> None:
    # One byte at a time across the epoch boundary, stanzas whose attributes and text hold '>'.
    parser = tcp()
    small = b"<message><body>" + b"y" * 60 + b"</body></message>"
    while EPOCH_BYTES - (parser._fed - parser._epoch) > 100:
        parser.feed(small)
    assert not renewals
    tricky = b"<message a='>' b=\"/>\"><body>x > y</body><c/></message> "
    events: list[ParseEvent] = []
    for _ in range(4):
        for i in range(len(tricky)):
            events += parser.feed(tricky[i : i + 1])
    assert len(renewals) == 1
    assert [serialize(e.element) for e in events if isinstance(e, ElementReceived)] == [expected(tricky)] * 4


# --------------------------------------------------------------------------- a million names, in a fresh interpreter

BOUND_MB = 4
"""Stated bound: growth of the process's resident set (its highest, sampled) for a million distinct names."""

_SCRIPT = textwrap.dedent(
    """
    import resource, sys
    sys.path.insert(0, {root!r})
    from lxml import etree
    from tests.proto import test_xml_names as t

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()

    # Half a million distinct strings per mode, of every kind libxml2 interns.
    MIX = {{"element": 200_000, "attribute": 100_000, "prefix": 50_000, "namespace": 100_000, "blank": 50_000}}
    warm = t.tcp()
    for data in t.stanzas("element", 10**9, 2_000):
        warm.feed(data)
    del warm
    base = high = rss()
    first = 0
    for make in (t.tcp, t.framed):
        parser = make()
        for kind, count in MIX.items():
            for n, data in enumerate(t.stanzas(kind, first, count, per_stanza=500)):
                t.feed(parser, data)
                if n % 20 == 0:  # every 10,000 strings
                    high = max(high, rss())
            first += count
        del parser
    ours = max(high, rss()) - base
    mid = rss()
    for kind, count in MIX.items():  # the control: half of them again, parsed by lxml as it comes
        for data in t.stanzas(kind, first, count, per_stanza=500):
            etree.fromstring(data)
        first += count
    print(ours / 1e6, (rss() - mid) / 1e6)
    """
)


def test_a_million_distinct_names_stay_under_the_bound() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT.format(root=str(ROOT))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    ours, plain = (float(x) for x in out.split())
    # A million distinct strings (half a million per mode) through StreamParser ...
    assert ours < BOUND_MB, f"StreamParser: +{ours:.1f} MB"
    # ... and half a million through lxml's own parser, to show the measure would catch a leak.
    assert plain > 3 * BOUND_MB, f"etree.fromstring: +{plain:.1f} MB"
