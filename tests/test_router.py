"""The router's decisions, driven directly with small fake sessions (no sockets, no database).

Each fake session carries a real ``SessionAccess`` for its scopes, as a live session does, and records
what the router wrote to it, bounced back to it or closed it with. The expected bytes are written out
by hand (RFC 6121 §4 and §8.5, XEP-0280, docs/access.md), never computed with the router's own helpers.
"""

from __future__ import annotations

import logging

import pytest
from lxml import etree

from sessions_acl.access import MESSAGES_RECEIVE, MESSAGES_SEND, PRESENCE, SCOPES, SessionAccess
from xmppauth.proto.errors import StanzaErrorCondition, StreamErrorCondition
from xmppauth.proto.events import StanzaReceived
from xmppauth.proto.jid import JID
from xmppauth.router import Router, deliver_by_admission

EVERYTHING = frozenset(SCOPES)
NO_RECEIVE = EVERYTHING - {MESSAGES_RECEIVE}
NO_PRESENCE = EVERYTHING - {PRESENCE}
NOTIFIER = frozenset({MESSAGES_SEND})
C = "xmlns='jabber:client'"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


class FakeSession:
    """What the router needs of a live session (xmppauth.router.Session), recording what it got."""

    def __init__(
        self,
        jid: str,
        scopes: frozenset[str] = EVERYTHING,
        *,
        available: bool = False,
        priority: int = 0,
        carbons: bool = False,
        resume_id: str | None = None,
        last_presence: bytes | None = None,
        refuses: frozenset[tuple[str, str]] = frozenset(),
        grant_id: int | None = None,
    ) -> None:
        self.jid: JID | None = JID.parse(jid)
        self.available = available
        self.priority = priority
        self.last_presence = last_presence
        self.directed_to: set[JID] = set()
        self.carbons = carbons
        self.resume_id = resume_id
        self.grant_id: int | None = grant_id
        self.access = SessionAccess(scopes)
        self.refuses = refuses  # (kind, type) this session's policy refuses on top of its scopes
        self.received: list[bytes] = []
        self.urgency: list[bool] = []
        self.bounced: list[tuple[str, object, str]] = []
        self.kicked: list[tuple[StreamErrorCondition, str]] = []
        self.offline_deliveries = 0

    def __repr__(self) -> str:
        return f"<FakeSession {self.jid}>"

    async def deliver(self, data: bytes, urgent: bool = True) -> None:
        self.received.append(data)
        self.urgency.append(urgent)

    async def deliver_offline(self) -> None:
        self.offline_deliveries += 1

    async def bounce(self, stanza: etree._Element, condition: object, text: str) -> None:
        self.bounced.append((stanza.get("id", ""), condition, text))

    async def kick(self, condition: StreamErrorCondition, text: str) -> None:
        self.kicked.append((condition, text))

    async def revoke(self, text: str) -> None:  # pragma: no cover - the router never revokes
        raise AssertionError("the router does not revoke")

    def regrant(self, scopes: frozenset[str]) -> None:  # pragma: no cover - nor regrants
        self.access.scopes = scopes

    def may_receive(self, kind: str, stanza_type: str) -> bool:
        return (kind, stanza_type) not in self.refuses and self.access.may_receive(kind, stanza_type)

    async def deliver_paired(
        self, kind: str, stanza_type: str, sender: JID | None, stanza_id: str | None, data: bytes
    ) -> None:
        await deliver_by_admission(self, self.access.admit(kind, stanza_type, sender, stanza_id), data)


def event(xml: str) -> StanzaReceived:
    """A stanza as the stream hands it to the router: ``from`` stamped, RFC 6121 default type."""
    stanza = etree.fromstring(xml)
    kind = etree.QName(stanza).localname
    default = {"message": "normal", "presence": "available"}.get(kind, "")
    to = stanza.get("to")
    return StanzaReceived(
        kind=kind, type=stanza.get("type", default), to=JID.parse(to) if to else None, stanza=stanza
    )


def online(router: Router, *sessions: FakeSession) -> None:
    for session in sessions:
        router.register(session)


@pytest.fixture
def router() -> Router:
    return Router()


# ------------------------------------------------------------------ binding and the registry
async def test_it_binds_the_resource_the_client_asked_for(router: Router) -> None:
    session = FakeSession("alice@localhost/desk")
    assert await router.bind(session, "alice", "localhost", "desk") == "desk"
    assert session.kicked == []


async def test_it_makes_up_a_different_resource_when_the_client_names_none(router: Router) -> None:
    session = FakeSession("alice@localhost/x")
    first = await router.bind(session, "alice", "localhost", None)
    second = await router.bind(session, "alice", "localhost", "")
    assert len(first) == 12  # 9 random bytes, base64url
    assert len(second) == 12
    assert first != second


async def test_a_new_session_on_a_taken_resource_replaces_the_older_one(
    router: Router, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="xmppauth.router")
    older = FakeSession("alice@localhost/desk")
    other = FakeSession("alice@localhost/phone")
    online(router, older, other)
    newer = FakeSession("alice@localhost/desk")
    assert await router.bind(newer, "alice", "localhost", "desk") == "desk"
    assert older.kicked == [
        (StreamErrorCondition.CONFLICT, "replaced by a new session with the same resource")
    ]
    assert router.resources(JID("alice", "localhost")) == {"phone": other}
    assert other.kicked == []
    assert [(r.name, r.getMessage()) for r in caplog.records] == [
        ("xmppauth.router", "resource conflict on alice@localhost/desk: the older session is replaced")
    ]


async def test_binding_again_does_not_kick_the_session_itself(router: Router) -> None:
    session = FakeSession("alice@localhost/desk")
    online(router, session)
    assert await router.bind(session, "alice", "localhost", "desk") == "desk"
    assert session.kicked == []
    assert router.resources(JID("alice", "localhost")) == {"desk": session}


