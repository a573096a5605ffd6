"""How long a full collection of Python's cyclic garbage collector stops the process, with the objects a
server makes at start left in the collector's care and frozen (``gc.freeze``, as ``manage.py serve`` does
once its listeners are up): Django set up and the server's modules imported, then ``gc.collect()`` timed.

    .venv/bin/python bench/gc_pause.py

A full collection runs when the long-lived objects have grown by a quarter since the last one: on a busy
server, now and then, and every stream waits for it (the event loop is one thread).
"""

from __future__ import annotations

import gc
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fresh_django

fresh_django.start("bench-gc-")
import daphne.server  # noqa: E402, F401
from django.urls import get_resolver  # noqa: E402

import accounts.views.signin  # noqa: E402, F401
import sessions_acl.login  # noqa: E402, F401
import xmppauth.consumer  # noqa: E402
import xmppauth.management.commands.serve  # noqa: E402
import xmppauth.router  # noqa: E402
import xmppauth.transport.tcp  # noqa: E402, F401

get_resolver().url_patterns  # noqa: B018 - the URLconf imported, as at the first request


def full_collections(label: str) -> None:
    times = []
    for _ in range(5):
        began = time.perf_counter()
        gc.collect()
        times.append((time.perf_counter() - began) * 1000)
    print(f"{label}: full collection {min(times):.1f} ms best, {sorted(times)[2]:.1f} ms median (5 runs)")


gc.collect()
print(f"objects the collector tracks: {len(gc.get_objects()):,}")
full_collections("as started")
gc.freeze()
print(f"frozen: {gc.get_freeze_count():,}")
full_collections("frozen")
