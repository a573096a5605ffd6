"""A small blocking XMPP client for integration tests: real sockets, real TLS (pyOpenSSL, so that
it can compute both channel-binding types), the project's pure SCRAM client, and raw XML when a
test needs to send something a well-behaved client never would."""

from __future__ import annotations

import base64
import hashlib
import re
import select
import socket
import time

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from lxml import etree
from OpenSSL import SSL

from xmppauth.proto.sasl import ScramClient

STREAMS = "http://etherx.jabber.org/streams"
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"


def client_header(to: str = "localhost") -> bytes:
    return (
        f"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='{STREAMS}' "
        f"to='{to}' version='1.0'>"
    ).encode()


class RawClient:
    def __init__(self, port: int, *, direct_tls: bool = False, alpn: bytes | None = b"xmpp-client") -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
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


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode() if data else "="


def parse_stream_error(data: bytes) -> str | None:
    """The condition of the stream error in ``data``, or None."""
    match = re.search(rb"<stream:error[^>]*><([a-z-]+) xmlns=.urn:ietf:params:xml:ns:xmpp-streams.", data)
    return match.group(1).decode() if match else None


def element(data: bytes) -> etree._Element:
    return etree.fromstring(data)
