"""Everyday IM with slixmpp (1.x, RFC 6120 SASL over STARTTLS) against the real server, over real sockets.

Each journey drives two slixmpp clients the way an IM application would, through slixmpp's own roster,
presence and plugin APIs, and asserts on what slixmpp reports to the application:

- adding each other (RFC 6121 §3): roster add, subscribe, each approving the other's request, until
  slixmpp's roster says ``both`` (from the server's roster pushes, and again from a fresh roster get);
- each other's available presence in slixmpp's roster, and the ``unavailable`` when one goes offline
  (the server addresses broadcast presence to each contact: slixmpp files presence by its ``to``);
- a chat message while both are online;
- a message to an offline contact, delivered at the next login with a XEP-0203 delay (XEP-0160);
- the message archive (XEP-0313) paged with XEP-0059, forwards and backwards;
- blocking (XEP-0191): the blocked contact's message is refused and never delivered, the blocklist as
  slixmpp fetches it, unblocking restores delivery.

Every journey has accounts of its own on one server (``alice-<journey>``, ``bob-<journey>``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import slixmpp

from tests.integration.server import Server, running_server

pytestmark = pytest.mark.integration

PASSWORD = "everyday-im"
JOURNEYS = ("roster", "presence", "chat", "offline", "archive", "blocking")
WAIT = 20.0  # seconds for anything the server should do at once (generous: the machine may be busy)
PLUGINS = ("xep_0030", "xep_0059", "xep_0191", "xep_0199", "xep_0203", "xep_0297", "xep_0313", "xep_0359")
BLOCKING_ERRORS = "urn:xmpp:blocking:errors"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    accounts = {f"{who}-{journey}": PASSWORD for journey in JOURNEYS for who in ("alice", "bob")}
    # the server's own default, which the integration tests turn off (tests/integration/server.py): it
    # concerns Bind2 clients only, an RFC 6120 client such as slixmpp still gets every stored message
    with running_server(
        tmp_path_factory.mktemp("slixmpp-im"), accounts, XMPP_BIND2_OFFLINE_FROM_ARCHIVE="1"
    ) as srv:
        yield srv


class Im(slixmpp.ClientXMPP):  # type: ignore[misc]
    """A slixmpp client used as an IM application uses it: on login it fetches the roster, then sends
    its presence. Subscription requests are left to the application (``auto_authorize = None``), which
    answers them with ``send_presence_subscription``. What arrives is kept for the test to look at."""

    def __init__(self, server: Server, user: str, resource: str = "slix") -> None:
        super().__init__(f"{user}@localhost/{resource}", PASSWORD)
        self.ca_certs = server.cert
        for plugin in PLUGINS:
            self.register_plugin(plugin)
        self.auto_authorize = None
        self.auto_subscribe = False
        self.online: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.inbox: list[slixmpp.Message] = []  # chat and normal messages with a body
        self.bounced: list[slixmpp.Message] = []  # message errors
        self.presences: list[slixmpp.Presence] = []  # every presence stanza, subscriptions included
        self.requests: list[slixmpp.Presence] = []  # subscription requests passed on to the application
        self._changed = asyncio.Event()
        self.add_event_handler("session_start", self._start)
        self.add_event_handler("failed_auth", self._failed)
        self.add_event_handler("message", self._message)
        self.add_event_handler("message_error", self._bounce)
        self.add_event_handler("presence", self._presence)
        self.add_event_handler("roster_subscription_request", self._request)
        for event in ("roster_update", "changed_status", "got_online", "got_offline", "disconnected"):
            self.add_event_handler(event, self._poke)

    async def _start(self, _event: object) -> None:
        await self.get_roster(timeout=WAIT)
        self.send_presence()
        if not self.online.done():
            self.online.set_result(None)

    def _failed(self, _event: object) -> None:
        if not self.online.done():
            self.online.set_exception(AssertionError(f"{self.requested_jid}: authentication failed"))

    def _message(self, msg: slixmpp.Message) -> None:
        if msg["type"] in ("chat", "normal"):
            self.inbox.append(msg)
        self._poke()

    def _bounce(self, msg: slixmpp.Message) -> None:
        self.bounced.append(msg)
        self._poke()

    def _presence(self, presence: slixmpp.Presence) -> None:
        self.presences.append(presence)
        self._poke()

    def _request(self, presence: slixmpp.Presence) -> None:
        self.requests.append(presence)
        self._poke()

    def _poke(self, *_: object) -> None:
        self._changed.set()

    # ------------------------------------------------------------------ what the application sees
    def subscription(self, jid: str) -> str:
        """The subscription state slixmpp's roster reports for ``jid`` ('' when it has no such item)."""
        if not self.client_roster.has_jid(jid):
            return ""
        return str(self.client_roster[jid]["subscription"])

    def resources(self, jid: str) -> set[str]:
        """The resources of ``jid`` slixmpp's roster holds as available."""
        if not self.client_roster.has_jid(jid):
            return set()
        return set(self.client_roster[jid].resources)

    def saw(self, jid: str, presence_type: str) -> bool:
        """Whether a presence stanza of ``presence_type`` from ``jid`` has reached the application."""
        return any(p["from"] == jid and p["type"] == presence_type for p in self.presences)

    def bodies(self) -> list[str]:
        return [str(msg["body"]) for msg in self.inbox]

    def describe(self) -> str:
        roster = {jid: (self.subscription(jid), sorted(self.resources(jid))) for jid in self.client_roster}
        presences = [f"{p['from']} {p['type']}" for p in self.presences]
        return (
            f"{self.boundjid}: roster {roster}; presences {presences}; "
            f"messages {[(str(m['from']), m['body']) for m in self.inbox]}; "
            f"errors {[str(m) for m in self.bounced]}"
        )

    async def until(self, check: Callable[[], bool], what: str) -> None:
        """Wait until ``check()`` holds; it is tried again whenever something arrives."""
        try:
            async with asyncio.timeout(WAIT):
                while not check():
                    self._changed.clear()
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(f"waited {WAIT} s in vain for: {what}\n{self.describe()}") from None

    async def routed(self) -> None:
        """Returns once the server has handled everything this client sent before: it handles a
        client's stanzas in order, so its answer to a ping comes after them."""
        await self.plugin["xep_0199"].ping(jid="localhost", timeout=WAIT)

    async def leave(self) -> None:
        """Close the stream and wait for the server's answer."""
        await asyncio.wait_for(self.disconnect(wait=WAIT), WAIT + 5)


