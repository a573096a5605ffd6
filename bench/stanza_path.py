"""The per-stanza path in one process, without sockets: core (parse, checks, access) + router.

What a routed stanza costs the server's CPU between the bytes arriving and the recipient's
``deliver``, with the real ``C2SStream``, ``SessionAccess`` and ``Router`` and a recipient that
only counts. Useful for before/after figures of a change on the hot path (the full benchmark,
``login_msg.py``, adds TLS, sockets and the load generator, whose noise hides a microsecond).

    .venv/bin/python bench/stanza_path.py                    # defaults: 20,000 stanzas, best of 7
    .venv/bin/python bench/stanza_path.py -n 50000 --repeat 9
    .venv/bin/python bench/stanza_path.py --archive          # with the archive's work on the loop

To compare two trees, run the same script with ``PYTHONPATH`` pointing at the other tree
(``git worktree add /tmp/before HEAD~1``; ``PYTHONPATH=/tmp/before .venv/bin/python bench/stanza_path.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, os.environ.get("PYTHONPATH") or str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "xmppauth.settings")

from sessions_acl.access import ROLES, SessionAccess
from tests.proto.transcript import Transcript
from xmppauth.proto import events as ev
from xmppauth.proto.jid import JID
from xmppauth.router import Router, deliver_by_admission


class Recipient:
    """A bound session that counts what it is handed (the router's Session protocol)."""

    def __init__(self, jid: JID, access: SessionAccess) -> None:
        self.jid = jid
        self.available = True
        self.priority = 0
        self.last_presence: bytes | None = None
        self.directed_to: set[JID] = set()
        self.access = access
        self.delivered = 0
        self.carbons = False
        self.resume_id = None
        self.grant_id = None

    async def deliver(self, data: bytes, urgent: bool = True) -> None:
        self.delivered += 1

    async def deliver_offline(self) -> None: ...

    async def bounce(self, stanza: object, condition: object, text: str) -> None:
        raise AssertionError(f"bounced: {condition} {text}")

    def may_receive(self, kind: str, stanza_type: str) -> bool:
        return self.access.may_receive(kind, stanza_type)

    async def deliver_paired(
        self, kind: str, stanza_type: str, sender: JID | None, stanza_id: str | None, data: bytes
    ) -> None:
        await deliver_by_admission(self, self.access.admit(kind, stanza_type, sender, stanza_id), data)  # type: ignore[arg-type]


ARCHIVED: list[int] = [0]  # rows the archive was handed (--archive)


def _archive() -> object:
    """The router's archive (xmppauth/archive.py) with its writer cut off: what archiving costs the
    event loop per message, without the database (the writer's thread does that part)."""
    from xmppauth import archive

    def queue(rows: list[archive.Row], data: bytes, plain: bytes) -> None:
        ARCHIVED[0] += len(rows)

    archive.WRITER.queue = queue  # type: ignore[method-assign]
    return archive.Archive()


def _run(stanzas: list[bytes], archive: object | None = None) -> float:
    """Seconds for the whole list: fed to alice's stream, events routed to bob."""
    t = Transcript.tcp(secure=True)
    t.session()
    stream = t.stream
    access = SessionAccess(ROLES["full"])
    stream.access = access
    router = Router()
    router.archive = archive  # type: ignore[assignment]
    sender = Recipient(JID("alice", "localhost", "res"), access)
    bob = Recipient(JID("bob", "localhost", "res"), SessionAccess(ROLES["full"]))
    router.register(sender)  # type: ignore[arg-type]
    router.register(bob)  # type: ignore[arg-type]

    async def feed() -> float:
        start = time.perf_counter()
        for data in stanzas:
            stream.receive_data(data)
            while (event := stream.next_event()) is not None:
                if isinstance(event, ev.StanzaReceived):
                    await router.route(sender, event)  # type: ignore[arg-type]
            stream.data_to_send()
        return time.perf_counter() - start

    elapsed = asyncio.run(feed())
    assert bob.delivered == len(stanzas), bob.delivered
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("-n", type=int, default=20_000, help="stanzas per run")
    parser.add_argument("--repeat", type=int, default=7, help="runs per case; the best is reported")
    parser.add_argument("--case", choices=["chat", "iq", "both"], default="both")
    parser.add_argument(
        "--archive", action="store_true", help="with the message archive (XEP-0313), its writer cut off"
    )
    args = parser.parse_args()
    import django

    django.setup()
    archive = _archive() if args.archive else None
    chats = [
        f"<message to='bob@localhost/res' type='chat' id='m{i}'><body>hello {i}</body></message>".encode()
        for i in range(args.n)
    ]
    # iq requests to bob (his answers would need his stream: requests only)
    iqs = [
        f"<iq to='bob@localhost/res' type='get' id='q{i}'><query xmlns='jabber:iq:version'/></iq>".encode()
        for i in range(args.n)
    ]
    cases = {"chat": [("chat message", chats)], "iq": [("iq get", iqs)]}
    for name, stanzas in cases.get(args.case, cases["chat"] + cases["iq"]):
        best = min(_run(stanzas, archive) for _ in range(args.repeat))
        per = best / len(stanzas) * 1e6
        print(f"{name:14} {per:7.2f} us per stanza (best of {args.repeat}, n={len(stanzas)})")


if __name__ == "__main__":
    main()
