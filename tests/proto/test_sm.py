"""Transcripts of XEP-0198 stream management, XEP-0280 carbons and XEP-0352 CSI on the bare machine."""

from __future__ import annotations

import base64

import pytest

from tests.proto.transcript import Transcript
from xmppauth.proto import events as ev
from xmppauth.proto.errors import StreamError
from xmppauth.proto.jid import JID
from xmppauth.proto.stream import State
from xmppauth.proto.xep0198_sm import WRAP, StreamManagement

SM = "urn:xmpp:sm:3"
SASL2 = "urn:xmpp:sasl:2"


def bound() -> Transcript:
    t = Transcript.tcp(secure=True)
    t.session("alice", "res")
    return t


def enabled(resume: bool = True) -> Transcript:
    t = bound()
    t.client(f"<enable xmlns='{SM}' resume='{'true' if resume else 'false'}'/>")
    t.output()
    assert t.stream.sm is not None
    return t


def test_enable_with_resume_answers_with_an_id_and_a_max() -> None:
    t = bound()
    t.client(f"<enable xmlns='{SM}' resume='true'/>")
    t.server(f"<enabled xmlns='{SM}' id='*' resume='true' max='300'/>")
    t.client(f"<enable xmlns='{SM}'/>")
    t.server(
        f"<failed xmlns='{SM}'><unexpected-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
        "<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas' xml:lang='en'>already enabled</text></failed>"
    )


def test_enable_without_resume_has_no_id() -> None:
    t = bound()
    t.client(f"<enable xmlns='{SM}'/>")
    t.server(f"<enabled xmlns='{SM}'/>")


def test_r_is_answered_with_the_count_of_handled_stanzas() -> None:
    t = enabled()
    t.client(f"<r xmlns='{SM}'/>")
    t.server(f"<a xmlns='{SM}' h='0'/>")
    t.client("<message to='bob@localhost'><body>1</body></message><presence/>")
    t.client("<iq type='get' id='p'><ping xmlns='urn:xmpp:ping'/></iq>")
    t.output()
    t.client(f"<r xmlns='{SM}'/>")
    t.server(f"<a xmlns='{SM}' h='3'/>")


def test_r_without_sm_is_a_stream_error() -> None:
    t = bound()
    t.client(f"<r xmlns='{SM}'/>")
    t.stream_error("unsupported-stanza-type")


def test_acks_release_the_queue_and_the_server_asks_every_five_stanzas() -> None:
    t = enabled()
    for i in range(4):
        t.stream.send_raw(f"<message xmlns='jabber:client' id='m{i}'/>".encode())
    out = t.output()
    assert out.count(b"<message ") == 4, out  # the four went out ...
    assert b"<r " not in out  # ... without a request for an ack yet
    t.stream.send_raw(b"<message xmlns='jabber:client' id='m4'/>")
    assert t.output().endswith(f"<r xmlns='{SM}'/>".encode())
    sm = t.stream.sm
    assert sm is not None
    assert len(sm.unacked) == 5
    t.client(f"<a xmlns='{SM}' h='3'/>")
    assert [d[-9:] for d in sm.unacked] == [b"id='m3'/>", b"id='m4'/>"]
    assert sm.outbound == 5


def test_an_ack_for_more_than_was_sent_is_a_stream_error() -> None:
    t = enabled()
    t.stream.send_raw(b"<message xmlns='jabber:client'/>")
    t.output()
    t.client(f"<a xmlns='{SM}' h='2'/>")
    out = t.output().decode()
    assert "<undefined-condition xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in out
    assert "handled-count-too-high" in out


@pytest.mark.parametrize("h", ["-1", "x", str(WRAP)])
def test_a_bad_h_is_invalid_xml(h: str) -> None:
    t = enabled()
    t.client(f"<a xmlns='{SM}' h='{h}'/>")
    t.stream_error("invalid-xml")


def test_counters_wrap_at_two_to_the_32() -> None:
    sm = StreamManagement(resume_id=None, max_seconds=1, inbound=WRAP - 1, outbound_acked=WRAP - 2)
    sm.stanza_received()
    assert sm.inbound == 0
    for _ in range(3):
        sm.stanza_sent(b"<message/>")
    assert sm.outbound == 1
    sm.acknowledge("0")  # the client wrapped as well: two handled
    assert len(sm.unacked) == 1
    with pytest.raises(StreamError):
        sm.acknowledge("2")


