"""Catalogue rows 7, 8 and 17 (docs/security.md) against the running server: nothing but STARTTLS on a
cleartext stream, TLS 1.2 as the minimum with AEAD suites only, no renegotiation, ALPN ``xmpp-client`` on
direct TLS, and plaintext pipelined after ``<proceed/>`` never processed inside TLS."""

from __future__ import annotations

import socket
import time

import pytest
from lxml import etree
from OpenSSL import SSL

from tests.integration.rawclient import SASL, RawClient, b64, client_header
from tests.integration.server import Server
from tests.security.helpers import closed_with, local_port, logged

pytestmark = pytest.mark.integration

TLS_NS = "urn:ietf:params:xml:ns:xmpp-tls"
LIMITS_NS = "urn:xmpp:stream-limits:0"
STARTTLS = f"<starttls xmlns='{TLS_NS}'/>".encode()
ALICE_PLAIN = b64(b"\0alice\0wonderland")
PLAIN_ALICE = f"<auth xmlns='{SASL}' mechanism='PLAIN'>{ALICE_PLAIN}</auth>".encode()


def connect(server: Server, listener: str) -> socket.socket:
    """A TCP connection ready for a TLS ClientHello: direct TLS, or STARTTLS after ``<proceed/>``."""
    if listener == "direct":
        sock = socket.create_connection(("127.0.0.1", server.c2s_tls), timeout=10)
    else:
        client = RawClient(server.c2s)
        client.open_stream()
        client.send(STARTTLS)
        client.read_until(rb"<proceed[^>]*/>")
        sock = client.sock
    sock.settimeout(None)  # pyOpenSSL wants a blocking socket (pytest-timeout bounds the test)
    return sock


def handshake(
    sock: socket.socket,
    *,
    version: int | None = None,
    ciphers: bytes | None = None,
    alpn: list[bytes] | None = None,
) -> SSL.Connection:
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    if version is not None:
        ctx.set_min_proto_version(version)
        ctx.set_max_proto_version(version)
    ctx.set_cipher_list(ciphers or b"DEFAULT:@SECLEVEL=0")  # let the client offer what the test wants
    if alpn:
        ctx.set_alpn_protos(alpn)
    conn = SSL.Connection(ctx, sock)
    conn.set_tlsext_host_name(b"localhost")
    conn.set_connect_state()
    conn.do_handshake()
    return conn


def features_of(raw: bytes) -> etree._Element:
    xml = raw[raw.index(b"<stream:features>") :].replace(b"stream:features", b"features")
    return etree.fromstring(xml)


# ---------------------------------------------------------------------------------------- row 7
def test_a_cleartext_stream_offers_starttls_required_and_nothing_else(server: Server) -> None:
    """Nothing to negotiate but STARTTLS, which is required; XEP-0478's ``<limits/>`` (information about
    the stream, not something to negotiate) may stand beside it."""
    client = RawClient(server.c2s)
    features = features_of(client.open_stream())
    client.close()
    offered = [child.tag for child in features if child.tag != f"{{{LIMITS_NS}}}limits"]
    assert offered == [f"{{{TLS_NS}}}starttls"]
    assert [child.tag for child in features[0]] == [f"{{{TLS_NS}}}required"]


@pytest.mark.parametrize(
    "first",
    [
        PLAIN_ALICE,
        b"<authenticate xmlns='urn:xmpp:sasl:2' mechanism='PLAIN'><initial-response>"
        + ALICE_PLAIN.encode()
        + b"</initial-response></authenticate>",
        b"<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>",
        b"<message to='bob@localhost'><body>before TLS</body></message>",
        b"<presence/>",
        b"<enable xmlns='urn:xmpp:sm:3'/>",
    ],
    ids=["auth", "authenticate", "iq", "message", "presence", "sm-enable"],
)
def test_anything_but_starttls_on_a_cleartext_stream_is_a_policy_violation(
    server: Server, first: bytes
) -> None:
    client = RawClient(server.c2s)
    client.open_stream()
    port = local_port(client, server)
    client.send(first)
    assert closed_with(client) == "policy-violation"
    client.close()
    logged(server, port, "stream error policy-violation")
    assert (
        f"127.0.0.1:{port} authenticated" not in server.log_text()[port.since :]
    )  # (a reused port's older lines)


# ---------------------------------------------------------------------------------------- row 8
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("listener", ["direct", "starttls"])
@pytest.mark.parametrize("version", [SSL.TLS1_VERSION, SSL.TLS1_1_VERSION], ids=["tls1.0", "tls1.1"])
def test_tls_older_than_1_2_is_refused(server: Server, listener: str, version: int) -> None:
    sock = connect(server, listener)
    with pytest.raises(SSL.Error, match=r"protocol version|unsupported protocol|no protocols available"):
        handshake(sock, version=version)
    sock.close()