async def test_the_same_resource_of_another_account_is_no_conflict(router: Router) -> None:
    bob = FakeSession("bob@localhost/desk")
    online(router, bob)
    assert await router.bind(FakeSession("alice@localhost/desk"), "alice", "localhost", "desk") == "desk"
    assert bob.kicked == []
    assert router.resources(JID("bob", "localhost")) == {"desk": bob}


def test_it_counts_accounts_and_sessions(router: Router) -> None:
    assert router.online_counts() == (0, 0)
    online(
        router,
        FakeSession("alice@localhost/desk"),
        FakeSession("alice@localhost/phone"),
        FakeSession("bob@localhost/desk"),
    )
    assert router.session_count() == 3
    assert router.online_counts() == (2, 3)
    assert router.resources(JID("carol", "localhost")) == {}


def test_unbinding_removes_the_session_once_and_the_account_with_its_last_session(router: Router) -> None:
    desk, phone = FakeSession("alice@localhost/desk"), FakeSession("alice@localhost/phone")
    online(router, desk, phone)
    assert router.unbind(desk) is True
    assert router.unbind(desk) is False
    assert router.resources(JID("alice", "localhost")) == {"phone": phone}
    assert router.unbind(phone) is True
    assert router.online_counts() == (0, 0)


def test_unbinding_leaves_another_session_on_the_same_full_jid_alone(router: Router) -> None:
    registered, stale = FakeSession("alice@localhost/desk"), FakeSession("alice@localhost/desk")
    online(router, registered)
    assert router.unbind(stale) is False
    assert router.resources(JID("alice", "localhost")) == {"desk": registered}


def test_registering_says_which_session_it_displaced(router: Router) -> None:
    first, second = FakeSession("alice@localhost/desk"), FakeSession("alice@localhost/desk")
    assert router.register(first) is None
    assert router.register(first) is None  # itself again
    assert router.register(second) is first
    assert router.resources(JID("alice", "localhost")) == {"desk": second}


async def test_the_last_login_to_claim_a_full_jid_holds_it_and_the_one_it_displaced_is_told(
    router: Router, caplog: pytest.LogCaptureFixture
) -> None:
    """Two logins of one full JID both passed bind() before either registered (each awaited the
    database): the second claim replaces the first, which is kicked and whose presence is withdrawn."""
    phone = FakeSession("alice@localhost/phone", available=True)
    first = FakeSession("alice@localhost/dup", available=True)
    second = FakeSession("alice@localhost/dup")
    online(router, phone)
    await router.claim(first)
    assert first.kicked == []
    with caplog.at_level(logging.INFO, logger="xmppauth.router"):
        await router.claim(second)
    assert caplog.messages == ["resource conflict on alice@localhost/dup: the older session is replaced"]
    assert router.resources(JID("alice", "localhost")) == {"phone": phone, "dup": second}
    assert first.kicked == [
        (StreamErrorCondition.CONFLICT, "replaced by a new session with the same resource")
    ]
    assert second.kicked == []
    assert phone.received == [  # addressed to the account (RFC 6121 §4.2.2)
        b'<presence xmlns="jabber:client" from="alice@localhost/dup" type="unavailable" to=\'alice@localhost\'/>'
    ]
    await router.claim(second)  # claiming again displaces nobody
    assert second.kicked == []


async def test_a_session_of_another_grant_keeps_its_resource_and_the_new_one_gets_another(
    router: Router,
) -> None:
    """RFC 6120 §7.7.2.2: the server may give the new session another resource. A narrower
    credential of the account must not end the full client's session by asking for its resource."""
    phone = FakeSession("alice@localhost/phone", grant_id=1, resume_id="r1")
    bot = FakeSession("alice@localhost", grant_id=2)
    online(router, phone)
    resource = await router.bind(bot, "alice", "localhost", "phone")
    assert resource != "phone"
    assert len(resource) == 12  # generated, like any resource the client does not choose
    assert phone.kicked == []
    assert router.resources(JID("alice", "localhost")) == {"phone": phone}
    same_client = FakeSession("alice@localhost", grant_id=1)
    assert await router.bind(same_client, "alice", "localhost", "phone") == "phone"  # newer wins
    assert phone.kicked == [
        (StreamErrorCondition.CONFLICT, "replaced by a new session with the same resource")
    ]


async def test_a_claim_never_takes_a_full_jid_from_another_grant(
    router: Router, caplog: pytest.LogCaptureFixture
) -> None:
    """Both bound the same resource before either registered: the session of another grant that
    registered first keeps it, the newcomer is told and goes."""
    phone = FakeSession("alice@localhost/dup", grant_id=1, available=True)
    bot = FakeSession("alice@localhost/dup", grant_id=2)
    await router.claim(phone)
    with caplog.at_level(logging.INFO, logger="xmppauth.router"):
        await router.claim(bot)
    assert caplog.messages == [
        "resource conflict on alice@localhost/dup: held by another grant, the new session ends"
    ]
    assert router.resources(JID("alice", "localhost")) == {"dup": phone}
    assert phone.kicked == []
    assert bot.kicked == [
        (
            StreamErrorCondition.CONFLICT,
            "that resource is held by another client or app password of this account",
        )
    ]


def test_unbinding_a_session_that_never_bound_is_a_no_op(router: Router) -> None:
    unbound = FakeSession("alice@localhost")  # no resource
    assert router.unbind(unbound) is False
    unbound.jid = None
    assert router.unbind(unbound) is False


def test_a_resumed_session_takes_the_place_of_the_old_one_only_if_it_holds_it(router: Router) -> None:
    old, new = FakeSession("alice@localhost/desk"), FakeSession("alice@localhost/desk")
    online(router, old)
    router.replace(old, new)
    assert router.resources(JID("alice", "localhost")) == {"desk": new}
    router.replace(old, FakeSession("alice@localhost/desk"))  # old no longer holds it
    assert router.resources(JID("alice", "localhost")) == {"desk": new}
    router.unbind(new)
    router.replace(new, FakeSession("alice@localhost/desk"))  # the account has gone meanwhile
    assert router.online_counts() == (0, 0)


