"""Raw XMPP over TCP: the Twisted transport that hosts the ASGI stream application (xmppauth.transport).

Twisted runs in a process of its own (tests/integration/tcp_echo_server.py, or `manage.py serve`) with
`echo_app` below as the application; the tests talk to it over loopback with stdlib `ssl` and pyOpenSSL
clients. A few behaviours that real sockets cannot show reliably (TCP_NODELAY on the server side, read
backpressure, dropping queued plaintext at STARTTLS) are checked in-process against a fake transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import json
import os
import select
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from OpenSSL import SSL

from xmppauth.transport.tls import (
    CertificateError,
    ServerTLS,
    ensure_certificate,
    tls_server_end_point,
)

REPO = Path(__file__).resolve().parents[2]
EXPORTER_LABEL = b"EXPORTER-Channel-Binding"
TIMEOUT = 10.0

# --- the application under the transport (runs inside the server process) -----------------------------

DISCONNECTS: list[dict[str, Any]] = []


def _tls_summary(tls: dict[str, Any] | None) -> dict[str, Any] | None:
    if tls is None:
        return None
    return {**tls, "channel_bindings": {k: v.hex() for k, v in tls["channel_bindings"].items()}}


def _json_line(prefix: bytes, value: Any) -> bytes:
    return prefix + json.dumps(value).encode() + b"\n"


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A line-oriented stand-in for the stream consumer.

    Replies ``HELLO {json}`` on connect and ``TLS {json}`` after STARTTLS; answers ``<starttls/>`` with
    ``<proceed/>`` + xmpp.starttls and ignores plaintext until TLS is up; commands (one per line):
    ``INFO`` (every message received so far), ``ECHO text``, ``BULK n`` (n bytes, ``END``, xmpp.close),
    ``DISCONNECTS`` (what earlier connections were told when they ended), ``CRASH``, ``QUIT``.
    """
    events: list[list[Any]] = []
    buffer = b""
    awaiting_tls = False

    async def say(data: bytes) -> None:
        await send({"type": "xmpp.send", "bytes": data})

    while True:
        message = await receive()
        kind = message["type"]
        events.append([kind, message["bytes"].decode("latin-1")] if kind == "xmpp.receive" else [kind])
        if kind == "xmpp.connect":
            hello = {"transport": scope["transport"], "tls": _tls_summary(message["tls"])}
            await say(_json_line(b"HELLO ", hello))
        elif kind == "xmpp.tls_established":
            awaiting_tls, buffer = False, b""
            await say(_json_line(b"TLS ", _tls_summary(message["tls"])))
        elif kind == "xmpp.disconnect":
            DISCONNECTS.append(
                {"client": scope["client"], "reason": message["reason"], "events": [e[0] for e in events]}
            )
            return
        elif kind == "xmpp.receive" and not awaiting_tls:
            buffer += message["bytes"]
            if b"<starttls/>" in buffer:
                buffer, awaiting_tls = b"", True
                await say(b"<proceed/>")
                await send({"type": "xmpp.starttls"})
                continue
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                command, _, arg = line.decode().partition(" ")
                if command == "INFO":
                    await say(_json_line(b"", {"events": events}))
                elif command == "ECHO":
                    await say(arg.encode() + b"\n")
                elif command == "BULK":
                    chunk = b"x" * 1024
                    for _ in range(int(arg) // len(chunk)):
                        await say(chunk)
                    await say(b"\nEND\n")
                    await send({"type": "xmpp.close"})
                elif command == "DISCONNECTS":
                    await say(_json_line(b"", DISCONNECTS))
                elif command == "CRASH":
                    raise RuntimeError("the test application crashed on purpose")
                elif command == "QUIT":
                    return


_django_http_app: Any = None


async def serve_test_application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """ASGI_APPLICATION for the `serve` tests: Django for HTTP, `echo_app` for raw XMPP."""
    global _django_http_app
    if scope["type"] == "xmpp":
        await echo_app(scope, receive, send)
        return
    if _django_http_app is None:
        from django.core.asgi import get_asgi_application

        _django_http_app = get_asgi_application()
    await _django_http_app(scope, receive, send)


# --- process and client helpers ------------------------------------------------------------------------


def _read_stdout_until(proc: subprocess.Popen[bytes], done: Callable[[list[str]], bool]) -> list[str]:
    """Lines the process printed, read until `done(lines)` holds; fails on exit or after TIMEOUT."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    lines: list[str] = []
    pending = b""
    deadline = time.monotonic() + TIMEOUT
    while not done(lines):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"timed out waiting for the server; it printed {lines!r}")
        ready, _, _ = select.select([fd], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            pytest.fail(f"the server exited with {proc.wait()}; it printed {lines!r}")
        pending += chunk
        *complete, pending = pending.split(b"\n")
        lines += [line.decode() for line in complete]
    return lines


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


@dataclass
class EchoServer:
    starttls_port: int
    directtls_port: int
    cert_path: Path
    stderr_path: Path


@pytest.fixture(scope="module")
def echo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EchoServer]:
    """tcp_echo_server.py in a subprocess, on free loopback ports, with a 2 s TLS handshake timeout."""
    tmp = tmp_path_factory.mktemp("echo-server")
    cert, key, stderr_path = tmp / "localhost.crt", tmp / "localhost.key", tmp / "stderr.txt"
    tls_args = ["--cert", str(cert), "--key", str(key)]
    with stderr_path.open("wb") as stderr:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.integration.tcp_echo_server",
                "--handshake-timeout",
                "2",
                *tls_args,
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=stderr,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    try:
        lines = _read_stdout_until(proc, lambda lines: any(line.startswith("READY") for line in lines))
        fields = dict(part.split("=") for part in lines[-1].split()[1:])
        yield EchoServer(int(fields["starttls"]), int(fields["directtls"]), cert, stderr_path)
    finally:
        _stop(proc)


class LineReader:
    """Reads lines from anything with recv() (a socket, an SSLSocket or `MemoryTLSClient`)."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.buffer = b""

    def line(self) -> bytes:
        while b"\n" not in self.buffer:
            data = self.conn.recv(65536)
            if not data:
                raise EOFError(f"connection closed; buffer {self.buffer[:200]!r}")
            self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line

    def json(self, prefix: bytes = b"") -> Any:
        line = self.line()
        assert line.startswith(prefix), line
        return json.loads(line[len(prefix) :])

    def until_eof(self) -> bytes:
        data = self.buffer
        while chunk := self.conn.recv(65536):
            data += chunk
        self.buffer = b""
        return data


class MemoryTLSClient:
    """A pyOpenSSL TLS client over memory BIOs, so that the test decides what goes out in one segment."""

    def __init__(self, sock: socket.socket, cert_path: Path, *, alpn: list[bytes] | None = None) -> None:
        ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
        ctx.load_verify_locations(str(cert_path))
        ctx.set_verify(SSL.VERIFY_PEER)
        if alpn:
            ctx.set_alpn_protos(alpn)
        self.sock = sock
        self.conn = SSL.Connection(ctx, None)
        self.conn.set_connect_state()
        self.conn.set_tlsext_host_name(b"localhost")

    def handshake(self, then_send: bytes = b"") -> None:
        """Complete the handshake; `then_send` leaves in the same write as the client's Finished."""
        while True:
            try:
                self.conn.do_handshake()
                break
            except SSL.WantReadError:
                self._flush()
                self._pump()
        if then_send:
            self.conn.send(then_send)
        self._flush()

    def send(self, data: bytes) -> None:
        self.conn.send(data)
        self._flush()

    def recv(self, size: int) -> bytes:
        while True:
            try:
                return self.conn.recv(size)
            except SSL.WantReadError:
                self._flush()
                if not self._pump():
                    return b""
            except SSL.ZeroReturnError:
                return b""

    def _flush(self) -> None:
        out = b""
        while True:
            try:
                out += self.conn.bio_read(65536)
            except SSL.WantReadError:
                break
        if out:
            self.sock.sendall(out)

    def _pump(self) -> bool:
        data = self.sock.recv(65536)
        if data:
            self.conn.bio_write(data)
        return bool(data)


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _client_context(cert_path: Path, *, alpn: list[str] | None = None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(cert_path))
    if alpn is not None:
        ctx.set_alpn_protocols(alpn)
    return ctx


def _end_point_hex(cert_path: Path) -> str:
    der = x509.load_pem_x509_certificate(cert_path.read_bytes()).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


def _disconnect_record(server: EchoServer, client_port: int) -> dict[str, Any]:
    """What the application was told when the connection from `client_port` ended (polls briefly)."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        with _connect(server.starttls_port) as sock:
            reader = LineReader(sock)
            reader.json(b"HELLO ")
            sock.sendall(b"DISCONNECTS\n")
            for record in reader.json():
                if record["client"][1] == client_port:
                    return record  # type: ignore[no-any-return]
        time.sleep(0.05)
    pytest.fail(f"no xmpp.disconnect recorded for client port {client_port}")


# --- STARTTLS -------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_starttls_never_feeds_pipelined_plaintext_into_tls(
    echo_server: EchoServer,
) -> None:
    with _connect(echo_server.starttls_port) as sock:
        plain = LineReader(sock)
        assert plain.json(b"HELLO ") == {"transport": "starttls", "tls": None}

        # Pipelined junk after <starttls/> in the same segment: it must not reach the TLS layer.
        sock.sendall(b"<starttls/>JUNK-PLAINTEXT")
        proceed = b""
        while len(proceed) < len(b"<proceed/>"):
            proceed += sock.recv(len(b"<proceed/>") - len(proceed))
        assert proceed == b"<proceed/>"

        # TLS 1.3: the client's Finished and its first application data leave in one write.
        client = MemoryTLSClient(sock, echo_server.cert_path)
        client.handshake(then_send=b"INFO\n")
        reader = LineReader(client)
        tls = reader.json(b"TLS ")
        events = reader.json()["events"]

    assert tls["version"] == "TLSv1.3"
    assert tls["alpn"] is None
    kinds = [event[0] for event in events]
    established = kinds.index("xmpp.tls_established")
    assert kinds[0] == "xmpp.connect"
    after_tls = [event[1] for event in events[established + 1 :]]
    assert after_tls == ["INFO\n"], "decrypted bytes arrive after xmpp.tls_established, and only they"
    before_tls = "".join(event[1] for event in events[1:established])
    assert before_tls == "<starttls/>JUNK-PLAINTEXT"


@pytest.mark.integration
def test_it_reports_both_channel_bindings_after_starttls(echo_server: EchoServer) -> None:
    with _connect(echo_server.starttls_port) as sock:
        LineReader(sock).json(b"HELLO ")
        sock.sendall(b"<starttls/>")
        assert sock.recv(len(b"<proceed/>")) == b"<proceed/>"
        client = MemoryTLSClient(sock, echo_server.cert_path)
        client.handshake()
        tls = LineReader(client).json(b"TLS ")
        exporter_no_context = client.conn.export_keying_material(EXPORTER_LABEL, 32, None)
        exporter_empty_context = client.conn.export_keying_material(EXPORTER_LABEL, 32, b"")

    bindings = tls["channel_bindings"]
    assert bindings["tls-exporter"] == exporter_no_context.hex() == exporter_empty_context.hex()
    assert bindings["tls-server-end-point"] == _end_point_hex(echo_server.cert_path)


@pytest.mark.integration
def test_a_failed_starttls_handshake_closes_and_disconnects(echo_server: EchoServer) -> None:
    with _connect(echo_server.starttls_port) as sock:
        client_port = sock.getsockname()[1]
        LineReader(sock).json(b"HELLO ")
        sock.sendall(b"<starttls/>")
        assert sock.recv(len(b"<proceed/>")) == b"<proceed/>"
        sock.sendall(b"this is not a TLS ClientHello\r\n" * 4)
        with contextlib.suppress(ConnectionResetError):
            LineReader(sock).until_eof()  # perhaps a TLS alert, then the end (a timeout would raise)

    record = _disconnect_record(echo_server, client_port)
    assert record["reason"].startswith("tls error"), record
    assert record["events"][-1] == "xmpp.disconnect"
    assert "xmpp.tls_established" not in record["events"]


# --- direct TLS -----------------------------------------------------------------------------------------


@pytest.mark.integration
def test_direct_tls_negotiates_alpn_xmpp_client(echo_server: EchoServer) -> None:
    ctx = _client_context(echo_server.cert_path, alpn=["xmpp-client"])
    with (
        _connect(echo_server.directtls_port) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as sock,
    ):
        assert sock.selected_alpn_protocol() == "xmpp-client"
        hello = LineReader(sock).json(b"HELLO ")

    assert hello["transport"] == "directtls"
    assert hello["tls"]["alpn"] == "xmpp-client"
    assert hello["tls"]["version"] == "TLSv1.3"
    assert hello["tls"]["cipher"] == "TLS_AES_128_GCM_SHA256"  # the server's preference
    assert hello["tls"]["channel_bindings"]["tls-server-end-point"] == _end_point_hex(echo_server.cert_path)


@pytest.mark.integration
def test_direct_tls_exporter_matches_a_pyopenssl_client(echo_server: EchoServer) -> None:
    with _connect(echo_server.directtls_port) as sock:
        client = MemoryTLSClient(sock, echo_server.cert_path, alpn=[b"xmpp-client"])
        client.handshake()
        hello = LineReader(client).json(b"HELLO ")
        exporter = client.conn.export_keying_material(EXPORTER_LABEL, 32, None)

    assert hello["tls"]["channel_bindings"]["tls-exporter"] == exporter.hex()


@pytest.mark.integration
def test_direct_tls_serves_clients_that_offer_no_alpn(echo_server: EchoServer) -> None:
    ctx = _client_context(echo_server.cert_path)
    with (
        _connect(echo_server.directtls_port) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as sock,
    ):
        hello = LineReader(sock).json(b"HELLO ")
    assert hello["tls"]["alpn"] is None


@pytest.mark.integration
def test_direct_tls_refuses_clients_that_offer_only_other_protocols(echo_server: EchoServer) -> None:
    ctx = _client_context(echo_server.cert_path, alpn=["h2", "http/1.1"])
    with (
        _connect(echo_server.directtls_port) as raw,
        pytest.raises(ssl.SSLError, match=r"(?i)no.application.protocol"),
    ):
        ctx.wrap_socket(raw, server_hostname="localhost")


@pytest.mark.integration
def test_tls_1_2_works_without_tls_exporter(echo_server: EchoServer) -> None:
    ctx = _client_context(echo_server.cert_path, alpn=["xmpp-client"])
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with (
        _connect(echo_server.directtls_port) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as sock,
    ):
        hello = LineReader(sock).json(b"HELLO ")
    assert hello["tls"]["version"] == "TLSv1.2"
    assert hello["tls"]["cipher"] == "ECDHE-ECDSA-AES128-GCM-SHA256"  # the server's preference
    assert set(hello["tls"]["channel_bindings"]) == {"tls-server-end-point"}


@pytest.mark.integration
@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_tls_1_1_is_refused(echo_server: EchoServer) -> None:
    ctx = _client_context(echo_server.cert_path)
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the client offer TLS 1.1 at all
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    with _connect(echo_server.directtls_port) as raw, pytest.raises(ssl.SSLError, match=r"(?i)version"):
        ctx.wrap_socket(raw, server_hostname="localhost")


@pytest.mark.integration
def test_a_silent_client_is_dropped_after_the_handshake_timeout(echo_server: EchoServer) -> None:
    started = time.monotonic()
    with _connect(echo_server.directtls_port) as sock, contextlib.suppress(ConnectionResetError):
        assert sock.recv(1) == b""
    assert 1.5 < time.monotonic() - started < 6


# --- closing --------------------------------------------------------------------------------------------


@pytest.mark.integration
def test_close_flushes_pending_data_before_closing(echo_server: EchoServer) -> None:
    size = 4 * 1024 * 1024  # far more than the socket buffers hold when xmpp.close arrives
    with _connect(echo_server.starttls_port) as sock:
        client_port = sock.getsockname()[1]
        reader = LineReader(sock)
        reader.json(b"HELLO ")
        sock.sendall(f"BULK {size}\n".encode())
        time.sleep(0.3)  # let the server queue it all and ask to close while we do not read
        data = reader.until_eof()
    assert len(data) == size + len(b"\nEND\n")
    assert data.endswith(b"\nEND\n")
    assert _disconnect_record(echo_server, client_port)["reason"] == "closed"


@pytest.mark.integration
def test_close_flushes_pending_data_over_tls(echo_server: EchoServer) -> None:
    size = 2 * 1024 * 1024
    ctx = _client_context(echo_server.cert_path, alpn=["xmpp-client"])
    with (
        _connect(echo_server.directtls_port) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as sock,
    ):
        reader = LineReader(sock)
        reader.json(b"HELLO ")
        sock.sendall(f"BULK {size}\n".encode())
        time.sleep(0.3)
        data = reader.until_eof()  # ends with the server's close_notify
    assert len(data) == size + len(b"\nEND\n")


@pytest.mark.integration
def test_peer_disconnect_produces_xmpp_disconnect(echo_server: EchoServer) -> None:
    with _connect(echo_server.starttls_port) as sock:
        client_port = sock.getsockname()[1]
        reader = LineReader(sock)
        reader.json(b"HELLO ")
        sock.sendall(b"ECHO hi\n")
        assert reader.line() == b"hi"
    record = _disconnect_record(echo_server, client_port)
    assert record["reason"] == "peer closed"
    assert record["events"] == ["xmpp.connect", "xmpp.receive", "xmpp.disconnect"]


@pytest.mark.integration
def test_a_crashing_application_gets_its_connection_closed(echo_server: EchoServer) -> None:
    with _connect(echo_server.starttls_port) as sock:
        reader = LineReader(sock)
        reader.json(b"HELLO ")
        sock.sendall(b"CRASH\n")
        assert reader.until_eof() == b""
    assert "the test application crashed on purpose" in echo_server.stderr_path.read_text()


@pytest.mark.integration
def test_an_application_that_returns_gets_its_connection_closed(echo_server: EchoServer) -> None:
    with _connect(echo_server.starttls_port) as sock:
        reader = LineReader(sock)
        reader.json(b"HELLO ")
        sock.sendall(b"QUIT\n")
        assert reader.until_eof() == b""


# --- in-process checks against a fake transport ---------------------------------------------------------


@pytest.fixture(scope="module")
def server_tls(tmp_path_factory: pytest.TempPathFactory) -> ServerTLS:
    tmp = tmp_path_factory.mktemp("tls")
    ensure_certificate("localhost", tmp / "c.crt", tmp / "c.key")
    return ServerTLS(tmp / "c.crt", tmp / "c.key")


def _memory_tls_client(cert_path: Path) -> SSL.Connection:
    """A pyOpenSSL client over memory BIOs, driven by hand against a protocol on a fake transport."""
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.load_verify_locations(str(cert_path))
    ctx.set_verify(SSL.VERIFY_PEER)
    conn = SSL.Connection(ctx, None)
    conn.set_connect_state()
    conn.set_tlsext_host_name(b"localhost")
    return conn


def _bio_drain(conn: SSL.Connection) -> bytes:
    out = b""
    while True:
        try:
            out += conn.bio_read(65536)
        except SSL.WantReadError:
            return out


def _handshake_through(protocol: Any, transport: Any, client: SSL.Connection, then_send: bytes = b"") -> None:
    """Run the client's handshake against `protocol`; `then_send` goes in the same write as its Finished."""
    while True:
        try:
            client.do_handshake()
            break
        except SSL.WantReadError:
            protocol.dataReceived(_bio_drain(client))
            client.bio_write(transport.value())
            transport.clear()
    if then_send:
        client.send(then_send)
    protocol.dataReceived(_bio_drain(client))


def _fake_connection(
    app: Any, server_tls: ServerTLS, transport_name: str = "starttls"
) -> tuple[Any, Any, Any]:
    from twisted.internet.address import IPv4Address
    from twisted.internet.task import Clock
    from twisted.internet.testing import StringTransport

    from xmppauth.transport.tcp import XMPPServerFactory

    class FakeTransport(StringTransport):
        nodelay: bool | None = None
        aborted = False
        _tempDataLen = 0  # Twisted's write buffer, as tcp.XMPPServerProtocol._buffered reads it
        dataBuffer = b""
        offset = 0

        def setTcpNoDelay(self, enabled: bool) -> None:
            self.nodelay = enabled

        def abortConnection(self) -> None:
            self.aborted = True

    factory = XMPPServerFactory(
        app,
        transport_name=transport_name,  # type: ignore[arg-type]
        tls=server_tls,
        reactor=Clock(),
        loop=asyncio.get_running_loop(),
    )
    transport = FakeTransport(  # type: ignore[no-untyped-call]
        hostAddress=IPv4Address("TCP", "127.0.0.1", 5222), peerAddress=IPv4Address("TCP", "127.0.0.1", 40000)
    )
    protocol = factory.buildProtocol(None)
    protocol.makeConnection(transport)  # type: ignore[no-untyped-call]
    return factory, protocol, transport


async def _until(condition: Callable[[], bool]) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.001)
    pytest.fail("condition not reached")


