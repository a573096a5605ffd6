"""RFC 7395 §3.2 on a real server: XMPP over WebSocket is text frames only; a binary frame ends the stream."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
import websockets
from lxml import etree
from websockets.asyncio.client import ClientConnection

from tests.integration.server import Server, running_server

pytestmark = pytest.mark.integration

OPEN = "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>"
CLOSE = "<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>"
STREAMS = "http://etherx.jabber.org/streams"
STREAM_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(tmp_path_factory.mktemp("server")) as srv:
        yield srv


async def _expect_unsupported_encoding_and_close(ws: ClientConnection) -> None:
    error = etree.fromstring(str(await ws.recv()))
    assert error.tag == f"{{{STREAMS}}}error"
    assert [child.tag for child in error] == [
        f"{{{STREAM_ERRORS}}}unsupported-encoding",
        f"{{{STREAM_ERRORS}}}text",
    ]
    assert error[1].text == "XMPP over WebSocket uses text frames (RFC 7395 §3.2)"
    assert await ws.recv() == CLOSE  # RFC 7395 §3.6: the stream is closed, then the WebSocket
    with pytest.raises(websockets.exceptions.ConnectionClosedOK):
        await ws.recv()
    assert ws.close_code == 1000


async def test_a_binary_frame_after_the_open_ends_the_stream(server: Server) -> None:
    url = f"ws://127.0.0.1:{server.http}/xmpp-websocket"
    async with websockets.connect(url, subprotocols=["xmpp"]) as ws:  # type: ignore[list-item]
        await ws.send(OPEN)
        assert str(await ws.recv()).startswith("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing'")
        assert "<mechanisms" in str(await ws.recv())
        token = base64.b64encode(b"\0alice\0wonderland").decode()
        # well-formed, and what a text frame may carry: only the frame type is wrong
        await ws.send(
            f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>".encode()
        )
        await _expect_unsupported_encoding_and_close(ws)


async def test_a_binary_frame_from_a_bound_session_is_not_delivered(server: Server) -> None:
    url = f"ws://127.0.0.1:{server.http}/xmpp-websocket"
    async with websockets.connect(url, subprotocols=["xmpp"]) as ws:  # type: ignore[list-item]
        await ws.send(OPEN)
        await ws.recv()
        await ws.recv()
        token = base64.b64encode(b"\0bob\0builder").decode()
        await ws.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>")
        assert str(await ws.recv()).startswith("<success")
        await ws.send(OPEN)
        await ws.recv()
        await ws.recv()
        await ws.send(
            "<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
            "<resource>web</resource></bind></iq>"
        )
        assert "<jid>bob@localhost/web</jid>" in str(await ws.recv())
        await ws.send(b"<iq xmlns='jabber:client' type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
        await _expect_unsupported_encoding_and_close(ws)