def test_it_finds_a_resumable_session_only_by_its_id_and_account(router: Router) -> None:
    plain = FakeSession("alice@localhost/plain")  # no stream management
    desk = FakeSession("alice@localhost/desk", resume_id="r-desk")
    bobs = FakeSession("bob@localhost/desk", resume_id="r-bob")
    online(router, plain, desk, bobs)
    alice = JID("alice", "localhost")
    assert router.find_resumable(alice, "r-desk") is desk
    assert router.find_resumable(alice, "r-other") is None
    assert router.find_resumable(alice, "r-bob") is None  # another account's
    assert router.find_resumable(JID("bob", "localhost"), "r-bob") is bobs


async def test_a_session_that_ends_is_unregistered_and_its_presence_withdrawn(router: Router) -> None:
    desk = FakeSession("alice@localhost/desk", available=True)
    phone = FakeSession("alice@localhost/phone", available=True)
    online(router, desk, phone)
    await router.session_ended(desk)
    assert router.resources(JID("alice", "localhost")) == {"phone": phone}
    assert phone.received == [
        b'<presence xmlns="jabber:client" from="alice@localhost/desk" type="unavailable" to=\'alice@localhost\'/>'
    ]
    await router.session_ended(desk)  # already gone: nothing more to say
    assert len(phone.received) == 1


# ------------------------------------------------------------------ messages (RFC 6121 §8.5)
async def test_a_chat_to_a_full_jid_reaches_that_resource_alone_unchanged_and_at_once(router: Router) -> None:
    alice = FakeSession("alice@localhost/desk")
    phone, laptop = FakeSession("bob@localhost/phone"), FakeSession("bob@localhost/laptop", available=True)
    online(router, alice, phone, laptop)
    xml = f"<message {C} from='alice@localhost/desk' to='bob@localhost/phone' type='chat' id='m1'><body>hi</body></message>"
    await router.route(alice, event(xml))
    assert phone.received == [
        b'<message xmlns="jabber:client" from="alice@localhost/desk" to="bob@localhost/phone" type="chat" id="m1"><body>hi</body></message>'
    ]
    assert phone.urgency == [True]
    assert laptop.received == []
    assert alice.bounced == []


async def test_a_message_without_a_body_can_wait_for_an_inactive_client(router: Router) -> None:
    alice, phone = FakeSession("alice@localhost/desk"), FakeSession("bob@localhost/phone")
    online(router, alice, phone)
    state = f"<message {C} from='alice@localhost/desk' to='bob@localhost/phone' type='chat'><composing xmlns='http://jabber.org/protocol/chatstates'/></message>"
    await router.route(alice, event(state))
    assert len(phone.received) == 1
    assert phone.urgency == [False]


async def test_a_message_to_a_bare_jid_reaches_every_available_resource_with_non_negative_priority(
    router: Router,
) -> None:
    alice = FakeSession("alice@localhost/desk")
    high = FakeSession("bob@localhost/high", available=True, priority=5)
    zero = FakeSession("bob@localhost/zero", available=True, priority=0)
    shy = FakeSession("bob@localhost/shy", available=True, priority=-1)
    away = FakeSession("bob@localhost/away")  # bound, no initial presence
    online(router, alice, high, zero, shy, away)
    xml = f"<message {C} from='alice@localhost/desk' to='bob@localhost' id='m1'><body>hi</body></message>"
    await router.route(alice, event(xml))
    assert [len(s.received) for s in (high, zero, shy, away)] == [1, 1, 0, 0]


async def test_a_resource_without_messages_receive_is_not_there_for_messages(router: Router) -> None:
    alice = FakeSession("alice@localhost/desk")
    deaf = FakeSession("bob@localhost/deaf", NO_RECEIVE, available=True)
    hears = FakeSession("bob@localhost/hears", available=True)
    online(router, alice, deaf, hears)
    xml = f"<message {C} from='alice@localhost/desk' to='bob@localhost/deaf' type='chat'><body>hi</body></message>"
    await router.route(alice, event(xml))  # falls back to the bare JID (RFC 6121 §8.5.3.2.1)
    assert deaf.received == []
    assert len(hears.received) == 1
    assert alice.bounced == []


async def test_a_message_to_an_account_whose_only_resource_may_not_receive_is_refused(router: Router) -> None:
    alice = FakeSession("alice@localhost/desk")
    deaf = FakeSession("bob@localhost/deaf", NO_RECEIVE, available=True)
    online(router, alice, deaf)
    xml = f"<message {C} from='alice@localhost/desk' to='bob@localhost' type='chat' id='m7'><body>hi</body></message>"
    await router.route(alice, event(xml))
    assert deaf.received == []
    assert alice.bounced == [
        (
            "m7",
            StanzaErrorCondition.SERVICE_UNAVAILABLE,
            "the recipient is offline and offline storage is off",
        )
    ]


async def test_a_headline_to_nobody_is_dropped_without_an_error(router: Router) -> None:
    alice = FakeSession("alice@localhost/desk")
    online(router, alice)
    xml = f"<message {C} from='alice@localhost/desk' to='bob@localhost' type='headline'><body>news</body></message>"
    await router.route(alice, event(xml))
    assert alice.bounced == []
    assert alice.received == []
    # control: the same message as a chat is bounced, so the router did look for bob and found nobody
    await router.route(alice, event(xml.replace("type='headline'", "type='chat' id='h1'")))
    assert [(stanza_id, condition) for stanza_id, condition, _ in alice.bounced] == [
        ("h1", StanzaErrorCondition.SERVICE_UNAVAILABLE)
    ]


# ------------------------------------------------------------------ carbons (XEP-0280)
def carbon(direction: str, to: str, forwarded: bytes, bare: str = "alice@localhost") -> bytes:
    return (
        f"<message xmlns='jabber:client' from='{bare}' to='{to}' type='chat'>"
        f"<{direction} xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>".encode()
        + forwarded
        + f"</forwarded></{direction}></message>".encode()
    )