@pytest.mark.parametrize("listener", ["direct", "starttls"])
def test_tls_1_2_is_the_minimum_and_is_served(server: Server, listener: str) -> None:
    sock = connect(server, listener)
    conn = handshake(sock, version=SSL.TLS1_2_VERSION)
    assert conn.get_protocol_version_name() == "TLSv1.2"
    assert conn.get_cipher_name() in {
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
    }
    sock.close()


@pytest.mark.parametrize(
    "ciphers",
    [b"ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384", b"AES128-GCM-SHA256:AES256-SHA", b"aNULL:eNULL"],
    ids=["cbc", "no-forward-secrecy", "null"],
)
def test_tls_1_2_without_an_ecdhe_aead_suite_is_refused(server: Server, ciphers: bytes) -> None:
    sock = connect(server, "direct")
    with pytest.raises(SSL.Error):
        handshake(sock, version=SSL.TLS1_2_VERSION, ciphers=ciphers + b":@SECLEVEL=0")
    sock.close()


def renegotiate_and_talk(conn: SSL.Connection) -> None:
    conn.do_handshake()
    conn.sendall(b" ")  # a renegotiation that went through would let this pass
    conn.recv(65536)


@pytest.mark.parametrize("listener", ["direct", "starttls"])
def test_a_tls_1_2_renegotiation_is_refused(server: Server, listener: str) -> None:
    sock = connect(server, listener)
    conn = handshake(sock, version=SSL.TLS1_2_VERSION)
    if listener == "direct":
        conn.sendall(client_header())
        time.sleep(0.1)
        assert b"<stream:features>" in conn.recv(65536)
    assert conn.renegotiate()
    with pytest.raises(SSL.Error, match="no renegotiation"):
        renegotiate_and_talk(conn)
    sock.close()


def test_direct_tls_negotiates_alpn_xmpp_client(server: Server) -> None:
    sock = connect(server, "direct")
    conn = handshake(sock, alpn=[b"h2", b"xmpp-client"])
    assert conn.get_alpn_proto_negotiated() == b"xmpp-client"
    conn.sendall(client_header())
    time.sleep(0.1)
    assert b"<stream:features>" in conn.recv(65536)
    sock.close()


def test_direct_tls_refuses_a_client_that_offers_only_other_protocols(server: Server) -> None:
    sock = connect(server, "direct")
    with pytest.raises(SSL.Error, match="no application protocol"):
        handshake(sock, alpn=[b"h2", b"http/1.1"])
    sock.close()


# ---------------------------------------------------------------------------------------- row 17 (STARTTLS)
HEADER_WITHOUT_DECLARATION = client_header()[len(b"<?xml version='1.0'?>") :]


@pytest.mark.parametrize(
    "injected",
    [
        HEADER_WITHOUT_DECLARATION + PLAIN_ALICE,  # a whole login, as if sent after the handshake
        PLAIN_ALICE,
        b"<iq type='get' id='inj'><ping xmlns='urn:xmpp:ping'/></iq>",
        b"\x16\x03\x01",  # the start of a ClientHello that is not the client's
    ],
    ids=["header-and-auth", "auth", "iq", "tls-record-start"],
)
def test_plaintext_pipelined_after_starttls_is_never_processed_inside_tls(
    server: Server, injected: bytes
) -> None:
    client = RawClient(server.c2s)
    client.open_stream()
    port = local_port(client, server)
    client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client.send(STARTTLS + injected)  # one write: one TCP segment on loopback
    assert b"<proceed" in client.read_until(rb"<proceed[^>]*/>")
    client.start_tls()
    assert client.read_for(0.5) == b"", "the server answered something the client never sent over TLS"
    features = client.open_stream()  # a fresh stream: the mechanisms, nothing bound or authenticated
    assert b"<mechanism>SCRAM-SHA-256-PLUS</mechanism>" in features, features
    assert b"<success" not in features
    reply = client.scram("SCRAM-SHA-256-PLUS", "alice", "wonderland")
    assert reply.startswith(b"<success"), reply
    client.close()
    line = logged(server, port, "authenticated as")
    assert "SCRAM-SHA-256-PLUS" in line, line
    # from this connection's start on: the port may have been another test's connection before
    lines = [
        x for x in server.log_text()[port.since :].splitlines() if f"127.0.0.1:{port} authenticated" in x
    ]
    assert len(lines) == 1, lines


def test_a_pipelined_login_that_is_not_even_well_formed_there_ends_the_stream_before_tls(
    server: Server,
) -> None:
    """With its XML declaration the injected header is a processing instruction where it stands: the
    server refuses the whole write before it starts TLS (the other allowed outcome of row 17)."""
    client = RawClient(server.c2s)
    client.open_stream()
    client.send(STARTTLS + client_header() + PLAIN_ALICE)
    out = client.read_to_close()
    client.close()
    assert b"<proceed" not in out
    assert b"<success" not in out
    assert b"<restricted-xml" in out