async def test_it_turns_on_tcp_nodelay_and_sends_the_scope(server_tls: ServerTLS) -> None:
    scopes: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scopes.append(scope)
        messages.append(await receive())

    _factory, _protocol, transport = _fake_connection(app, server_tls)
    await _until(lambda: bool(messages))
    assert transport.nodelay is True
    assert scopes[0] == {
        "type": "xmpp",
        "transport": "starttls",
        "client": ["127.0.0.1", 40000],
        "server": ["127.0.0.1", 5222],
        "xmpp_optional": frozenset({"xmpp.drain", "xmpp.bound", "xmpp.waiting", "xmpp.owed"}),
        "path": "",
        "headers": [],
        "query_string": b"",
        "asgi": {"version": "3.0"},
    }
    assert messages == [{"type": "xmpp.connect", "tls": None}]


async def test_xmpp_drain_is_answered_once_the_peer_has_read_what_waits(server_tls: ServerTLS) -> None:
    """The stored messages at a login go a piece at a time (StreamConsumer.deliver_offline): the transport
    answers ``xmpp.drain`` with ``xmpp.drained`` once at most DRAINED bytes wait for the peer, not before."""
    from xmppauth.transport import tcp

    received: list[dict[str, Any]] = []
    sender: list[Any] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        sender.append(send)
        while True:
            received.append(await receive())

    _, protocol, transport = _fake_connection(app, server_tls)
    await _until(lambda: bool(received))
    await sender[0]({"type": "xmpp.drain"})
    await _until(lambda: {"type": "xmpp.drained"} in received)  # nothing waits: at once
    received.clear()
    transport._tempDataLen = tcp.DRAINED + 1  # the peer has not read this much yet
    await sender[0]({"type": "xmpp.drain"})
    await asyncio.sleep(tcp.DRAIN_POLL * 5)
    assert received == []
    transport._tempDataLen = tcp.DRAINED  # it read some: what is left is small enough
    await _until(lambda: received == [{"type": "xmpp.drained"}])
    protocol.connectionLost()