CHAT = f"<message {C} from='alice@localhost/desk' to='bob@localhost/phone' type='chat' id='c1'><body>hi</body>{{extra}}</message>"
CHAT_BYTES = b'<message xmlns="jabber:client" from="alice@localhost/desk" to="bob@localhost/phone" type="chat" id="c1"><body>hi</body></message>'


@pytest.fixture
def carbon_party(router: Router) -> dict[str, FakeSession]:
    party = {
        "desk": FakeSession("alice@localhost/desk", carbons=True),  # the sender
        "laptop": FakeSession("alice@localhost/laptop", carbons=True),
        "tablet": FakeSession("alice@localhost/tablet"),  # carbons off
        "deaf": FakeSession("alice@localhost/deaf", NO_RECEIVE, carbons=True),
        "phone": FakeSession("bob@localhost/phone", carbons=True),  # the recipient
        "pc": FakeSession("bob@localhost/pc", carbons=True, available=True),
        "tv": FakeSession("bob@localhost/tv", available=True),  # carbons off
        "bobdeaf": FakeSession("bob@localhost/bobdeaf", NO_RECEIVE, carbons=True),
    }
    online(router, *party.values())
    return party


async def test_a_chat_is_copied_to_both_accounts_resources_that_enabled_carbons(
    router: Router, carbon_party: dict[str, FakeSession]
) -> None:
    p = carbon_party
    await router.route(p["desk"], event(CHAT.format(extra="")))
    assert p["phone"].received == [CHAT_BYTES]
    assert p["laptop"].received == [carbon("sent", "alice@localhost/laptop", CHAT_BYTES)]
    assert p["pc"].received == [carbon("received", "bob@localhost/pc", CHAT_BYTES, bare="bob@localhost")]
    for nothing in ("desk", "tablet", "deaf", "tv", "bobdeaf"):
        assert p[nothing].received == [], nothing


@pytest.mark.parametrize(
    "marker", ["<private xmlns='urn:xmpp:carbons:2'/>", "<no-copy xmlns='urn:xmpp:hints'/>"]
)
async def test_a_chat_marked_private_or_no_copy_is_not_copied(
    router: Router, carbon_party: dict[str, FakeSession], marker: str
) -> None:
    p = carbon_party
    await router.route(p["desk"], event(CHAT.format(extra=marker)))
    assert len(p["phone"].received) == 1
    assert [name for name, s in p.items() if s.received] == ["phone"]


async def test_only_chats_are_copied(router: Router, carbon_party: dict[str, FakeSession]) -> None:
    p = carbon_party
    await router.route(p["desk"], event(CHAT.replace("type='chat'", "type='normal'").format(extra="")))
    assert [name for name, s in p.items() if s.received] == ["phone"]


async def test_a_chat_between_resources_of_one_account_copies_to_the_others_as_sent(router: Router) -> None:
    desk = FakeSession("alice@localhost/desk", carbons=True)
    laptop = FakeSession("alice@localhost/laptop", carbons=True)
    tablet = FakeSession("alice@localhost/tablet", carbons=True)
    online(router, desk, laptop, tablet)
    xml = f"<message {C} from='alice@localhost/desk' to='alice@localhost/laptop' type='chat'><body>note</body></message>"
    await router.route(desk, event(xml))
    original = b'<message xmlns="jabber:client" from="alice@localhost/desk" to="alice@localhost/laptop" type="chat"><body>note</body></message>'
    assert laptop.received == [original]  # the message itself, no copy of it
    assert tablet.received == [carbon("sent", "alice@localhost/tablet", original)]
    assert desk.received == []


async def test_a_chat_to_a_bare_jid_is_copied_only_to_resources_that_did_not_get_it(router: Router) -> None:
    alice = FakeSession("alice@localhost/desk")
    pc = FakeSession("bob@localhost/pc", carbons=True, available=True)
    idle = FakeSession("bob@localhost/idle", carbons=True)  # not available: no message, a carbon
    online(router, alice, pc, idle)
    xml = f"<message {C} from='alice@localhost/desk' to='bob@localhost' type='chat'><body>hi</body></message>"
    await router.route(alice, event(xml))
    original = b'<message xmlns="jabber:client" from="alice@localhost/desk" to="bob@localhost" type="chat"><body>hi</body></message>'
    assert pc.received == [original]
    assert idle.received == [carbon("received", "bob@localhost/idle", original, bare="bob@localhost")]


async def test_a_carbon_address_is_escaped(router: Router) -> None:
    alice = FakeSession("alice@localhost/desk")
    odd = FakeSession("bob@localhost/it's <mine>", carbons=True)
    phone = FakeSession("bob@localhost/phone")
    online(router, alice, odd, phone)
    await router.route(alice, event(CHAT.format(extra="")))
    assert odd.received == [
        carbon("received", "bob@localhost/it&apos;s &lt;mine&gt;", CHAT_BYTES, bare="bob@localhost")
    ]


# ------------------------------------------------------------------ iq requests and answers
VCARD_GET = f"<iq {C} from='alice@localhost/desk' to='bob@localhost/phone' type='get' id='v1'><vCard xmlns='vcard-temp'/></iq>"


async def test_an_iq_request_reaches_the_full_jid_and_is_owed_an_answer(router: Router) -> None:
    alice, bob = FakeSession("alice@localhost/desk"), FakeSession("bob@localhost/phone")
    online(router, alice, bob)
    await router.route(alice, event(VCARD_GET))
    assert bob.received == [
        b'<iq xmlns="jabber:client" from="alice@localhost/desk" to="bob@localhost/phone" type="get" id="v1"><vCard xmlns="vcard-temp"/></iq>'
    ]
    assert bob.urgency == [True]
    # bob may now answer alice's request, once
    assert bob.access.check_inbound("iq", "result", "peer", None, alice.jid, "v1") is None
    assert bob.access.check_inbound("iq", "result", "peer", None, alice.jid, "v1") is not None


