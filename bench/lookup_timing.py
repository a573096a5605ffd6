"""The credentials lookup of one SCRAM exchange, in-process (``sessions_acl.credentials._lookup``): an
existing account against an unknown name, median µs of each over ``-n`` calls, three rounds, on a fresh
SQLite database. The server-level figure is ``bench/hardening.py --parts 1``; this one shows where the
difference comes from and what the padding of unknown names does to it, without sockets or TLS.

    .venv/bin/python bench/lookup_timing.py [-n 3000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fresh_django

parser = argparse.ArgumentParser()
parser.add_argument("-n", type=int, default=3000)
args = parser.parse_args()
fresh_django.start("bench-lookup-")
from django.core.management import call_command  # noqa: E402

from sessions_acl import credentials  # noqa: E402

call_command("adduser", "alice", "Passw0rd-alice-bench", verbosity=0)


def median_us(name: str) -> float:
    times = []
    for _ in range(args.n):
        began = time.perf_counter_ns()
        credentials._lookup(name, name, "SHA-256")
        times.append(time.perf_counter_ns() - began)
    return statistics.median(times) / 1000


for _ in range(3):
    print(f"existing {median_us('alice'):.1f} µs, unknown {median_us('nobody'):.1f} µs (medians of {args.n})")