async def log_in(server: Server, user: str) -> Im:
    client = Im(server, user)
    client.connect("127.0.0.1", server.c2s)
    await asyncio.wait_for(client.online, WAIT)
    return client


def bare(user: str) -> str:
    return f"{user}@localhost"


async def add_each_other(alice: Im, bob: Im) -> None:
    """alice adds bob to her roster and asks for his presence; bob's application approves and asks
    back, alice's approves; done when slixmpp's roster says 'both' on each side."""
    a, b = alice.boundjid.bare, bob.boundjid.bare
    added = alice.update_roster(b, name="Bob", groups=["Friends"], timeout=WAIT)
    assert added is not None  # None only with block=False
    await added
    alice.send_presence_subscription(pto=b, ptype="subscribe")
    await bob.until(lambda: any(p["from"] == a for p in bob.requests), f"subscription request from {a}")
    bob.send_presence_subscription(pto=a, ptype="subscribed")
    bob.send_presence_subscription(pto=a, ptype="subscribe")
    await alice.until(lambda: any(p["from"] == b for p in alice.requests), f"subscription request from {b}")
    alice.send_presence_subscription(pto=b, ptype="subscribed")
    await alice.until(lambda: alice.subscription(b) == "both", f"subscription 'both' to {b}")
    await bob.until(lambda: bob.subscription(a) == "both", f"subscription 'both' to {a}")


async def disconnect_all(*clients: Im) -> None:
    for client in clients:
        if client.transport is not None:
            await client.leave()


# ------------------------------------------------------------------------------------------ journeys
async def test_slixmpp_clients_add_each_other(server: Server) -> None:
    alice = await log_in(server, "alice-roster")
    bob = await log_in(server, "bob-roster")
    a, b = bare("alice-roster"), bare("bob-roster")
    try:
        assert alice.subscription(b) == ""  # empty rosters to begin with
        assert bob.subscription(a) == ""
        await add_each_other(alice, bob)

        # the requests came stamped with the sender's bare JID (RFC 6121 §3.1.2), once each
        assert [(str(p["from"]), p["type"]) for p in bob.requests] == [(a, "subscribe")], bob.describe()
        assert [(str(p["from"]), p["type"]) for p in alice.requests] == [(b, "subscribe")], alice.describe()
        # the server's roster, fetched afresh, says the same, with the name and group alice gave
        for client, contact in ((alice, b), (bob, a)):
            client.client_roster.reset()
            await client.get_roster(timeout=WAIT)
            assert client.subscription(contact) == "both", client.describe()
            assert not client.client_roster[contact]["pending_out"], client.describe()
        assert alice.client_roster[b]["name"] == "Bob", alice.describe()
        assert alice.client_roster[b]["groups"] == ["Friends"], alice.describe()
    finally:
        await disconnect_all(alice, bob)