@pytest.mark.parametrize("owed", [True, False], ids=["owed", "not-owed"])
async def test_bytes_owed_to_the_peer_do_not_count_towards_the_outgoing_limit_until_it_reads_them(
    server_tls: ServerTLS, owed: bool
) -> None:
    """A resumed session resends what its client had not acknowledged (``xmpp.owed``): megabytes at times,
    over the outgoing limit, and the connection was dropped at every resume. Owed bytes the peer has not
    read are left out of the count; what comes after them counts as always."""
    sender: list[Any] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        sender.append(send)
        while True:
            await receive()

    factory, protocol, transport = _fake_connection(app, server_tls)
    factory.max_outgoing_bytes = 1000
    write = transport.write

    def unread(data: bytes) -> None:  # the peer reads nothing: all of it waits
        write(data)
        transport._tempDataLen += len(data)

    transport.write = unread
    await _until(lambda: bool(sender))
    if owed:
        await sender[0]({"type": "xmpp.owed", "bytes": 5000})
    await sender[0]({"type": "xmpp.send", "frames": [b"r" * 5000]})  # the resend
    await asyncio.sleep(0.01)
    assert transport.aborted is not owed
    if owed:
        await sender[0]({"type": "xmpp.send", "frames": [b"n" * 900]})  # 900 new bytes: within the limit
        await asyncio.sleep(0.01)
        assert not transport.aborted
        transport._tempDataLen -= 4500  # the peer reads 4,500 bytes of the resend: 500 owed bytes wait
        await sender[0]({"type": "xmpp.send", "frames": [b"n" * 200]})  # 1,100 new bytes wait: over
        await asyncio.sleep(0.01)
        assert transport.aborted
    protocol.connectionLost()