async def test_an_iq_request_to_a_session_without_messages_receive_is_refused(router: Router) -> None:
    alice, bob = FakeSession("alice@localhost/desk"), FakeSession("bob@localhost/phone", NO_RECEIVE)
    online(router, alice, bob)
    await router.route(alice, event(VCARD_GET))
    assert bob.received == []
    assert alice.bounced == [("v1", StanzaErrorCondition.SERVICE_UNAVAILABLE, "no such resource")]


async def test_an_iq_answer_reaches_only_the_session_that_asked(router: Router) -> None:
    alice, bob = FakeSession("alice@localhost/desk"), FakeSession("bob@localhost/phone")
    online(router, alice, bob)
    result = f"<iq {C} from='bob@localhost/phone' to='alice@localhost/desk' type='result' id='v1'/>"
    await router.route(bob, event(result))  # alice asked nothing
    assert alice.received == []
    assert alice.access.check_inbound("iq", "get", "peer", None, bob.jid, "v1") is None  # the stream asks
    await router.route(bob, event(result))
    assert alice.received == [
        b'<iq xmlns="jabber:client" from="bob@localhost/phone" to="alice@localhost/desk" type="result" id="v1"/>'
    ]
    assert alice.urgency == [True]
    await router.route(bob, event(result))  # answered already
    assert len(alice.received) == 1


MESSAGE_ERROR = (
    f"<message {C} from='bob@localhost/phone' to='alice@localhost/desk' type='error' id='m1'>"
    "<body>secret</body>"
    f"<error type='cancel'><item-not-found xmlns='{STANZAS}'/><text xmlns='{STANZAS}'>gone</text></error>"
    "</message>"
)
STRIPPED_ERROR = (
    b'<message xmlns="jabber:client" from="bob@localhost/phone" to="alice@localhost/desk" id="m1" type="error">'
    b'<error type="cancel"><item-not-found xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></message>'
)


async def test_a_message_error_reaches_a_sender_without_receive_stripped_to_its_error(router: Router) -> None:
    alice, bob = FakeSession("alice@localhost/desk", NOTIFIER), FakeSession("bob@localhost/phone")
    online(router, alice, bob)
    await router.route(bob, event(MESSAGE_ERROR))  # alice sent no m1
    assert alice.received == []
    assert alice.access.check_inbound("message", "chat", "peer", None, bob.jid, "m1") is None
    await router.route(bob, event(MESSAGE_ERROR))
    assert alice.received == [STRIPPED_ERROR]
    assert b"secret" not in alice.received[0]


async def test_a_stripped_error_keeps_only_the_addresses_it_has(router: Router) -> None:
    alice, bob = FakeSession("alice@localhost/desk", NOTIFIER), FakeSession("bob@localhost/phone")
    online(router, alice, bob)
    alice.access.check_inbound("message", "chat", "peer", None, bob.jid, "m2")
    no_error = f"<message {C} to='alice@localhost/desk' type='error' id='m2'><body>secret</body></message>"
    await router.route(bob, event(no_error))  # no from, no <error/>: nothing to copy of either
    assert alice.received == [
        b'<message xmlns="jabber:client" to="alice@localhost/desk" id="m2" type="error">'
        b'<error><undefined-condition xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></message>'
    ]


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        # text and an application-specific condition are the sender's words: dropped
        (
            f"<error type='modify'><bad-request xmlns='{STANZAS}'/><text xmlns='{STANZAS}'>TEXTDATA</text>"
            "<app xmlns='urn:custom'>APPDATA</app></error>",
            b'<error type="modify"><bad-request xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error>',
        ),
        # a condition's content (gone and redirect carry a URI) is dropped too
        (
            f"<error type='cancel'><gone xmlns='{STANZAS}'>xmpp:DATA@example.org</gone></error>",
            b'<error type="cancel"><gone xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error>',
        ),
        # no defined condition, or one made up, or an unknown type: undefined-condition, no type
        (
            f"<error type='SECRET'><made-up xmlns='{STANZAS}'/><x xmlns='urn:custom'/></error>",
            b'<error><undefined-condition xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error>',
        ),
        (
            "<error type='wait'><resource-constraint/></error>",  # in jabber:client, not a condition
            b'<error type="wait"><undefined-condition xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error>',
        ),
    ],
)
async def test_a_stripped_error_keeps_its_type_and_condition_and_nothing_else(
    router: Router, error: str, expected: bytes
) -> None:
    alice, bob = FakeSession("alice@localhost/desk", NOTIFIER), FakeSession("bob@localhost/phone")
    online(router, alice, bob)
    alice.access.check_inbound("message", "chat", "peer", None, bob.jid, "m3")
    await router.route(
        bob, event(f"<message {C} to='alice@localhost/desk' type='error' id='m3'>{error}</message>")
    )
    (received,) = alice.received
    assert expected in received, received
    for leak in (b"DATA", b"SECRET", b"custom"):
        assert leak not in received, received


async def test_a_message_error_reaches_a_session_with_receive_whole(router: Router) -> None:
    alice, bob = FakeSession("alice@localhost/desk"), FakeSession("bob@localhost/phone")
    online(router, alice, bob)
    await router.route(bob, event(MESSAGE_ERROR))
    assert len(alice.received) == 1
    assert b"<body>secret</body>" in alice.received[0]


