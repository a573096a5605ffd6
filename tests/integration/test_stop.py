"""A normal stop (SIGTERM) over real sockets (xmppauth/shutdown.py; issue 12 item 6, issue 13 item 4).

Every stream is told ``system-shutdown`` before the process goes: a client still before its login, a
session over TCP and one over WebSocket; what the WebSocket session had been sent and not acknowledged
is stored and comes at the next login; the stop is quick even though no client answers the server's
closing; and the log says what was ended. (The TCP case with a hibernating session and the offline
store across the restart is tests/integration/test_faults.py ``test_a_normal_stop_keeps_...``.)
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import websockets

from tests.integration.rawclient import (
    RawClient,
    available,
    client_header,
    parse_stream_error,
    websocket_bound,
)
from tests.integration.server import running_server

pytestmark = pytest.mark.integration

SM = "urn:xmpp:sm:3"


async def _websocket_session(url: str) -> websockets.ClientConnection:
    """bob over WebSocket, with stream management, available."""
    ws: websockets.ClientConnection = await websocket_bound(url, "bob", "builder", "web")
    await ws.send(f"<enable xmlns='{SM}'/>")
    assert "<enabled" in str(await ws.recv())
    await ws.send("<presence xmlns='jabber:client'/>")
    return ws


async def _until(ws: websockets.ClientConnection, text: str) -> list[str]:
    frames: list[str] = []
    while text not in "".join(frames):
        frames.append(str(await asyncio.wait_for(ws.recv(), 5)))
    return frames


async def _rest(ws: websockets.ClientConnection) -> str:
    frames: list[str] = []
    try:
        async for frame in ws:
            frames.append(str(frame))
    except websockets.ConnectionClosed:
        pass
    return "".join(frames)


def test_a_stop_tells_every_stream_and_keeps_what_a_websocket_session_had_not_acknowledged(
    tmp_path: Path,
) -> None:
    with running_server(tmp_path / "stop") as server:

        async def run() -> tuple[str, bytes, bytes, float]:
            url = f"ws://127.0.0.1:{server.http}/xmpp-websocket"
            ws = await _websocket_session(url)
            alice = available(server, "alice", "wonderland")
            alice.send(
                "<message to='bob@localhost/web' type='chat'><body>never acknowledged</body></message>"
            )
            await _until(ws, "never acknowledged</body>")
            early = RawClient(server.c2s)  # a client still before its login
            early.send(client_header())
            early.read_until(rb"</stream:features>")
            started = time.monotonic()
            server.proc.terminate()
            told_ws = await _rest(ws)
            told_early, told_alice = early.read_to_close(), alice.raw.read_to_close()
            server.proc.wait(timeout=15)
            return told_ws, told_early, told_alice, time.monotonic() - started

        told_ws, told_early, told_alice, seconds = asyncio.run(run())
        assert "<system-shutdown" in told_ws, told_ws
        assert "the server is shutting down" in told_ws
        for told in (told_early, told_alice):
            assert parse_stream_error(told) == "system-shutdown", told
        assert seconds < 5, "no client answered the closing: the stop did not wait for them"
        log = server.log_text()
        assert "stopping: ending 3 stream(s) and session(s)" in log, log
        assert "1 unacknowledged message(s) kept offline for bob@localhost" in log, log

    with running_server(tmp_path / "stop", {}) as server:  # the same data: bob's message waits for him
        bob = available(server, "bob", "builder")
        stored = bob.expect("never acknowledged</body>.*?</message>")
        assert b"urn:xmpp:delay" in stored, stored
        bob.close()
