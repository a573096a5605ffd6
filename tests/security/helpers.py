"""Tools of the security tests: canaries that notice a fetch or a file read, the server's memory,
streams in each phase of a login, and what the server logged about one connection."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from OpenSSL import SSL

from tests.integration.rawclient import RawClient, Session, client_header, parse_stream_error
from tests.integration.server import Server


# ---------------------------------------------------------------------------------------- canaries
class NetworkCanary:
    """A TCP listener on 127.0.0.1 that records every connection made to it (and answers nothing, so a
    fetch would also hang the fetcher). Entities and DTDs of the attacks point at it."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._sock.settimeout(0.1)
        self.port = int(self._sock.getsockname()[1])
        self.connections: list[tuple[str, int]] = []
        self._stop = threading.Event()
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._run, name="network-canary", daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}"

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, address = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections.append(address)
            self._held.append(conn)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for conn in self._held:
            conn.close()
        self._sock.close()


class FileCanary:
    """A named pipe the attacks name in ``file://`` entities. A process that opens it for reading
    blocks in ``open()`` until a writer comes, and while it waits (or reads) a non-blocking open for
    writing succeeds; with no reader it fails with ENXIO. So ``reader_present()`` tells whether
    anything tried to read the "file", and the blocked reader would also have stalled the server."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "canary.fifo"
        os.mkfifo(self.path)

    @property
    def url(self) -> str:
        return f"file://{self.path}"

    def reader_present(self) -> bool:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                return False
            raise
        os.close(fd)  # a reader was there: let it go (it reads end of file)
        return True


# ---------------------------------------------------------------------------------------- memory
class ServerMemory:
    """The serving process's resident memory, from /proc: ``peak_growth()`` is how far its peak RSS
    (VmHWM) went above its RSS at ``start()``. ``start()`` resets the peak to the current RSS
    (``echo 5 > /proc/PID/clear_refs``, Linux 4.0+), so a peak reached earlier does not hide one."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.baseline = 0

    def _status(self) -> dict[str, int]:
        values: dict[str, int] = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0]) * 1024
        return values

    def start(self) -> None:
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        self.baseline = self._status()["VmRSS"]

    def peak_growth(self) -> int:
        return self._status()["VmHWM"] - self.baseline


# ---------------------------------------------------------------------------------------- streams
#: Where in a login an attack is sent: before the stream header, after it on the cleartext stream (before
#: STARTTLS), after it on a TLS stream (before authentication), and on a bound session.
PHASES = ("before-header", "cleartext", "tls-preauth", "bound")


def stream_in(server: Server, phase: str, user: str = "alice", password: str = "wonderland") -> RawClient:
    """A stream of ``phase``; for ``before-header`` nothing has been sent yet (the attack carries the
    header), on the STARTTLS port."""
    if phase == "before-header":
        return RawClient(server.c2s)
    if phase == "cleartext":
        client = RawClient(server.c2s)
        client.open_stream()
        return client
    if phase == "tls-preauth":
        client = RawClient(server.c2s_tls, direct_tls=True)
        client.open_stream()
        return client
    if phase == "bound":
        session = Session(server, user, password)
        assert session.ok, session.reply
        return session.raw
    raise ValueError(phase)


def header_after(prolog: bytes) -> bytes:
    """An XML declaration, ``prolog`` (a DOCTYPE, say), then the client's stream header."""
    header = client_header()
    declaration = b"<?xml version='1.0'?>"
    assert header.startswith(declaration)
    return declaration + prolog + header[len(declaration) :]


class Port(int):
    """A client's local port, and how long the server's log was when it was taken: the log lines about
    this connection come after that (a port is used again by later connections, and an earlier one's
    lines must not be taken for this one's)."""

    since: int = 0


def local_port(client: RawClient, server: Server) -> Port:
    port = Port(client.sock.getsockname()[1])
    port.since = len(server.log_text())
    return port


def send_and_time_close(client: RawClient, payload: bytes, timeout: float = 10.0) -> tuple[bytes, float]:
    """Send ``payload`` at once; what the server sent until it closed the stream, and how long after the
    last byte went out the close arrived."""
    with contextlib.suppress(OSError, SSL.Error):  # the server may close before it has read it all
        client.send(payload)
    sent = time.monotonic()
    out = client.read_to_close(timeout)
    return out, time.monotonic() - sent


def send_bytewise(client: RawClient, payload: bytes, *, stop_when_closed: bool = True) -> int:
    """Send ``payload`` one byte per write (one TLS record each on a TLS stream, TCP_NODELAY), so that
    the server reads it in pieces as small as the network allows; stops early once the server has
    answered (an error, say). Returns the bytes sent."""
    client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    for count, byte in enumerate(payload, 1):
        try:
            client.send(bytes([byte]))
        except (OSError, SSL.Error):
            return count - 1
        if stop_when_closed and count % 16 == 0:
            client.buffer += client._recv_some(0)
            if client.closed or b"</stream:stream>" in client.buffer:
                return count
    return len(payload)


def closed_with(client: RawClient, timeout: float = 5.0) -> str | None:
    """The condition of the stream error the server ended the stream with (None: it closed without)."""
    return parse_stream_error(client.read_to_close(timeout))


# ---------------------------------------------------------------------------------------- the log
def logged(server: Server, port: int, pattern: str, timeout: float = 3.0) -> str:
    """The server's log line about the connection from local port ``port`` that matches ``pattern``."""
    regex = re.compile(rf"127\.0\.0\.1:{port}\b.*{pattern}")
    deadline = time.monotonic() + timeout
    since = port.since if isinstance(port, Port) else 0
    while True:
        for line in server.log_text()[since:].splitlines():
            if regex.search(line):
                return line
        if time.monotonic() > deadline:
            raise AssertionError(f"no log line for 127.0.0.1:{port} matching {pattern!r}")
        time.sleep(0.05)


@contextlib.contextmanager
def canaries(folder: Path) -> Iterator[tuple[NetworkCanary, FileCanary]]:
    net = NetworkCanary()
    try:
        yield net, FileCanary(folder)
    finally:
        net.close()


def best_of(tries: int, attempt: Callable[[], float]) -> float:
    """The shortest of up to ``tries`` timings (stops at the first under 0.1 s): a busy shared machine
    can delay one answer, an attack that costs the server work delays every one."""
    best = float("inf")
    for _ in range(tries):
        best = min(best, attempt())
        if best <= 0.1:
            break
    return best
