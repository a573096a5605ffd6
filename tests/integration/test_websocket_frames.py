"""RFC 7395 on a real server (text frames only: a binary frame ends the stream), and the WebSocket transport
(xmppauth/transport/websocket.py) alone."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import pytest
import websockets
from autobahn.exception import Disconnected
from lxml import etree
from websockets.asyncio.client import ClientConnection

from tests.integration.rawclient import websocket_bound
from tests.integration.server import Server, running_server
from xmppauth.transport.websocket import WebSocketTransport

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
    async with await websocket_bound(url, "bob", "builder", "web") as ws:
        await ws.send(b"<iq xmlns='jabber:client' type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
        await _expect_unsupported_encoding_and_close(ws)


# ------------------------------------------------------------------ the transport alone (no server)
class _Asgi:
    """The WebSocket side of one connection: what Daphne would deliver, and what it was sent."""

    def __init__(self, *incoming: dict[str, Any], gone_after: int | None = None) -> None:
        self.incoming = list(incoming)
        self.sent: list[dict[str, Any]] = []
        self.gone_after = gone_after  # raise Disconnected for sends after this many

    async def receive(self) -> dict[str, Any]:
        return self.incoming.pop(0)

    async def send(self, message: dict[str, Any]) -> None:
        if self.gone_after is not None and len(self.sent) >= self.gone_after:
            raise Disconnected()
        self.sent.append(message)


def _scope(subprotocols: list[str], client: tuple[str, int] = ("127.0.0.1", 40000)) -> dict[str, Any]:
    return {
        "type": "websocket",
        "scheme": "ws",
        "path": "/xmpp-websocket",
        "subprotocols": subprotocols,
        "client": client,
    }


async def test_it_refuses_a_websocket_without_the_xmpp_subprotocol() -> None:
    async def stream_application(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise AssertionError("not for a refused WebSocket")

    side = _Asgi({"type": "websocket.connect"})
    await WebSocketTransport(stream_application)(_scope(["chat"]), side.receive, side.send)
    assert side.sent == [{"type": "websocket.close"}]  # before the accept: HTTP 403


async def test_it_hands_the_stream_one_message_set_whatever_the_frames() -> None:
    scopes: list[dict[str, Any]] = []
    received: list[dict[str, Any]] = []

    async def stream_application(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scopes.append(scope)
        while not received or received[-1]["type"] != "xmpp.disconnect":
            received.append(await receive())
        await send({"type": "xmpp.send", "frames": [b"<open/>", "<a>é</a>".encode()]})
        await send({"type": "xmpp.close"})

    side = _Asgi(
        {"type": "websocket.connect"},
        {"type": "websocket.receive", "text": "<open/>"},
        {"type": "websocket.receive", "bytes": b"<open/>"},
        {"type": "websocket.disconnect", "code": 1006},
    )
    await WebSocketTransport(stream_application)(_scope(["xmpp"]), side.receive, side.send)
    assert scopes[0]["type"] == "xmpp"
    assert scopes[0]["transport"] == "websocket"
    assert scopes[0]["xmpp_framing"] == "websocket"
    assert scopes[0]["path"] == "/xmpp-websocket"
    assert received == [
        {"type": "xmpp.connect", "tls": None, "encrypted": True},  # loopback terminates TLS by default
        {"type": "xmpp.receive", "bytes": b"<open/>"},
        {
            "type": "xmpp.stream_error",
            "condition": "unsupported-encoding",
            "text": "XMPP over WebSocket uses text frames (RFC 7395 §3.2)",
        },
        {"type": "xmpp.disconnect", "reason": "websocket closed (1006)"},
    ]
    assert side.sent == [
        {"type": "websocket.accept", "subprotocol": "xmpp"},
        {"type": "websocket.send", "text": "<open/>"},
        {"type": "websocket.send", "text": "<a>é</a>"},
        {"type": "websocket.close", "code": 1000},
    ]


async def test_a_websocket_from_elsewhere_is_not_encrypted() -> None:
    received: list[dict[str, Any]] = []

    async def stream_application(scope: dict[str, Any], receive: Any, send: Any) -> None:
        received.append(await receive())

    side = _Asgi({"type": "websocket.connect"})
    await WebSocketTransport(stream_application)(_scope(["xmpp"], ("192.0.2.7", 1)), side.receive, side.send)
    assert received == [{"type": "xmpp.connect", "tls": None, "encrypted": False}]


async def test_a_client_that_has_gone_is_not_an_error() -> None:
    async def stream_application(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "xmpp.send", "frames": [b"<a/>", b"<b/>", b"<c/>"]})  # gone after <a/>
        await send({"type": "xmpp.close"})

    side = _Asgi({"type": "websocket.connect"}, gone_after=2)
    await WebSocketTransport(stream_application)(_scope(["xmpp"]), side.receive, side.send)
    assert side.sent == [
        {"type": "websocket.accept", "subprotocol": "xmpp"},
        {"type": "websocket.send", "text": "<a/>"},
    ]
