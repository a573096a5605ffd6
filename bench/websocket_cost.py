"""WebSocket against TCP: the server's CPU per login and per routed message (RFC 7395 framing, issue 9).

Starts ``manage.py serve`` (``login_profile.Server``: a temp data dir, pinned to ``--server-cpu``), adds the
accounts ``alice`` and ``bob``, and measures, round after round, on the same server process:

- ``login-ws``: ``-N`` sequential WebSocket logins on ``ws://…/xmpp-websocket`` (no TLS: loopback counts as
  encrypted), ``<open/>``, SCRAM-SHA-1, ``<open/>`` again, bind, ``<close/>``, the WebSocket closed;
- ``login-tcp``: ``-N`` sequential TCP logins (STARTTLS, TLS 1.3, SCRAM-SHA-1, restart, bind, close), the
  login of ``login_profile.py``;
- ``msg-ws`` / ``msg-tcp``: ``-P`` pairs of sessions (alice sends, bob receives), ``-W`` chat messages of
  ``--body-size`` bytes in flight per pair, closed loop (every message received makes its pair send one
  more), ``--duration`` seconds measured after ``--warmup-seconds``; server CPU per delivered message.

Server CPU comes from ``/proc/PID/stat`` (utime + stime, all threads), so the client's own cost (the
``websockets`` library is slower than a raw socket) does not count, only how fast it can ask::

    .venv/bin/python bench/websocket_cost.py                                 # this tree
    .venv/bin/python bench/websocket_cost.py --repo /tmp/before --repo .     # A/B: rounds alternate
    .venv/bin/python bench/websocket_cost.py --scenarios msg-ws,msg-tcp --rounds 5

With several trees, all servers run at once (idle but for the one measured) and their rounds alternate,
as in ``login_profile.py``. Prints one line per round and the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import re
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import websockets

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from login_profile import (  # noqa: E402 - needs the sys.path entry above
    DOMAIN,
    PASSWORD,
    REPO_DIR,
    USER,
    Server,
    cpu_seconds,
    run_logins,
    wait_quiet,
)
from xmpp_client import ScramCache, ScramClient, Session, login, make_client_tls_context  # noqa: E402

RECEIVER = "bob"
FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
OPEN = f"<open xmlns='{FRAMING}' to='{DOMAIN}' version='1.0'/>"
CLOSE = f"<close xmlns='{FRAMING}'/>"
SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
BIND = "urn:ietf:params:xml:ns:xmpp-bind"
SCENARIOS = ("login-ws", "login-tcp", "msg-ws", "msg-tcp")
_PAYLOAD = re.compile(r">([^<]*)<")
_MESSAGE_ID = re.compile(r"<message\b[^>]*\sid=(['\"])m(\d+)\1")
_JID = re.compile(r"<jid>([^<]+)</jid>")


# --------------------------------------------------------------------------- WebSocket client
class WsSession:
    """A bound XMPP session over a WebSocket: one stanza per text frame (RFC 7395 §3.3.3)."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.jid = ""

    async def expect(self, needle: str) -> str:
        frame = str(await self.ws.recv())
        if needle not in frame:
            raise RuntimeError(f"expected {needle!r}, got {frame[:300]!r}")
        return frame

    async def close(self) -> None:
        await self.ws.send(CLOSE)
        await self.expect("<close")
        await self.ws.close()


async def ws_login(url: str, user: str, resource: str, cache: ScramCache) -> WsSession:
    ws = await websockets.connect(url, subprotocols=["xmpp"], compression=None)  # type: ignore[list-item]
    s = WsSession(ws)
    await ws.send(OPEN)
    await s.expect("<open")
    await s.expect("SCRAM-SHA-1")
    scram = ScramClient("SCRAM-SHA-1", user, PASSWORD, cache)
    first = base64.b64encode(scram.first()).decode()
    await ws.send(f"<auth xmlns='{SASL}' mechanism='SCRAM-SHA-1'>{first}</auth>")
    challenge = await s.expect("<challenge")
    server_first = base64.b64decode(_payload(challenge))
    final = base64.b64encode(scram.final(server_first)).decode()
    await ws.send(f"<response xmlns='{SASL}'>{final}</response>")
    success = await s.expect("<success")
    scram.verify(base64.b64decode(_payload(success)))
    await ws.send(OPEN)
    await s.expect("<open")
    await s.expect(BIND)
    await ws.send(
        f"<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='{BIND}'>"
        f"<resource>{resource}</resource></bind></iq>"
    )
    bound = _JID.search(await s.expect("<jid>"))
    assert bound is not None
    s.jid = bound.group(1)
    return s