async def test_it_pauses_reading_while_the_application_lags(server_tls: ServerTLS) -> None:
    from xmppauth.transport.tcp import HIGH_WATER, LOW_WATER

    go = asyncio.Event()
    received: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await go.wait()
        while True:
            received.append(await receive())
            if len(received) in (HIGH_WATER - LOW_WATER - 1, HIGH_WATER - LOW_WATER):
                go.clear()
                await go.wait()

    _factory, protocol, transport = _fake_connection(app, server_tls)
    for _ in range(HIGH_WATER - 2):  # plus xmpp.connect: one short of the mark
        protocol.dataReceived(b"x")
    assert transport.producerState == "producing"
    protocol.dataReceived(b"x")
    assert transport.producerState == "paused"

    go.set()  # the application takes all but LOW_WATER + 1 messages
    await _until(lambda: not go.is_set())
    assert transport.producerState == "paused"
    go.set()  # ... and one more
    await _until(lambda: not go.is_set())
    assert transport.producerState == "producing"


async def test_it_drops_queued_plaintext_when_tls_starts(server_tls: ServerTLS) -> None:
    go = asyncio.Event()
    received: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        received.append(await receive())  # xmpp.connect
        received.append(await receive())  # <starttls/>
        await go.wait()
        await send({"type": "xmpp.send", "bytes": b"<proceed/>"})
        await send({"type": "xmpp.starttls"})
        received.append(await receive())
        received.append(await receive())
        await send({"type": "xmpp.send", "bytes": b"<stream:stream>"})

    _factory, protocol, transport = _fake_connection(app, server_tls)
    protocol.dataReceived(b"<starttls/>")
    await _until(lambda: len(received) == 2)
    protocol.dataReceived(b"plaintext read before TLS started")
    go.set()
    await _until(lambda: transport.value() == b"<proceed/>")  # and xmpp.starttls, in the same step
    transport.clear()

    # TLS 1.3: the client's Finished and its first application data arrive in one read.
    client = _memory_tls_client(server_tls.cert_path)
    _handshake_through(protocol, transport, client, then_send=b"<stream:stream>")
    await _until(lambda: len(received) == 4)
    assert received[2]["type"] == "xmpp.tls_established"
    assert received[2]["tls"]["version"] == "TLSv1.3"
    assert received[2]["tls"]["channel_bindings"] == {
        "tls-server-end-point": server_tls.end_point,
        "tls-exporter": client.export_keying_material(b"EXPORTER-Channel-Binding", 32, b""),
    }
    assert received[3] == {"type": "xmpp.receive", "bytes": b"<stream:stream>"}, "plaintext was dropped"
    await _until(lambda: bool(transport.value()))
    client.bio_write(transport.value())
    assert client.recv(1024) == b"<stream:stream>"


