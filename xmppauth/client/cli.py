"""The reference client's command line: ``xmppauth-client JID`` or ``python -m xmppauth.client JID``.

Exit codes: 0 success, 1 authentication failed (or a check after it), 2 usage error, 3 connection or TLS
error. One line per step on standard output; ``--json`` makes each a JSON object with ``event`` and
``message``."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
import uuid
from pathlib import Path

from xmppauth.client.fasttoken import TokenFile
from xmppauth.client.session import AuthFailed, LoginOptions, login, ping, send_message
from xmppauth.client.tasks import Answers, secret_from_base32
from xmppauth.client.transport import (
    ConnectionProblem,
    TcpTransport,
    Transport,
    WebSocketTransport,
    tls_context,
)
from xmppauth.proto.jid import JID, InvalidJID

EXIT_OK, EXIT_AUTH, EXIT_USAGE, EXIT_CONNECTION = 0, 1, 2, 3
PASSWORD_ENV = "XMPPAUTH_PASSWORD"  # noqa: S105 (a variable name)
_DEFAULT_PORTS = {"starttls": 5222, "tls": 5223}


class UsageError(Exception):
    pass


class Reporter:
    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json

    def __call__(self, event: str, message: str, **data: object) -> None:
        if self.as_json:
            print(json.dumps({"event": event, "message": message, **data}), flush=True)
        else:
            print(message, file=sys.stderr if event == "error" else sys.stdout, flush=True)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="xmppauth-client",
        description="Log in with SASL2, Bind2 and FAST, answer the server's tasks, report each step.",
        epilog=f"The password comes from --password, else ${PASSWORD_ENV}, else a prompt. "
        "Exit codes: 0 success, 1 authentication failed, 2 usage error, 3 connection or TLS error.",
    )
    p.add_argument("jid", help="the account, e.g. alice@example.org")
    c = p.add_argument_group("connection")
    c.add_argument(
        "--transport",
        choices=["starttls", "tls", "ws"],
        default="starttls",
        help="TCP with STARTTLS (default), direct TLS (ALPN xmpp-client) or WebSocket (RFC 7395)",
    )
    c.add_argument("--host", help="host to connect to (default: the JID's domain)")
    c.add_argument("--port", type=int, help="port (default 5222 for starttls, 5223 for tls)")
    c.add_argument("--url", help="WebSocket URL (default wss://DOMAIN/xmpp-websocket)")
    c.add_argument(
        "--insecure", action="store_true", help="accept any certificate (self-signed test servers)"
    )
    c.add_argument(
        "--cafile", help="trust only the CA certificates (or self-signed certificate) in this PEM file"
    )
    c.add_argument("--timeout", type=float, default=20.0, help="seconds to wait for each answer (default 20)")
    a = p.add_argument_group("login")
    a.add_argument("--password", help=f"the password (visible to other local users: prefer ${PASSWORD_ENV})")
    a.add_argument(
        "--mechanism", choices=["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"], default="SCRAM-SHA-256"
    )
    a.add_argument("--tag", default="refclient", help="Bind2 tag: the resource's prefix (default refclient)")
    a.add_argument(
        "--user-agent-id", help="XEP-0388 user-agent id (default: the token file's, else a new UUID)"
    )
    a.add_argument(
        "--fast-token-file",
        type=Path,
        metavar="PATH",
        help="XEP-0484: log in with the token in PATH if there is one, else ask for one and store it",
    )
    a.add_argument("--upgrade", action="store_true", help="ask for XEP-0480 SCRAM upgrade tasks when offered")
    t = p.add_argument_group("second factor")
    t.add_argument("--totp-code", metavar="CODE", help="answer TOTP with this code")
    t.add_argument(
        "--totp-secret", metavar="BASE32", help="answer TOTP with a code computed from this secret"
    )
    t.add_argument("--recovery-code", metavar="CODE", help="answer X-RECOVERY with this recovery code")
    t.add_argument(
        "--totp-from-init",
        action="store_true",
        help="TOTP-INIT: answer with a code from the received URI's secret (for scripts and tests)",
    )
    t.add_argument(
        "--webauthn-key",
        type=Path,
        metavar="PATH",
        help="answer X-WEBAUTHN with the software security key in PATH (xmppauth.client.softkey; for tests)",
    )
    t.add_argument(
        "--webauthn-origin",
        metavar="ORIGIN",
        help="the origin the software key signs for (default https://DOMAIN; the server's "
        "XMPP_WEBAUTHN_ORIGINS must list it)",
    )
    t.add_argument(
        "--no-prompt", action="store_true", help="never prompt: fail when a password or code is missing"
    )
    s = p.add_argument_group("after login")
    s.add_argument(
        "--send", action="append", default=[], metavar="JID:TEXT", help="send a chat message (repeatable)"
    )
    s.add_argument("--ping", action="store_true", help="XEP-0199 ping the server")
    p.add_argument("--json", action="store_true", help="print one JSON object per line")
    return p


def _password_source(args: argparse.Namespace) -> tuple[list[str], bool]:
    cache: list[str] = [args.password] if args.password is not None else []
    if not cache and os.environ.get(PASSWORD_ENV):
        cache.append(os.environ[PASSWORD_ENV])
    return cache, not args.no_prompt


async def run(args: argparse.Namespace, report: Reporter) -> int:
    try:
        jid = JID.parse(args.jid)
    except InvalidJID as exc:
        raise UsageError(f"not a JID: {args.jid} ({exc})") from None
    if not jid.local:
        raise UsageError(f"{args.jid} has no localpart")
    try:
        secret = secret_from_base32(args.totp_secret) if args.totp_secret else None
    except ValueError as exc:
        raise UsageError(f"--totp-secret: {exc}") from None
    sends = []
    for item in args.send:
        to, sep, text = item.partition(":")
        if not sep or not to:
            raise UsageError(f"--send wants JID:TEXT, not {item!r}")
        sends.append((to, text))

    cache, may_prompt = _password_source(args)

    def password() -> str:
        if not cache:
            if not may_prompt or not sys.stdin.isatty():
                raise UsageError(f"a password is needed: give --password or set ${PASSWORD_ENV}")
            cache.append(getpass.getpass(f"password for {jid.bare}: "))
        return cache[0]

    tokens = TokenFile(args.fast_token_file) if args.fast_token_file else None
    stored = tokens.load() if tokens is not None else None
    options = LoginOptions(
        username=jid.local,
        domain=jid.domain,
        mechanism=args.mechanism,
        tag=args.tag,
        software="xmppauth-client",
        user_agent_id=args.user_agent_id or (stored.user_agent_id if stored else str(uuid.uuid4())),
        upgrade=args.upgrade,
    )
    answers = Answers(
        totp_code=args.totp_code,
        totp_secret=secret,
        recovery_code=args.recovery_code,
        totp_from_init=args.totp_from_init,
        webauthn_key=args.webauthn_key,
        webauthn_origin=args.webauthn_origin or f"https://{jid.domain}",
        upgrade=args.upgrade,
        prompt=not args.no_prompt,
    )

    transport: Transport
    if args.transport == "ws":
        url = args.url or f"wss://{jid.domain}/xmpp-websocket"
        ctx = tls_context(insecure=args.insecure, cafile=args.cafile, alpn=False)
        transport, features = await WebSocketTransport.connect(url, jid.domain, ctx=ctx, wait=args.timeout)
    else:
        host, port = args.host or jid.domain, args.port or _DEFAULT_PORTS[args.transport]
        ctx = tls_context(insecure=args.insecure, cafile=args.cafile, alpn=args.transport == "tls")
        transport, features = await TcpTransport.connect(
            host, port, jid.domain, ctx=ctx, direct_tls=args.transport == "tls", wait=args.timeout
        )
    report(
        "connected",
        f"connected {transport.description}",
        transport=args.transport,
        detail=transport.description,
    )
    try:
        await login(
            transport, features, options, answers=answers, password=password, tokens=tokens, report=report
        )
        for to, text in sends:
            await send_message(transport, to, text, report)
        if args.ping:
            await ping(transport, jid.domain, report)
    finally:
        await transport.close()
    report("closed", "closed the stream")
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    report = Reporter(args.json)
    try:
        return asyncio.run(run(args, report))
    except UsageError as exc:
        report("error", f"usage: {exc}", exit=EXIT_USAGE)
        return EXIT_USAGE
    except AuthFailed as exc:
        report("failure", f"failure: {exc}", condition=exc.condition, text=exc.text, exit=EXIT_AUTH)
        return EXIT_AUTH
    except (ConnectionProblem, OSError, TimeoutError) as exc:
        report("error", f"connection error: {exc}", exit=EXIT_CONNECTION)
        return EXIT_CONNECTION
    except KeyboardInterrupt:
        return 130