def _payload(element: str) -> str:
    m = _PAYLOAD.search(element)
    return m.group(1) if m else ""


async def run_ws_logins(url: str, n: int) -> float:
    cache = ScramCache()
    t0 = time.perf_counter()
    for i in range(n):
        s = await ws_login(url, USER, f"w{i}", cache)
        await s.close()
    return time.perf_counter() - t0


# --------------------------------------------------------------------------- messages
class Link:
    """One side of a pair, whatever the transport: write stanzas, read what arrives."""

    def __init__(self, session: WsSession | Session) -> None:
        self.session = session
        self.jid = session.jid

    async def write(self, stanzas: list[str]) -> None:
        if isinstance(self.session, WsSession):
            for stanza in stanzas:
                await self.session.ws.send(stanza)
        else:
            self.session.writer.write("".join(stanzas).encode())

    async def read(self) -> str:
        if isinstance(self.session, WsSession):
            return str(await self.session.ws.recv())
        data = await self.session.reader.read(262144)
        if not data:
            raise ConnectionError("stream closed")
        return data.decode(errors="replace")

    async def close(self) -> None:
        await self.session.close()


class Pair:
    def __init__(self, sender: Link, receiver: Link, body: str) -> None:
        self.sender, self.receiver = sender, receiver
        self.prefix = f"<message xmlns='jabber:client' to='{receiver.jid}' type='chat' id='m"
        self.suffix = f"'><body>{body}</body></message>"
        self.sent = 0
        self.received = 0

    def build(self, n: int) -> list[str]:
        first, self.sent = self.sent, self.sent + n
        return [f"{self.prefix}{k}{self.suffix}" for k in range(first, first + n)]


async def _receive_loop(pair: Pair, counting: list[int], tail: list[str]) -> None:
    while True:
        text = tail[0] + await pair.receiver.read()
        end = text.rfind("</message>")
        if end < 0:
            tail[0] = text
            continue
        tail[0] = text[end + 10 :]
        n = len(_MESSAGE_ID.findall(text[: end + 10]))
        pair.received += n
        counting[0] += n
        if n:
            await pair.sender.write(pair.build(n))


async def run_messages(
    connect: Callable[[str, str], Awaitable[Link]], pid: int, args: argparse.Namespace
) -> dict[str, float]:
    body = "x" * args.body_size
    pairs = [
        Pair(await connect(USER, f"s{p}"), await connect(RECEIVER, f"r{p}"), body) for p in range(args.pairs)
    ]
    counting = [0]
    tasks = [asyncio.create_task(_receive_loop(pair, counting, [""])) for pair in pairs]
    try:
        for pair in pairs:
            await pair.sender.write(pair.build(args.window))
        await asyncio.sleep(args.warmup_seconds)
        for task in tasks:
            if task.done():
                task.result()
        counting[0] = 0
        c0, t0 = cpu_seconds(pid), time.perf_counter()
        await asyncio.sleep(args.duration)
        used, wall, count = cpu_seconds(pid) - c0, time.perf_counter() - t0, counting[0]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for pair in pairs:
            for link in (pair.sender, pair.receiver):
                try:
                    async with asyncio.timeout(5):
                        await link.close()
                except Exception:  # the measurement is over; a slow close does not matter
                    pass
    if not count:
        raise RuntimeError("no message was delivered")
    return {"us_per_msg": 1e6 * used / count, "msgs_per_s": count / wall}


# --------------------------------------------------------------------------- rounds
class Target:
    def __init__(self, label: str, server: Server) -> None:
        self.label, self.server = label, server
        self.rounds: dict[str, list[dict[str, float]]] = {name: [] for name in SCENARIOS}

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.server.http_port}/xmpp-websocket"


