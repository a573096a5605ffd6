"""Connection limits over real sockets (issue 12, item 2; xmppauth/transport/limits.py).

Before, 400 connections from one address were all accepted. Now a server limited to 5 connections per
address and a burst of 8 new ones (then 2 a second) refuses the excess with a policy-violation stream
error on the STARTTLS listener and on WebSocket, and closes it unspent on the direct-TLS listener;
connections from other addresses are not held, and a place freed is a place again. Clients come from
several loopback addresses (127.0.0.x) as from several machines.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Iterator

import pytest
import websockets
from OpenSSL import SSL

from tests.integration.rawclient import RawClient, client_header, parse_stream_error
from tests.integration.server import Server, running_server

pytestmark = pytest.mark.integration

LIMITS = {
    "XMPP_MAX_CONNECTIONS_PER_ADDRESS": "5",
    "XMPP_CONNECT_BURST": "8",
    "XMPP_CONNECTS_PER_SECOND_PER_ADDRESS": "2",
}
_sources = iter(range(2, 250))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("connlimits"), {}, **LIMITS) as srv:
        yield srv


def new_address() -> str:
    return f"127.0.0.{next(_sources)}"


def starttls_header(server: Server, source: str) -> tuple[RawClient, bytes]:
    client = RawClient(server.c2s, source=source)
    client.send(client_header())
    return client, client.read_until(rb"</stream:features>|</stream:stream>")


def test_an_address_gets_so_many_connections_and_is_told_why_beyond(server: Server) -> None:
    source = new_address()
    held = [starttls_header(server, source) for _ in range(5)]
    assert all(b"<starttls" in features for _, features in held)
    refused, reply = starttls_header(server, source)
    assert parse_stream_error(reply) == "policy-violation", reply
    assert b"too many connections from your address" in reply
    assert b"<starttls" not in reply  # nothing offered to it
    refused.read_to_close()
    # another machine is not held
    other, features = starttls_header(server, new_address())
    assert b"<starttls" in features
    # a connection that goes frees its place
    held[0][0].close()
    time.sleep(0.3)
    again, features = starttls_header(server, source)
    assert b"<starttls" in features, features
    for client, _ in [*held[1:], (other, b""), (again, b"")]:
        client.close()
    assert "too many connections from your address" in server.log_text()  # logged when it trips


def test_the_direct_tls_listener_closes_the_excess_before_any_handshake(server: Server) -> None:
    source = new_address()
    held = [RawClient(server.c2s_tls, direct_tls=True, source=source) for _ in range(5)]
    with pytest.raises(SSL.Error):  # the server closes before a ServerHello
        RawClient(server.c2s_tls, direct_tls=True, source=source)
    for client in held:
        client.close()


def test_a_websocket_beyond_the_limit_gets_a_stream_error(server: Server) -> None:
    async def run() -> str:
        url = f"ws://127.0.0.1:{server.http}/xmpp-websocket"
        # WebSockets come from 127.0.0.1 (the websockets client binds no source address): fill its 5
        # places over TCP first, from the same address
        held = [RawClient(server.c2s) for _ in range(5)]
        try:
            frames = []
            async with websockets.connect(url, subprotocols=["xmpp"]) as ws:  # type: ignore[list-item]
                # the server speaks first and closes: nothing the client sends is needed
                with contextlib.suppress(websockets.ConnectionClosed):
                    async for frame in ws:
                        frames.append(frame if isinstance(frame, str) else frame.decode())
            return "".join(frames)
        finally:
            for client in held:
                client.close()

    text = asyncio.run(run())
    assert "<policy-violation" in text, text
    assert "too many connections from your address" in text
    assert "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'" in text


def test_a_flood_of_connects_gets_its_burst_then_the_rate(server: Server) -> None:
    source = new_address()
    outcomes = []
    for _ in range(12):  # each closed again at once: the open limit is not what holds them
        client, reply = starttls_header(server, source)
        outcomes.append(parse_stream_error(reply))
        client.close()
    assert outcomes[:8] == [None] * 8, outcomes
    assert "policy-violation" in outcomes[8:], outcomes
    time.sleep(1.1)  # 2 a second come back
    client, reply = starttls_header(server, source)
    assert b"<starttls" in reply, reply
    client.close()


def test_a_refused_connection_costs_the_server_no_handshake(server: Server) -> None:
    """Raw: the refused direct-TLS socket is closed by the server without a byte of TLS."""
    source = new_address()
    held = [
        socket.create_connection(("127.0.0.1", server.c2s_tls), source_address=(source, 0)) for _ in range(5)
    ]
    extra = socket.create_connection(("127.0.0.1", server.c2s_tls), source_address=(source, 0))
    extra.settimeout(5)
    assert extra.recv(100) == b""  # closed, nothing written
    for sock in [*held, extra]:
        sock.close()
