"""The access hook (C2SStream.access), driver-handled iq namespaces (IqRequest) and disco extras."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from lxml import etree

from tests.proto.transcript import Transcript
from xmppauth.proto import events as ev
from xmppauth.proto.access import AccessPolicy, Denial
from xmppauth.proto.errors import StanzaErrorCondition
from xmppauth.proto.jid import JID

STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
CAM = "urn:xmpp:cam:0"
DISCO_INFO = "http://jabber.org/protocol/disco#info"

Call = tuple[str, str, str, str | None]


class RecordingPolicy:
    """Records every question; denies what ``rule`` says (default: nothing)."""

    def __init__(self, rule: Callable[[str, str, str, str | None], Denial | None] | None = None) -> None:
        self.calls: list[Call] = []
        self.pairs: list[tuple[object, str | None]] = []  # (parsed to, id): for request/answer pairing
        self.rule = rule

    def check_inbound(
        self,
        kind: str,
        type: str,
        target: str,
        payload: str | None,
        peer: object = None,
        stanza_id: str | None = None,
    ) -> Denial | None:
        self.calls.append((kind, type, target, payload))
        self.pairs.append((peer, stanza_id))
        return self.rule(kind, type, target, payload) if self.rule else None


def deny_all(
    condition: StanzaErrorCondition = StanzaErrorCondition.FORBIDDEN, text: str = "not in this session"
):
    return RecordingPolicy(lambda *_: Denial(condition, text))


def bound(policy: AccessPolicy | None = None, **config: Any) -> Transcript:
    t = Transcript.tcp(secure=True, **config)
    t.session()  # alice@localhost/res
    t.stream.access = policy
    return t


def error(condition: str, error_type: str, text: str) -> str:
    return f"<error type='{error_type}'><{condition} xmlns='{STANZAS}'/><text xmlns='{STANZAS}' xml:lang='en'>{text}</text></error>"


# ------------------------------------------------------------------------------------ denials
def test_no_policy_by_default() -> None:
    t = bound()
    assert t.stream.access is None
    (received,) = t.client("<message to='bob@localhost'><body>hi</body></message>")
    assert isinstance(received, ev.StanzaReceived)


def test_a_denied_message_is_answered_with_the_error_and_dropped() -> None:
    t = bound(deny_all())
    assert t.client("<message to='bob@localhost' id='m1' type='chat'><body>hi</body></message>") == []
    t.server(
        "<message xmlns='jabber:client' type='error' id='m1' from='bob@localhost' to='alice@localhost/res'>"
        + error("forbidden", "auth", "not in this session")
        + "</message>"
    )


def test_a_denied_presence_is_answered_with_the_error_and_dropped() -> None:
    t = bound(deny_all(StanzaErrorCondition.POLICY_VIOLATION, "presence is not allowed"))
    assert t.client("<presence id='p1'><show>away</show></presence>") == []
    t.server(
        "<presence xmlns='jabber:client' type='error' id='p1' from='localhost' to='alice@localhost/res'>"
        + error("policy-violation", "modify", "presence is not allowed")
        + "</presence>"
    )


def test_the_servers_own_ping_is_denied_too() -> None:
    t = bound(deny_all())
    assert t.client("<iq type='get' id='ping1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>") == []
    t.server(
        "<iq xmlns='jabber:client' type='error' id='ping1' from='localhost' to='alice@localhost/res'>"
        + error("forbidden", "auth", "not in this session")
        + "</iq>"
    )


def test_a_denied_carbons_enable_changes_nothing() -> None:
    t = bound(deny_all())
    t.client("<iq type='set' id='c1'><enable xmlns='urn:xmpp:carbons:2'/></iq>")
    assert b"<forbidden xmlns=" in t.output()
    assert not t.stream.carbons


def test_a_denied_iq_to_a_peer_is_not_routed() -> None:
    t = bound(deny_all())
    assert (
        t.client("<iq type='get' id='v1' to='bob@localhost/x'><query xmlns='jabber:iq:version'/></iq>") == []
    )
    t.server(
        "<iq xmlns='jabber:client' type='error' id='v1' from='bob@localhost/x' to='alice@localhost/res'>"
        + error("forbidden", "auth", "not in this session")
        + "</iq>"
    )


@pytest.mark.parametrize(
    "stanza",
    [
        "<message type='error' to='bob@localhost'><body>x</body></message>",
        "<presence type='error' to='bob@localhost'/>",
        "<iq type='error' id='e1' to='bob@localhost/x'><error type='cancel'/></iq>",
        "<iq type='result' id='r1' to='bob@localhost/x'/>",
    ],
)
def test_denied_error_and_result_stanzas_are_dropped_silently(stanza: str) -> None:
    policy = deny_all()
    t = bound(policy)
    assert t.client(stanza) == []
    t.silent()
    assert len(policy.calls) == 1


def test_allowed_stanzas_go_on_as_before() -> None:
    policy = RecordingPolicy()
    t = bound(policy)
    (received,) = t.client("<message to='bob@localhost'><body>hi</body></message>")
    assert received.to == JID("bob", "localhost")
    t.client("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>")
    t.server("<iq xmlns='jabber:client' type='result' id='p1' to='alice@localhost/res'/>")
    assert len(policy.calls) == 2


def test_the_policy_can_be_set_at_any_time() -> None:
    t = bound()
    assert t.client("<message to='bob@localhost'><body>1</body></message>")
    t.stream.access = deny_all()
    assert t.client("<message to='bob@localhost'><body>2</body></message>") == []
    t.stream.access = None
    assert t.client("<message to='bob@localhost'><body>3</body></message>")


def test_a_rule_can_deny_some_and_allow_others() -> None:
    def peers_only_by_message(kind: str, type_: str, target: str, payload: str | None) -> Denial | None:
        if target == "peer" and kind != "message":
            return Denial(StanzaErrorCondition.NOT_ALLOWED, "only messages to others")
        return None

    t = bound(RecordingPolicy(peers_only_by_message))
    assert t.client("<message to='bob@localhost/x'><body>ok</body></message>")
    assert (
        t.client("<iq type='get' id='v' to='bob@localhost/x'><query xmlns='jabber:iq:version'/></iq>") == []
    )
    assert b"<not-allowed" in t.output()


# ------------------------------------------------------------------------------------ the question
@pytest.mark.parametrize(
    ("stanza", "call"),
    [
        ("<message><body>x</body></message>", ("message", "normal", "server", None)),
        ("<message to='localhost'><body>x</body></message>", ("message", "normal", "server", None)),
        (
            "<message to='alice@localhost' type='chat'><body>x</body></message>",
            ("message", "chat", "account", None),
        ),
        ("<message to='ALICE@localhost'><body>x</body></message>", ("message", "normal", "account", None)),
        ("<message to='alice@localhost/other'><body>x</body></message>", ("message", "normal", "peer", None)),
        ("<message to='alice@localhost/res'><body>x</body></message>", ("message", "normal", "peer", None)),
        ("<message to='bob@localhost' type='headline'/>", ("message", "headline", "contact", None)),
        ("<message to='localhost/motd'><body>x</body></message>", ("message", "normal", "peer", None)),
        ("<message to='bob@example.org'><body>x</body></message>", ("message", "normal", "peer", None)),
        ("<presence/>", ("presence", "available", "server", None)),
        ("<presence type='unavailable'/>", ("presence", "unavailable", "server", None)),
        ("<presence to='bob@localhost/x'/>", ("presence", "available", "peer", None)),
        ("<presence to='localhost' type='probe'/>", ("presence", "probe", "server", None)),
        (
            "<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>",
            ("iq", "get", "server", "{urn:xmpp:ping}ping"),
        ),
        (
            "<iq type='get' id='1' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
            ("iq", "get", "server", "{http://jabber.org/protocol/disco#info}query"),
        ),
        (
            "<iq type='set' id='1' to='alice@localhost'><query xmlns='jabber:iq:roster'/></iq>",
            ("iq", "set", "account", "{jabber:iq:roster}query"),
        ),
        (
            "<iq type='get' id='1' to='bob@localhost'><vCard xmlns='vcard-temp'/></iq>",
            ("iq", "get", "contact", "{vcard-temp}vCard"),
        ),
        (
            "<iq type='get' id='1' to='example.org'><ping xmlns='urn:xmpp:ping'/></iq>",
            ("iq", "get", "peer", "{urn:xmpp:ping}ping"),
        ),
        ("<iq type='result' id='1' to='bob@localhost/x'/>", ("iq", "result", "peer", None)),
    ],
)
def test_what_the_policy_is_asked(stanza: str, call: Call) -> None:
    policy = RecordingPolicy()
    t = bound(policy)
    t.client(stanza)
    assert policy.calls == [call]


@pytest.mark.parametrize(
    ("stanza", "pair"),
    [
        ("<iq type='result' id='r 1' to='Bob@LOCALHOST/x'/>", (JID("bob", "localhost", "x"), "r 1")),
        (
            "<iq type='get' id='g1' to='bob@localhost/x'><ping xmlns='urn:xmpp:ping'/></iq>",
            (JID("bob", "localhost", "x"), "g1"),
        ),
        ("<message to='bob@localhost' id='m1'><body>x</body></message>", (JID("bob", "localhost"), "m1")),
        ("<message><body>x</body></message>", (None, None)),
    ],
)
def test_the_policy_gets_the_prepared_to_and_the_id(stanza: str, pair: tuple[object, str | None]) -> None:
    """Requests and answers are paired on (to, id): the to is the prepared JID, so case or
    normalisation differences do not break a pair."""
    policy = RecordingPolicy()
    t = bound(policy)
    t.client(stanza)
    assert policy.pairs == [pair]


@pytest.mark.parametrize(
    ("stanza", "condition"),
    [
        ("<iq type='get'><ping xmlns='urn:xmpp:ping'/></iq>", "bad-request"),  # no id
        ("<iq type='bogus' id='1'><ping xmlns='urn:xmpp:ping'/></iq>", "bad-request"),
        ("<iq type='get' id='1'/>", "bad-request"),  # no payload
        ("<presence type='bogus'/>", "bad-request"),
        ("<message to='@localhost'><body>x</body></message>", "jid-malformed"),
    ],
)
def test_malformed_stanzas_are_refused_before_the_policy_is_asked(stanza: str, condition: str) -> None:
    policy = deny_all()
    t = bound(policy)
    t.client(stanza)
    assert f"<{condition} xmlns=".encode() in t.output()
    assert policy.calls == []


def test_the_policy_sees_the_stamped_from() -> None:
    seen: list[str | None] = []
    t = bound()

    class Peek:
        def check_inbound(self, *args: object) -> Denial | None:
            seen.append(t.stream.jid and str(t.stream.jid))
            return None

    t.stream.access = Peek()
    (received,) = t.client("<message from='alice@localhost' to='bob@localhost'><body>x</body></message>")
    assert received.stanza.get("from") == "alice@localhost/res"
    assert seen == ["alice@localhost/res"]


# ------------------------------------------------------------------------------------ IqRequest
def cam_stream(policy: AccessPolicy | None = None) -> Transcript:
    return bound(policy, driver_iq_namespaces=frozenset({CAM}))


@pytest.mark.parametrize(
    ("to", "target"), [("", "server"), (" to='localhost'", "server"), (" to='alice@localhost'", "account")]
)
def test_a_driver_namespace_becomes_an_iq_request(to: str, target: str) -> None:
    t = cam_stream()
    (request,) = t.client(f"<iq type='get' id='l1'{to}><list xmlns='{CAM}'/></iq>")
    assert isinstance(request, ev.IqRequest)
    assert request.target == target
    assert request.payload.tag == f"{{{CAM}}}list"
    assert request.stanza.get("from") == "alice@localhost/res"
    t.silent()  # the core leaves the answer to the driver
    reply = etree.Element("{jabber:client}iq", type="result", id="l1", to=request.stanza.get("from"))
    etree.SubElement(reply, f"{{{CAM}}}clients")
    t.stream.send_stanza(reply)
    t.server(
        f"<iq xmlns='jabber:client' type='result' id='l1' to='alice@localhost/res'><clients xmlns='{CAM}'/></iq>"
    )


def test_a_set_is_handed_over_too() -> None:
    t = cam_stream()
    (request,) = t.client(f"<iq type='set' id='r1'><revoke xmlns='{CAM}' id='x'/></iq>")
    assert isinstance(request, ev.IqRequest)
    assert request.payload.get("id") == "x"


def test_unconfigured_namespaces_stay_service_unavailable() -> None:
    t = cam_stream()
    assert t.client("<iq type='get' id='q1'><query xmlns='jabber:iq:version'/></iq>") == []
    t.server(
        "<iq xmlns='jabber:client' type='error' id='q1' from='localhost' to='alice@localhost/res'>"
        f"<error type='cancel'><service-unavailable xmlns='{STANZAS}'/></error></iq>"
    )


def test_without_configuration_the_namespace_is_service_unavailable() -> None:
    t = bound()
    assert t.client(f"<iq type='get' id='l1'><list xmlns='{CAM}'/></iq>") == []
    assert b"<service-unavailable xmlns=" in t.output()


def test_another_accounts_bare_jid_is_not_handed_over() -> None:
    t = cam_stream()
    assert t.client(f"<iq type='get' id='l1' to='bob@localhost'><list xmlns='{CAM}'/></iq>") == []
    assert b"<service-unavailable xmlns=" in t.output()


def test_a_full_jid_is_routed_not_handed_over() -> None:
    t = cam_stream()
    (received,) = t.client(f"<iq type='get' id='l1' to='bob@localhost/x'><list xmlns='{CAM}'/></iq>")
    assert isinstance(received, ev.StanzaReceived)


def test_the_core_keeps_the_namespaces_it_answers_itself() -> None:
    t = bound(driver_iq_namespaces=frozenset({"urn:xmpp:ping"}))
    assert t.client("<iq type='get' id='p1'><ping xmlns='urn:xmpp:ping'/></iq>") == []
    t.server("<iq xmlns='jabber:client' type='result' id='p1' to='alice@localhost/res'/>")


def test_results_in_a_driver_namespace_end_here() -> None:
    t = cam_stream()
    (answered,) = t.client(f"<iq type='result' id='l1'><clients xmlns='{CAM}'/></iq>")
    assert isinstance(answered, ev.IqAnswered)  # a fact for the driver, never a request to answer
    t.silent()
    # control: a request in that namespace is handed over to the driver
    (request,) = t.client(f"<iq type='get' id='l2'><list xmlns='{CAM}'/></iq>")
    assert isinstance(request, ev.IqRequest)


def test_the_policy_is_asked_before_the_driver() -> None:
    t = cam_stream(deny_all())
    assert t.client(f"<iq type='get' id='l1'><list xmlns='{CAM}'/></iq>") == []
    assert b"<forbidden" in t.output()


# ------------------------------------------------------------------------------------ disco#info
def test_the_server_disco_info_lists_extra_features() -> None:
    t = bound(extra_server_features=(CAM, "urn:example:extra"))
    t.client(f"<iq type='get' id='d1' to='localhost'><query xmlns='{DISCO_INFO}'/></iq>")
    t.server(
        "<iq xmlns='jabber:client' type='result' id='d1' from='localhost' to='alice@localhost/res'>"
        f"<query xmlns='{DISCO_INFO}'><identity category='server' type='im' name='xmppauth'/>"
        f"<feature var='urn:xmpp:carbons:2'/><feature var='{DISCO_INFO}'/>"
        "<feature var='http://jabber.org/protocol/disco#items'/><feature var='urn:xmpp:ping'/>"
        f"<feature var='{CAM}'/><feature var='urn:example:extra'/></query></iq>"
    )


def test_the_account_disco_info_lists_extra_features() -> None:
    t = bound(extra_account_features=("urn:example:account",))
    t.client(f"<iq type='get' id='d2' to='alice@localhost'><query xmlns='{DISCO_INFO}'/></iq>")
    t.server(
        "<iq xmlns='jabber:client' type='result' id='d2' from='alice@localhost' to='alice@localhost/res'>"
        f"<query xmlns='{DISCO_INFO}'><identity category='account' type='registered'/>"
        f"<feature var='{DISCO_INFO}'/><feature var='urn:xmpp:ping'/>"
        "<feature var='urn:example:account'/></query></iq>"
    )


# ------------------------------------------------------------------------------------ driver disco nodes
COMMANDS = "http://jabber.org/protocol/commands"


@pytest.mark.parametrize("disco", ["disco#items", "disco#info"])
def test_a_configured_disco_node_of_the_server_is_handed_over(disco: str) -> None:
    t = bound(driver_disco_nodes=frozenset({COMMANDS}))
    (request,) = t.client(
        f"<iq type='get' id='d1' to='localhost'><query xmlns='http://jabber.org/protocol/{disco}' node='{COMMANDS}'/></iq>"
    )
    assert isinstance(request, ev.IqRequest)
    assert request.target == "server"
    assert request.payload.get("node") == COMMANDS
    t.silent()


def test_other_disco_nodes_stay_item_not_found() -> None:
    t = bound(driver_disco_nodes=frozenset({COMMANDS}))
    assert (
        t.client(
            "<iq type='get' id='d2'><query xmlns='http://jabber.org/protocol/disco#items' node='elsewhere'/></iq>"
        )
        == []
    )
    assert b"<item-not-found" in t.output()
    assert (
        t.client("<iq type='get' id='d3'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>") == []
    )
    assert b"type='result'" in t.output().replace(b'"', b"'")  # the node-less query is still the core's


PUBSUB = "http://jabber.org/protocol/pubsub"


def test_a_contact_namespace_to_another_accounts_bare_jid_goes_to_the_driver() -> None:
    # XEP-0163: the server answers on behalf of another account of its own, for the namespaces the
    # driver claims for contacts (RFC 6121 §8.5.2.1.3 otherwise: service-unavailable)
    policy = RecordingPolicy()
    t = bound(policy, driver_iq_namespaces=frozenset({PUBSUB}), driver_contact_namespaces=frozenset({PUBSUB}))
    (request,) = t.client(f"<iq type='get' id='p1' to='Bob@localhost'><pubsub xmlns='{PUBSUB}'/></iq>")
    assert isinstance(request, ev.IqRequest)
    assert request.target == "contact"
    assert request.stanza.get("from") == "alice@localhost/res"
    assert policy.calls == [("iq", "get", "contact", f"{{{PUBSUB}}}pubsub")]
    t.silent()
    # not to a full JID (routed), not to a domain that is not ours, not outside the namespace
    (routed,) = t.client(f"<iq type='get' id='p2' to='bob@localhost/x'><pubsub xmlns='{PUBSUB}'/></iq>")
    assert isinstance(routed, ev.StanzaReceived)
    assert t.client(f"<iq type='get' id='p3' to='bob@localhost'><query xmlns='{CAM}'/></iq>") == []
    t.server(
        "<iq xmlns='jabber:client' type='error' id='p3' from='bob@localhost' to='alice@localhost/res'>"
        "<error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>"
    )


def test_without_the_contact_claim_another_accounts_bare_jid_is_service_unavailable() -> None:
    t = bound(None, driver_iq_namespaces=frozenset({PUBSUB}))  # own account only
    assert t.client(f"<iq type='get' id='p1' to='bob@localhost'><pubsub xmlns='{PUBSUB}'/></iq>") == []
    assert b"<service-unavailable" in t.output()