def measure(target: Target, scenario: str, args: argparse.Namespace) -> dict[str, float]:
    pid, n = target.server.pid, args.N
    if scenario.startswith("login"):
        c0 = cpu_seconds(pid)
        if scenario == "login-ws":
            wall = asyncio.run(run_ws_logins(target.url, n))
        else:
            wall = asyncio.run(run_logins(target.server.c2s_port, n))
        time.sleep(0.2)  # the server finishes the last close
        return {"ms_per_login": 1000 * (cpu_seconds(pid) - c0) / n, "logins_per_s": n / wall}

    tls_ctx, cache = make_client_tls_context(), ScramCache()

    async def ws(user: str, resource: str) -> Link:
        return Link(await ws_login(target.url, user, resource, cache))

    async def tcp(user: str, resource: str) -> Link:
        port = target.server.c2s_port
        session = await login(
            "127.0.0.1", port, DOMAIN, user, PASSWORD, resource, tls_ctx=tls_ctx, scram_cache=cache
        )
        return Link(session)

    return asyncio.run(run_messages(ws if scenario == "msg-ws" else tcp, pid, args))


def _figure(scenario: str, row: dict[str, float]) -> str:
    if scenario.startswith("login"):
        return f"{row['ms_per_login']:.2f} ms/login ({row['logins_per_s']:.0f}/s)"
    return f"{row['us_per_msg']:.1f} us/msg ({row['msgs_per_s']:.0f}/s)"


def _median(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(row[key] for row in rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-N", type=int, default=200, help="logins per login round (default 200)")
    p.add_argument("-P", "--pairs", type=int, default=4, help="sender/receiver pairs (default 4)")
    p.add_argument("-W", "--window", type=int, default=16, help="messages in flight per pair (default 16)")
    p.add_argument("--body-size", type=int, default=250, help="message body bytes (default 250)")
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds per message round")
    p.add_argument("--warmup-seconds", type=float, default=1.0, help="unmeasured seconds first")
    p.add_argument("--rounds", type=int, default=3, help="rounds per server and scenario (default 3)")
    p.add_argument("--warmup", type=int, default=30, help="unmeasured logins of each kind first")
    p.add_argument("--scenarios", default=",".join(SCENARIOS), help=f"subset of {','.join(SCENARIOS)}")
    p.add_argument("--server-cpu", type=int, default=0, help="CPU the server is pinned to (-1: none)")
    p.add_argument("--client-cpu", type=int, default=1, help="CPU this client is pinned to (-1: none)")
    p.add_argument("--repo", type=Path, action="append", help="tree to serve (repeat it to compare)")
    p.add_argument("--quiet-below", type=float, default=15.0, metavar="PCT")
    p.add_argument("--max-wait", type=float, default=60.0)
    args = p.parse_args(argv)
    scenarios = [name for name in args.scenarios.split(",") if name]
    unknown = set(scenarios) - set(SCENARIOS)
    if unknown:
        p.error(f"unknown scenarios: {', '.join(sorted(unknown))}")

    if args.client_cpu >= 0 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.client_cpu})
    targets: list[Target] = []
    cpu = None if args.server_cpu < 0 else args.server_cpu
    try:
        for repo in args.repo or [REPO_DIR]:
            server = Server(repo.resolve(), cpu, None, {})
            targets.append(Target(str(repo), server))
            server.start()
            added = server._manage("adduser", RECEIVER, PASSWORD)
            if added.returncode != 0 and "exist" not in (added.stdout + added.stderr).lower():
                raise RuntimeError(f"adduser {RECEIVER} failed:\n{(added.stderr or added.stdout)[-2000:]}")
        for target in targets:
            if args.warmup:
                asyncio.run(run_ws_logins(target.url, args.warmup))
                asyncio.run(run_logins(target.server.c2s_port, args.warmup))
        for r in range(args.rounds):
            for scenario in scenarios:
                for target in targets if r % 2 == 0 else targets[::-1]:
                    if args.quiet_below > 0:
                        pids = [os.getpid(), *(t.server.pid for t in targets)]
                        wait_quiet(args.quiet_below, args.max_wait, pids)
                    row = measure(target, scenario, args)
                    target.rounds[scenario].append(row)
                    print(f"round {r + 1} {scenario:9} {target.label}: {_figure(scenario, row)}", flush=True)
        print()
        for scenario in scenarios:
            key = "ms_per_login" if scenario.startswith("login") else "us_per_msg"
            for target in targets:
                rows = target.rounds[scenario]
                median = {key: _median(rows, key), **{k: _median(rows, k) for k in rows[0] if k != key}}
                print(f"median {scenario:9} {_figure(scenario, median)}  {target.label}")
    except Exception:
        for target in targets:
            print(target.server.log_tail(), file=sys.stderr)
        raise
    finally:
        for target in targets:
            target.server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
