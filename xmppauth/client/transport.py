"""Transports of the reference client: TCP with STARTTLS (RFC 6120 §5), direct TLS (XEP-0368, ALPN
``xmpp-client``) and WebSocket (RFC 7395, subprotocol ``xmpp``). Each moves whole top-level elements,
parsed by the core's :class:`~xmppauth.proto.xml.StreamParser`; XMPP beyond framing is the session's."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any

from lxml import etree

from xmppauth.proto import ns
from xmppauth.proto.errors import StreamError
from xmppauth.proto.xml import (
    ElementReceived,
    ParseEvent,
    StreamEnded,
    StreamOpened,
    StreamParser,
    escape_attr,
)

_MAX_BYTES = 1 << 20
_MAX_DEPTH = 64
_STREAMS = "http://etherx.jabber.org/streams"
_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
_STREAM_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams"


class ConnectionProblem(Exception):
    """The connection, TLS or the stream failed, or the server broke the protocol (exit code 3)."""


def tls_context(*, insecure: bool, cafile: str | None, alpn: bool) -> ssl.SSLContext:
    """Certificates checked against the system's CAs, or only ``cafile``; ``insecure`` checks nothing."""
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(["xmpp-client"])  # XEP-0368 §3
    return ctx


def _stream_error(element: etree._Element) -> ConnectionProblem:
    condition = next(
        (
            etree.QName(c).localname
            for c in element
            if etree.QName(c).namespace == _STREAM_ERRORS and etree.QName(c).localname != "text"
        ),
        "undefined-condition",
    )
    text = element.findtext(f"{{{_STREAM_ERRORS}}}text") or ""
    return ConnectionProblem(f"stream error {condition}" + (f": {text}" if text else ""))


class Transport:
    """One XMPP stream: :meth:`open` it, :meth:`send` XML text, :meth:`receive` top-level elements."""

    description = ""

    def __init__(self, domain: str, timeout: float) -> None:
        self.domain = domain
        self.timeout = timeout
        self._events: list[ParseEvent] = []
        self._ended = False

    async def _write(self, text: str) -> None:
        raise NotImplementedError

    async def _read(self) -> list[ParseEvent]:
        raise NotImplementedError

    def _header(self) -> str:
        raise NotImplementedError

    async def send(self, text: str) -> None:
        await self._write(text)

    async def receive(self) -> etree._Element:
        """The next top-level element; a stream error or the end of the stream raises."""
        while True:
            while not self._events:
                try:
                    self._events.extend(await asyncio.wait_for(self._read(), self.timeout))
                except StreamError as exc:
                    raise ConnectionProblem(f"malformed XML from the server: {exc}") from None
                except TimeoutError:
                    raise ConnectionProblem(f"no answer from the server within {self.timeout:g} s") from None
            event = self._events.pop(0)
            if isinstance(event, StreamEnded):
                self._ended = True
                raise ConnectionProblem("the server closed the stream")
            if isinstance(event, StreamOpened):
                continue
            assert isinstance(event, ElementReceived)
            if event.element.tag == f"{{{_STREAMS}}}error":
                raise _stream_error(event.element)
            return event.element

    async def open(self) -> etree._Element:
        """Send the stream header; return the server's ``<stream:features/>``."""
        await self._write(self._header())
        features = await self.receive()
        if features.tag != f"{{{_STREAMS}}}features":
            raise ConnectionProblem(f"expected <stream:features/>, got {etree.QName(features).localname}")
        return features

    async def _drain_to_end(self) -> None:
        with contextlib.suppress(ConnectionProblem, OSError):
            while not self._ended:
                await self.receive()

    async def close(self) -> None:
        raise NotImplementedError


