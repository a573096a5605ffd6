"""What an idle connection before authentication costs the server in memory (SECURITY.md row 5).

Starts ``manage.py serve`` (bench/servers.py), opens connections that stop right before authenticating,
and reads the server's RSS: once after a warm-up batch, then after each further batch; the figure is the
growth per connection. Two kinds: direct TLS (XEP-0368, handshake done, stream header sent and answered:
the most a pre-auth connection holds: a TLS session, a stream parser, a consumer) and STARTTLS before
``<starttls/>`` (header sent and answered, no TLS yet). The connection limits are raised for the run.

    .venv/bin/python bench/preauth_rss.py                   # 4 batches of 250 of each kind
    .venv/bin/python bench/preauth_rss.py --batch 500 --batches 4
"""

from __future__ import annotations

import argparse
import socket
import ssl
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from servers import XmppauthServer, stop_process

HEADER = (
    b"<?xml version='1.0'?><stream:stream to='localhost' version='1.0' xmlns='jabber:client'"
    b" xmlns:stream='http://etherx.jabber.org/streams'>"
)


def open_one(port: int, tls: bool) -> socket.socket:
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock: socket.socket = raw
    if tls:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        sock = context.wrap_socket(raw, server_hostname="localhost")
    sock.sendall(HEADER)
    seen = b""
    while b"</stream:features>" not in seen:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("the server closed a connection")
        seen += chunk
    return sock


def rss(pid: int) -> int:
    time.sleep(1.0)  # let the loop settle (freed buffers, finished callbacks)
    return int(psutil.Process(pid).memory_info().rss)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--batches", type=int, default=4)
    args = parser.parse_args()
    server = XmppauthServer(cpu=None)
    server.env.update(
        {
            "XMPP_MAX_CONNECTIONS_PER_ADDRESS": "100000",
            "XMPP_CONNECT_BURST": "100000",
            "XMPP_CONNECTS_PER_SECOND_PER_ADDRESS": "100000",
            "XMPP_PREAUTH_TIMEOUT": "3600",
        }
    )
    server.start()
    held: list[socket.socket] = []
    try:
        for kind, port, tls in (
            ("direct TLS", server.c2s_tls_port, True),
            ("STARTTLS, before TLS", server.c2s_port, False),
        ):
            assert port is not None
            held += [open_one(port, tls) for _ in range(args.batch)]  # warm-up: pools, caches, the allocator
            before = rss(server.pid)
            for _ in range(args.batches):
                held += [open_one(port, tls) for _ in range(args.batch)]
            after = rss(server.pid)
            count = args.batch * args.batches
            print(
                f"{kind:22s} {count} connections: RSS {before / 2**20:.1f} -> {after / 2**20:.1f} MiB,"
                f" {(after - before) / count / 1024:.1f} KiB a connection"
            )
    finally:
        for sock in held:
            sock.close()
        stop_process(server.proc)


if __name__ == "__main__":
    main()