async def _tls_connection_recording(server_tls: ServerTLS) -> tuple[list[dict[str, Any]], Any, Any, Any]:
    """A direct-TLS connection through the handshake to an application that records every message it
    receives (the first, xmpp.connect, is in already)."""
    received: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while True:
            received.append(await receive())

    _factory, protocol, transport = _fake_connection(app, server_tls, "directtls")
    client = _memory_tls_client(server_tls.cert_path)
    _handshake_through(protocol, transport, client)
    await _until(lambda: len(received) == 1)
    return received, protocol, transport, client


async def test_tls_records_read_together_reach_the_application_as_one_message(server_tls: ServerTLS) -> None:
    received, protocol, transport, client = await _tls_connection_recording(server_tls)
    assert received[0]["type"] == "xmpp.connect"
    assert transport.value() == b"", "TLS 1.3 session tickets wait for the next write"
    for part in (b"<a/>", b"<b/>", b"<c/>"):  # three records
        client.send(part)
    protocol.dataReceived(_bio_drain(client))
    await _until(lambda: len(received) == 2)
    assert received[1] == {"type": "xmpp.receive", "bytes": b"<a/><b/><c/>"}


async def test_much_read_at_once_reaches_the_application_in_pieces(server_tls: ServerTLS) -> None:
    """A client that sent 100 KiB at once is handed over some 16 KiB at a time, so that its stream can let
    the others take turns between pieces (consumer._pump); nothing is lost or reordered."""
    received, protocol, _transport, client = await _tls_connection_recording(server_tls)
    sent = b"".join(b"<m n='%d'/>" % n for n in range(10_000))  # ~110 KiB
    client.sendall(sent)
    protocol.dataReceived(_bio_drain(client))
    await _until(lambda: sum(len(m.get("bytes", b"")) for m in received) == len(sent))
    pieces = [m["bytes"] for m in received[1:]]
    assert b"".join(pieces) == sent
    assert len(pieces) >= 6
    assert all(len(piece) < 2 * 16384 for piece in pieces), [len(piece) for piece in pieces]


