"""Catalogue rows 3 and 4 (docs/security.md): oversized stanzas and deep nesting over real sockets, with
the shipped limits (``XMPP_MAX_STANZA_BYTES`` 262144, ``XMPP_MAX_PREAUTH_STANZA_BYTES`` 10000,
``XMPP_MAX_DEPTH`` 48): each is enforced at its exact value, ends the stream with
``<policy-violation/>``, is logged with the connection's address, and is advertised (XEP-0478).

Exactly how many bytes reach the parser before a limit trips is asserted where it can be counted, on
the parser itself (tests/proto/test_xml_parser.py); here the server's peak memory stands for it.
"""

from __future__ import annotations

import contextlib
import time

import pytest
from django.conf import settings
from lxml import etree
from OpenSSL import SSL

from tests.integration.rawclient import RawClient, Session
from tests.integration.server import Server
from tests.security.helpers import (
    ServerMemory,
    closed_with,
    local_port,
    logged,
    send_and_time_close,
    send_bytewise,
    stream_in,
)
from xmppauth.proto.errors import StreamError
from xmppauth.proto.xml import StreamParser

pytestmark = pytest.mark.integration

LIMIT = 262_144
PREAUTH_LIMIT = 10_000
DEPTH = 48
TLS_NS = "urn:ietf:params:xml:ns:xmpp-tls"
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
LIMITS_NS = "urn:xmpp:stream-limits:0"


def message_of(size: int, to: str = "bob@localhost") -> bytes:
    """A chat message of exactly ``size`` bytes, padded in its body."""
    head = f"<message to='{to}' type='chat' id='big'><body>".encode()
    tail = b"</body></message>"
    stanza = head + b"x" * (size - len(head) - len(tail)) + tail
    assert len(stanza) == size
    return stanza


def in_pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def test_the_shipped_limits_are_the_ones_these_tests_probe() -> None:
    assert settings.XMPP_MAX_STANZA_BYTES == LIMIT
    assert settings.XMPP_MAX_PREAUTH_STANZA_BYTES == PREAUTH_LIMIT <= 10 * 1024
    assert settings.XMPP_MAX_DEPTH == DEPTH <= 64


# ---------------------------------------------------------------------------------------- row 3
def test_a_stanza_of_exactly_the_limit_is_delivered(server: Server, bob: Session) -> None:
    alice = Session(server, "alice", "wonderland")
    assert alice.ok, alice.reply
    for piece in in_pieces(message_of(LIMIT, bob.jid), 1000):
        alice.send(piece.decode())
    got = bob.expect("</message>", timeout=10)
    assert got.count(b"x") >= LIMIT - 200
    alice.close()


@pytest.mark.parametrize(
    "piece", [1000, 7, LIMIT + 1], ids=["1000-byte-writes", "7-byte-writes", "one-write"]
)
def test_a_stanza_of_limit_plus_one_bytes_is_a_policy_violation_however_it_is_split(
    server: Server, piece: int
) -> None:
    client = stream_in(server, "bound")
    port = local_port(client, server)
    data = message_of(LIMIT + 1)
    if piece == 7:  # the first 50,000 bytes in 7,143 writes, the rest 1000 bytes at a time
        head, rest = data[:50_000], data[50_000:]
        pieces = in_pieces(head, 7) + in_pieces(rest, 1000)
    else:
        pieces = in_pieces(data, piece)
    for chunk in pieces:
        client.send(chunk)
    assert closed_with(client, timeout=10) == "policy-violation"
    client.close()
    line = logged(server, port, "stream error policy-violation")
    assert f"larger than {LIMIT} bytes" in line


@pytest.mark.parametrize("phase", ["tls-preauth", "bound"])
def test_a_huge_attribute_is_refused_before_it_is_buffered(server: Server, phase: str) -> None:
    """8 MiB in one attribute value, written in 64 KiB pieces: the stream ends with policy-violation and
    the server's peak memory grows by far less than the attack (< 1 MiB, whatever its size)."""
    client = stream_in(server, phase)
    port = local_port(client, server)
    memory = ServerMemory(server.proc.pid)
    time.sleep(0.2)  # the login's own allocations settle
    memory.start()
    client.send(b"<message to='bob@localhost' id='")
    sent = 0
    with contextlib.suppress(OSError, SSL.Error):  # the server may close before it has read it all
        for _ in range(128):
            client.send(b"A" * 65536)
            sent += 65536
    assert closed_with(client, timeout=10) == "policy-violation"
    client.close()
    growth = memory.peak_growth()
    assert growth < 1024 * 1024, f"peak RSS grew by {growth // 1024} KiB while {sent // 1024} KiB were sent"
    limit = PREAUTH_LIMIT if phase == "tls-preauth" else LIMIT
    assert f"larger than {limit} bytes" in logged(server, port, "stream error policy-violation")


def auth_of(size: int) -> bytes:
    """A PLAIN ``<auth/>`` of exactly ``size`` bytes whose content is no valid PLAIN message."""
    head, tail = f"<auth xmlns='{SASL}' mechanism='PLAIN'>".encode(), b"</auth>"
    element = head + b"A" * (size - len(head) - len(tail)) + tail
    assert len(element) == size
    return element


