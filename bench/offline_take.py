"""What reading the stored messages costs at a login (``xmppauth/services.py`` ``take_offline``).

Every client's first available presence asks the store (XEP-0160): usually it is empty. This times that
common case and a store of 20 messages of 1 KB (taken and put back each round), on a fresh SQLite
database of its own, through ``take_offline``'s synchronous body (without the hop off the event loop).
Run it on two checkouts to compare them.

    .venv/bin/python bench/offline_take.py            # best of 5 runs of 2,000 reads each
"""

from __future__ import annotations

import inspect
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fresh_django

fresh_django.start("bench-offline-")

from accounts.models import User  # noqa: E402
from xmppauth import services  # noqa: E402
from xmppauth.models import OfflineMessage  # noqa: E402

empty = User.objects.create(username="empty")
full = User.objects.create(username="full")
take = inspect.unwrap(services.take_offline)  # the function itself, not its off-loop wrapper
STANZA = (
    "<message xmlns='jabber:client' to='full@localhost' type='chat'><body>" + "x" * 1000 + "</body></message>"
)


def refill() -> None:
    OfflineMessage.objects.filter(user=full).delete()
    OfflineMessage.objects.bulk_create(
        [
            OfflineMessage(
                user=full, stanza=STANZA, **({"size": len(STANZA)} if hasattr(OfflineMessage, "size") else {})
            )
            for _ in range(20)
        ]
    )


def main() -> None:
    rounds = 2000
    best = min(timeit.repeat(lambda: take("empty", None), number=rounds, repeat=5)) / rounds
    print(f"take_offline, empty store:        {best * 1e6:8.1f} µs a login")
    times = []
    for _ in range(5):
        total = 0.0
        for _ in range(200):
            refill()
            total += timeit.timeit(lambda: take("full", None), number=1)
        times.append(total / 200)
    print(f"take_offline, 20 messages of 1 KB: {min(times) * 1e6:8.1f} µs a login")


if __name__ == "__main__":
    main()