async def test_slixmpp_clients_see_each_others_presence(server: Server) -> None:
    alice = await log_in(server, "alice-presence")
    bob = await log_in(server, "bob-presence")
    a, b = bare("alice-presence"), bare("bob-presence")
    try:
        await add_each_other(alice, bob)
        # each sees the other available (RFC 6121 §3.1.5: the approval brings the contact's presence),
        # as slixmpp's roster reports it to the application: slixmpp files a presence in its roster as
        # it passes it on, so once the stanza is there the roster must show it
        await alice.until(lambda: alice.saw(f"{b}/slix", "available"), f"available presence of {b}")
        await bob.until(lambda: bob.saw(f"{a}/slix", "available"), f"available presence of {a}")
        assert alice.resources(b) == {"slix"}, alice.describe()
        assert bob.resources(a) == {"slix"}, bob.describe()

        # alice goes offline: bob's slixmpp sees her unavailable
        await alice.leave()
        await bob.until(lambda: bob.saw(f"{a}/slix", "unavailable"), f"unavailable presence of {a}")
        assert bob.resources(a) == set(), bob.describe()
    finally:
        await disconnect_all(alice, bob)


async def test_slixmpp_clients_chat_online(server: Server) -> None:
    alice = await log_in(server, "alice-chat")
    bob = await log_in(server, "bob-chat")
    a, b = bare("alice-chat"), bare("bob-chat")
    try:
        alice.send_message(mto=b, mbody="hello bob", mtype="chat")
        await bob.until(lambda: len(bob.inbox) >= 1, "message from alice")
        [got] = bob.inbox
        assert (str(got["from"]), str(got["to"]), got["type"], got["body"]) == (
            f"{a}/slix", b, "chat", "hello bob"
        ), bob.describe()  # fmt: skip
        assert not got["delay"]["stamp"], bob.describe()  # delivered live, not from a store

        # bob's application replies to where the message came from
        bob.send_message(mto=got["from"], mbody="hi alice", mtype="chat")
        await alice.until(lambda: len(alice.inbox) >= 1, "reply from bob")
        [reply] = alice.inbox
        assert (str(reply["from"]), reply["body"]) == (f"{b}/slix", "hi alice"), alice.describe()
        assert not alice.bounced, alice.describe()
        assert not bob.bounced, bob.describe()
    finally:
        await disconnect_all(alice, bob)


async def test_slixmpp_gets_a_message_sent_while_offline_at_the_next_login_with_its_delay(
    server: Server,
) -> None:
    alice = await log_in(server, "alice-offline")
    bob = await log_in(server, "bob-offline")
    a, b = bare("alice-offline"), bare("bob-offline")
    again: Im | None = None
    try:
        await add_each_other(alice, bob)
        await alice.until(lambda: alice.saw(f"{b}/slix", "available"), f"available presence of {b}")
        await bob.leave()
        # bob's unavailable presence shows the server has ended his session (the presence stanza as
        # slixmpp passes it on: its roster does not track it, see test_slixmpp_clients_see_each_others_presence)
        await alice.until(lambda: alice.saw(f"{b}/slix", "unavailable"), f"unavailable presence of {b}")

        sent_after = dt.datetime.now(dt.UTC).replace(microsecond=0)  # XEP-0082 stamps may drop fractions
        alice.send_message(mto=b, mbody="while you were away", mtype="chat")
        await alice.routed()
        sent_before = dt.datetime.now(dt.UTC)
        assert not alice.bounced, alice.describe()  # stored, not refused

        again = await log_in(server, "bob-offline")
        await again.until(lambda: len(again.inbox) >= 1, "the offline message")
        [got] = again.inbox
        assert (str(got["from"]), got["type"], got["body"]) == (f"{a}/slix", "chat", "while you were away"), (
            again.describe()
        )
        stamp = got["delay"]["stamp"]  # XEP-0203, parsed by slixmpp's plugin
        assert isinstance(stamp, dt.datetime), again.describe()
        assert stamp.tzinfo is not None, stamp
        assert sent_after <= stamp <= sent_before, (sent_after, stamp, sent_before)
        assert str(got["delay"]["from"]) == "localhost", str(got)
    finally:
        await disconnect_all(alice, bob, *([again] if again else []))


def _archived(page: Any) -> list[tuple[str, str, str]]:
    """(archive id, from, body) of each result of a XEP-0313 page as slixmpp collected them."""
    found = []
    for result in page["mam"]["results"]:
        forwarded = result["mam_result"]["forwarded"]["stanza"]
        found.append((str(result["mam_result"]["id"]), str(forwarded["from"]), str(forwarded["body"])))
    return found