async def test_data_read_together_with_the_peers_close_notify_is_delivered(server_tls: ServerTLS) -> None:
    from twisted.internet.error import ConnectionDone
    from twisted.python.failure import Failure

    received: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            received.append(message)
            if message["type"] == "xmpp.disconnect":
                return

    _factory, protocol, transport = _fake_connection(app, server_tls, "directtls")
    client = _memory_tls_client(server_tls.cert_path)
    _handshake_through(protocol, transport, client)
    client.send(b"</stream:stream>")
    client.shutdown()
    protocol.dataReceived(_bio_drain(client))  # the last data and close_notify in one read
    assert transport.disconnecting, "the server answered close_notify and closed"
    client.bio_write(transport.value())
    with pytest.raises(SSL.ZeroReturnError):  # the server's close_notify
        client.recv(1024)
    protocol.connectionLost(Failure(ConnectionDone()))  # type: ignore[no-untyped-call]
    await _until(lambda: len(received) == 3)
    assert [m["type"] for m in received] == ["xmpp.connect", "xmpp.receive", "xmpp.disconnect"]
    assert received[1]["bytes"] == b"</stream:stream>"
    assert received[2]["reason"] == "peer closed"


async def test_close_over_tls_waits_for_the_peers_close_notify(server_tls: ServerTLS) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "xmpp.send", "bytes": b"</stream:stream>"})
        await send({"type": "xmpp.close"})
        await receive()

    _factory, protocol, transport = _fake_connection(app, server_tls, "directtls")
    client = _memory_tls_client(server_tls.cert_path)
    _handshake_through(protocol, transport, client)
    await _until(lambda: bool(transport.value()))
    client.bio_write(transport.value())
    transport.clear()
    assert client.recv(1024) == b"</stream:stream>"
    with pytest.raises(SSL.ZeroReturnError):  # the server's close_notify
        client.recv(1024)
    assert not transport.disconnecting
    client.shutdown()
    protocol.dataReceived(_bio_drain(client))
    assert transport.disconnecting
    assert not transport.aborted


async def test_an_application_that_ignores_disconnect_is_cancelled(
    server_tls: ServerTLS, monkeypatch: pytest.MonkeyPatch
) -> None:
    from twisted.internet.error import ConnectionDone
    from twisted.python.failure import Failure

    monkeypatch.setattr("xmppauth.transport.tcp.APP_CLOSE_TIMEOUT", 0.05)
    received: list[dict[str, Any]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        received.append(await receive())
        received.append(await receive())
        await asyncio.sleep(3600)

    _factory, protocol, _transport = _fake_connection(app, server_tls)
    protocol.connectionLost(Failure(ConnectionDone()))  # type: ignore[no-untyped-call]
    await _until(lambda: len(received) == 2)
    assert received[1] == {"type": "xmpp.disconnect", "reason": "peer closed"}
    assert not protocol.task.done()
    await _until(lambda: protocol.task.done())
    assert protocol.task.cancelled()


async def test_close_aborts_a_peer_that_does_not_read(
    server_tls: ServerTLS, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("xmppauth.transport.tcp.CLOSE_GRACE", 0.05)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "xmpp.send", "bytes": b"</stream:stream>"})
        await send({"type": "xmpp.close"})
        await receive()

    _factory, _protocol, transport = _fake_connection(app, server_tls)
    await _until(lambda: transport.disconnecting)
    assert transport.value() == b"</stream:stream>"
    assert not transport.aborted
    await _until(lambda: transport.aborted)