class TcpTransport(Transport):
    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, domain: str, timeout: float
    ):
        super().__init__(domain, timeout)
        self._reader = reader
        self._writer = writer
        self._parser = StreamParser(max_stanza_bytes=_MAX_BYTES, max_depth=_MAX_DEPTH)

    @classmethod
    async def connect(
        cls, host: str, port: int, domain: str, *, ctx: ssl.SSLContext, direct_tls: bool, wait: float
    ) -> tuple[TcpTransport, etree._Element]:
        """Connect, secure the stream (direct TLS, or STARTTLS); the transport and the features after TLS."""
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                host, port, ssl=ctx if direct_tls else None, server_hostname=domain if direct_tls else None
            ),
            wait,
        )
        transport = cls(reader, writer, domain, wait)
        if direct_tls:
            transport.description = f"tcp+tls {host}:{port} {transport._tls_version()}"
            return transport, await transport.open()
        features = await transport.open()
        if features.find(f"{{{_TLS}}}starttls") is None:
            raise ConnectionProblem("the server does not offer STARTTLS")
        await transport.send(f"<starttls xmlns='{_TLS}'/>")
        reply = await transport.receive()
        if reply.tag != f"{{{_TLS}}}proceed":
            raise ConnectionProblem(f"STARTTLS refused ({etree.QName(reply).localname})")
        await asyncio.wait_for(writer.start_tls(ctx, server_hostname=domain), wait)
        transport._parser = StreamParser(max_stanza_bytes=_MAX_BYTES, max_depth=_MAX_DEPTH)
        transport.description = f"tcp+starttls {host}:{port} {transport._tls_version()}"
        return transport, await transport.open()  # RFC 6120 §5.4.3.3: a new stream over TLS

    def _tls_version(self) -> str:
        tls: Any = self._writer.get_extra_info("ssl_object")
        return str(tls.version()) if tls is not None else "plaintext"

    def _header(self) -> str:
        return (
            f"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='{_STREAMS}' "
            f"to='{escape_attr(self.domain)}' version='1.0'>"
        )

    async def _write(self, text: str) -> None:
        self._writer.write(text.encode())
        await self._writer.drain()

    async def _read(self) -> list[ParseEvent]:
        data = await self._reader.read(65536)
        if not data:
            self._ended = True
            raise ConnectionProblem("the server closed the connection")
        return self._parser.feed(data)

    async def close(self) -> None:
        """RFC 6120 §4.4: send ``</stream:stream>``, wait for the server's, then close the socket."""
        with contextlib.suppress(OSError):
            await self._write("</stream:stream>")
            await self._drain_to_end()
        self._writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await self._writer.wait_closed()


class WebSocketTransport(Transport):
    def __init__(self, ws: Any, url: str, domain: str, timeout: float) -> None:
        super().__init__(domain, timeout)
        self._ws = ws
        self._parser = StreamParser(max_stanza_bytes=_MAX_BYTES, max_depth=_MAX_DEPTH, framed=True)
        self.description = f"ws {url}"

    @classmethod
    async def connect(
        cls, url: str, domain: str, *, ctx: ssl.SSLContext, wait: float
    ) -> tuple[WebSocketTransport, etree._Element]:
        try:  # a development dependency of the project: imported only when a WebSocket is asked for
            from websockets.asyncio.client import connect
            from websockets.typing import Subprotocol
        except ImportError:
            raise ConnectionProblem(
                "WebSocket needs the 'websockets' package (pip install websockets)"
            ) from None
        secure = url.startswith("wss:")
        try:
            ws = await connect(
                url,
                subprotocols=[Subprotocol("xmpp")],
                ssl=ctx if secure else None,
                server_hostname=domain if secure else None,
                open_timeout=wait,
            )
        except Exception as exc:  # websockets raises its own InvalidURI/InvalidHandshake family
            if isinstance(exc, OSError | TimeoutError):
                raise
            raise ConnectionProblem(f"WebSocket: {exc}") from None
        if ws.subprotocol != "xmpp":  # RFC 7395 §3.2
            await ws.close()
            raise ConnectionProblem("the server did not accept the WebSocket subprotocol 'xmpp'")
        transport = cls(ws, url, domain, wait)
        return transport, await transport.open()

    def _header(self) -> str:
        return f"<open xmlns='{ns.FRAMING}' to='{escape_attr(self.domain)}' version='1.0'/>"

    async def _write(self, text: str) -> None:
        try:
            await self._ws.send(text)
        except Exception as exc:
            raise ConnectionProblem(f"WebSocket: {exc}") from None

    async def _read(self) -> list[ParseEvent]:
        try:
            message = await self._ws.recv()
        except Exception as exc:  # ConnectionClosed and its kin
            self._ended = True
            raise ConnectionProblem(f"WebSocket closed: {exc}") from None
        if isinstance(message, bytes):
            raise ConnectionProblem("a binary WebSocket frame (RFC 7395 §3.2 allows text only)")
        return self._parser.feed_frame(message.encode())

    async def close(self) -> None:
        """RFC 7395 §3.6: ``<close/>``, the server's ``<close/>``, then the WebSocket closing handshake."""
        with contextlib.suppress(ConnectionProblem):
            await self._write(f"<close xmlns='{ns.FRAMING}'/>")
            await self._drain_to_end()
        with contextlib.suppress(Exception):
            await self._ws.close()
