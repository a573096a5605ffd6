"""Everyday IM with xmpp.js (@xmpp/client 0.14: SASL2 + Bind2, over WebSocket) against the real server.

xmpp.js has no roster, archive or blocking API: tests/interop/xmppjs/im.mjs writes the stanzas an
application would and parses the answers, and these tests assert on what it reports (client.mjs's JSON
events):

- adding each other: roster get, subscribe, each approving the other's request; both rosters end with
  ``both``; each gets the other's available presence, and the ``unavailable`` when one leaves;
- a chat message while both are online, and one sent while the contact is offline, delivered at its
  next login with a XEP-0203 delay;
- the message archive (XEP-0313) paged with XEP-0059 forwards and backwards, on both sides;
- blocking (XEP-0191): block, the blocked contact's message refused and never delivered, the
  blocklist, unblock, delivery again;
- with the server's default XMPP_BIND2_OFFLINE_FROM_ARCHIVE (XEP-0386 §2.3, which the integration tests
  turn off): what came while offline is not pushed to a Bind2 client but waits in its archive, and
  ``<bound/>`` says where the archive stands.

Each test has accounts of its own (``alice-<journey>``, ``bob-<journey>``). WebSocket, the transport
xmpp.js is mostly used over; tests/integration/test_xmppjs.py covers the others.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.integration.server import Server, running_server
from tests.integration.test_xmppjs import NODE, XMPPJS, Client, Run

PASSWORD = "everyday-im"
JOURNEYS = ("roster", "chat", "archive", "blocking")
TRANSPORT = "websocket"
TIMEOUT_MS = "30000"  # client.mjs's hard limit for one run (Client's own deadline for each step is 25 s)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        NODE is None,
        reason="node is not on the PATH: the xmpp.js interop tests need Node.js 20+, then `make setup`",
    ),
]


@pytest.fixture(scope="module")
def installed() -> None:
    if not (XMPPJS / "node_modules" / "@xmpp" / "client" / "package.json").is_file():
        pytest.fail(f"xmpp.js is not installed in {XMPPJS}/node_modules: run `make setup`")


@pytest.fixture(scope="module")
def server(installed: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The integration tests' configuration: stored messages are sent to Bind2 clients too
    (XMPP_BIND2_OFFLINE_FROM_ARCHIVE=0, tests/integration/server.py), as XEP-0160 has it."""
    accounts = {f"{who}-{journey}": PASSWORD for journey in JOURNEYS for who in ("alice", "bob")}
    with running_server(tmp_path_factory.mktemp("xmppjs-im"), accounts) as srv:
        yield srv


@pytest.fixture(scope="module")
def server_defaults(installed: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The server's own default: a Bind2 client fetches from the archive what waited for it (XEP-0386
    §2.3), and stored messages the archive holds are not sent."""
    accounts = {f"{who}-{journey}": PASSWORD for journey in ("fetch", "metadata") for who in ("alice", "bob")}
    with running_server(
        tmp_path_factory.mktemp("xmppjs-im-defaults"), accounts, XMPP_BIND2_OFFLINE_FROM_ARCHIVE="1"
    ) as srv:
        yield srv


def bare(user: str) -> str:
    return f"{user}@localhost"


def xmppjs(server: Server, user: str, *actions: str) -> Client:
    return Client(server, TRANSPORT, user, *actions, password=PASSWORD, resource="js", timeout=TIMEOUT_MS)


async def until(client: Client, kind: str, check: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """Read ``client``'s events until one of ``kind`` for which ``check`` holds."""
    while True:
        event = await client.until(kind)
        if check(event):
            return event


async def finish(*clients: Client) -> list[Run]:
    runs = [await client.finish() for client in clients]
    for run in runs:
        assert run.returncode == 0, run.explain()
    return runs


async def kill(*clients: Client) -> None:
    """After a failure: end the children and show what they printed."""
    for client in clients:
        if client.proc is not None:
            print((await client.kill()).explain())