# ------------------------------------------------------------------ directed presence (RFC 6121 §4.6)
async def test_directed_presence_is_delivered_and_remembered_until_unavailable(router: Router) -> None:
    alice = FakeSession("alice@localhost/desk", available=True)
    bob = FakeSession("bob@localhost/phone")
    online(router, alice, bob)
    await router.route(alice, event(f"<presence {C} from='alice@localhost/desk' to='bob@localhost/phone'/>"))
    assert bob.received == [
        b'<presence xmlns="jabber:client" from="alice@localhost/desk" to="bob@localhost/phone"/>'
    ]
    assert bob.urgency == [False]
    assert alice.directed_to == {JID("bob", "localhost", "phone")}
    await router.route(
        alice,
        event(f"<presence {C} from='alice@localhost/desk' to='bob@localhost/phone' type='subscribe'/>"),
    )
    assert alice.directed_to == {JID("bob", "localhost", "phone")}  # only available/unavailable count
    await router.route(
        alice,
        event(f"<presence {C} from='alice@localhost/desk' to='bob@localhost/phone' type='unavailable'/>"),
    )
    assert alice.directed_to == set()
    assert len(bob.received) == 3


async def test_directed_presence_to_a_contact_that_is_offline_is_remembered_and_dropped(
    router: Router,
) -> None:
    alice = FakeSession("alice@localhost/desk", available=True)
    online(router, alice)
    await router.route(alice, event(f"<presence {C} from='alice@localhost/desk' to='carol@localhost/pc'/>"))
    assert alice.directed_to == {JID("carol", "localhost", "pc")}
    assert alice.bounced == []


@pytest.mark.parametrize("to", ["bob@localhost", "bob@localhost/blind"])
async def test_directed_presence_skips_a_session_without_presence(router: Router, to: str) -> None:
    alice = FakeSession("alice@localhost/desk", available=True)
    blind = FakeSession("bob@localhost/blind", NO_PRESENCE, available=True)  # may receive messages
    sees = FakeSession("bob@localhost/pc", available=True)
    online(router, alice, blind, sees)
    await router.route(alice, event(f"<presence {C} from='alice@localhost/desk' to='{to}'/>"))
    assert blind.received == []
    assert len(sees.received) == (1 if to == "bob@localhost" else 0)  # a full JID does not fall back
    assert alice.bounced == []


# ------------------------------------------------------------------ broadcast presence (RFC 6121 §4.2, §4.5)
AVAILABLE = f"<presence {C} from='alice@localhost/desk'><priority>{{priority}}</priority></presence>"
UNAVAILABLE = f"<presence {C} from='alice@localhost/desk' type='unavailable'/>"


async def test_initial_presence_goes_to_the_account_and_brings_back_the_others(router: Router) -> None:
    desk = FakeSession("alice@localhost/desk")
    phone = FakeSession("alice@localhost/phone", available=True, last_presence=b"<presence phone/>")
    quiet = FakeSession("alice@localhost/quiet", available=False, last_presence=None)
    blind = FakeSession(
        "alice@localhost/blind", NO_PRESENCE, available=True, last_presence=b"<presence blind/>"
    )
    online(router, desk, phone, quiet, blind)
    await router.route(desk, event(AVAILABLE.format(priority=3)))
    sent = b'<presence xmlns="jabber:client" from="alice@localhost/desk"><priority>3</priority></presence>'
    own = b'<presence xmlns="jabber:client" from="alice@localhost/desk" to=\'alice@localhost\'><priority>3</priority></presence>'
    assert desk.available is True
    assert desk.priority == 3
    assert desk.last_presence == sent  # as sent; each delivery is addressed to its recipient
    assert phone.received == [own]
    assert phone.urgency == [False]
    assert quiet.received == []
    assert blind.received == []  # no presence scope
    # its own presence, and what the other available resources last said
    to_me = [b"<presence phone to='alice@localhost'/>", b"<presence blind to='alice@localhost'/>"]
    assert sorted(desk.received) == sorted([own, *to_me])
    assert desk.urgency == [False, False, False]
    assert desk.offline_deliveries == 1


async def test_presence_updates_do_not_resend_the_others_or_stored_messages(router: Router) -> None:
    desk = FakeSession("alice@localhost/desk")
    phone = FakeSession("alice@localhost/phone", available=True, last_presence=b"<presence phone/>")
    online(router, desk, phone)
    await router.route(desk, event(AVAILABLE.format(priority=1)))
    await router.route(desk, event(AVAILABLE.format(priority=2)))
    assert desk.received.count(b"<presence phone to='alice@localhost'/>") == 1
    assert desk.offline_deliveries == 1
    assert desk.priority == 2
    assert len(phone.received) == 2


async def test_a_resource_with_negative_priority_gets_no_stored_messages(router: Router) -> None:
    desk = FakeSession("alice@localhost/desk")
    online(router, desk)
    await router.route(desk, event(AVAILABLE.format(priority=-1)))
    assert desk.available is True
    assert desk.priority == -1
    assert desk.offline_deliveries == 0


@pytest.mark.parametrize(
    ("text", "priority"),
    [
        ("5", 5),
        (" 7 ", 7),
        ("127", 127),
        ("-128", -128),
        ("128", 0),
        ("-129", 0),
        ("high", 0),
        ("", 0),
    ],
)
async def test_a_presence_priority_is_an_integer_from_minus_128_to_127_or_zero(
    router: Router, text: str, priority: int
) -> None:
    desk = FakeSession("alice@localhost/desk", priority=99)
    online(router, desk)
    await router.route(desk, event(AVAILABLE.format(priority=text)))
    assert desk.priority == priority


async def test_presence_without_a_priority_has_priority_zero(router: Router) -> None:
    desk = FakeSession("alice@localhost/desk", priority=99)
    online(router, desk)
    await router.route(desk, event(f"<presence {C} from='alice@localhost/desk'/>"))
    assert desk.priority == 0
    assert desk.offline_deliveries == 1


