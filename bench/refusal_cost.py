"""Server CPU per refused connection: what a flood of connects beyond the rate limit costs.

Run by hand (``.venv/bin/python bench/refusal_cost.py [--connects 3000]``): starts this tree's server
(``bench/servers.py``, default limits), spends the connect burst of 127.0.0.9, then opens ``--connects``
connections from that address, 50 at a time; each sends a stream header and reads until the stream ends
(a refusal) or the features come (admitted). Prints how many were refused and the server's CPU time
(user + system, from /proc) per refused connection.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections import Counter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from servers import XmppauthServer

HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'"
    b" to='localhost' version='1.0'>"
)
SOURCE = "127.0.0.9"
AT_ONCE = 50


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()  # noqa: SIM115
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def connect_once(port: int, outcomes: Counter[str]) -> None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(SOURCE, 0))
        writer.write(HEADER)
        data = b""
        while b"</stream:stream>" not in data and b"<stream:features" not in data:
            chunk = await reader.read(4096)
            if not chunk:
                break
            data += chunk
        outcomes["refused" if b"policy-violation" in data else "admitted"] += 1
        writer.close()
    except OSError:
        outcomes["error"] += 1


async def main(connects: int) -> None:
    server = XmppauthServer(cpu=None)
    server.start()
    try:
        warmup: Counter[str] = Counter()
        for _ in range(3):  # the burst of admitted connects is spent here
            await asyncio.gather(*(connect_once(server.c2s_port, warmup) for _ in range(AT_ONCE)))
        outcomes: Counter[str] = Counter()
        cpu, wall = cpu_seconds(server.pid), time.monotonic()
        for _ in range(connects // AT_ONCE):
            await asyncio.gather(*(connect_once(server.c2s_port, outcomes) for _ in range(AT_ONCE)))
        wall, cpu = time.monotonic() - wall, cpu_seconds(server.pid) - cpu
        per = cpu / max(1, outcomes["refused"]) * 1e6
        print(f"{dict(outcomes)} in {wall:.2f} s; server CPU {cpu:.2f} s: {per:.0f} µs per refused one")
    finally:
        server.stop()


if __name__ == "__main__":
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--connects", type=int, default=3000)
    asyncio.run(main(parser.parse_args().connects))
