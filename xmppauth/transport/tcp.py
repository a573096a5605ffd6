"""Raw XMPP over TCP (RFC 6120 §5 STARTTLS on 5222, XEP-0368 direct TLS on 5223) as an ASGI host.

The transport is dumb: bytes in, bytes out, TLS on request. Each accepted connection runs one ASGI application
instance (the XMPP stream consumer) in the reactor's asyncio loop, the way Daphne runs its own.

Scope::

    {"type": "xmpp", "transport": "starttls" | "directtls", "client": [host, port], "server": [host, port],
     "xmpp_optional": frozenset({"xmpp.drain", "xmpp.bound", "xmpp.waiting", "xmpp.owed"}),
     "path": "", "headers": [], "query_string": b"", "asgi": {"version": "3.0"}}

``xmpp_optional``: the messages below that this transport takes beyond the ones every xmpp transport does.

Transport -> application (``receive``):

- ``{"type": "xmpp.connect", "tls": TLSInfo | None}`` always first. STARTTLS listener: at once, ``tls=None``.
  Direct TLS: once the handshake has completed (the application instance is only created then).
- ``{"type": "xmpp.receive", "bytes": b"..."}`` application bytes (decrypted when TLS is on; the TLS records
  that one socket read completes arrive as one message).
- ``{"type": "xmpp.tls_established", "tls": TLSInfo}`` after a STARTTLS handshake; always before the first
  decrypted ``xmpp.receive``.
- ``{"type": "xmpp.disconnect", "reason": str}`` always last.

Application -> transport (``send``):

- ``{"type": "xmpp.send", "frames": [b"...", ...]}`` or ``{"type": "xmpp.send", "bytes": b"..."}`` write
  (never blocks; TCP_NODELAY is on). What the messages of one loop iteration carry is one TLS write and,
  when nothing is queued in the TCP transport, goes to the socket at once.
- ``{"type": "xmpp.starttls"}`` start server-side TLS now (just after ``<proceed/>`` was sent). Plaintext that
  was read but not yet handed to the application is dropped from the queue; everything read afterwards goes
  into the TLS layer. A failed handshake closes the connection.
- ``{"type": "xmpp.close"}`` flush, then close; aborted after `CLOSE_GRACE` seconds if the peer does not read.
- ``{"type": "xmpp.drain"}`` flush, and answer ``{"type": "xmpp.drained"}`` once at most `DRAINED` bytes wait
  for the peer to read (at once if so already; never if the connection ends first): an application with much
  to send (the stored messages) sends it a piece at a time, as fast as the client reads, instead of running
  into ``max_outgoing_bytes``.
- ``{"type": "xmpp.owed", "bytes": int}`` the next so many bytes sent are owed to the client, and do not
  count towards ``max_outgoing_bytes`` while it has not read them: a resumed session retransmits everything
  its client had not acknowledged (XEP-0198 §5), megabytes at times, and was dropped for it at once, at every
  resume (found by tests/integration/test_offline_resume.py). What it sends after them counts as always.
- ``{"type": "xmpp.bound"}`` the stream is a user's: its credential was right (a second factor may follow), or
  it resumed a session. Until then the connection is one the limits may close when the process is full, to
  make room for a connection from an address that holds fewer (``ConnectionLimits.waiting``): a slowloris of
  unauthenticated streams from many addresses then holds no one else out. ``{"type": "xmpp.waiting"}``: the
  login failed after all (a wrong second factor), and the connection may be given up again.

Besides the application's own timers, the transport enforces one of its own: a TLS handshake (direct or
STARTTLS) must finish within `handshake_timeout` seconds, since before that there is no application to do it.

Backpressure: when `HIGH_WATER` messages wait in the receive queue, reading from the socket is paused; it
resumes when the application has taken the queue down to `LOW_WATER`. Writes are not flow-controlled, but
the application may ask to hear when they have left (``xmpp.drain``).

The application must be an ASGI 3 single callable (Channels' routers and consumers are). ``receive()``
returns a future, done already when a message is waiting (see `XMPPServerProtocol._receive`).

TLS is done here, over pyOpenSSL memory BIOs on the plain TCP transport, not by Twisted's TLS layer
(``startTLS`` / ``TLSMemoryBIOProtocol``), which costs several times the handshake's own CPU per connection
(a layer of protocol wrappers and interface declarations per connection, a timer per small write, a reactor
round trip per socket write). Closing follows Twisted's behaviour: close_notify, then TCP closes when the
peer's close_notify arrives (or the peer closes TCP, or `CLOSE_GRACE` runs out); a handshake in progress is
aborted. TLS 1.3 session tickets (OpenSSL sends two) leave with the first write after the handshake rather
than in a segment of their own.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable
from typing import Any, Literal

from OpenSSL import SSL
from twisted.internet import defer, tcp
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.python.failure import Failure

from xmppauth.transport import ASGIApp, Message, limits
from xmppauth.transport.limits import ConnectionLimits
from xmppauth.transport.tls import ServerTLS, TLSInfo, describe_tls_error

logger = logging.getLogger(__name__)

TransportName = Literal["starttls", "directtls"]

HIGH_WATER = 64  # receive-queue length at which reading pauses
LOW_WATER = 16  # ... and at which it resumes
# the scope's "xmpp_optional"
OPTIONAL_MESSAGES = frozenset({"xmpp.drain", "xmpp.bound", "xmpp.waiting", "xmpp.owed"})
DRAINED = 64 * 1024  # outgoing bytes still buffered at which xmpp.drain is answered
DRAIN_POLL = 0.02  # seconds between looks at the outgoing buffer while an xmpp.drain waits
CLOSE_GRACE = 5.0  # seconds a closing connection may take to flush before it is aborted
ACCEPTS_PER_TURN = 16  # connections a listener accepts before the event loop runs the others again
REFUSAL_LINGER = 1.0  # seconds a refused connection is kept for the client's stream header (then closed)
APP_CLOSE_TIMEOUT = 5.0  # seconds an application may take to return after xmpp.disconnect
SHUTDOWN_TIMEOUT = 3.0  # seconds applications get to return on server shutdown
TLS_READ_SIZE = 16384  # largest decrypted read (one TLS record's worth)
TLS_FLUSH_SIZE = 65536  # bytes taken from OpenSSL's outgoing memory BIO per read


class XMPPServerProtocol(Protocol):
    """One TCP connection hosting one ASGI application instance, with TLS done here over memory BIOs."""

    factory: XMPPServerFactory

    def __init__(self, factory: XMPPServerFactory) -> None:
        self.factory = factory
        self.queue: collections.deque[Message] | None = None  # received, not yet taken by the application
        self._waiters: collections.deque[asyncio.Future[Message]] = collections.deque()
        self.task: asyncio.Task[None] | None = None
        self.is_open = False
        self.tls: TLSInfo | None = None
        self._tls_started = False  # STARTTLS asked for, or the listener is direct TLS
        self._ssl: SSL.Connection | None = None  # the TLS layer, once started
        self._handshake_done = False
        self._tls_backlog: list[bytes] = []  # application writes made before the handshake finished
        self._tls_dead = False  # failed, or both close_notify alerts exchanged: no more TLS I/O
        self._closing = False
        self._close_reason: str | None = None
        self._disconnect_sent = False
        self._reading_paused = False
        # Timers run on the asyncio loop itself: cheaper than the reactor's callLater, cancelled in O(1).
        self._handshake_timer: asyncio.TimerHandle | None = None
        self._abort_timer: asyncio.TimerHandle | None = None
        self._app_timer: asyncio.TimerHandle | None = None
        self._direct_send = False
        # xmpp.send payloads of one loop iteration, written together (one TLS record, one send()):
        # a busy router delivers many stanzas to one session per iteration.
        self._out_pending: list[bytes] = []
        self._written = 0  # bytes given to the TCP transport since the connection opened
        self._owed_next = 0  # bytes of application data still to come that are owed (xmpp.owed)
        self._owed_from = self._owed_until = 0  # where in the written bytes the last owed ones lie
        self._out_scheduled = False
        self._address = ""  # the peer's IP address, once the connection limits have counted it
        self._counted = False
        self._refused = False  # refused by the limits: told so, its stream header awaited (_refuse)
        # the read rate (factory.read_rate bytes a second, bursts of factory.read_burst): a token bucket
        self._read_tokens = float(factory.read_burst)
        self._read_refilled = 0.0
        self._rate_paused = False
        self._rate_timer: asyncio.TimerHandle | None = None
        self._drain_timer: asyncio.TimerHandle | None = None  # an xmpp.drain waiting for the peer to read

    @property
    def _tr(self) -> Any:
        # Twisted's interfaces do not declare setTcpNoDelay, writeSomeData, the write buffer and the producer
        # methods together, so the TCP transport is typed loosely.
        return self.transport

    # --- Twisted side -----------------------------------------------------------------------------------

    def connectionMade(self) -> None:
        self.is_open = True
        self.factory.protocols.add(self)
        tr = self._tr
        tr.setTcpNoDelay(True)
        self._direct_send = _can_send_directly(tr)
        counter = self.factory.limits
        if counter is not None:
            self._address = str(tr.getPeer().host)
            refused = counter.admit(self._address)
            if refused is not None:
                self._refuse(refused)
                return
            self._counted = True
            counter.waiting(self._address, self, self._make_room)  # until xmpp.bound
        if self.factory.transport_name == "directtls":
            self._begin_tls(self.factory.tls.directtls.getContext())
        else:
            self._start_application()
            self._deliver({"type": "xmpp.connect", "tls": None})

    def dataReceived(self, data: bytes) -> None:
        if self._refused:  # its stream header, read so that the close is a FIN, not a reset
            self._tr.loseConnection()
            return
        if self.factory.read_rate:
            self._meter_read(len(data))
        if self._ssl is not None:
            self._tls_data_received(data)
        elif self.queue is not None and not self._closing:
            self._deliver({"type": "xmpp.receive", "bytes": data})

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.is_open = False
        self.factory.protocols.discard(self)
        if self._counted and self.factory.limits is not None:
            self._counted = False
            self.factory.limits.busy(self._address, self)
            self.factory.limits.release(self._address)
        self._cancel_timer("_handshake_timer")
        self._cancel_timer("_abort_timer")
        self._cancel_timer("_rate_timer")
        self._cancel_timer("_drain_timer")
        text = self._close_reason or _describe_loss(reason)
        unclean = self._handshake_done and not self._tls_dead and isinstance(reason.value, ConnectionDone)
        if self._close_reason is None and unclean:  # TCP closed without a TLS close_notify
            text = f"connection lost: {ConnectionLost()}"
        self._ssl_release()
        self._signal_disconnect(text)
        if self.task is not None and not self.task.done():
            self._app_timer = self.factory.loop.call_later(APP_CLOSE_TIMEOUT, self._cancel_application)

    def _refuse(self, reason: str) -> None:
        """A connection the limits refuse: on the STARTTLS listener it is told why with a stream error
        (XMPP before TLS), written here without starting the application (a flood of refused connects
        costs ~10 µs each, not a stream's set-up and end); then its stream header is awaited, for at
        most REFUSAL_LINGER s, and the connection closed. The direct-TLS listener closes it without
        spending a handshake."""
        self._close_reason = f"refused: {reason}"
        self._closing = True
        document = self.factory.refusal_document
        if self.factory.transport_name == "directtls" or document is None:
            self._tr.loseConnection()
            return
        refusal = limits.refusal(reason)
        self._write_raw(document(refusal["condition"], refusal["text"]))
        self._refused = True
        self._abort_timer = self.factory.loop.call_later(REFUSAL_LINGER, self._tr.loseConnection)

    # --- raw writes -------------------------------------------------------------------------------------

    def _write_raw(self, data: bytes) -> None:
        """Write to the TCP transport; at once when nothing is queued there (saves a reactor round trip)."""
        tr = self._tr
        self._written += len(data)
        if (
            self._direct_send
            and not tr._tempDataLen
            and not tr.dataBuffer
            and tr.connected
            and not tr.disconnecting
        ):
            sent = tr.writeSomeData(data)
            if type(sent) is int and sent > 0:
                if sent == len(data):
                    return
                data = data[sent:]
        # Queue the rest (or everything after an error, which Twisted then reports when it retries).
        tr.write(data)
        limit = self.factory.max_outgoing_bytes
        if limit and (waiting := self._buffered()) > limit and waiting - self._unread_owed(waiting) > limit:
            self._peer_not_reading(limit)

    def _unread_owed(self, buffered: int) -> int:
        """How many of the bytes waiting for the peer are owed ones (xmpp.owed) it has not read yet."""
        read = self._written - buffered
        return max(0, self._owed_until - max(read, self._owed_from))

    def _buffered(self) -> int:
        """Bytes written and not yet taken by the socket (Twisted's write buffer)."""
        tr = self._tr
        return int(tr._tempDataLen + len(tr.dataBuffer) - tr.offset)

    def _when_drained(self) -> None:
        """Answer an xmpp.drain once the peer has read all but `DRAINED` bytes (the module's docstring)."""
        self._drain_timer = None
        if not self.is_open or self._closing:
            return
        if self._buffered() <= DRAINED:
            self._deliver({"type": "xmpp.drained"})
        else:
            self._drain_timer = self.factory.loop.call_later(DRAIN_POLL, self._when_drained)

    def _make_room(self) -> None:
        """The process is full and this connection, not yet past authentication, is the oldest of the
        address that holds the most: it goes, and its place is given back now for the newcomer."""
        if self._counted and self.factory.limits is not None:
            self._counted = False
            self.factory.limits.release(self._address)
        self._close_reason = "closed to make room for another address"
        self._closing = True
        self._tr.abortConnection()

    def _peer_not_reading(self, limit: int) -> None:
        """More than ``limit`` bytes wait for a peer that does not read: drop the connection rather than
        buffer without end (a session with stream management keeps what was not acknowledged, to be
        resumed or stored; without it, the application's disconnect stores or bounces it)."""
        if self._closing and self._close_reason == "the client does not read":
            return
        peer = self._peer_text()
        logger.warning("%s: more than %d bytes wait for the client to read: dropped", peer, limit)
        self._close_reason = "the client does not read"
        self._closing = True
        self._tr.abortConnection()

    # --- the read rate ----------------------------------------------------------------------------------

    def _meter_read(self, size: int) -> None:
        """Count ``size`` bytes read against the read rate; when the bucket runs dry, stop reading for
        as long as the rate needs to pay it back (TCP then pushes back on the sender)."""
        factory = self.factory
        now = factory.loop.time()
        if self._read_refilled:
            self._read_tokens = min(
                float(factory.read_burst), self._read_tokens + (now - self._read_refilled) * factory.read_rate
            )
        self._read_refilled = now
        self._read_tokens -= size
        if self._read_tokens >= 0 or self._rate_paused or not self.is_open or self._closing:
            return
        self._rate_paused = True
        if not self._reading_paused:
            self._tr.pauseProducing()
        self._rate_timer = factory.loop.call_later(-self._read_tokens / factory.read_rate, self._rate_resume)

    def _rate_resume(self) -> None:
        self._rate_timer = None
        self._rate_paused = False
        if self.is_open and not self._reading_paused:
            self._tr.resumeProducing()

    # --- TLS over memory BIOs ---------------------------------------------------------------------------

    def _begin_tls(self, context: SSL.Context) -> None:
        conn = SSL.Connection(context, None)
        conn.set_accept_state()
        self._ssl = conn
        self._tls_started = True
        self._start_handshake_timer()

    def _tls_data_received(self, data: bytes) -> None:
        conn = self._ssl
        if conn is None or self._tls_dead:
            return
        try:
            conn.bio_write(data)
            tickets_wait = False
            if not self._handshake_done:
                try:
                    conn.do_handshake()
                except SSL.WantReadError:
                    self._tls_flush()
                    return
                self._handshake_done = True
                if conn.get_protocol_version_name() == "TLSv1.3":
                    # The server's last flight went out already; OpenSSL has just written the session
                    # tickets, which nobody waits for: they leave with the next write instead of alone.
                    tickets_wait = True
                else:
                    self._tls_flush()  # TLS 1.2: the server's Finished, which the client waits for
                self._handshake_completed()
                if self._ssl is None or self._tls_dead:
                    return
                if self._tls_backlog:
                    backlog, self._tls_backlog = self._tls_backlog, []
                    self._tls_write(b"".join(backlog))
            received = False
            piece: list[bytes] = []
            size = 0
            peer_closed = False
            while True:
                try:
                    data = conn.recv(TLS_READ_SIZE)
                except SSL.WantReadError:
                    break
                except SSL.ZeroReturnError:
                    peer_closed = True
                    break
                received = True
                piece.append(data)
                size += len(data)
                if size >= TLS_READ_SIZE:
                    # records read together go as one message, up to some 16 KiB: a client that sent a lot
                    # at once is handled a piece at a time, and the stream gives the other streams their
                    # turn between pieces (consumer._pump)
                    self._deliver_received(piece)
                    piece, size = [], 0
            if piece:
                self._deliver_received(piece)
            if peer_closed:
                # The peer's close_notify: answer it (unless ours went out already) and close TCP.
                self._tls_dead = True
                self._tls_shutdown()
            elif not received and not tickets_wait:
                # Records without application data (a KeyUpdate, say) may have made OpenSSL write an
                # answer: send it now. Answers to records read together with data wait for the next write,
                # which RFC 8446 §4.6.3 allows for KeyUpdate.
                self._tls_flush()
        except SSL.Error as exc:
            self._tls_failed(exc)

    def _handshake_completed(self) -> None:
        self._cancel_timer("_handshake_timer")
        if not self.is_open or self._ssl is None:
            return
        self.tls = self.factory.tls.info(self._ssl)
        if self.queue is None:
            self._start_application()
            self._deliver({"type": "xmpp.connect", "tls": self.tls})
        else:
            self._deliver({"type": "xmpp.tls_established", "tls": self.tls})

    def _tls_flush(self) -> None:
        """Move what OpenSSL wrote into the outgoing memory BIO to the TCP transport, in one write."""
        conn = self._ssl
        assert conn is not None
        try:
            out = conn.bio_read(TLS_FLUSH_SIZE)
        except SSL.WantReadError:
            return
        if len(out) == TLS_FLUSH_SIZE:
            chunks = [out]
            while True:
                try:
                    chunks.append(conn.bio_read(TLS_FLUSH_SIZE))
                except SSL.WantReadError:
                    break
            out = b"".join(chunks)
        self._write_raw(out)

    def _tls_write(self, data: bytes) -> None:
        conn = self._ssl
        if conn is None or self._tls_dead:
            return
        if not self._handshake_done:
            self._tls_backlog.append(data)
            return
        try:
            conn.sendall(data)
        except SSL.Error as exc:
            self._tls_failed(exc)
            return
        self._tls_flush()

    def _tls_shutdown(self) -> None:
        """Send our close_notify; close TCP once the peer's has arrived too (it may have already)."""
        conn = self._ssl
        assert conn is not None
        try:
            both = conn.shutdown()
        except SSL.Error:
            both = False
        self._tls_flush()
        if both:
            self._tls_dead = True
            self._tr.loseConnection()

    def _tls_failed(self, exc: SSL.Error) -> None:
        """A fatal TLS error: send the alert OpenSSL may have queued, then close."""
        self._tls_dead = True
        self._closing = True
        if self._close_reason is None:
            self._close_reason = f"tls error: {describe_tls_error(exc)}"
        if self._ssl is not None:
            self._tls_flush()
        self._tr.loseConnection()

    def _ssl_release(self) -> None:
        self._tls_dead = True
        self._tls_backlog = []
        self._ssl = None

    # --- application side -------------------------------------------------------------------------------

    def _start_application(self) -> None:
        peer, host = self._tr.getPeer(), self._tr.getHost()
        scope = {
            "type": "xmpp",
            "transport": self.factory.transport_name,
            "xmpp_optional": OPTIONAL_MESSAGES,
            "client": [peer.host, peer.port],
            "server": [host.host, host.port],
            "path": "",
            "headers": [],
            "query_string": b"",
            "asgi": {"version": "3.0"},
        }
        self.queue = collections.deque()
        coro = self.factory.application(scope, self._receive, self._send)
        # Not xmppauth.tasks.start: the application runs on the factory's loop (not necessarily the
        # running one), and its end closes the connection. The reference is kept in factory.tasks
        # until it ends, _application_done logs its failure with the peer's address, and shutdown()
        # cancels what is left.
        self.task = self.factory.loop.create_task(coro)  # type: ignore[arg-type]
        self.factory.tasks.add(self.task)
        self.task.add_done_callback(self._application_done)

    def _deliver_received(self, piece: list[bytes]) -> None:
        if self.queue is not None and not self._closing:
            self._deliver({"type": "xmpp.receive", "bytes": b"".join(piece)})

    def _deliver(self, message: Message) -> None:
        """Hand `message` to a waiting ``receive()``, or queue it (pausing reads at `HIGH_WATER`)."""
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():  # done: cancelled
                waiter.set_result(message)
                return
        queue = self.queue
        assert queue is not None
        queue.append(message)
        if not self._reading_paused and self.is_open and len(queue) >= HIGH_WATER:
            self._reading_paused = True
            if not self._rate_paused:
                self._tr.pauseProducing()

    def _receive(self) -> asyncio.Future[Message]:
        """ASGI ``receive``: a future rather than a coroutine, already done when a message is queued.

        Channels wraps every ``receive()`` in ``asyncio.ensure_future``; a future needs no task (and no
        event-loop round trip to start one), and awaiting a done future does not suspend.
        """
        future: asyncio.Future[Message] = self.factory.loop.create_future()
        queue = self.queue
        assert queue is not None
        if queue:
            future.set_result(queue.popleft())
            if self._reading_paused and len(queue) <= LOW_WATER:
                self._reading_paused = False
                if self.is_open and not self._rate_paused:
                    self._tr.resumeProducing()
        else:
            self._waiters.append(future)
        return future

    async def _send(self, message: Message) -> None:
        if not self.is_open or self._closing:
            return
        kind = message.get("type")
        if kind == "xmpp.send":
            frames = message.get("frames")
            if frames is None:
                data = message.get("bytes")
                if not isinstance(data, bytes | bytearray | memoryview):
                    raise TypeError(f"xmpp.send needs bytes, got {type(data).__name__}")
                frames = [bytes(data)] if data else []
            elif not isinstance(frames, list) or not all(type(frame) is bytes for frame in frames):
                raise TypeError("xmpp.send needs frames as a list of bytes")
            if frames:
                self._out_pending.extend(frames)
                if not self._out_scheduled:
                    self._out_scheduled = True
                    self.factory.loop.call_soon(self._flush_out)
        elif kind == "xmpp.starttls":
            self._start_tls()
        elif kind == "xmpp.close":
            self.close()
        elif kind == "xmpp.drain":
            self._flush_out()
            if self._drain_timer is None:
                self._when_drained()
        elif kind == "xmpp.bound":
            if self._counted and self.factory.limits is not None:
                self.factory.limits.busy(self._address, self)
        elif kind == "xmpp.waiting":
            if self._counted and self.factory.limits is not None:
                self.factory.limits.waiting(self._address, self, self._make_room)
        elif kind == "xmpp.owed":
            self._owed_next += int(message["bytes"])
        else:
            raise ValueError(f"unknown message type {kind!r} for an xmpp connection")

    def _flush_out(self) -> None:
        """Write what xmpp.send queued in this loop iteration, in one piece."""
        self._out_scheduled = False
        if not self._out_pending:
            return
        pending, self._out_pending = self._out_pending, []
        data = pending[0] if len(pending) == 1 else b"".join(pending)
        if not self.is_open:
            return
        if self._owed_next:  # (TLS adds a few bytes a record: counted as not owed)
            owed = min(self._owed_next, len(data))
            self._owed_next -= owed
            self._owed_from, self._owed_until = self._written, self._written + owed
        if self._ssl is not None:
            self._tls_write(data)
        else:
            self._write_raw(data)

    def _start_tls(self) -> None:
        self._flush_out()  # <proceed/> leaves in plaintext, before the handshake starts
        if self._tls_started:
            raise RuntimeError("xmpp.starttls on a connection that already uses TLS")
        self._discard_pending_plaintext()
        self._begin_tls(self.factory.tls.starttls.getContext())

    def _discard_pending_plaintext(self) -> None:
        """Drop xmpp.receive messages the application has not taken yet: they were read before TLS."""
        queue = self.queue
        assert queue is not None
        kept = [message for message in queue if message["type"] != "xmpp.receive"]
        queue.clear()
        queue.extend(kept)
        if self._reading_paused and len(queue) <= LOW_WATER:
            self._reading_paused = False
            if not self._rate_paused:
                self._tr.resumeProducing()

    def close(self, reason: str = "closed") -> None:
        """Flush pending writes and close; abort if that has not happened after `CLOSE_GRACE` seconds.

        Over TLS this sends close_notify and closes TCP when the peer's close_notify arrives (or the
        peer closes TCP), as Twisted's TLS layer did; a handshake still under way is aborted instead.
        """
        if self._closing or not self.is_open:
            return
        self._flush_out()
        self._closing = True
        self._close_reason = reason
        if self._reading_paused or self._rate_paused:
            # A paused reader would never see the peer's close; the queue and the rate no longer matter.
            self._reading_paused = self._rate_paused = False
            self._cancel_timer("_rate_timer")
            self._tr.resumeProducing()
        if self._ssl is None or self._tls_dead:
            self._tr.loseConnection()
        elif not self._handshake_done:
            self._tls_dead = True
            self._tr.abortConnection()
        else:
            self._tls_shutdown()
        if self.is_open:
            self._abort_timer = self.factory.loop.call_later(CLOSE_GRACE, self._abort)

    def _abort(self) -> None:
        self._abort_timer = None
        if self.is_open:
            self._tr.abortConnection()

    def _application_done(self, task: asyncio.Task[None]) -> None:
        self.factory.tasks.discard(task)
        self._cancel_timer("_app_timer")
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            logger.error("Exception inside XMPP application for %s", self._peer_text(), exc_info=exc)
            self.close("application error")
        else:
            self.close("application finished")

    def _cancel_application(self) -> None:
        self._app_timer = None
        if self.task is not None and not self.task.done():
            logger.warning("XMPP application for %s did not return after disconnect", self._peer_text())
            self.task.cancel()

    def _signal_disconnect(self, reason: str) -> None:
        if self.queue is None or self._disconnect_sent:
            return
        self._disconnect_sent = True
        self._deliver({"type": "xmpp.disconnect", "reason": reason})

    def shutdown(self) -> None:
        """Server shutdown: tell the application at once, then close."""
        self._signal_disconnect("server shutdown")
        self.close("server shutdown")

    # --- helpers ----------------------------------------------------------------------------------------

    def _start_handshake_timer(self) -> None:
        timeout = self.factory.handshake_timeout
        if timeout > 0:
            self._handshake_timer = self.factory.loop.call_later(timeout, self._handshake_timed_out)

    def _handshake_timed_out(self) -> None:
        self._handshake_timer = None
        if self.is_open:
            self._close_reason = "tls handshake timeout"
            self._closing = True
            self._tr.abortConnection()

    def _cancel_timer(self, name: str) -> None:
        timer = getattr(self, name)
        if timer is not None:
            timer.cancel()
            setattr(self, name, None)

    def _peer_text(self) -> str:
        try:
            peer = self._tr.getPeer()
        except Exception:
            return "?"
        return f"{peer.host}:{peer.port}"


def _can_send_directly(transport: Any) -> bool:
    """Whether `_write_raw` may call ``writeSomeData`` itself: a Twisted TCP connection with its write buffer.

    Anything else (a test's fake transport, another reactor's) just gets ``write``.
    """
    return (
        isinstance(transport, tcp.Connection)
        and hasattr(transport, "_tempDataLen")
        and isinstance(getattr(transport, "dataBuffer", None), bytes)
    )


def _describe_loss(reason: Failure) -> str:
    if isinstance(reason.value, SSL.Error):
        return f"tls error: {describe_tls_error(reason.value)}"
    if isinstance(reason.value, ConnectionDone):
        return "peer closed"
    return f"connection lost: {reason.getErrorMessage()}"


class XMPPServerFactory(Factory[XMPPServerProtocol]):
    """Builds `XMPPServerProtocol`s for one listener and keeps track of them for shutdown."""

    noisy = False

    def __init__(
        self,
        application: ASGIApp,
        *,
        transport_name: TransportName,
        tls: ServerTLS,
        reactor: Any = None,
        loop: asyncio.AbstractEventLoop | None = None,
        handshake_timeout: float = 30.0,
        limits: ConnectionLimits | None = None,
        read_rate: int = 0,
        read_burst: int = 0,
        max_outgoing_bytes: int = 0,
        refusal_document: Callable[[str, str], bytes] | None = None,
    ) -> None:
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        if loop is None:
            loop = getattr(reactor, "_asyncioEventloop", None)
            if loop is None:
                raise RuntimeError("the XMPP transport needs the asyncio reactor (import daphne.server)")
        self.application = application
        self.transport_name: TransportName = transport_name
        self.tls = tls
        self.reactor = reactor
        self.loop = loop
        self.handshake_timeout = handshake_timeout
        self.limits = limits  # shared with the process's other listeners (transport/limits.py)
        # bytes a second each connection may send us (0: any), in bursts of read_burst; bytes that may wait
        # for a connection that does not read before it is dropped (0: no bound)
        self.read_rate = read_rate
        self.read_burst = max(read_burst, read_rate)
        self.max_outgoing_bytes = max_outgoing_bytes
        # what a connection the limits refuse is told, from the stream error's condition and text (None:
        # it is closed without a word); made by the layer that knows the streams (manage.py serve)
        self.refusal_document = refusal_document
        self.protocols: set[XMPPServerProtocol] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    def buildProtocol(self, addr: Any) -> XMPPServerProtocol:
        return XMPPServerProtocol(self)

    def shutdown(self) -> defer.Deferred[None]:
        """Close every connection, give the applications `SHUTDOWN_TIMEOUT` seconds, then cancel them."""
        for protocol in list(self.protocols):
            protocol.shutdown()
        tasks = [task for task in self.tasks if not task.done()]
        if not tasks:
            return defer.succeed(None)

        async def wait() -> None:
            _done, pending = await asyncio.wait(tasks, timeout=SHUTDOWN_TIMEOUT)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

        # A raw task, for Twisted: the Deferred holds it and reports its failure (wait() gathers the
        # applications with return_exceptions, so it has none of its own).
        return defer.Deferred.fromFuture(self.loop.create_task(wait()))


class _TurnTakingPort(tcp.Port):
    """A listening port that accepts at most ACCEPTS_PER_TURN connections in one turn of the event
    loop. Twisted's takes up to 100 at once and grows that by 20 whenever all were waiting: a burst of
    connects (a flood, mostly refused: ~150 µs each) then held every stream for milliseconds."""

    @property
    def numberAccepts(self) -> int:
        return min(self._accepts, ACCEPTS_PER_TURN)

    @numberAccepts.setter
    def numberAccepts(self, value: int) -> None:
        self._accepts = value


def _listen(reactor: Any, port: int, factory: Any, interface: str) -> Any:
    """``reactor.listenTCP`` with the turn-taking port."""
    listening = _TurnTakingPort(port, factory, interface=interface, reactor=reactor)
    listening.startListening()
    return listening


def listen_c2s(
    application: ASGIApp,
    *,
    starttls_endpoint: tuple[str, int] | None,
    directtls_endpoint: tuple[str, int] | None,
    tls: ServerTLS,
    reactor: Any = None,
    handshake_timeout: float = 30.0,
    limits: ConnectionLimits | None = None,
    read_rate: int = 0,
    read_burst: int = 0,
    max_outgoing_bytes: int = 0,
    refusal_document: Callable[[str, str], bytes] | None = None,
    close_on_shutdown: bool = True,
) -> list[Any]:
    """Listen for XMPP clients; returns the `IListeningPort`s (STARTTLS first). Raises `CannotListenError`.

    The listeners close their connections when the reactor shuts down; with ``close_on_shutdown`` off
    the caller does, with each port's ``factory.shutdown()`` (``manage.py serve``, after it has ended the
    sessions).
    """
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    options: dict[str, Any] = {
        "tls": tls,
        "reactor": reactor,
        "handshake_timeout": handshake_timeout,
        "limits": limits,
        "read_rate": read_rate,
        "read_burst": read_burst,
        "max_outgoing_bytes": max_outgoing_bytes,
        "refusal_document": refusal_document,
    }
    ports: list[Any] = []
    try:
        if starttls_endpoint is not None:
            factory = XMPPServerFactory(application, transport_name="starttls", **options)
            host, port = starttls_endpoint
            ports.append(_listen(reactor, port, factory, host))
            if close_on_shutdown:
                reactor.addSystemEventTrigger("before", "shutdown", factory.shutdown)
        if directtls_endpoint is not None:
            factory = XMPPServerFactory(application, transport_name="directtls", **options)
            host, port = directtls_endpoint
            ports.append(_listen(reactor, port, factory, host))
            if close_on_shutdown:
                reactor.addSystemEventTrigger("before", "shutdown", factory.shutdown)
    except Exception:
        for listening in ports:
            listening.stopListening()
        raise
    return ports