def presences(run: Run, sender: str) -> list[tuple[str, str]]:
    """(from, type) of the presence stanzas from ``sender`` (a bare JID: any of its resources)."""
    return [(e["from"], e["type"]) for e in run.of("presence") if e["from"].split("/")[0] == sender]


def roster_of(run: Run) -> dict[str, dict[str, Any]]:
    """The last roster fetched, by JID."""
    *_, last = run.of("roster")
    return {item["jid"]: item for item in last["items"]}


# ------------------------------------------------------------------------------------------ journeys
async def test_xmppjs_clients_add_each_other_and_see_each_others_presence(server: Server) -> None:
    a, b = bare("alice-roster"), bare("bob-roster")
    bob = xmppjs(
        server, "bob-roster",
        "roster", "presence",
        "expect-presence", a, "subscribe", "approve", a, "subscribe", a,
        "expect-subscription", a, "both", "expect-presence", a, "available",
        "roster", "expect-presence", a, "unavailable", "stop",
    )  # fmt: skip
    alice = xmppjs(
        server, "alice-roster",
        "roster", "presence", "roster-add", b, "Bob", "subscribe", b,
        "expect-presence", b, "subscribe", "approve", b,
        "expect-subscription", b, "both", "expect-presence", b, "available", "roster", "stop",
    )  # fmt: skip
    try:
        await bob.start()
        await alice.start()
        alice_run, bob_run = await finish(alice, bob)
    except BaseException:
        await kill(alice, bob)
        raise
    alice_jid, bob_jid = alice_run.jid, bob_run.jid

    # the rosters both start empty and end with 'both', as fetched again at the end
    assert alice_run.of("roster")[0]["items"] == [], alice_run.explain()
    assert bob_run.of("roster")[0]["items"] == [], bob_run.explain()
    mine = roster_of(alice_run)[b]
    assert (mine["subscription"], mine["ask"], mine["name"]) == ("both", None, "Bob"), alice_run.explain()
    theirs = roster_of(bob_run)[a]
    assert (theirs["subscription"], theirs["ask"]) == ("both", None), bob_run.explain()
    # pushed on the way: alice's request as pending (ask='subscribe'), then 'to', then 'both'
    pushed = [(i["subscription"], i["ask"]) for e in alice_run.of("roster-push") for i in e["items"]]
    assert ("none", "subscribe") in pushed, alice_run.explain()
    assert pushed[-1] == ("both", None), alice_run.explain()

    # the requests came from the bare JIDs (RFC 6121 §3.1.2); each saw the other available, and bob
    # saw alice go
    assert presences(bob_run, a)[0] == (a, "subscribe"), bob_run.explain()
    assert (alice_jid, "available") in presences(bob_run, a), bob_run.explain()
    assert presences(bob_run, a)[-1] == (alice_jid, "unavailable"), bob_run.explain()
    assert presences(alice_run, b)[0] == (b, "subscribed"), alice_run.explain()
    assert (b, "subscribe") in presences(alice_run, b), alice_run.explain()
    assert (bob_jid, "available") in presences(alice_run, b), alice_run.explain()


