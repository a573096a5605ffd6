"""The archive writer's cost per message copy: ``_insert`` of batches of 500 rows (the writer's BATCH) for
two accounts, as a busy server's writer makes them, on a fresh SQLite database. Run against a tree, to
compare two:

    .venv/bin/python bench/archive_write.py [TREE] [--batches 40] [--runs 5]

Prints the best run's µs per row. The quota (issue 12) adds a size per row and a count per account per
batch, and, once per sixteenth of the quota written to an archive, a sum over it (``--quota`` small makes
that happen: a trim-heavy run).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("tree", nargs="?", default=str(Path(__file__).resolve().parent.parent))
parser.add_argument("--batches", type=int, default=40)
parser.add_argument("--runs", type=int, default=5)
parser.add_argument("--quota", type=int, default=None, help="XMPP_ARCHIVE_MAX_BYTES for the run")
args = parser.parse_args()

tree = os.path.abspath(args.tree)
os.chdir(tree)
sys.path.insert(0, tree)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "xmppauth.settings")
os.environ["XMPP_DATA_DIR"] = tempfile.mkdtemp(prefix="bench-archive-")
os.environ.setdefault("XMPP_LOG_LEVEL", "WARNING")
if args.quota is not None:
    os.environ["XMPP_ARCHIVE_MAX_BYTES"] = str(args.quota)
import asyncio  # noqa: E402

import django  # noqa: E402
from django.core.management import call_command  # noqa: E402

django.setup()
call_command("migrate", verbosity=0)
from accounts.models import User  # noqa: E402
from xmppauth import archive  # noqa: E402
from xmppauth.proto.jid import JID  # noqa: E402

assert archive.__file__.startswith(tree), archive.__file__
for name in ("alice", "bob"):
    User.objects.create(username=name)
alice, bob = JID("alice", "localhost"), JID("bob", "localhost")
DATA = (
    b"<message from='alice@localhost/phone' to='bob@localhost' type='chat' id='x'><body>"
    + b"y" * 300
    + b"</body></message>"
)


def batch(start: int) -> list[tuple[archive.Row, bytes]]:
    rows = []
    for n in range(start, start + archive.BATCH // 2):
        aid = f"{n:026d}"
        rows.append((archive.Row(bob, aid, alice, alice, False, time.time(), False), DATA))
        rows.append((archive.Row(alice, aid, bob, bob, True, time.time(), False), DATA))
    return rows


async def run(first: int) -> float:
    writer = archive._Writer()
    begin = time.perf_counter()
    for k in range(args.batches):
        writer._waiting = batch(first + k * archive.BATCH)
        await writer._write_some()
    rows: int = args.batches * archive.BATCH
    return (time.perf_counter() - begin) / rows * 1e6


best = min(asyncio.run(run(r * args.batches * archive.BATCH)) for r in range(args.runs))
runs = f"best of {args.runs} runs of {args.batches} batches of {archive.BATCH}"
print(f"{tree}: {best:.2f} µs per archived row ({runs})")
