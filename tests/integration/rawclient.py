"""A small blocking XMPP client for integration tests: real sockets, real TLS (pyOpenSSL, so that
it can compute both channel-binding types), the project's pure SCRAM client, and raw XML when a
test needs to send something a well-behaved client never would."""

from __future__ import annotations

import base64
import hashlib
import itertools
import re
import select
import socket
import time
import uuid

import websockets
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree
from OpenSSL import SSL

from tests.integration.server import Server
from xmppauth.proto.sasl import ScramClient

STREAMS = "http://etherx.jabber.org/streams"
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
SASL2 = "urn:xmpp:sasl:2"
_control_ids = itertools.count(1)
QUIET_TRIES = 3  # quiet(): windows watched at most, each longer than the server's last answer to a ping
CONTROL_LIMIT = 10.0  # quiet(): seconds a ping's answer may take before the stream counts as stuck


def client_header(to: str = "localhost") -> bytes:
    return (
        f"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='{STREAMS}' "
        f"to='{to}' version='1.0'>"
    ).encode()


class RawClient:
    def __init__(
        self,
        port: int,
        *,
        direct_tls: bool = False,
        alpn: bytes | None = b"xmpp-client",
        source: str | None = None,
    ) -> None:
        # ``source``: another loopback address to come from (127.0.0.2 …), as a second client machine
        self.sock = socket.create_connection(
            ("127.0.0.1", port), timeout=10, source_address=(source, 0) if source else None
        )
        self.sock.settimeout(None)
        self.tls: SSL.Connection | None = None
        self.buffer = b""
        self.closed = False
        if direct_tls:
            self.start_tls(alpn=alpn)

    # ------------------------------------------------------------------ I/O
    def start_tls(self, alpn: bytes | None = None) -> None:
        ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
        ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
        if alpn:
            ctx.set_alpn_protos([alpn])
        conn = SSL.Connection(ctx, self.sock)
        conn.set_tlsext_host_name(b"localhost")
        conn.set_connect_state()
        conn.do_handshake()
        self.tls = conn
        self.buffer = b""

    def send(self, data: bytes | str) -> None:
        raw = data.encode() if isinstance(data, str) else data
        if self.tls is not None:
            self.tls.sendall(raw)
        else:
            self.sock.sendall(raw)

    def _recv_some(self, timeout: float) -> bytes:
        if self.tls is not None and self.tls.pending():
            return self.tls.recv(65536)
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            return b""
        try:
            data = self.tls.recv(65536) if self.tls is not None else self.sock.recv(65536)
        except (SSL.ZeroReturnError, SSL.SysCallError, ConnectionResetError):
            data = b""
        if not data:
            self.closed = True
        return data

    def read_until(self, pattern: bytes | str, timeout: float = 10.0) -> bytes:
        """Read until ``pattern`` (a regex) matches the buffer; return and consume up to its end."""
        regex = re.compile(pattern.encode() if isinstance(pattern, str) else pattern, re.S)
        deadline = time.monotonic() + timeout
        while True:
            match = regex.search(self.buffer)
            if match:
                out, self.buffer = self.buffer[: match.end()], self.buffer[match.end() :]
                return out
            if self.closed or time.monotonic() > deadline:
                raise AssertionError(f"no {pattern!r} in {self.buffer!r} (closed={self.closed})")
            self.buffer += self._recv_some(max(0.0, deadline - time.monotonic()))

    def read_for(self, seconds: float) -> bytes:
        """Everything that arrives within ``seconds`` (less if the server closes the stream), with what
        was already buffered; consumed. For a test that reads what came, not one that expects nothing:
        that is ``quiet()``."""
        deadline = time.monotonic() + seconds
        data = b""
        while time.monotonic() < deadline and not self.closed:
            data += self._recv_some(max(0.0, deadline - time.monotonic()))
        data, self.buffer = self.buffer + data, b""
        return data

    def quiet(self, seconds: float = 0.4) -> bytes:
        """What arrives within ``seconds``, for a test that expects something NOT to arrive; then the
        positive control that makes that silence mean something.

        An empty window proves nothing by itself: the stream may be dead, or the window shorter than
        the server takes to deliver. So after the window this stream pings its server (XEP-0199; always
        allowed, whatever the grant) and the answer must arrive within the window's length: the stream
        is alive and a stanza the server sends it gets through in less time than the window gave the
        unwanted one. On a loaded machine the answer may take longer: then the window proved nothing,
        so the stream is watched again for twice as long as the answer took and the control repeated,
        ``QUIET_TRIES`` times at most. Returned: the windows and whatever came before the last answer
        (so a late arrival is caught too), without the answers themselves.
        """
        seen = b""
        for _ in range(QUIET_TRIES):
            seen += self.read_for(seconds)
            assert not self.closed, f"the stream ended during the quiet window; it got {seen!r}"
            before, took = self._ping_control(seen)
            seen += before
            if took <= seconds:
                return seen
            seconds = 2 * took
        raise AssertionError(
            f"control: the server answered a ping more slowly than the quiet window {QUIET_TRIES} times "
            f"(the last answer took {seconds / 2:.2f} s), so the window proves no absence; got {seen!r}"
        )

    def _ping_control(self, seen: bytes) -> tuple[bytes, float]:
        """Ping the server and wait (up to ``CONTROL_LIMIT`` s) for the answer: what came before it,
        and the seconds it took. The answer itself is consumed."""
        control = f"quiet-{next(_control_ids)}"
        sent = time.monotonic()
        self.send(f"<iq type='get' id='{control}'><ping xmlns='urn:xmpp:ping'/></iq>")
        answer = re.compile(rf"<iq(?=[^>]*\bid=['\"]{control}['\"])[^>]*?(/>|>.*?</iq>)".encode(), re.S)
        deadline = sent + CONTROL_LIMIT
        while (match := answer.search(self.buffer)) is None:
            got = seen + self.buffer
            assert not self.closed, f"control: the stream ended instead of answering a ping; got {got!r}"
            assert time.monotonic() <= deadline, (
                f"control: no answer to a ping in {CONTROL_LIMIT} s; got {got!r}"
            )
            self.buffer += self._recv_some(max(0.0, deadline - time.monotonic()))
        took = time.monotonic() - sent
        assert re.search(rb"type=['\"]result['\"]", match.group(0)), match.group(0)
        before, self.buffer = self.buffer[: match.start()], self.buffer[match.end() :]
        return before, took

    def read_to_close(self, timeout: float = 10.0) -> bytes:
        deadline = time.monotonic() + timeout
        while not self.closed and time.monotonic() < deadline:
            self.buffer += self._recv_some(max(0.0, deadline - time.monotonic()))
        assert self.closed, f"the server did not close the connection; got {self.buffer!r}"
        out, self.buffer = self.buffer, b""
        return out

    def close(self) -> None:
        try:
            if self.tls is not None:
                self.tls.shutdown()
        except SSL.Error:
            pass
        self.sock.close()

    # ------------------------------------------------------------------ channel binding
    def channel_binding(self, cb_type: str) -> bytes:
        assert self.tls is not None
        if cb_type == "tls-exporter":
            return self.tls.export_keying_material(b"EXPORTER-Channel-Binding", 32, None)
        cert = self.tls.get_peer_certificate()
        assert cert is not None
        der = cert.to_cryptography().public_bytes(encoding=Encoding.DER)
        algorithm = x509.load_der_x509_certificate(der).signature_hash_algorithm
        name = algorithm.name if algorithm is not None and algorithm.name not in ("md5", "sha1") else "sha256"
        return hashlib.new(name, der).digest()

    # ------------------------------------------------------------------ XMPP steps
    def open_stream(self) -> bytes:
        self.send(client_header())
        return self.read_until(rb"</stream:features>")

    def starttls(self) -> bytes:
        features = self.open_stream()
        assert b"<starttls" in features, features
        self.send(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
        self.read_until(rb"<proceed[^>]*/>")
        self.start_tls()
        return self.open_stream()

    def scram(
        self, mech: str, user: str, password: str, *, cb_data: bytes | None = None, cb_type: str | None = None
    ) -> bytes:
        """Run a SCRAM exchange; returns the server's final element (success or failure)."""
        hash_name = mech.removeprefix("SCRAM-").removesuffix("-PLUS")
        if mech.endswith("-PLUS") and cb_type is None:
            cb_type = "tls-exporter"
        data = cb_data if cb_data is not None else (self.channel_binding(cb_type) if cb_type else b"")
        client = ScramClient(hash_name, user, password, cb_type=cb_type, cb_data=data)
        self.send(f"<auth xmlns='{SASL}' mechanism='{mech}'>{b64(client.first())}</auth>")
        reply = self.read_until(rb"</challenge>|</failure>|<failure[^>]*/>")
        if b"<failure" in reply:
            return reply
        server_first = base64.b64decode(re.search(rb"<challenge[^>]*>([^<]*)</challenge>", reply).group(1))  # type: ignore[union-attr]
        self.send(f"<response xmlns='{SASL}'>{b64(client.final(server_first))}</response>")
        reply = self.read_until(rb"</success>|<success[^>]*/>|</failure>")
        if b"<success" in reply:
            body = re.search(rb"<success[^>]*>([^<]*)</success>", reply)
            assert body is not None
            assert client.verify_server_final(base64.b64decode(body.group(1)))
        return reply

    def bind(self, resource: str | None = None) -> str:
        features = self.open_stream()
        assert b"urn:ietf:params:xml:ns:xmpp-bind" in features, features
        inner = f"<resource>{resource}</resource>" if resource else ""
        self.send(
            f"<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>{inner}</bind></iq>"
        )
        reply = self.read_until(rb"</iq>|<iq[^>]*/>")
        jid = re.search(rb"<jid>([^<]+)</jid>", reply)
        assert jid is not None, reply
        return jid.group(1).decode()

    def authenticate_plain(
        self, user: str, secret: str, *, ua: str | None = None, software: str | None = None, inline: str = ""
    ) -> None:
        """Send a XEP-0388 ``<authenticate/>`` with PLAIN, a ``<user-agent/>`` (with ``<software/>`` if
        given) and the ``inline`` requests (Bind2, SM, FAST…); reading the outcome is the caller's."""
        token = base64.b64encode(f"\0{user}\0{secret}".encode()).decode()
        agent = f"<software>{software}</software>" if software is not None else ""
        self.send(
            f"<authenticate xmlns='{SASL2}' mechanism='PLAIN'><initial-response>{token}</initial-response>"
            f"<user-agent id='{ua or uuid.uuid4()}'>{agent}</user-agent>{inline}</authenticate>"
        )

    def login(
        self, user: str, password: str, resource: str | None = None, mech: str = "SCRAM-SHA-256"
    ) -> str:
        if self.tls is None:
            self.starttls()
        else:
            self.open_stream()
        reply = self.scram(mech, user, password)
        assert b"<success" in reply, reply
        return self.bind(resource)


class Session:
    """A SASL2 + Bind2 session over direct TLS, authenticated with PLAIN."""

    def __init__(
        self,
        server: Server,
        user: str,
        secret: str,
        *,
        ua: str | None = None,
        software: str = "grant tests",
        extra: str = "",
    ) -> None:
        self.raw = RawClient(server.c2s_tls, direct_tls=True)
        self.raw.open_stream()
        self.ua = ua or str(uuid.uuid4())
        self.raw.authenticate_plain(
            user,
            secret,
            ua=self.ua,
            software=software,
            inline=f"<bind xmlns='urn:xmpp:bind:0'><tag>t</tag></bind>{extra}",
        )
        self.reply = self.raw.read_until(rb"</stream:features>|</failure>")
        self.ok = b"<success" in self.reply
        match = re.search(rb"<authorization-identifier>([^<]+)</authorization-identifier>", self.reply)
        self.jid = match.group(1).decode() if match else ""

    def send(self, data: str) -> None:
        self.raw.send(data)

    def expect(self, pattern: str, timeout: float = 5.0) -> bytes:
        """Read up to ``pattern``; attribute quotes are normalised to ' for the checks."""
        return self.raw.read_until(pattern.encode(), timeout=timeout).replace(b'"', b"'")

    def quiet(self, seconds: float = 0.4) -> bytes:
        """``RawClient.quiet()``: what arrives within ``seconds`` (expected: nothing), checked by a ping
        answered within as long; quotes normalised like ``expect()``."""
        return self.raw.quiet(seconds).replace(b'"', b"'")

    def mark(self, to: Session, text: str) -> bytes:
        """The positive control of "what this session sent was not delivered to ``to``": a directed
        presence with ``text`` (the ``presence`` scope allows it) sent the same way; returns all ``to``
        got up to and with it. One sender's stanzas reach one receiver in order (RFC 6120 §10.1), so
        what did not come before the mark was not delivered."""
        self.send(f"<presence to='{to.jid}'><status>{text}</status></presence>")
        return to.expect(text)

    def close(self) -> None:
        self.raw.close()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode() if data else "="


def parse_stream_error(data: bytes) -> str | None:
    """The condition of the stream error in ``data``, or None."""
    match = re.search(rb"<stream:error[^>]*><([a-z-]+) xmlns=.urn:ietf:params:xml:ns:xmpp-streams.", data)
    return match.group(1).decode() if match else None


def element(data: bytes) -> etree._Element:
    return etree.fromstring(data)


def available(server: Server, user: str = "bob", password: str = "builder") -> Session:
    """``user`` logged in with the password (SASL2 + Bind2) and available: receiving messages and presence."""
    session = Session(server, user, password)
    assert session.ok, session.reply
    session.send("<presence/>")
    session.expect("</presence>|<presence[^>]*/>")
    return session


async def websocket_bound(url: str, user: str, password: str, resource: str) -> websockets.ClientConnection:
    """A websockets client connection to ``url``, logged in (RFC 6120 SASL PLAIN) and bound to
    ``user@localhost/resource``; the caller closes it (or uses it in ``async with``)."""
    opening = "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>"
    ws = await websockets.connect(url, subprotocols=["xmpp"])  # type: ignore[list-item]
    await ws.send(opening)
    await ws.recv()
    await ws.recv()
    token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    await ws.send(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>")
    assert str(await ws.recv()).startswith("<success")
    await ws.send(opening)
    await ws.recv()
    await ws.recv()
    await ws.send(
        "<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
        f"<resource>{resource}</resource></bind></iq>"
    )
    assert f"<jid>{user}@localhost/{resource}</jid>" in str(await ws.recv())
    return ws