def test_classic_resume_replays_what_was_not_acknowledged() -> None:
    old = enabled()
    sm = old.stream.sm
    assert sm is not None
    for i in range(3):
        old.stream.send_raw(f"<message xmlns='jabber:client' id='m{i}'><body>{i}</body></message>".encode())
    old.client("<message to='bob@localhost'><body>from old</body></message>")

    new = Transcript.tcp(secure=True)
    new.open_secure()
    new.login_plain()
    new.client(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>"
    )
    assert b"<sm xmlns='urn:xmpp:sm:3'/>" in new.output()
    (request,) = new.client(f"<resume xmlns='{SM}' previd='{sm.resume_id}' h='1'/>")
    assert request == ev.ResumeRequested(previd=sm.resume_id or "", h="1", inline=False)
    new.stream.resume_succeeded(JID("alice", "localhost", "res"), sm, request.h)
    new.server(
        f"<resumed xmlns='{SM}' h='1' previd='{sm.resume_id}'/>"
        "<message xmlns='jabber:client' id='m1'><body>1</body></message>"
        "<message xmlns='jabber:client' id='m2'><body>2</body></message>"
    )
    assert new.stream.state is State.BOUND
    assert str(new.stream.jid) == "alice@localhost/res"


def test_a_resume_retransmits_only_what_the_driver_keeps_and_counts_only_that() -> None:
    old = enabled()
    sm = old.stream.sm
    assert sm is not None
    for i in range(4):
        old.stream.send_raw(f"<message xmlns='jabber:client' id='m{i}'><body>{i}</body></message>".encode())
    new = Transcript.tcp(secure=True)
    new.open_secure()
    new.login_plain()
    new.client(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>"
    )
    new.output()
    (request,) = new.client(f"<resume xmlns='{SM}' previd='{sm.resume_id}' h='1'/>")
    withheld = new.stream.resume_succeeded(
        JID("alice", "localhost", "res"), sm, request.h, keep=lambda data: b"id='m2'" not in data
    )
    assert withheld == [b"<message xmlns='jabber:client' id='m2'><body>2</body></message>"]
    new.server(
        f"<resumed xmlns='{SM}' h='0' previd='{sm.resume_id}'/>"
        "<message xmlns='jabber:client' id='m1'><body>1</body></message>"
        "<message xmlns='jabber:client' id='m3'><body>3</body></message>"
    )
    assert sm.outbound == 3  # the acknowledged one and the two retransmitted: the client's count too
    new.client(f"<a xmlns='{SM}' h='3'/>")
    assert not sm.unacked


def test_checking_an_acknowledgement_changes_nothing() -> None:
    sm = StreamManagement.enable(resume=True, max_seconds=60)
    for i in range(3):
        sm.stanza_sent(f"<m{i}/>".encode())
    assert sm.check_acknowledgement("2") == (2, 2)
    assert len(sm.unacked) == 3
    with pytest.raises(StreamError, match="handled-count-too-high: h=4, send-count=3"):
        sm.check_acknowledgement("4")
    with pytest.raises(StreamError, match="'h' must be a number"):
        sm.check_acknowledgement("x")
    assert len(sm.unacked) == 3
    assert sm.withhold(lambda _data: True) == []
    assert len(sm.unacked) == 3


