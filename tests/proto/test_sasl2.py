"""Transcripts of XEP-0388 SASL2 with XEP-0386 Bind2 on the bare stream machine."""

from __future__ import annotations

import base64

import pytest

from tests.proto.transcript import Transcript
from xmppauth.proto import events as ev
from xmppauth.proto.jid import JID
from xmppauth.proto.sasl import ScramClient
from xmppauth.proto.stream import State

SASL2 = "urn:xmpp:sasl:2"
UA = "8f0c7b3e-3d8a-4c2e-9d3b-5f1e2a7c9b10"


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def plain(user: str = "alice", password: str = "wonderland") -> str:
    return b64(f"\0{user}\0{password}")


def authenticate(mechanism: str, initial: str | None, *, extra: str = "") -> str:
    ir = f"<initial-response>{initial}</initial-response>" if initial is not None else ""
    return f"<authenticate xmlns='{SASL2}' mechanism='{mechanism}'>{ir}{extra}</authenticate>"


USER_AGENT = (
    f"<user-agent id='{UA}'><software>ExampleChat</software><device>Alice's laptop</device></user-agent>"
)
BIND2 = "<bind xmlns='urn:xmpp:bind:0'><tag>ExampleChat</tag></bind>"


def secure() -> Transcript:
    t = Transcript.tcp(secure=True)
    t.open_secure()
    return t


def test_sasl2_is_offered_with_bind2_inline_on_encrypted_streams_only() -> None:
    t = Transcript.tcp(secure=True)
    t.client(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>"
    )
    out = t.output().decode()
    assert (
        "<authentication xmlns='urn:xmpp:sasl:2'><mechanism>SCRAM-SHA-512</mechanism>"
        "<mechanism>SCRAM-SHA-256</mechanism><mechanism>SCRAM-SHA-1</mechanism><mechanism>PLAIN</mechanism>"
        "<inline><sm xmlns='urn:xmpp:sm:3'/><bind xmlns='urn:xmpp:bind:0'><inline>"
        "<feature var='urn:xmpp:sm:3'/><feature var='urn:xmpp:carbons:2'/><feature var='urn:xmpp:csi:0'/>"
        "</inline></bind></inline>"
        "<upgrade xmlns='urn:xmpp:sasl:upgrade:0'>UPGR-SCRAM-SHA-256</upgrade>"
        "<upgrade xmlns='urn:xmpp:sasl:upgrade:0'>UPGR-SCRAM-SHA-512</upgrade></authentication>"
    ) in out
    cleartext = Transcript.tcp()
    cleartext.client(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>"
    )
    offered = cleartext.output()
    assert b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'>" in offered, offered  # features arrived ...
    assert b"urn:xmpp:sasl:2" not in offered  # ... without SASL2


def test_scram_with_bind2_succeeds_in_one_exchange_without_restart() -> None:
    t = secure()
    client = ScramClient("SHA-256", "alice", "wonderland", nonce="CNONCE")
    t.client(authenticate("SCRAM-SHA-256", b64(client.first()), extra=USER_AGENT + BIND2))
    out = t.output().decode()
    assert out.startswith(f"<challenge xmlns='{SASL2}'>")
    server_first = base64.b64decode(out.split(">", 1)[1].split("<", 1)[0])
    events = t.client(f"<response xmlns='{SASL2}'>{b64(client.final(server_first))}</response>")
    authenticated, bind = events[-2], events[-1]
    assert authenticated == ev.Authenticated(
        localpart="alice",
        mechanism="SCRAM-SHA-256",
        profile="sasl2",
        user_agent=ev.UserAgent(id=UA, software="ExampleChat", device="Alice's laptop"),
    )
    assert isinstance(bind, ev.BindRequested)
    assert bind.inline
    assert bind.resource is not None
    assert bind.resource.startswith("ExampleChat~")
    assert UA not in bind.resource  # XEP-0386: never reveal the user-agent id
    t.server(
        f"<success xmlns='{SASL2}'><additional-data>*</additional-data>"
        f"<authorization-identifier>alice@localhost/{bind.resource}</authorization-identifier>"
        "<bound xmlns='urn:xmpp:bind:0'/></success>"
        "<stream:features><csi xmlns='urn:xmpp:csi:0'/><ver xmlns='urn:xmpp:features:rosterver'/><sm xmlns='urn:xmpp:sm:3'/></stream:features>"
    )
    assert t.stream.state is State.BOUND
    assert t.stream.jid == JID("alice", "localhost", bind.resource)
    (msg,) = t.client("<message to='bob@localhost'><body>hi</body></message>")
    assert msg.stanza.get("from") == f"alice@localhost/{bind.resource}"