async def test_unavailable_presence_goes_to_the_account_and_to_directed_contacts(router: Router) -> None:
    desk = FakeSession("alice@localhost/desk", available=True, last_presence=b"<presence desk/>")
    phone = FakeSession("alice@localhost/phone", available=True)
    idle = FakeSession("alice@localhost/idle")
    bob = FakeSession("bob@localhost/phone")  # not available, but addressed by its full JID
    carol = FakeSession("carol@localhost/pc", available=True)
    carol_idle = FakeSession("carol@localhost/idle")
    dave = FakeSession("dave@localhost/pc", NO_PRESENCE, available=True)
    online(router, desk, phone, idle, bob, carol, carol_idle, dave)
    desk.directed_to = {
        JID("bob", "localhost", "phone"),
        JID("carol", "localhost"),
        JID("dave", "localhost", "pc"),
        JID("erin", "localhost", "gone"),
    }
    await router.route(desk, event(UNAVAILABLE))
    sent = b'<presence xmlns="jabber:client" from="alice@localhost/desk" type="unavailable" to=\'alice@localhost\'/>'
    assert desk.available is False
    assert desk.last_presence is None
    assert desk.directed_to == set()
    assert desk.received == [sent]  # the sender hears its own unavailable presence
    assert phone.received == [sent]
    assert idle.received == []
    assert bob.received == [
        b'<presence xmlns="jabber:client" from="alice@localhost/desk" type="unavailable" to=\'bob@localhost/phone\'/>'
    ]  # to whom it was directed
    assert carol.received == [
        b'<presence xmlns="jabber:client" from="alice@localhost/desk" type="unavailable" to=\'carol@localhost\'/>'
    ]
    assert carol_idle.received == []  # a bare JID reaches the available resources only
    assert dave.received == []  # no presence scope
    assert desk.offline_deliveries == 0


async def test_a_directed_contact_without_presence_is_not_told_by_bare_jid(router: Router) -> None:
    desk = FakeSession("alice@localhost/desk", available=True)
    dave = FakeSession("dave@localhost/pc", NO_PRESENCE, available=True)
    online(router, desk, dave)
    desk.directed_to = {JID("dave", "localhost")}
    await router.route(desk, event(UNAVAILABLE))
    assert dave.received == []
    # control: the unavailable presence did go out: the sender hears its own
    assert desk.received == [
        b'<presence xmlns="jabber:client" from="alice@localhost/desk" type="unavailable" to=\'alice@localhost\'/>'
    ]


@pytest.mark.parametrize("presence_type", ["subscribe", "probe", "error"])
async def test_broadcast_presence_of_another_type_changes_and_sends_nothing(
    router: Router, presence_type: str
) -> None:
    desk = FakeSession("alice@localhost/desk", available=True, priority=4, last_presence=b"<presence desk/>")
    phone = FakeSession("alice@localhost/phone", available=True)
    online(router, desk, phone)
    await router.route(desk, event(f"<presence {C} from='alice@localhost/desk' type='{presence_type}'/>"))
    assert (desk.available, desk.priority, desk.last_presence) == (True, 4, b"<presence desk/>")
    assert desk.received == phone.received == []


# ------------------------------------------------------------------ withdrawn presence
async def test_withdrawing_presence_tells_the_account_and_directed_contacts(router: Router) -> None:
    desk = FakeSession("alice@localhost/desk", available=True, last_presence=b"<presence desk/>")
    phone = FakeSession("alice@localhost/phone", available=True)
    blind = FakeSession("alice@localhost/blind", NO_PRESENCE, available=True)
    idle = FakeSession("alice@localhost/idle")
    bob = FakeSession("bob@localhost/phone", available=True)
    online(router, desk, phone, blind, idle, bob)
    desk.directed_to = {JID("bob", "localhost", "phone")}
    await router.retract_presence(desk)
    assert (desk.available, desk.last_presence, desk.directed_to) == (False, None, set())
    assert phone.received == [
        b'<presence xmlns="jabber:client" from="alice@localhost/desk" type="unavailable" to=\'alice@localhost\'/>'
    ]
    assert bob.received == [
        b'<presence xmlns="jabber:client" from="alice@localhost/desk" type="unavailable" to=\'bob@localhost/phone\'/>'
    ]
    assert phone.urgency == bob.urgency == [True]
    assert desk.received == blind.received == idle.received == []


async def test_withdrawing_presence_of_a_session_that_shared_none_sends_nothing(router: Router) -> None:
    desk = FakeSession("alice@localhost/desk")
    phone = FakeSession("alice@localhost/phone", available=True)
    online(router, desk, phone)
    desk.directed_to = {JID("alice", "localhost", "phone")}
    await router.retract_presence(desk)
    assert phone.received == []
    unbound = FakeSession("alice@localhost/x", available=True)
    unbound.jid = None
    await router.retract_presence(unbound)
    assert unbound.available is True


# ------------------------------------------------------------------ errors returned to local senders
def _failed(attrs: str) -> etree._Element:
    return etree.fromstring(f"<message {C} {attrs}><body>hi</body></message>")


async def test_it_returns_an_error_to_the_local_sender_with_the_condition_and_text(router: Router) -> None:
    desk = FakeSession("alice@localhost/desk")
    online(router, desk)
    stanza = _failed("from='alice@localhost/desk' to='bob@remote.example' id='m1' type='chat'")
    await router.return_error(stanza, StanzaErrorCondition.REMOTE_SERVER_NOT_FOUND, "no route")
    assert desk.received == [
        b'<message xmlns="jabber:client" id="m1" type="error" from="bob@remote.example" to="alice@localhost/desk">'
        b'<error type="cancel"><remote-server-not-found xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/>'
        b'<text xmlns="urn:ietf:params:xml:ns:xmpp-stanzas">no route</text></error></message>'
    ]
    assert desk.urgency == [True]


async def test_a_returned_error_without_text_or_id_has_neither(router: Router) -> None:
    desk = FakeSession("alice@localhost/desk")
    online(router, desk)
    stanza = etree.fromstring(
        f"<iq {C} from='alice@localhost/desk' type='get'><ping xmlns='urn:xmpp:ping'/></iq>"
    )
    await router.return_error(stanza, StanzaErrorCondition.FORBIDDEN, "")
    assert desk.received == [
        b'<iq xmlns="jabber:client" type="error" from="" to="alice@localhost/desk">'
        b'<error type="auth"><forbidden xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></iq>'
    ]


