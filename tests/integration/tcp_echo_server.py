"""Test helper: serve `echo_app` from test_tcp_transport over real XMPP c2s listeners in a process of its own.

    python -m tests.integration.tcp_echo_server --cert X.crt --key X.key

Listens on free loopback ports; prints ``READY starttls=<port> directtls=<port>`` once it accepts connections.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any


def main(argv: list[str] | None = None) -> None:
    import daphne.server  # noqa: F401 - installs Twisted's asyncio reactor; must precede the reactor import
    from twisted.internet import reactor as default_reactor

    from tests.integration.test_tcp_transport import echo_app
    from xmppauth.transport.tcp import listen_c2s
    from xmppauth.transport.tls import ServerTLS, ensure_certificate

    parser = argparse.ArgumentParser()
    parser.add_argument("--cert", type=Path, required=True)
    parser.add_argument("--key", type=Path, required=True)
    parser.add_argument("--handshake-timeout", type=float, default=30.0)
    args = parser.parse_args(argv)
    reactor: Any = default_reactor

    ensure_certificate("localhost", args.cert, args.key)
    ports = listen_c2s(
        echo_app,
        starttls_endpoint=("127.0.0.1", 0),
        directtls_endpoint=("127.0.0.1", 0),
        tls=ServerTLS(args.cert, args.key),
        handshake_timeout=args.handshake_timeout,
    )
    starttls_port, directtls_port = (port.getHost().port for port in ports)
    print(f"READY starttls={starttls_port} directtls={directtls_port}", flush=True)
    asyncio.set_event_loop(reactor._asyncioEventloop)
    reactor.run()


if __name__ == "__main__":
    main()
