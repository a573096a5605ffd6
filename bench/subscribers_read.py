"""What a broadcast presence pays for the account's subscribers (``xmppauth/subscriptions.py`` ``_contacts``).

Each available or unavailable presence a client broadcasts needs the account's subscribers. This times the
read from the database (an account with 100 contacts, ``both``; SQLite, the function's body without the hop
off the loop) and the kept answer that later presences get, on a fresh database of its own.

    .venv/bin/python bench/subscribers_read.py        # best of 5
"""

from __future__ import annotations

import asyncio
import inspect
import sys
import time
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fresh_django

fresh_django.start("bench-subscribers-")

from accounts.models import User  # noqa: E402
from xmppauth import subscriptions  # noqa: E402
from xmppauth.models import RosterItem  # noqa: E402
from xmppauth.proto.jid import JID  # noqa: E402

alice = User.objects.create(username="alice")
RosterItem.objects.bulk_create(
    [RosterItem(user=alice, jid=f"contact{n}@localhost", subscription="both") for n in range(100)]
)
ACCOUNT = JID("alice", "localhost")


def main() -> None:
    read = inspect.unwrap(subscriptions._read_contacts)
    assert len(read(ACCOUNT).subscribers) == 100
    best = min(timeit.repeat(lambda: read(ACCOUNT), number=200, repeat=5)) / 200
    print(f"subscribers read from the database: {best * 1e6:8.1f} µs a presence")

    async def kept(rounds: int) -> float:
        await subscriptions._contacts(ACCOUNT)  # the first read, kept
        began = time.perf_counter()
        for _ in range(rounds):
            await subscriptions._contacts(ACCOUNT)
        return time.perf_counter() - began

    rounds = 200_000
    best = min(asyncio.run(kept(rounds)) for _ in range(5)) / rounds
    print(f"subscribers kept:                   {best * 1e9:8.0f} ns a presence")


if __name__ == "__main__":
    main()
