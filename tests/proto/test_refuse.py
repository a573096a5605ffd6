"""The driver can still turn a login down after the mechanism succeeded (account policy, revoked grant)."""

from __future__ import annotations

import base64

import pytest

from tests.proto.transcript import Transcript, header
from xmppauth.proto import events as ev
from xmppauth.proto.errors import LocalProtocolError, SaslCondition
from xmppauth.proto.stream import State

PLAIN = base64.b64encode(b"\0alice\0wonderland").decode()
POLICY = "password logins over XMPP are turned off for this account"


def test_rfc6120_success_waits_for_the_driver() -> None:
    t = Transcript.tcp(secure=True)
    t.open_secure()
    t.stream.receive_data(
        f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{PLAIN}</auth>".encode()
    )
    # driven by hand: answer the password check, then hold the Authenticated request
    event = t.stream.next_event()
    assert isinstance(event, ev.PasswordCheckNeeded)
    t.stream.password_checked(True)
    event = t.stream.next_event()
    assert isinstance(event, ev.Authenticated)
    assert event.profile == "sasl"
    assert t.stream.data_to_send() == []  # no <success/> before the driver agrees
    t.stream.continue_with([])
    assert b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>" in b"".join(t.stream.data_to_send())
    assert t.stream.state is State.EXPECT_HEADER  # the restart


def test_rfc6120_login_refused_after_the_mechanism() -> None:
    t = Transcript.tcp(secure=True)
    t.refusal = (SaslCondition.NOT_AUTHORIZED, POLICY)
    t.open_secure()
    t.client(f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{PLAIN}</auth>")
    t.server(
        "<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/>"
        f"<text xml:lang='en'>{POLICY}</text></failure>"
    )
    failed = t.last(ev.AuthFailed)
    assert failed.condition is SaslCondition.NOT_AUTHORIZED
    assert t.stream.authenticated_localpart is None
    assert t.stream.state is State.EXPECT_AUTH  # it may try again (e.g. with an app password)


def test_sasl2_login_refused_after_the_mechanism() -> None:
    t = Transcript.tcp(secure=True)
    t.refusal = (SaslCondition.CREDENTIALS_EXPIRED, "this app password was revoked or has expired")
    t.open_secure()
    t.client(
        f"<authenticate xmlns='urn:xmpp:sasl:2' mechanism='PLAIN'><initial-response>{PLAIN}</initial-response>"
        "<bind xmlns='urn:xmpp:bind:0'/></authenticate>"
    )
    t.server(
        "<failure xmlns='urn:xmpp:sasl:2'><credentials-expired xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"
        "<text xml:lang='en'>this app password was revoked or has expired</text></failure>"
    )
    assert not any(isinstance(e, ev.BindRequested) for e in t.events)  # nothing inline runs
    t.refusal = None
    t.client(
        f"<authenticate xmlns='urn:xmpp:sasl:2' mechanism='PLAIN'><initial-response>{PLAIN}</initial-response>"
        "</authenticate>"
    )
    assert b"<success" in t.output()


def test_refuse_is_only_an_answer_to_authenticated() -> None:
    t = Transcript.tcp(secure=True)
    t.client(header())
    with pytest.raises(LocalProtocolError):
        t.stream.refuse(SaslCondition.NOT_AUTHORIZED, "no")


def test_rfc6120_logins_have_no_tasks() -> None:
    t = Transcript.tcp(secure=True)
    t.open_secure()
    t.stream.receive_data(
        f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{PLAIN}</auth>".encode()
    )
    assert isinstance(t.stream.next_event(), ev.PasswordCheckNeeded)
    t.stream.password_checked(True)
    assert isinstance(t.stream.next_event(), ev.Authenticated)
    with pytest.raises(LocalProtocolError):
        t.stream.continue_with([["TOTP"]])
