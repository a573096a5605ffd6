"""Issue 13 figures: routed messages inside one process and across two, through Redis.

Run by hand (``.venv/bin/python bench/cluster.py --help``; ~2 min with the defaults). Two xmppauth
processes (``bench/servers.py``) share a fresh PostgreSQL database on 127.0.0.1:5432 and Redis database
``--redis-db`` (emptied first) on 127.0.0.1:6379, each with its own ``XMPP_NODE``. This process is the
load: ``--pairs`` sender->receiver pairs (RFC 6120 logins, SCRAM-SHA-1), each with ``--window`` chat
messages in flight (closed loop: every message received is answered by one more from its sender, as
in bench/login_msg.py's ``msg`` scenario), for ``--seconds`` after ``--warmup``; the servers' read rate is
off (``XMPP_READ_BYTES_PER_SECOND=0``: it would hold each sender to 128 KiB/s). Scenarios:

* ``local``: every pair on process A (sender and receiver in one process: a direct call);
* ``across``: every sender on A, every receiver on B (each message crosses through Redis);
* ``split``: half the pairs on A, half on B, each pair within its process (how far the service grows
  from one process to two on this machine; compare its messages/s with ``local``).

Printed per scenario: messages/s, p50 and p99 latency (send -> arrival), CPU of each server process and
of this one (as a share of one core), and messages lost (still in flight at the end).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

import psutil
import redis

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(1, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests.integration.server

from login_msg import MsgState, Pair, pct, receive_loop, sender_drain
from servers import XmppauthServer
from xmpp_client import ScramCache, Session, login, make_client_tls_context

from tests.integration.server import fresh_postgres_database  # one way to make a database to throw away

PASSWORD = "bench-Passw0rd"


def cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


async def run_scenario(
    name: str, a: argparse.Namespace, servers: tuple[XmppauthServer, XmppauthServer], accounts: list[str]
) -> dict[str, float]:
    first, second = servers
    tls, scram = make_client_tls_context(), ScramCache()

    def places(i: int) -> tuple[XmppauthServer, XmppauthServer]:
        if name == "local":
            return first, first
        if name == "across":
            return first, second
        return (first, first) if i % 2 == 0 else (second, second)

    async def session(server: XmppauthServer, account: str, resource: str) -> Session:
        return await login(
            server.host,
            server.c2s_port,
            "localhost",
            account,
            PASSWORD,
            resource,
            tls_ctx=tls,
            scram_cache=scram,
        )

    body = b"x" * a.body
    pairs = []
    for i in range(a.pairs):
        where_sender, where_receiver = places(i)
        sender = await session(where_sender, accounts[2 * i], "s")
        receiver = await session(where_receiver, accounts[2 * i + 1], "r")
        prefix = f"<message to='{receiver.jid}' type='chat' id='m".encode()
        pairs.append(Pair(i, sender, receiver, prefix, b"'><body>" + body + b"</body></message>"))
    await asyncio.sleep(1.5)  # the processes tell each other of the new sessions
    state = MsgState()
    tasks = [asyncio.create_task(receive_loop(p, state)) for p in pairs]
    tasks += [asyncio.create_task(sender_drain(p, state)) for p in pairs]
    processes = [psutil.Process(first.pid), psutil.Process(second.pid), psutil.Process()]
    try:
        for p in pairs:
            p.sender.writer.write(p.build(a.window, time.perf_counter()))
        await asyncio.sleep(a.warmup)
        if not any(p.received for p in pairs):
            raise RuntimeError(f"{name}: nothing delivered in the warm-up; first bytes: {pairs[0].sample!r}")
        before = [cpu_seconds(p) for p in processes]
        started = time.perf_counter()
        state.measuring = True
        await asyncio.sleep(a.seconds)
        state.measuring = False
        wall = time.perf_counter() - started
        used = [cpu_seconds(p) - b for p, b in zip(processes, before, strict=True)]
        state.sending = False
        await asyncio.sleep(1.0)
        lost = sum(len(p.sent) - p.received for p in pairs)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for p in pairs:
            p.sender.abort_or_close()
            p.receiver.abort_or_close()
    latencies = sorted(state.latencies)
    return {
        "msgs_per_s": state.count / wall,
        "p50_ms": 1000 * pct(latencies, 0.5),
        "p99_ms": 1000 * pct(latencies, 0.99),
        "cpu_a": 100 * used[0] / wall,
        "cpu_b": 100 * used[1] / wall,
        "cpu_load": 100 * used[2] / wall,
        "lost": lost,
        "errors": state.errors,
    }


async def main(a: argparse.Namespace) -> None:
    redis_url = f"redis://127.0.0.1:6379/{a.redis_db}"
    redis.Redis.from_url(redis_url).flushdb()
    accounts = [f"c{i:03d}" for i in range(2 * a.pairs)]
    with fresh_postgres_database("bench_cluster") as database:
        servers = (XmppauthServer(cpu=None), XmppauthServer(cpu=None))
        for server, node in zip(servers, ("a", "b"), strict=True):
            server.env.update(
                {
                    "DATABASE_URL": database,
                    "CHANNEL_LAYER_URL": redis_url,
                    "XMPP_NODE": node,
                    "XMPP_LOG_LEVEL": "WARNING",
                    # the load is a few connections sending as fast as they can: no read rate
                    "XMPP_READ_BYTES_PER_SECOND": "0",
                }
            )
        done = servers[0]._manage("migrate", "-v0")
        assert done.returncode == 0, done.stderr
        servers[0].create_accounts(accounts, PASSWORD)
        try:
            for server in servers:
                server.start()
            print(
                f"{a.pairs} pairs, {a.window} messages in flight each, {a.body}-byte bodies, {a.seconds:g} s "
                f"after {a.warmup:g} s; started {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime())} UTC; "
                f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
            )
            print("| scenario | msgs/s | p50 ms | p99 ms | CPU A % | CPU B % | CPU load % | lost | errors |")
            print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
            for name in a.scenarios.split(","):
                r = await run_scenario(name, a, servers, accounts)
                print(
                    f"| {name} | {r['msgs_per_s']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
                    f"| {r['cpu_a']:.0f} | {r['cpu_b']:.0f} | {r['cpu_load']:.0f} | {r['lost']:.0f} "
                    f"| {r['errors']:.0f} |",
                    flush=True,
                )
        finally:
            for server in servers:
                server.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--body", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--scenarios", default="local,across,split")
    parser.add_argument("--redis-db", type=int, default=5)
    asyncio.run(main(parser.parse_args()))