def test_before_authentication_an_element_over_10000_bytes_is_a_policy_violation(server: Server) -> None:
    client = stream_in(server, "tls-preauth")
    # 10,000 bytes of <auth/> are still read (and fail as SASL, not as a stream error) ...
    client.send(auth_of(PREAUTH_LIMIT))
    assert b"<failure" in client.read_until(rb"</failure>|<failure[^>]*/>")
    # ... 10,001 are not
    port = local_port(client, server)
    out, _ = send_and_time_close(client, auth_of(PREAUTH_LIMIT + 1))
    client.close()
    assert b"<policy-violation" in out, out[-300:]
    assert f"larger than {PREAUTH_LIMIT} bytes" in logged(server, port, "stream error policy-violation")


@pytest.mark.parametrize("size", [9_000, PREAUTH_LIMIT + 1])
def test_before_tls_the_starttls_element_itself_is_held_to_the_preauth_limit(
    server: Server, size: int
) -> None:
    client = stream_in(server, "cleartext")
    head = f"<starttls xmlns='{TLS_NS}' pad='".encode()
    client.send(head + b"p" * (size - len(head) - 3) + b"'/>")
    if size < PREAUTH_LIMIT:
        assert b"<proceed" in client.read_until(rb"<proceed[^>]*/>")
    else:
        assert closed_with(client) == "policy-violation"
    client.close()


def test_a_huge_stream_header_is_a_policy_violation(server: Server) -> None:
    client = RawClient(server.c2s)
    port = local_port(client, server)
    header = (
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
        "xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0' "
        f"pad='{'h' * 100_000}'>"
    )
    out, _ = send_and_time_close(client, header.encode())
    client.close()
    assert b"<policy-violation" in out
    assert "stream header larger than" in logged(server, port, "stream error policy-violation")


def advertised_limits(features: bytes) -> etree._Element | None:
    xml = features[features.index(b"<stream:features") :]
    root = etree.fromstring(
        xml.replace(b"<stream:features>", b"<features>").replace(b"stream:features", b"features")
    )
    return root.find(f"{{{LIMITS_NS}}}limits")


@pytest.mark.parametrize("phase", ["tls-preauth", "bound"])
def test_the_stanza_limit_in_force_is_advertised_with_xep_0478(server: Server, phase: str) -> None:
    if phase == "tls-preauth":
        client = RawClient(server.c2s_tls, direct_tls=True)
        features = client.open_stream()
        expected = PREAUTH_LIMIT
    else:
        session = Session(server, "alice", "wonderland")
        client, features, expected = session.raw, session.reply, LIMIT
    client.close()
    limits = advertised_limits(features)
    assert limits is not None, features
    assert limits.findtext(f"{{{LIMITS_NS}}}max-bytes") == str(expected)


# ---------------------------------------------------------------------------------------- row 4
def nested(levels: int, to: str = "bob@localhost") -> bytes:
    """A message whose payload nests ``levels`` elements below the message (which is depth 1)."""
    return (
        f"<message to='{to}' type='chat' id='deep'><body>deep</body>".encode()
        + b"<a xmlns='urn:example:deep'>" * levels
        + b"</a>" * levels
        + b"</message>"
    )


def test_nesting_down_to_the_limit_is_delivered_and_one_more_level_is_refused(
    server: Server, bob: Session
) -> None:
    alice = Session(server, "alice", "wonderland")
    assert alice.ok, alice.reply
    alice.send(nested(DEPTH - 1, bob.jid).decode())  # the deepest element is at depth 48
    assert b"urn:example:deep" in bob.expect("</message>")
    port = local_port(alice.raw, server)
    alice.send(nested(DEPTH, bob.jid).decode())
    assert closed_with(alice.raw) == "policy-violation"
    alice.close()
    assert f"nested deeper than {DEPTH} levels" in logged(server, port, "stream error policy-violation")


@pytest.mark.parametrize("phase", ["tls-preauth", "bound"])
def test_ten_thousand_levels_a_byte_at_a_time_end_the_stream_early(server: Server, phase: str) -> None:
    client = stream_in(server, phase)
    port = local_port(client, server)
    bomb = b"<a>" * 10_000
    sent = send_bytewise(client, bomb)
    assert closed_with(client, timeout=5) == "policy-violation"
    client.close()
    assert sent < len(bomb), "the server read all 10,000 levels before it answered"
    assert "nested deeper than" in logged(server, port, "stream error policy-violation")


def test_parsing_ten_thousand_levels_a_byte_at_a_time_costs_under_5_ms_of_cpu() -> None:
    """The parser with the shipped limits, timed on this thread's CPU clock (the least of five runs)."""
    header = (
        b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
        b"xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>"
    )
    bomb = b"<a>" * 10_000
    best = float("inf")
    for _ in range(5):
        parser = StreamParser(max_stanza_bytes=LIMIT, max_depth=DEPTH)
        parser.feed(header)
        fed = 0
        started = time.thread_time()
        error: StreamError | None = None
        for i in range(len(bomb)):
            fed += 1
            try:
                parser.feed(bomb[i : i + 1])
            except StreamError as exc:
                error = exc
                break
        best = min(best, time.thread_time() - started)
        assert error is not None
        assert error.condition.value == "policy-violation"
        assert fed <= (DEPTH + 2) * 3
    assert best < 0.005, f"{best * 1000:.2f} ms"