def test_a_failed_resume_leaves_binding_open() -> None:
    t = Transcript.tcp(secure=True)
    t.open_secure()
    t.login_plain()
    t.client(
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>"
    )
    t.output()
    t.client(f"<resume xmlns='{SM}' previd='nope' h='0'/>")
    t.stream.resume_failed("no session to resume")
    t.server(
        f"<failed xmlns='{SM}'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
        "<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas' xml:lang='en'>no session to resume</text></failed>"
    )
    assert t.stream.state is State.EXPECT_BIND
    t.bind_to = "again"
    t.client("<iq type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
    assert str(t.stream.jid) == "alice@localhost/again"


def sasl2_authenticate(inline: str) -> str:
    token = base64.b64encode(b"\0alice\0wonderland").decode()
    return (
        f"<authenticate xmlns='{SASL2}' mechanism='PLAIN'><initial-response>{token}</initial-response>"
        f"<user-agent id='11111111-2222-4333-8444-555555555555'/>{inline}</authenticate>"
    )


def test_bind2_enables_sm_carbons_and_csi_inline() -> None:
    t = Transcript.tcp(secure=True)
    t.open_secure()
    t.client(
        sasl2_authenticate(
            "<bind xmlns='urn:xmpp:bind:0'><tag>App</tag><enable xmlns='urn:xmpp:sm:3' resume='true'/>"
            "<enable xmlns='urn:xmpp:carbons:2'/><inactive xmlns='urn:xmpp:csi:0'/></bind>"
        )
    )
    t.server(
        f"<success xmlns='{SASL2}'><authorization-identifier>*</authorization-identifier>"
        "<bound xmlns='urn:xmpp:bind:0'><enabled xmlns='urn:xmpp:sm:3' id='*' resume='true' max='300'/></bound>"
        # fluux #380: no <sm/> after an inline enable
        "</success><stream:features><csi xmlns='urn:xmpp:csi:0'/><ver xmlns='urn:xmpp:features:rosterver'/></stream:features>"
    )
    assert t.stream.carbons
    assert not t.stream.csi_active


def test_inline_resume_skips_bind2_and_sends_no_features() -> None:
    old = enabled()
    sm = old.stream.sm
    assert sm is not None
    old.stream.send_raw(b"<message xmlns='jabber:client' id='q'><body>queued</body></message>")
    t = Transcript.tcp(secure=True)
    t.open_secure()
    t.stream.receive_data(
        sasl2_authenticate(
            f"<resume xmlns='{SM}' previd='{sm.resume_id}' h='0'/><bind xmlns='urn:xmpp:bind:0'><tag>App</tag></bind>"
        ).encode()
    )
    assert isinstance(t.stream.next_event(), ev.PasswordCheckNeeded)
    t.stream.password_checked(True)
    assert isinstance(t.stream.next_event(), ev.Authenticated)
    t.stream.continue_with([])
    request = t.stream.next_event()
    assert request == ev.ResumeRequested(previd=sm.resume_id or "", h="0", inline=True)
    t.stream.resume_succeeded(JID("alice", "localhost", "res"), sm, "0")
    assert t.stream.next_event() is None  # no BindRequested: Bind2 is skipped
    t.server(
        f"<success xmlns='{SASL2}'><authorization-identifier>alice@localhost/res</authorization-identifier>"
        f"<resumed xmlns='{SM}' h='0' previd='{sm.resume_id}'/></success>"
        "<message xmlns='jabber:client' id='q'><body>queued</body></message>"
    )


def test_failed_inline_resume_goes_on_with_bind2() -> None:
    t = Transcript.tcp(secure=True)
    t.open_secure()
    t.stream.receive_data(
        sasl2_authenticate(
            f"<resume xmlns='{SM}' previd='gone' h='3'/><bind xmlns='urn:xmpp:bind:0'/>"
        ).encode()
    )
    t.stream.next_event()
    t.stream.password_checked(True)
    assert isinstance(t.stream.next_event(), ev.Authenticated)
    t.stream.continue_with([])
    assert isinstance(t.stream.next_event(), ev.ResumeRequested)
    t.stream.resume_failed("expired")
    bind = t.stream.next_event()
    assert isinstance(bind, ev.BindRequested)
    assert bind.inline
    t.stream.bind_resource(bind.resource or "x")
    out = t.output().decode()
    assert f"<failed xmlns='{SM}'><item-not-found" in out
    assert "<bound xmlns='urn:xmpp:bind:0'/>" in out
    assert t.stream.state is State.BOUND


def test_carbons_are_switched_by_iq() -> None:
    t = bound()
    t.client("<iq type='set' id='c1'><enable xmlns='urn:xmpp:carbons:2'/></iq>")
    t.server("<iq xmlns='jabber:client' type='result' id='c1' to='alice@localhost/res'/>")
    assert t.stream.carbons
    t.client("<iq type='set' id='c2'><disable xmlns='urn:xmpp:carbons:2'/></iq>")
    assert not t.stream.carbons


def test_csi_changes_are_reported_once() -> None:
    t = bound()
    assert t.client("<inactive xmlns='urn:xmpp:csi:0'/>") == [ev.ClientStateChanged(active=False)]
    assert t.client("<inactive xmlns='urn:xmpp:csi:0'/>") == []
    assert t.client("<active xmlns='urn:xmpp:csi:0'/>") == [ev.ClientStateChanged(active=True)]
    t.silent()


def test_request_ack_asks_once_for_what_was_sent_since_the_last_request() -> None:
    t = enabled()
    assert not t.stream.request_ack()  # nothing sent: nothing to ask for
    t.silent()
    t.stream.send_raw(b"<message xmlns='jabber:client' id='x'/>")
    t.output()
    assert t.stream.request_ack()
    t.server(f"<r xmlns='{SM}'/>")
    assert t.stream.request_ack()  # still unacknowledged, but already asked: no second <r/>
    t.silent()
    t.client(f"<a xmlns='{SM}' h='1'/>")
    assert not t.stream.request_ack()
    t.silent()


def test_request_ack_needs_sm() -> None:
    t = bound()
    t.stream.send_raw(b"<message xmlns='jabber:client' id='x'/>")
    assert t.output() == b"<message xmlns='jabber:client' id='x'/>"  # sent on a live stream ...
    assert not t.stream.request_ack()  # ... but without SM there is nothing to ask with
    t.silent()