async def _pages(client: Im, contact: str, *, reverse: bool) -> list[Any]:
    """Every page of the archive with ``contact``, ten at a time, as slixmpp's XEP-0059 iterator
    fetches them (it stops at the first empty page)."""
    pages = []
    # typed as an awaitable answer; with iterator=True it is XEP-0059's async iterator of pages
    query: Any = client.plugin["xep_0313"].retrieve(
        with_jid=contact, iterator=True, reverse=reverse, rsm={"max": 10}
    )
    async with asyncio.timeout(WAIT):
        async for page in query:
            pages.append(page)
            assert len(pages) <= 10, [_archived(p) for p in pages]  # 25 messages: no endless paging
    return pages


async def test_slixmpp_pages_the_archive_forwards_and_backwards(server: Server) -> None:
    alice = await log_in(server, "alice-archive")
    bob = await log_in(server, "bob-archive")
    a, b = bare("alice-archive"), bare("bob-archive")
    sent = [f"archived {i:02}" for i in range(25)]
    try:
        for body in sent:
            alice.send_message(mto=b, mbody=body, mtype="chat")
        await bob.until(lambda: len(bob.inbox) >= len(sent), "all 25 messages")
        assert bob.bodies() == sent, bob.describe()
        live_ids = [str(msg["stanza_id"]["id"]) for msg in bob.inbox]  # XEP-0359, by bob's archive
        assert all(live_ids), [str(m) for m in bob.inbox]
        assert {str(msg["stanza_id"]["by"]) for msg in bob.inbox} == {b}

        for client, contact in ((alice, b), (bob, a)):
            forward = await _pages(client, contact, reverse=False)
            assert [len(p["mam"]["results"]) for p in forward] == [10, 10, 5], [_archived(p) for p in forward]
            got = [item for page in forward for item in _archived(page)]
            assert [body for _, _, body in got] == sent, got
            assert {sender for _, sender, _ in got} == {f"{a}/slix"}, got
            ids = [archive_id for archive_id, _, _ in got]
            assert len(set(ids)) == len(ids), got  # none twice
            assert [bool(p["mam_fin"]["complete"]) for p in forward] == [False, False, True]

            # from the end (an empty <before/>), then <before/> the first id of each page
            backward = await _pages(client, contact, reverse=True)
            expected = [sent[15:], sent[5:15], sent[:5]]
            assert [[body for _, _, body in _archived(p)] for p in backward] == expected
            assert [archive_id for p in reversed(backward) for archive_id, _, _ in _archived(p)] == ids
            assert [bool(p["mam_fin"]["complete"]) for p in backward] == [False, False, True]
            if client is bob:  # the recipient's archive ids are the stanza ids it was given live
                assert ids == live_ids
    finally:
        await disconnect_all(alice, bob)


async def test_slixmpp_blocks_and_unblocks_a_contact(server: Server) -> None:
    alice = await log_in(server, "alice-blocking")
    bob = await log_in(server, "bob-blocking")
    a, b = bare("alice-blocking"), bare("bob-blocking")
    blocking = bob.plugin["xep_0191"]
    try:
        assert await blocking.get_blocked_jids(timeout=WAIT) == set()
        await blocking.block(slixmpp.JID(a), timeout=WAIT)
        assert await blocking.get_blocked_jids(timeout=WAIT) == {slixmpp.JID(a)}

        # alice's message is refused, and she cannot tell a block from an absence (XEP-0191 §3.3)
        alice.send_message(mto=b, mbody="can you hear me?", mtype="chat")
        await alice.until(lambda: len(alice.bounced) >= 1, "an error for the blocked message")
        [refused] = alice.bounced
        assert str(refused["from"]) == b, str(refused)
        assert refused["error"]["condition"] == "service-unavailable", str(refused)
        assert refused.xml.find(f".//{{{BLOCKING_ERRORS}}}blocked") is None, str(refused)
        # and bob's messages to her come back: she is blocked (XEP-0191 §3.3)
        bob.send_message(mto=a, mbody="not you", mtype="chat")
        await bob.until(lambda: len(bob.bounced) >= 1, "an error for the message to the blocked JID")
        [own] = bob.bounced
        assert own["error"]["condition"] == "not-acceptable", str(own)
        assert own.xml.find(f".//{{{BLOCKING_ERRORS}}}blocked") is not None, str(own)

        await blocking.unblock(slixmpp.JID(a), timeout=WAIT)
        assert await blocking.get_blocked_jids(timeout=WAIT) == set()
        alice.send_message(mto=b, mbody="and now?", mtype="chat")
        await bob.until(lambda: len(bob.inbox) >= 1, "a message after unblocking")
        # the blocked message never came: it was refused, not held back
        assert bob.bodies() == ["and now?"], bob.describe()
        assert not alice.inbox, alice.describe()
        assert len(alice.bounced) == 1, alice.describe()
    finally:
        await disconnect_all(alice, bob)
