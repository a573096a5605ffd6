"""Personal Eventing (XEP-0163) with slixmpp's own plugins against the real server, over real sockets.

The clients are test_interop_slixmpp_im's ``Im`` with slixmpp's PEP stack: xep_0060 (pubsub events and
requests), xep_0115 (entity capabilities in every presence, and the answer to the server's disco#info
query for ``node#ver``), xep_0163 and xep_0118 (User Tune), whose ``register_pep`` adds
``http://jabber.org/protocol/tune+notify`` to the client's caps. A tune is published with
``publish_tune`` and heard as slixmpp's ``pubsub_publish`` event:

- by a contact (``both``) online, live, and by the publisher's own resource;
- by a contact logging in afterwards, as the last item (one, with a XEP-0203 stamp) at its first
  available presence;
- not by a stranger, who wants it too but sees no presence of the publisher, and whose items request
  is refused (XEP-0060 §6.5.1) where a contact's is answered.

Every test has accounts of its own on one server (``alice-<test>``, ``bob-<test>``, ``carol-<test>``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
import slixmpp
from slixmpp.exceptions import IqError

from tests.integration.server import Server, running_server
from tests.integration.test_interop_slixmpp_im import (
    PASSWORD,
    WAIT,
    Im,
    add_each_other,
    bare,
    disconnect_all,
)

pytestmark = pytest.mark.integration

TESTS = ("live", "later", "stranger")
TUNE = "http://jabber.org/protocol/tune"
PUBSUB_ERRORS = "http://jabber.org/protocol/pubsub#errors"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    accounts = {f"{who}-{test}": PASSWORD for test in TESTS for who in ("alice", "bob", "carol")}
    with running_server(tmp_path_factory.mktemp("slixmpp-pep"), accounts) as srv:
        yield srv


class Pep(Im):
    """``Im`` with slixmpp's PEP plugins; ``tune``: with xep_0118, so wanting tunes (``+notify``).
    Keeps every PEP notification slixmpp reports."""

    def __init__(self, server: Server, user: str, *, tune: bool = True) -> None:
        super().__init__(server, user)
        for plugin in ("xep_0060", "xep_0115", "xep_0163", *(["xep_0118"] if tune else [])):
            self.register_plugin(plugin)
        self.events: list[slixmpp.Message] = []
        self.add_event_handler("pubsub_publish", self._event)

    async def _start(self, event: object) -> None:
        # xep_0118 registers its interest when the session is bound and updates the caps in the
        # background: see that the initial presence carries them
        await self.plugin["xep_0115"].update_caps(broadcast=False)
        await super()._start(event)

    def _event(self, msg: slixmpp.Message) -> None:
        self.events.append(msg)
        self._poke()

    def tunes(self) -> list[tuple[str, str, str, str, str]]:
        """(from, to, node, item id, title) of each notification received."""
        return [
            (str(m["from"]), str(m["to"]), str(m["pubsub_event"]["items"]["node"]), str(item["id"]),
             item.xml.findtext(f"{{{TUNE}}}tune/{{{TUNE}}}title") or "")
            for m in self.events for item in m["pubsub_event"]["items"]
        ]  # fmt: skip

    def describe(self) -> str:
        return f"{super().describe()}; PEP events {[str(m) for m in self.events]}"


async def log_in(server: Server, user: str, *, tune: bool = True) -> Pep:
    client = Pep(server, user, tune=tune)
    client.connect("127.0.0.1", server.c2s)
    await asyncio.wait_for(client.online, WAIT)
    return client


async def test_slixmpp_contact_and_own_resource_hear_a_published_tune(server: Server) -> None:
    alice, bob = await log_in(server, "alice-live"), await log_in(server, "bob-live")
    a, b = bare("alice-live"), bare("bob-live")
    try:
        await add_each_other(alice, bob)
        # the server asked bob's caps (or knew them) at his initial presence: by now it has his answer
        published = await alice.plugin["xep_0118"].publish_tune(
            artist="Nina", title="Sinnerman", timeout=WAIT
        )
        assert published["type"] == "result", str(published)

        await bob.until(lambda: bool(bob.events), "the tune notification")
        assert bob.tunes() == [(a, str(bob.boundjid), TUNE, "current", "Sinnerman")], bob.describe()
        [got] = bob.events
        assert got["type"] == "headline", str(got)
        assert not got["delay"]["stamp"], str(got)  # live, not a last item
        # the publisher's own resource wants tunes too (XEP-0163 §4.3.1: the owner is notified)
        await alice.until(lambda: bool(alice.events), "alice's own tune notification")
        assert alice.tunes() == [(a, str(alice.boundjid), TUNE, "current", "Sinnerman")], alice.describe()
        assert str(bob.boundjid).startswith(f"{b}/"), bob.describe()
    finally:
        await disconnect_all(alice, bob)


async def test_slixmpp_contact_logging_in_later_gets_the_last_tune(server: Server) -> None:
    alice, bob = await log_in(server, "alice-later"), await log_in(server, "bob-later")
    a, b = bare("alice-later"), bare("bob-later")
    again: Pep | None = None
    try:
        await add_each_other(alice, bob)
        await bob.leave()
        await alice.until(lambda: alice.saw(f"{b}/slix", "unavailable"), f"unavailable presence of {b}")
        sent_after = dt.datetime.now(dt.UTC).replace(microsecond=0)  # XEP-0082 stamps may drop fractions
        for title in ("Feeling Good", "Sinnerman"):  # the same item id: the second replaces the first
            await alice.plugin["xep_0118"].publish_tune(artist="Nina", title=title, timeout=WAIT)
        sent_before = dt.datetime.now(dt.UTC)

        again = await log_in(server, "bob-later")
        await again.until(lambda: bool(again.events), "the last tune at login")
        await again.routed()
        assert again.tunes() == [(a, str(again.boundjid), TUNE, "current", "Sinnerman")], again.describe()
        stamp = again.events[0]["delay"]["stamp"]  # XEP-0203, parsed by slixmpp's plugin
        assert isinstance(stamp, dt.datetime), again.describe()
        assert sent_after <= stamp <= sent_before, (sent_after, stamp, sent_before)
    finally:
        await disconnect_all(alice, bob, *([again] if again else []))


async def test_slixmpp_stranger_hears_nothing_and_may_not_read(server: Server) -> None:
    alice, bob = await log_in(server, "alice-stranger"), await log_in(server, "bob-stranger")
    carol = await log_in(server, "carol-stranger")  # wants tunes too, not subscribed to alice
    a = bare("alice-stranger")
    bob_pubsub: Any = bob.plugin["xep_0060"]  # slixmpp's XEP-0060 plugin is untyped
    carol_pubsub: Any = carol.plugin["xep_0060"]
    try:
        await add_each_other(alice, bob)  # bob is the control: he hears it
        await alice.plugin["xep_0118"].publish_tune(artist="Nina", title="Sinnerman", timeout=WAIT)
        await bob.until(lambda: bool(bob.events), "the tune notification")
        await carol.routed()  # anything sent her with bob's would have come before this answer
        assert carol.events == [], carol.describe()

        # alice's tune node has PEP's default access model, presence (XEP-0163 §5): bob may read it...
        items = await bob_pubsub.get_items(a, TUNE, timeout=WAIT)
        assert [item["id"] for item in items["pubsub"]["items"]] == ["current"], str(items)
        assert "Sinnerman" in str(items), str(items)
        # ... carol may not
        with pytest.raises(IqError) as refused:
            await carol_pubsub.get_items(a, TUNE, timeout=WAIT)
        error = refused.value.iq["error"]
        assert (error["type"], error["condition"]) == ("auth", "not-authorized"), str(refused.value.iq)
        assert error.xml.find(f"{{{PUBSUB_ERRORS}}}presence-subscription-required") is not None, str(
            refused.value.iq
        )
        assert "Sinnerman" not in str(refused.value.iq)
    finally:
        await disconnect_all(alice, bob, carol)