# --- certificates ---------------------------------------------------------------------------------------


def test_ensure_certificate_creates_a_key_and_self_signed_certificate_once(tmp_path: Path) -> None:
    cert_path, key_path = tmp_path / "tls" / "localhost.crt", tmp_path / "tls" / "private" / "localhost.key"
    ensure_certificate("localhost", cert_path, key_path)

    assert key_path.stat().st_mode & 0o777 == 0o600
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    assert cert.subject.rfc4514_string() == "CN=localhost"
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert {str(ip) for ip in san.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}
    lifetime = cert.not_valid_after_utc - datetime.datetime.now(datetime.UTC)
    assert datetime.timedelta(days=824) < lifetime <= datetime.timedelta(days=825)

    before = cert_path.read_bytes(), key_path.read_bytes()
    ensure_certificate("localhost", cert_path, key_path)
    assert (cert_path.read_bytes(), key_path.read_bytes()) == before


def test_ensure_certificate_names_other_domains_without_ip_addresses(tmp_path: Path) -> None:
    ensure_certificate("chat.example.org", tmp_path / "c.crt", tmp_path / "c.key")
    cert = x509.load_pem_x509_certificate((tmp_path / "c.crt").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["chat.example.org"]
    assert san.get_values_for_type(x509.IPAddress) == []


def test_ensure_certificate_refuses_to_replace_half_a_pair(tmp_path: Path) -> None:
    (tmp_path / "c.crt").write_text("operator's certificate")
    with pytest.raises(CertificateError, match="refusing to overwrite"):
        ensure_certificate("localhost", tmp_path / "c.crt", tmp_path / "c.key")
    assert (tmp_path / "c.crt").read_text() == "operator's certificate"
    assert not (tmp_path / "c.key").exists()


@pytest.mark.parametrize(
    ("signature_hash", "expected"), [(hashes.SHA256(), hashlib.sha256), (hashes.SHA384(), hashlib.sha384)]
)
def test_tls_server_end_point_hashes_with_the_signature_hash(signature_hash: Any, expected: Any) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "x")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, signature_hash)
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    assert tls_server_end_point(cert) == expected(der).digest()


@pytest.mark.parametrize("signature_hash", [hashes.MD5(), hashes.SHA1(), None])
def test_tls_server_end_point_uses_sha256_for_weak_or_missing_signature_hashes(signature_hash: Any) -> None:
    # cryptography no longer signs with MD5 or SHA-1, so this stands in for such a certificate.
    class OldCertificate:
        signature_hash_algorithm = signature_hash

        def public_bytes(self, encoding: Any) -> bytes:
            return b"DER bytes"

    assert tls_server_end_point(OldCertificate()) == hashlib.sha256(b"DER bytes").digest()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "endpoint"),
    [
        ("127.0.0.1:5222", ("127.0.0.1", 5222)),
        ("[::1]:5223", ("::1", 5223)),
        ("localhost:0", ("localhost", 0)),
        ("8000", ("127.0.0.1", 8000)),
        ("off", None),
        ("OFF", None),
    ],
)
def test_serve_reads_listener_addresses(text: str, endpoint: tuple[str, int] | None) -> None:
    from xmppauth.listeners import parse_endpoint

    assert parse_endpoint(text) == endpoint


@pytest.mark.parametrize("text", ["::1:5222", "[::1]", "host:", ":5222", "127.0.0.1:65536", "host:http"])
def test_serve_rejects_unclear_listener_addresses(text: str) -> None:
    import argparse

    from xmppauth.listeners import parse_endpoint

    with pytest.raises(argparse.ArgumentTypeError):
        parse_endpoint(text)


# --- manage.py serve ------------------------------------------------------------------------------------

# Runs `serve` with ASGI_APPLICATION pointed at `serve_test_application`, so that these tests do not depend
# on xmppauth/asgi.py.
SERVE_LAUNCHER = """
import sys
import django
from django.conf import settings
django.setup()
settings.ASGI_APPLICATION = "tests.integration.test_tcp_transport.serve_test_application"
from django.core.management import execute_from_command_line
execute_from_command_line(["manage.py", *sys.argv[1:]])
"""


def _serve_environment(data_dir: Path) -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "XMPP_DATA_DIR": str(data_dir)}
    env["DJANGO_SETTINGS_MODULE"] = "xmppauth.settings"
    # not the default 127.0.0.1:8001, which every test's server would share: the admin listener is tested by
    # tests/integration/test_admin_listener.py
    env["XMPP_ADMIN_HTTP"] = "off"
    for name in ("XMPP_TLS_CERT", "XMPP_TLS_KEY", "DATABASE_URL", "XMPP_DOMAIN", "DJANGO_SECRET_KEY"):
        env.pop(name, None)
    return env


def _python_fails(code: str, env: dict[str, str]) -> str | None:
    """The last line of the error if `code` fails in a fresh interpreter with `env`, else None."""
    probe = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    if probe.returncode == 0:
        return None
    return (probe.stderr.strip().splitlines() or ["?"])[-1]


