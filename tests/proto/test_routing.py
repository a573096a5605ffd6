"""RFC 6121 §8.5 delivery decisions, one case per rule."""

from __future__ import annotations

import pytest

from xmppauth.proto import routing
from xmppauth.proto.errors import StanzaErrorCondition
from xmppauth.proto.routing import Delivery, ResourceState, decide

ONLINE = {
    "desk": ResourceState(available=True, priority=5),
    "phone": ResourceState(available=True, priority=0),
    "shy": ResourceState(available=True, priority=-1),
    "silent": ResourceState(available=False, priority=0),
}
UNAVAILABLE = Delivery(error=StanzaErrorCondition.SERVICE_UNAVAILABLE, text="no such resource")
OFFLINE = Delivery(store=True)
GROUPCHAT = Delivery(error=StanzaErrorCondition.SERVICE_UNAVAILABLE, text="not a group chat")


@pytest.mark.parametrize("kind", ["message", "presence", "iq"])
def test_a_connected_full_jid_gets_the_stanza_whatever_its_presence(kind: str) -> None:
    assert decide(kind, "normal", "silent", ONLINE) == Delivery(resources=("silent",))


@pytest.mark.parametrize(
    ("kind", "stanza_type", "expected"),
    [
        ("iq", "get", UNAVAILABLE),
        ("presence", "available", Delivery()),
        ("message", "headline", Delivery()),
        ("message", "error", Delivery()),
        ("message", "groupchat", GROUPCHAT),
        ("message", "chat", Delivery(resources=("desk", "phone"))),
        ("message", "normal", Delivery(resources=("desk", "phone"))),
    ],
)
def test_a_full_jid_without_that_resource(kind: str, stanza_type: str, expected: Delivery) -> None:
    assert decide(kind, stanza_type, "gone", ONLINE) == expected


@pytest.mark.parametrize(
    ("stanza_type", "expected"),
    [
        ("chat", Delivery(resources=("desk", "phone"))),
        ("normal", Delivery(resources=("desk", "phone"))),
        ("headline", Delivery(resources=("desk", "phone"))),
        ("groupchat", GROUPCHAT),
        ("error", Delivery()),
    ],
)
def test_messages_to_a_bare_jid_go_to_non_negative_available_resources(
    stanza_type: str, expected: Delivery
) -> None:
    assert decide("message", stanza_type, None, ONLINE) == expected


@pytest.mark.parametrize(
    ("stanza_type", "expected"), [("chat", OFFLINE), ("normal", OFFLINE), ("headline", Delivery())]
)
def test_messages_to_an_account_with_no_available_resource(stanza_type: str, expected: Delivery) -> None:
    only_negative = {"shy": ONLINE["shy"], "silent": ONLINE["silent"]}
    assert decide("message", stanza_type, None, only_negative) == expected
    assert decide("message", stanza_type, None, {}) == expected  # unknown account: the same answer


def test_presence_to_a_bare_jid_goes_to_every_available_resource() -> None:
    assert decide("presence", "available", None, ONLINE) == Delivery(resources=("desk", "phone", "shy"))


def test_an_iq_to_a_bare_jid_is_never_handed_to_a_resource() -> None:
    """The stream answers these itself; routing refuses them too rather than pick a resource."""
    for stanza_type in ("get", "set", "result"):
        decision = decide("iq", stanza_type, None, ONLINE)
        assert decision == Delivery(error=StanzaErrorCondition.SERVICE_UNAVAILABLE)
        assert decision.text == ""  # the refusal carries no <text/>


def test_presence_to_a_full_jid_that_is_not_online_is_dropped_whatever_its_type() -> None:
    for stanza_type in ("available", "unavailable", "subscribe", "probe", "error"):
        assert decide("presence", stanza_type, "gone", ONLINE) == Delivery()


def test_a_full_jid_that_is_online_gets_every_kind_and_type() -> None:
    for kind, stanza_type in [
        ("message", "groupchat"),
        ("message", "error"),
        ("iq", "result"),
        ("presence", "probe"),
    ]:
        assert decide(kind, stanza_type, "shy", ONLINE) == Delivery(resources=("shy",))


# ------------------------------------------------------------------ broadcast presence, addressed
@pytest.mark.parametrize(
    ("data", "to", "expected"),
    [
        (
            b'<presence xmlns="jabber:client" from="a@l/r"><show>away</show></presence>',
            "b@l",
            b'<presence xmlns="jabber:client" from="a@l/r" to=\'b@l\'><show>away</show></presence>',
        ),
        (
            b'<presence xmlns="jabber:client" from="a@l/r"/>',
            "b@l",
            b'<presence xmlns="jabber:client" from="a@l/r" to=\'b@l\'/>',
        ),
        # a 'to' already there (a subscription stanza, directed presence) stays as it is
        (
            b'<presence xmlns="jabber:client" to="c@l" from="a@l/r"/>',
            "b@l",
            b'<presence xmlns="jabber:client" to="c@l" from="a@l/r"/>',
        ),
        (b"<presence\tto='c@l'/>", "b@l", b"<presence\tto='c@l'/>"),
        # a JID that needs escaping in an attribute (a resource may hold a quote)
        (b"<presence/>", "b@l/it's", b"<presence to='b@l/it&apos;s'/>"),
        # 'to' inside a child is not the stanza's
        (b"<presence><status to='x'/></presence>", "b@l", b"<presence to='b@l'><status to='x'/></presence>"),
    ],
)
def test_broadcast_presence_is_addressed_to_each_recipient(data: bytes, to: str, expected: bytes) -> None:
    assert routing.addressed(data, to) == expected
