"""An OMEMO device list (XEP-0384 0.3 over XEP-0163 PEP) published by xmpp.js (@xmpp/client 0.14) and
heard by xmpp.js clients that say they want it with entity capabilities (XEP-0115), over WebSocket.

xmpp.js has no caps or pubsub API: tests/interop/xmppjs/pep.mjs, an action module of client.mjs, writes
the stanzas an OMEMO client would (presence with ``<c/>``, the answer to the server's disco#info query for
``node#ver``, the publish with ``<publish-options/>``) and reports what it gets. The presence subscription
between the accounts is made beforehand over raw sockets (tests/integration/test_pep.py's helpers).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.server import Server, running_server
from tests.integration.test_interop_xmppjs_im import bare, finish, installed, kill  # noqa: F401
from tests.integration.test_pep import DEVICES, PASSWORD, befriend, online, ver
from tests.integration.test_xmppjs import NODE, Client

CAPS_NODE = "https://xmppauth.test/xmppjs-pep"  # pep.mjs's
TRANSPORT = "websocket"
TIMEOUT_MS = "30000"  # client.mjs's hard limit for one run (Client waits 25 s for each step)

pytestmark = [
    pytest.mark.integration,
    pytest.mark.usefixtures("installed"),  # xmpp.js's node_modules, before the server starts
    pytest.mark.skipif(
        NODE is None,
        reason="node is not on the PATH: the xmpp.js interop tests need Node.js 20+, then `make setup`",
    ),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running_server(
        tmp_path_factory.mktemp("xmppjs-pep"), dict.fromkeys(("alice", "bob"), PASSWORD)
    ) as srv:
        yield srv


def xmppjs(server: Server, user: str, resource: str, *actions: str) -> Client:
    return Client(server, TRANSPORT, user, *actions, password=PASSWORD, resource=resource, timeout=TIMEOUT_MS)


async def test_xmppjs_device_list_reaches_a_contact_and_the_owners_other_resource(server: Server) -> None:
    a, b = bare("alice"), bare("bob")
    alice_raw, bob_raw = online(server, "alice"), online(server, "bob")
    befriend(bob_raw, alice_raw)  # bob sees alice's presence: her presence-access nodes are his to hear
    alice_raw.close()
    bob_raw.close()

    # a feature of this test's own, so that the server has never seen this ver and asks bob
    wants = ("feature", "urn:xmppauth:test:xmppjs-pep", "notify", DEVICES)
    bob = xmppjs(server, "bob", "js", *wants, "caps-presence", "asked", "ping", "expect-devices", a, "12345")
    # alice's other resource advertises the same caps: the server, having verified bob's answer
    # (XEP-0115 §5.4), knows what it wants without asking
    other = xmppjs(server, "alice", "other", *wants, "caps-presence", "ping", "expect-devices", a, "12345")
    alice = xmppjs(server, "alice", "phone", "publish-devices", "12345")
    try:
        await bob.start()
        await bob.until("pong")  # he answered the query before the ping: his interest is known
        await other.start()
        await other.until("pong")
        await alice.start()
        alice_run, bob_run, other_run = await finish(alice, bob, other)
    except BaseException:
        await kill(alice, bob, other)
        raise

    [caps] = bob_run.of("caps")
    assert f"{DEVICES}+notify" in caps["features"], bob_run.explain()
    assert caps["ver"] == ver(caps["features"]), caps  # pep.mjs's §5.1 hash is test_pep's
    assert [(q["node"], q["answered"]) for q in bob_run.of("disco")] == [
        (f"{CAPS_NODE}#{caps['ver']}", True)
    ], bob_run.explain()
    assert other_run.of("caps") == bob_run.of("caps"), other_run.explain()
    assert other_run.of("disco") == [], other_run.explain()  # not asked: bob's answer was cached
    assert alice_run.of("published") == [{"event": "published", "node": DEVICES, "id": "current"}]

    for run in (bob_run, other_run):
        [event] = run.of("pep")
        got = (event["from"], event["to"], event["type"], event["node"])
        assert got == (a, run.jid, "headline", DEVICES), run.explain()
        assert event["items"] == [{"id": "current", "devices": ["12345"]}], run.explain()
        assert event["delay"] is None, run.explain()  # live, not the last item at login
    assert bob_run.jid.startswith(f"{b}/"), bob_run.explain()
    assert other_run.jid.startswith(f"{a}/other"), other_run.explain()
    assert alice_run.of("pep") == [], alice_run.explain()  # the publishing resource wants nothing