def test_the_server_final_message_verifies() -> None:
    t = secure()
    client = ScramClient("SHA-1", "alice", "wonderland", nonce="CNONCE")
    t.client(authenticate("SCRAM-SHA-1", b64(client.first())))
    server_first = base64.b64decode(t.output().decode().split(">", 1)[1].split("<", 1)[0])
    t.client(f"<response xmlns='{SASL2}'>{b64(client.final(server_first))}</response>")
    out = t.output().decode()
    data = out.split("<additional-data>", 1)[1].split("<", 1)[0]
    assert client.verify_server_final(base64.b64decode(data))


def bind2_resource(ua_id: str | None, user: str = "alice", password: str = "wonderland") -> str:
    t = secure()
    agent = f"<user-agent id='{ua_id}'/>" if ua_id else ""
    t.client(authenticate("PLAIN", plain(user, password), extra=agent + BIND2))
    return str(t.last(ev.BindRequested).resource)


def test_bind2_resource_is_stable_per_user_agent_id() -> None:
    assert bind2_resource(UA) == bind2_resource(UA)
    assert bind2_resource(UA) != bind2_resource("0d1b4a52-7c7e-4d55-9a47-2b7e1c0f6a11")
    assert bind2_resource(None) != bind2_resource(None)
    # one installation is not linkable across accounts by its resource
    assert bind2_resource(UA).split("~")[1] != bind2_resource(UA, "bob", "builder").split("~")[1]


def test_sasl2_without_bind2_offers_rfc6120_bind_on_the_same_stream() -> None:
    t = secure()
    events = t.client(authenticate("PLAIN", plain()))
    assert events[-1] == ev.Authenticated(localpart="alice", mechanism="PLAIN", profile="sasl2")
    t.server(
        f"<success xmlns='{SASL2}'><authorization-identifier>alice@localhost</authorization-identifier></success>"
        "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"
        "<session xmlns='urn:ietf:params:xml:ns:xmpp-session'><optional/></session>"
        "<sm xmlns='urn:xmpp:sm:3'/><csi xmlns='urn:xmpp:csi:0'/><ver xmlns='urn:xmpp:features:rosterver'/></stream:features>"
    )
    t.client(
        "<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>legacy</resource></bind></iq>"
    )
    assert str(t.stream.jid) == "alice@localhost/legacy"


def test_a_missing_user_agent_is_tolerated() -> None:
    t = secure()
    t.client(authenticate("PLAIN", plain(), extra=BIND2))
    assert t.last(ev.Authenticated).user_agent is None
    assert t.stream.state is State.BOUND


def test_no_initial_response_gets_an_empty_challenge() -> None:
    t = secure()
    t.client(authenticate("SCRAM-SHA-1", None))
    t.server(f"<challenge xmlns='{SASL2}'>=</challenge>")


def test_failure_carries_the_rfc6120_condition_and_a_text() -> None:
    t = secure()
    t.client(authenticate("PLAIN", plain(password="nope"), extra=BIND2))
    t.server(
        f"<failure xmlns='{SASL2}'><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"
        "<text xml:lang='en'>invalid credentials</text></failure>"
    )
    assert t.stream.state is State.EXPECT_AUTH
    assert not any(isinstance(e, ev.BindRequested) for e in t.events)  # inline requests ignored on failure


