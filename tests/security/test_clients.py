"""Catalogue rows 7 and 9 (docs/security.md) from the client's side, with real sockets: the reference
client (xmppauth/client) against a fake server that strips or refuses STARTTLS, and a man in the middle
that strips the -PLUS mechanisms and channel-binding types from the features on their way to the client
(XEP-0474): what the server does about it, and what the reference client does."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from lxml import etree

from tests.integration.rawclient import RawClient
from tests.integration.server import ROOT, Server
from tests.security.scram import SASL, Scram, attributes, b64, finish, start
from tests.security.test_sasl import advertised, ssdp
from xmppauth.transport.tls import ensure_certificate

pytestmark = pytest.mark.integration

TLS_NS = "urn:ietf:params:xml:ns:xmpp-tls"
PASSWORD = "never-sent-in-clear"


def reference_client(port: int, *args: str, transport: str = "starttls") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "XMPPAUTH_PASSWORD"}
    return subprocess.run(
        [sys.executable, "-m", "xmppauth.client", "alice@localhost", "--transport", transport,
         "--host", "127.0.0.1", "--port", str(port), "--no-prompt", "--timeout", "10", *args],
        cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


# ---------------------------------------------------------------------------------------- row 7
class FakeServer:
    """A cleartext XMPP listener that answers the header with ``features`` and ``<starttls/>`` with
    ``answer``; it records every byte the client sends."""

    def __init__(self, features: str, answer: str = "") -> None:
        self.features, self.answer = features, answer
        self.received = b""
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(1)
        self.port = int(self._sock.getsockname()[1])
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self._sock.accept()
        conn.settimeout(15)
        with conn, contextlib.suppress(OSError):
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                self.received += data
                if b"<stream:stream" in data:
                    conn.sendall(
                        b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
                        b"xmlns:stream='http://etherx.jabber.org/streams' id='fake' from='localhost' "
                        b"version='1.0'>" + self.features.encode()
                    )
                if b"<starttls" in data and self.answer:
                    conn.sendall(self.answer.encode())

    def close(self) -> None:
        self._sock.close()
        self._thread.join(5)


MECHANISMS = (
    "<mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><mechanism>PLAIN</mechanism>"
    "<mechanism>SCRAM-SHA-256</mechanism></mechanisms>"
    "<authentication xmlns='urn:xmpp:sasl:2'><mechanism>PLAIN</mechanism>"
    "<mechanism>SCRAM-SHA-256</mechanism></authentication>"
)


@pytest.mark.parametrize(
    ("features", "answer"),
    [
        (f"<stream:features>{MECHANISMS}</stream:features>", ""),
        (
            f"<stream:features><starttls xmlns='{TLS_NS}'/>{MECHANISMS}</stream:features>",
            f"<failure xmlns='{TLS_NS}'/></stream:stream>",
        ),
    ],
    ids=["starttls-stripped", "starttls-refused"],
)
def test_the_reference_client_never_logs_in_without_tls(features: str, answer: str) -> None:
    fake = FakeServer(features, answer)
    try:
        done = reference_client(fake.port, "--password", PASSWORD, "--mechanism", "PLAIN")
    finally:
        fake.close()
    assert done.returncode == 3, (done.returncode, done.stdout, done.stderr)  # connection or TLS error
    assert "STARTTLS" in done.stdout + done.stderr
    assert b"<stream:stream" in fake.received  # it did talk to the fake server ...
    assert b"<auth" not in fake.received  # ... but never offered credentials
    assert PASSWORD.encode() not in fake.received
    assert b64(f"\0alice\0{PASSWORD}".encode()).encode() not in fake.received


# ---------------------------------------------------------------------------------------- row 9
_PLUS = re.compile(rb"<mechanism>[A-Z0-9-]+-PLUS</mechanism>")
_CB_TYPES = re.compile(rb"<sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'>.*?</sasl-channel-binding>", re.S)


class StrippingProxy:
    """A man in the middle with a certificate the client trusts: TLS to the client, TLS to the server,
    and on the way back the -PLUS mechanisms and the channel-binding types removed from the features."""

    def __init__(self, upstream_port: int, folder: Path) -> None:
        self.cert, key = folder / "mitm.crt", folder / "mitm.key"
        ensure_certificate("localhost", self.cert, key)
        self._server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._server_ctx.load_cert_chain(self.cert, key)
        self._server_ctx.set_alpn_protocols(["xmpp-client"])
        self._client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self._client_ctx.check_hostname = False
        self._client_ctx.verify_mode = ssl.CERT_NONE
        self._client_ctx.set_alpn_protocols(["xmpp-client"])
        self.upstream_port = upstream_port
        self.stripped = 0
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(8)
        self.port = int(self._sock.getsockname()[1])
        self._threads: list[threading.Thread] = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while True:
            try:
                raw, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(raw,), daemon=True).start()

    def _relay(self, raw: socket.socket) -> None:
        with contextlib.suppress(OSError):
            downstream = self._server_ctx.wrap_socket(raw, server_side=True)
            upstream = self._client_ctx.wrap_socket(
                socket.create_connection(("127.0.0.1", self.upstream_port)), server_hostname="localhost"
            )
            threading.Thread(target=self._pump, args=(downstream, upstream, False), daemon=True).start()
            self._pump(upstream, downstream, True)

    def _pump(self, source: ssl.SSLSocket, sink: ssl.SSLSocket, strip: bool) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if strip and b"<stream:features>" in data:
                    data, n = _PLUS.subn(b"", data)
                    data, m = _CB_TYPES.subn(b"", data)
                    self.stripped += n + m
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.close()

    def close(self) -> None:
        self._sock.close()


@pytest.fixture
def mitm(server: Server, tmp_path: Path) -> Iterator[StrippingProxy]:
    proxy = StrippingProxy(server.c2s_tls, tmp_path)
    yield proxy
    proxy.close()


def test_through_a_stripping_man_in_the_middle_the_server_still_tells_and_refuses(
    server: Server, mitm: StrippingProxy
) -> None:
    client = RawClient(mitm.port, direct_tls=True)
    features = client.open_stream()
    mechanisms, types = advertised(features, "mechanisms")
    assert mechanisms  # stripped: no -PLUS, no binding types
    assert not [m for m in mechanisms if m.endswith("-PLUS")]
    assert not types
    # a client that checks XEP-0474 sees that the hash is not of what it was shown
    scram = Scram("SCRAM-SHA-256", "alice", "wonderland")
    h = attributes(start(client, scram))["h"]
    assert h != ssdp("sha256", mechanisms, types)
    client.close()
    # a client that says it could bind (gs2 flag y) but saw no -PLUS is refused by the server
    client = RawClient(mitm.port, direct_tls=True)
    client.open_stream()
    scram = Scram("SCRAM-SHA-256", "alice", "wonderland", gs2="y,,")
    client.send(f"<auth xmlns='{SASL}' mechanism='SCRAM-SHA-256'>{b64(scram.client_first())}</auth>")
    reply = client.read_until(rb"</failure>|<failure[^>]*/>|</challenge>")
    assert b"<not-authorized" in reply, reply
    assert b"downgrade" in reply, reply
    client.close()
    # the control: an honest client (flag n) through the same proxy logs in; the proxy only edits features
    client = RawClient(mitm.port, direct_tls=True)
    client.open_stream()
    scram = Scram("SCRAM-SHA-256", "alice", "wonderland")
    final, _ = scram.final(start(client, scram))
    assert b"<success" in finish(client, final)
    client.close()


def test_the_reference_client_aborts_when_the_mechanisms_it_saw_were_tampered_with(
    server: Server, mitm: StrippingProxy
) -> None:
    done = reference_client(
        mitm.port, "--password", "wonderland", "--cafile", str(mitm.cert), transport="tls"
    )
    assert mitm.stripped > 0  # the proxy did strip something on the way
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)


def test_the_stripping_proxy_strips_features(tmp_path: Path) -> None:
    """The harness's own control, without a server: the rewriting removes exactly what it should."""
    features = (
        b"<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
        b"<mechanism>SCRAM-SHA-256-PLUS</mechanism><mechanism>SCRAM-SHA-256</mechanism></mechanisms>"
        b"<sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'><channel-binding type='tls-exporter'/>"
        b"</sasl-channel-binding></stream:features>"
    )
    stripped = _CB_TYPES.sub(b"", _PLUS.sub(b"", features))
    root = etree.fromstring(stripped.replace(b"stream:features", b"features"))
    assert [m.text for m in root.iter("{urn:ietf:params:xml:ns:xmpp-sasl}mechanism")] == ["SCRAM-SHA-256"]
    assert root.find("{urn:xmpp:sasl-cb:0}sasl-channel-binding") is None