async def test_xmppjs_chats_online_and_gets_what_came_while_offline_with_its_delay(server: Server) -> None:
    a, b = bare("alice-chat"), bare("bob-chat")
    bob = xmppjs(server, "bob-chat", "presence", "wait", "1", "reply", "hi alice", "stop")
    alice = xmppjs(
        server, "alice-chat",
        "presence", "send", b, "hello bob", "wait", "1",
        "hold", "send", b, "while you were away", "ping", "stop",
    )  # fmt: skip
    later = xmppjs(server, "bob-chat", "presence", "wait", "1", "stop")
    try:
        await bob.start()
        bob_jid = str((await bob.until("online"))["jid"])
        await until(bob, "presence", lambda e: e["from"] == bob_jid)  # his own, back: he is available
        await alice.start()
        bob_run = (await finish(bob))[0]
        await alice.until("message")  # bob's reply: his session is over once his run has ended
        sent_after = dt.datetime.now(dt.UTC).replace(microsecond=0)  # XEP-0082 stamps may drop fractions
        await alice.release()
        await alice.until("pong")  # stored by now
        sent_before = dt.datetime.now(dt.UTC)
        await later.start()
        alice_run, later_run = await finish(alice, later)
    except BaseException:
        await kill(bob, alice, later)
        raise

    [got] = bob_run.of("message")
    assert (got["from"], got["to"], got["type"], got["body"]) == (alice_run.jid, b, "chat", "hello bob"), (
        bob_run.explain()
    )
    assert "delay" not in got, bob_run.explain()  # live
    [reply] = alice_run.of("message")
    assert (reply["from"], reply["body"]) == (bob_jid, "hi alice"), alice_run.explain()

    [stored] = later_run.of("message")
    expected = (alice_run.jid, "chat", "while you were away")
    assert (stored["from"], stored["type"], stored["body"]) == expected, later_run.explain()
    assert stored.get("delay"), later_run.explain()  # XEP-0203
    stamp = dt.datetime.fromisoformat(stored["delay"]["stamp"])
    assert stamp.tzinfo is not None, stored
    assert sent_after <= stamp <= sent_before, (sent_after, stamp, sent_before)
    assert stored["delay"]["from"] == "localhost", stored
    assert alice_run.jid.startswith(f"{a}/js~"), alice_run.explain()


def paging(contact: str) -> tuple[str, ...]:
    """The actions that page through the archive with ``contact``, ten a page, forwards then backwards."""
    return ("mam", contact, "10", "forward", "mam", contact, "10", "backward")


def _pages(run: Run, direction: str) -> list[dict[str, Any]]:
    return [e for e in run.of("mam-page") if e["direction"] == direction]


async def test_xmppjs_pages_the_archive_forwards_and_backwards(server: Server) -> None:
    a, b = bare("alice-archive"), bare("bob-archive")
    sent = [f"archived {i:02}" for i in range(25)]
    sending = [word for body in sent for word in ("send", b, body)]
    [alice_run] = await finish(
        await xmppjs(server, "alice-archive", "presence", *sending, *paging(b), "stop").start()
    )
    # bob pages his copy without going online (his offline messages stay where they are)
    [bob_run] = await finish(await xmppjs(server, "bob-archive", *paging(a), "stop").start())

    for run in (alice_run, bob_run):
        forward = _pages(run, "forward")
        assert [len(p["results"]) for p in forward] == [10, 10, 5], run.explain()
        got = [r for p in forward for r in p["results"]]
        assert [r["body"] for r in got] == sent, run.explain()
        assert {r["from"] for r in got} == {alice_run.jid}, run.explain()
        assert {r["to"] for r in got} == {b}, run.explain()
        ids = [r["id"] for r in got]
        assert all(ids), run.explain()
        assert len(set(ids)) == len(ids), run.explain()  # none twice
        assert all(r["stamp"] for r in got), run.explain()  # each with its XEP-0203 delay
        # XEP-0059: each page's <first/> and <last/> are the ids of its first and last result
        assert [(p["first"], p["last"]) for p in forward] == [
            (p["results"][0]["id"], p["results"][-1]["id"]) for p in forward
        ], run.explain()
        assert [p["complete"] for p in forward] == [False, False, True], run.explain()

        backward = _pages(run, "backward")
        assert [[r["body"] for r in p["results"]] for p in backward] == [sent[15:], sent[5:15], sent[:5]], (
            run.explain()
        )
        assert [r["id"] for p in reversed(backward) for r in p["results"]] == ids, run.explain()
        assert [p["complete"] for p in backward] == [False, False, True], run.explain()


