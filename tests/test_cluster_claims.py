"""Two processes bind one full JID at once, each before it hears of the other's (xmppauth/cluster.py):
both apply the rule of ``Router.bind`` to the news and exactly one session keeps the JID.

Two ``Cluster`` objects, each with its own router, stand for the two processes; what one would send
the other through Redis is handed over directly (the news of a binding, ``cluster.session``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.test_router import FakeSession
from xmppauth.cluster import Cluster, StandIn
from xmppauth.proto.errors import StreamErrorCondition
from xmppauth.proto.jid import JID
from xmppauth.router import Router

JID_ = "alice@localhost/phone"


class Process:
    """One server process: its router, its cluster member (on ``channel``), its local session."""

    def __init__(self, channel: str) -> None:
        self.router = Router()
        self.cluster = Cluster(self.router)
        self.cluster.channel = channel  # as if it had joined the group
        self.router.watcher = self.cluster
        self.session: FakeSession | None = None

    def bind(self, grant: int) -> FakeSession:
        self.session = FakeSession(JID_, grant_id=grant, available=True)
        self.router.register(self.session)
        return self.session

    def news(self) -> dict[str, Any]:
        """The last ``cluster.session`` message this process queued for the others."""
        last = None
        while not self.cluster._outbox.empty():
            _, message = self.cluster._outbox.get_nowait()
            if message["type"] == "cluster.session":
                last = message
        assert last is not None
        return last

    async def hear(self, message: dict[str, Any]) -> None:
        await self.cluster.handle(message)
        await asyncio.sleep(0)  # the kick runs as a task of its own


def bind_at_once(first_grant: int, second_grant: int) -> tuple[Process, Process]:
    """``a`` binds, then ``b`` (a moment later), neither having heard of the other yet."""
    a, b = Process("a-channel"), Process("b-channel")
    a.bind(first_grant)
    b.bind(second_grant)
    return a, b


async def exchange(a: Process, b: Process) -> None:
    news_a, news_b = a.news(), b.news()
    assert news_a["state"]["bound"] <= news_b["state"]["bound"]
    await b.hear(news_a)
    await a.hear(news_b)


@pytest.mark.parametrize(
    ("grants", "winner", "text"),
    [
        ((7, 7), "b", "replaced by a new session with the same resource"),  # one client: the newer wins
        ((7, 8), "a", "held by another client or app password"),  # two grants: the older keeps it
    ],
)
async def test_of_two_bindings_at_once_exactly_one_keeps_the_jid(
    grants: tuple[int, int], winner: str, text: str
) -> None:
    a, b = bind_at_once(*grants)
    await exchange(a, b)
    keeper, loser = (b, a) if winner == "b" else (a, b)
    assert keeper.session is not None
    assert loser.session is not None
    assert keeper.session.kicked == []
    assert [c for c, _ in loser.session.kicked] == [StreamErrorCondition.CONFLICT]
    assert text in loser.session.kicked[0][1]
    jid = JID.parse(JID_)
    # the winner's process routes the JID to its own session, the loser's to a stand-in for it
    assert keeper.router.local(jid) is keeper.session
    assert keeper.router.stand_in_for(jid) is None
    assert loser.router.local(jid) is None
    stand_in = loser.router.stand_in_for(jid)
    assert isinstance(stand_in, StandIn)
    assert stand_in.channel == keeper.cluster.channel


async def test_news_of_the_same_session_later_changes_nothing_for_the_winner() -> None:
    a, b = bind_at_once(7, 7)
    await exchange(a, b)
    assert b.session is not None
    b.session.priority = 5
    b.router.changed(b.session)  # the winner's later news: the loser's process updates its stand-in
    await a.hear(b.news())
    stand_in = a.router.stand_in_for(JID.parse(JID_))
    assert stand_in is not None
    assert stand_in.priority == 5
    assert b.session.kicked == []


async def test_a_binding_the_other_process_heard_of_first_is_not_a_conflict() -> None:
    """The usual case: ``b`` binds only after hearing of ``a``'s session (its bind replaces or avoids
    it through the stand-in); ``a``'s news about a JID nobody holds locally just makes a stand-in."""
    a, b = Process("a-channel"), Process("b-channel")
    session = a.bind(7)
    await b.hear(a.news())
    assert session.kicked == []
    assert isinstance(b.router.stand_in_for(JID.parse(JID_)), StandIn)