@pytest.fixture(scope="module")
def serve_django_loads(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The `serve` tests fail at once, with the error, if the project does not load: that is a broken
    build (never a skip), and every `serve` below would only fail later with less to go on."""
    error = _python_fails(
        "import django; django.setup()", _serve_environment(tmp_path_factory.mktemp("probe"))
    )
    if error is not None:
        pytest.fail(f"the Django project does not load (django.setup()): {error}")


@pytest.fixture
def serve_env(serve_django_loads: None, tmp_path: Path) -> dict[str, str]:
    return _serve_environment(tmp_path / "data")


def _serve(env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", SERVE_LAUNCHER, "serve", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


@pytest.mark.integration
def test_serve_help_lists_the_listener_options(serve_env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "django", "serve", "--help"],
        cwd=REPO,
        env=serve_env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    for option in ("--http", "--admin-http", "--c2s", "--c2s-tls", "--no-migrate"):
        assert option in result.stdout


@pytest.mark.integration
def test_serve_runs_http_and_both_xmpp_listeners_in_one_process(serve_env: dict[str, str]) -> None:
    proc = _serve(serve_env, "--http", "127.0.0.1:0", "--c2s", "127.0.0.1:0", "--c2s-tls", "127.0.0.1:0")
    try:
        lines = _read_stdout_until(proc, lambda lines: any(line.startswith("domain:") for line in lines))
        http_line = next(line for line in lines if line.startswith("HTTP/WebSocket on http://127.0.0.1:"))
        starttls_line = next(line for line in lines if line.startswith("XMPP c2s STARTTLS on 127.0.0.1:"))
        direct_line = next(line for line in lines if line.startswith("XMPP c2s direct TLS on 127.0.0.1:"))
        assert direct_line.endswith("(ALPN xmpp-client)")
        assert "domain: localhost" in lines
        http_port = int(http_line.split("http://127.0.0.1:")[1].split()[0])
        assert f"(XMPP over WebSocket at ws://127.0.0.1:{http_port}/xmpp-websocket)" in http_line
        starttls_port = int(starttls_line.rsplit(":", 1)[1])
        direct_port = int(direct_line.split("127.0.0.1:")[1].split()[0])

        with _connect(http_port) as sock:
            sock.sendall(b"GET /signin/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            status = LineReader(sock).line()
        assert status.startswith(b"HTTP/1.1 200"), status

        with _connect(starttls_port) as sock:
            assert LineReader(sock).json(b"HELLO ")["transport"] == "starttls"
        cert_path = Path(serve_env["XMPP_DATA_DIR"]) / "tls" / "localhost.crt"
        ctx = _client_context(cert_path, alpn=["xmpp-client"])
        with _connect(direct_port) as raw, ctx.wrap_socket(raw, server_hostname="localhost") as sock:
            assert LineReader(sock).json(b"HELLO ")["tls"]["alpn"] == "xmpp-client"

        proc.terminate()
        assert proc.wait(timeout=10) == 0
    finally:
        _stop(proc)


@pytest.mark.integration
def test_serve_explains_a_port_that_is_taken(serve_env: dict[str, str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = _serve(serve_env, "--http", "off", "--c2s", f"127.0.0.1:{port}", "--c2s-tls", "off")
        try:
            output, _ = proc.communicate(timeout=60)
        finally:
            _stop(proc)
    text = output.decode()
    assert proc.returncode != 0
    assert f"127.0.0.1:{port}" in text
    assert "Traceback" not in text


@pytest.mark.integration
def test_serve_runs_the_project_application(serve_env: dict[str, str]) -> None:
    error = _python_fails("import django; django.setup(); import xmppauth.asgi", serve_env)
    if error is not None:
        pytest.fail(f"the ASGI application does not load (import xmppauth.asgi): {error}")
    proc = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "manage.py"),
            "serve",
            "--http",
            "127.0.0.1:0",
            "--c2s",
            "127.0.0.1:0",
            "--c2s-tls",
            "off",
        ],
        cwd=REPO,
        env=serve_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        lines = _read_stdout_until(proc, lambda lines: any(line.startswith("domain:") for line in lines))
        http_line = next(line for line in lines if line.startswith("HTTP/WebSocket on http://127.0.0.1:"))
        http_port = int(http_line.split("http://127.0.0.1:")[1].split()[0])
        starttls_line = next(line for line in lines if line.startswith("XMPP c2s STARTTLS on 127.0.0.1:"))
        assert not any(line.startswith("XMPP c2s direct TLS") for line in lines)
        with _connect(http_port) as sock:
            sock.sendall(b"GET /signin/ HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            assert LineReader(sock).line().startswith(b"HTTP/1.1 200")
        with _connect(int(starttls_line.rsplit(":", 1)[1])):
            pass
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    finally:
        _stop(proc)


async def test_it_writes_the_frames_of_one_send_together(server_tls: ServerTLS) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "xmpp.send", "frames": [b"<a/>", b"<b/>"]})
        await send({"type": "xmpp.send", "frames": []})
        await send({"type": "xmpp.send", "bytes": b"<c/>"})
        await receive()

    _factory, _protocol, transport = _fake_connection(app, server_tls)
    await _until(lambda: bool(transport.value()))
    assert transport.value() == b"<a/><b/><c/>"  # in order; an empty list writes nothing


async def test_it_refuses_frames_that_are_not_bytes(server_tls: ServerTLS) -> None:
    errors: list[BaseException] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        try:
            await send({"type": "xmpp.send", "frames": ["<a/>"]})
        except TypeError as exc:
            errors.append(exc)

    _factory, _protocol, transport = _fake_connection(app, server_tls)
    await _until(lambda: bool(errors))
    assert str(errors[0]) == "xmpp.send needs frames as a list of bytes"
    assert transport.value() == b""