@pytest.mark.parametrize(
    "attrs",
    [
        "from='alice@localhost/desk' type='error'",  # never answer an error
        "from='alice@localhost/desk' type='result'",  # nor a result
        "to='bob@localhost'",  # no sender
        "from=''",
        "from='@localhost/desk'",  # not a JID
        "from='alice@localhost/gone'",  # not online
        "from='alice@localhost'",  # a bare JID: none of its resources, whatever its name
    ],
)
async def test_it_returns_no_error_where_there_is_nobody_or_nothing_to_answer(
    router: Router, attrs: str
) -> None:
    sessions = [FakeSession(f"alice@localhost/{name}") for name in ("desk", "XXXX", "-")]
    online(router, *sessions)
    await router.return_error(_failed(attrs), StanzaErrorCondition.FORBIDDEN, "no")
    assert [s.received for s in sessions] == [[], [], []]


# ------------------------------------------------------------------ a policy that tells stanza types apart
# SessionAccess decides messages (but errors) and presence by scope alone, whatever the type; the
# Session protocol lets a policy decide by kind *and* type. These sessions refuse one (kind, type)
# on top of their scopes: the router must ask about the very stanza it would hand over.
UNAVAILABLE_ONLY = frozenset({("presence", "unavailable")})


async def test_a_session_that_refuses_headlines_gets_none_but_still_gets_chats(router: Router) -> None:
    alice = FakeSession("alice@localhost/desk")
    picky = FakeSession("bob@localhost/picky", available=True, refuses=frozenset({("message", "headline")}))
    other = FakeSession("bob@localhost/other", available=True)
    online(router, alice, picky, other)
    for stanza_type in ("headline", "chat"):
        xml = f"<message {C} from='alice@localhost/desk' to='bob@localhost' type='{stanza_type}'><body>x</body></message>"
        await router.route(alice, event(xml))
    assert len(other.received) == 2
    assert len(picky.received) == 1
    assert b'type="chat"' in picky.received[0]


async def test_a_session_that_refuses_chats_gets_no_copies_of_them(router: Router) -> None:
    no_chat = frozenset({("message", "chat")})
    desk = FakeSession("alice@localhost/desk")
    laptop = FakeSession("alice@localhost/laptop", carbons=True, refuses=no_chat)
    phone = FakeSession("bob@localhost/phone")
    pc = FakeSession("bob@localhost/pc", carbons=True, refuses=no_chat)
    online(router, desk, laptop, phone, pc)
    await router.route(desk, event(CHAT.format(extra="")))
    assert phone.received == [CHAT_BYTES]
    assert laptop.received == pc.received == []


async def test_a_session_that_refuses_unavailable_presence_still_hears_arrivals(router: Router) -> None:
    desk = FakeSession("alice@localhost/desk")
    phone = FakeSession("alice@localhost/phone", available=True, refuses=UNAVAILABLE_ONLY)
    online(router, desk, phone)
    await router.route(desk, event(AVAILABLE.format(priority=0)))
    await router.route(desk, event(UNAVAILABLE))
    assert len(phone.received) == 1
    assert b"unavailable" not in phone.received[0]


async def test_a_session_that_refuses_available_presence_still_hears_departures(router: Router) -> None:
    desk = FakeSession("alice@localhost/desk")
    phone = FakeSession(
        "alice@localhost/phone", available=True, refuses=frozenset({("presence", "available")})
    )
    online(router, desk, phone)
    await router.route(desk, event(AVAILABLE.format(priority=0)))
    await router.route(desk, event(UNAVAILABLE))
    assert phone.received == [
        b'<presence xmlns="jabber:client" from="alice@localhost/desk" type="unavailable" to=\'alice@localhost\'/>'
    ]


async def test_directed_contacts_that_refuse_unavailable_presence_are_not_told(router: Router) -> None:
    desk = FakeSession("alice@localhost/desk", available=True)
    by_full_jid = FakeSession("bob@localhost/phone", available=True, refuses=UNAVAILABLE_ONLY)
    by_bare_jid = FakeSession("carol@localhost/pc", available=True, refuses=UNAVAILABLE_ONLY)
    online(router, desk, by_full_jid, by_bare_jid)
    desk.directed_to = {JID("bob", "localhost", "phone"), JID("carol", "localhost")}
    await router.route(desk, event(UNAVAILABLE))
    assert by_full_jid.received == by_bare_jid.received == []
    # control: the unavailable presence did go out: the sender hears its own
    assert desk.received == [
        b'<presence xmlns="jabber:client" from="alice@localhost/desk" type="unavailable" to=\'alice@localhost\'/>'
    ]


async def test_a_withdrawn_presence_skips_sessions_that_refuse_unavailable_presence(router: Router) -> None:
    desk = FakeSession("alice@localhost/desk", available=True)
    phone = FakeSession("alice@localhost/phone", available=True, refuses=UNAVAILABLE_ONLY)
    tablet = FakeSession("alice@localhost/tablet", available=True)
    online(router, desk, phone, tablet)
    await router.retract_presence(desk)
    assert phone.received == []
    assert len(tablet.received) == 1


@pytest.mark.parametrize("error_type", ["auth", "cancel", "continue", "modify", "wait"])
async def test_a_stripped_error_keeps_each_of_rfc_6120s_error_types(router: Router, error_type: str) -> None:
    alice, bob = FakeSession("alice@localhost/desk", NOTIFIER), FakeSession("bob@localhost/phone")
    online(router, alice, bob)
    alice.access.check_inbound("message", "chat", "peer", None, bob.jid, "m4")
    error = f"<error type='{error_type}'><not-authorized xmlns='{STANZAS}'/></error>"
    await router.route(
        bob, event(f"<message {C} to='alice@localhost/desk' type='error' id='m4'>{error}</message>")
    )
    (received,) = alice.received
    assert f'<error type="{error_type}"><not-authorized '.encode() in received, received