async def test_xmppjs_blocks_and_unblocks_a_contact(server: Server) -> None:
    a, b = bare("alice-blocking"), bare("bob-blocking")
    bob = xmppjs(
        server, "bob-blocking",
        "presence", "blocklist", "block", a, "blocklist", "send-refused", a, "not you",
        "hold", "unblock", a, "blocklist", "wait", "1", "stop",
    )  # fmt: skip
    alice = xmppjs(
        server, "alice-blocking",
        "presence", "send-refused", b, "can you hear me?", "hold", "send", b, "and now?", "stop",
    )  # fmt: skip
    try:
        await bob.start()
        await bob.until("refused")  # bob's own message to alice: the block is in place
        await alice.start()
        await alice.until("refused")
        await bob.release()
        await bob.until("unblocked")
        await bob.until("blocklist")
        await alice.release()
        alice_run, bob_run = await finish(alice, bob)
    except BaseException:
        await kill(alice, bob)
        raise

    assert [e["items"] for e in bob_run.of("blocklist")] == [[], [a], []], bob_run.explain()
    # alice cannot tell a block from an absence (XEP-0191 §3.3) ...
    [refused] = alice_run.of("refused")
    assert (refused["from"], refused["condition"], refused["blocked"]) == (b, "service-unavailable", False), (
        alice_run.explain()
    )
    # ... while bob is told he blocks her
    [own] = bob_run.of("refused")
    assert (own["condition"], own["blocked"]) == ("not-acceptable", True), bob_run.explain()
    # and her first message never reached him: only the one after the unblock did
    assert [(m["from"], m["body"]) for m in bob_run.of("message")] == [(alice_run.jid, "and now?")], (
        bob_run.explain()
    )
    assert not alice_run.of("message"), alice_run.explain()


async def test_xmppjs_fetches_from_the_archive_what_came_while_offline_with_the_servers_defaults(
    server_defaults: Server,
) -> None:
    """XEP-0386 §2.3 with the server's defaults: the message is not pushed to the Bind2 client but
    waits in its archive, with the time it came."""
    a, b = bare("alice-fetch"), bare("bob-fetch")
    sent_after = dt.datetime.now(dt.UTC)
    [alice_run] = await finish(
        await xmppjs(
            server_defaults, "alice-fetch", "presence", "send", b, "while you were away", "ping"
        ).start()
    )
    sent_before = dt.datetime.now(dt.UTC)
    # the stored messages would come right after his presence, before the answer to his ping
    [bob_run] = await finish(
        await xmppjs(server_defaults, "bob-fetch", "presence", "ping", "mam", a, "10", "backward").start()
    )
    assert bob_run.of("pong"), bob_run.explain()
    assert not bob_run.of("message"), bob_run.explain()  # not pushed: the archive has it
    [page] = _pages(bob_run, "backward")
    [found] = page["results"]
    assert (found["from"], found["to"], found["body"]) == (alice_run.jid, b, "while you were away"), (
        bob_run.explain()
    )
    stamp = dt.datetime.fromisoformat(found["stamp"])
    assert sent_after - dt.timedelta(seconds=1) <= stamp <= sent_before, (sent_after, stamp, sent_before)
    assert page["complete"], bob_run.explain()


async def test_xmppjs_learns_in_bound_where_its_archive_stands(server_defaults: Server) -> None:
    """XEP-0386 §2.4: <bound/> SHOULD carry the archive's XEP-0313 <metadata/>, so that the client
    knows what to fetch (xmpp.js has no API for it: client.mjs reports what <success/> held)."""
    b = bare("bob-metadata")
    await finish(
        await xmppjs(server_defaults, "alice-metadata", "send", b, "for the archive", "ping").start()
    )
    [bob_run] = await finish(await xmppjs(server_defaults, "bob-metadata").start())
    [success] = bob_run.successes()
    nested = success.get("nested", [])
    assert "{urn:xmpp:bind:0}bound/{urn:xmpp:sm:3}enabled" in nested, bob_run.explain()  # SM as before
    assert "{urn:xmpp:bind:0}bound/{urn:xmpp:mam:2}metadata" in nested, bob_run.explain()