def test_unknown_mechanism_and_abort() -> None:
    t = secure()
    t.client(authenticate("DIGEST-MD5", None))
    assert b"<invalid-mechanism xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>" in t.output()
    t.client(authenticate("SCRAM-SHA-1", None))
    t.output()
    t.client(f"<abort xmlns='{SASL2}'/>")
    assert b"<aborted xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>" in t.output()


def test_a_second_authenticate_after_success_is_a_stream_error() -> None:
    t = secure()
    t.client(authenticate("PLAIN", plain(), extra=BIND2))
    t.output()
    t.client(authenticate("PLAIN", plain()))
    t.stream_error("policy-violation")


def test_a_second_authenticate_after_success_without_bind_is_a_stream_error() -> None:
    t = secure()
    t.client(authenticate("PLAIN", plain()))
    t.output()
    t.client(authenticate("PLAIN", plain()))
    t.stream_error("policy-violation")


@pytest.mark.parametrize(
    "intruder",
    [
        "<message to='bob@localhost'><body>early</body></message>",
        "<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>=</auth>",
        f"<authenticate xmlns='{SASL2}' mechanism='PLAIN'/>",
    ],
)
def test_anything_but_the_exchange_during_sasl2_is_a_stream_error(intruder: str) -> None:
    t = secure()
    t.client(authenticate("SCRAM-SHA-1", None))
    t.output()
    t.client(intruder)
    t.stream_error("policy-violation")


def test_sasl2_elements_during_an_rfc6120_exchange_are_a_stream_error() -> None:
    t = secure()
    t.client("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-1'/>")
    t.output()
    t.client(f"<response xmlns='{SASL2}'>=</response>")
    t.stream_error("policy-violation")


def test_inline_bind_failure_travels_inside_success() -> None:
    from xmppauth.proto.errors import StanzaErrorCondition

    t = Transcript.tcp(secure=True)
    t.open_secure()
    t.stream.receive_data(authenticate("PLAIN", plain(), extra=BIND2).encode())
    assert isinstance(t.stream.next_event(), ev.PasswordCheckNeeded)
    t.stream.password_checked(True)
    assert isinstance(t.stream.next_event(), ev.Authenticated)
    t.stream.continue_with([])
    assert isinstance(t.stream.next_event(), ev.BindRequested)
    t.stream.bind_failed(StanzaErrorCondition.RESOURCE_CONSTRAINT, "too many sessions")
    t.server(
        f"<success xmlns='{SASL2}'><authorization-identifier>alice@localhost</authorization-identifier>"
        "<failed xmlns='urn:xmpp:bind:0'/></success>"
        "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"
        "<session xmlns='urn:ietf:params:xml:ns:xmpp-session'><optional/></session>"
        "<sm xmlns='urn:xmpp:sm:3'/><csi xmlns='urn:xmpp:csi:0'/><ver xmlns='urn:xmpp:features:rosterver'/></stream:features>"
    )
    assert t.stream.state is State.EXPECT_BIND


def test_websocket_sasl2_needs_no_new_open() -> None:
    t = Transcript.websocket()
    t.client("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>")
    t.frames()
    t.client(authenticate("PLAIN", plain(), extra=BIND2))
    frames = t.frames()
    assert frames[0].startswith(f"<success xmlns='{SASL2}'>".encode())
    assert frames[1] == (
        b"<stream:features xmlns:stream='http://etherx.jabber.org/streams'>"
        b"<csi xmlns='urn:xmpp:csi:0'/><ver xmlns='urn:xmpp:features:rosterver'/><sm xmlns='urn:xmpp:sm:3'/></stream:features>"
    )
    assert t.stream.state is State.BOUND
