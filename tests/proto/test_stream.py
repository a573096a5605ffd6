"""Transcripts of RFC 6120 negotiation on the bare stream machine: every step and every error."""

from __future__ import annotations

import base64
import re

import pytest

from tests.proto.transcript import Transcript, header, server_header
from xmppauth.proto import events as ev
from xmppauth.proto.errors import LocalProtocolError, StreamErrorCondition
from xmppauth.proto.jid import JID
from xmppauth.proto.sasl import ScramClient
from xmppauth.proto.stream import State, StreamConfig, refusal

SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
TLS_FEATURES = "<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>"
SECURE_FEATURES_NO_CB = (
    "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
    "<mechanism>SCRAM-SHA-512</mechanism><mechanism>SCRAM-SHA-256</mechanism><mechanism>SCRAM-SHA-1</mechanism>"
    "<mechanism>PLAIN</mechanism></mechanisms></stream:features>"
)
BINDINGS = {"tls-server-end-point": b"E" * 32, "tls-exporter": b"X" * 32}


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)


def sasl_payload(out: bytes, element: str) -> bytes:
    """The base64 body of <challenge/> or <success/> in a chunk of server output."""
    text = out.decode()
    start = text.index(f"<{element} xmlns='{SASL}'>") + len(f"<{element} xmlns='{SASL}'>")
    return unb64(text[start : text.index(f"</{element}>")])


# ---------------------------------------------------------------------------------------- header
def test_it_offers_only_starttls_on_a_cleartext_tcp_stream() -> None:
    t = Transcript.tcp()
    t.client(header())
    t.server(server_header() + TLS_FEATURES)
    assert t.stream.state is State.EXPECT_STARTTLS


def test_it_answers_the_client_from_in_its_header() -> None:
    t = Transcript.tcp()
    t.client(header(extra=" from='alice@localhost'"))
    out = t.output().decode()
    assert "to='alice@localhost'" in out


@pytest.mark.parametrize(
    ("client_header", "condition"),
    [
        (header(to="example.org"), "host-unknown"),
        (header(to=""), "host-unknown"),
        (header(to="alice@localhost"), "host-unknown"),
        (header(version=""), "unsupported-version"),
        (header(version="2.0"), "unsupported-version"),
        (header(extra=" from='alice@example.org'"), "invalid-from"),
        (
            "<stream:stream xmlns='jabber:server' xmlns:stream='http://etherx.jabber.org/streams' "
            "to='localhost' version='1.0'>",
            "invalid-namespace",
        ),
        ("<stream xmlns='jabber:client' to='localhost' version='1.0'>", "invalid-namespace"),
    ],
)
def test_it_refuses_a_bad_stream_header(client_header: str, condition: str) -> None:
    t = Transcript.tcp()
    t.client(client_header)
    out = t.output().decode()
    # RFC 6120 §4.9.1.1: our header comes first, then the error, then the footer.
    assert out.startswith("<?xml version='1.0'?><stream:stream ")
    assert f"<{condition} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in out
    assert out.endswith("</stream:stream>")
    assert t.stream.state is State.CLOSED
    assert t.last(ev.StreamClosed).condition == StreamErrorCondition(condition)


def test_a_stream_error_carries_a_text() -> None:
    t = Transcript.tcp()
    t.client(header(to="example.org"))
    t.server(
        server_header() + "<stream:error><host-unknown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
        "<text xmlns='urn:ietf:params:xml:ns:xmpp-streams' xml:lang='en'>this server does not serve example.org</text>"
        "</stream:error></stream:stream>"
    )


def test_a_refused_connection_is_told_in_one_whole_document() -> None:
    """proto.stream.refusal: what the TCP transport writes to a connection its limits refuse, before
    the client's header (RFC 6120 §4.9.1.1): our header, the error with its text, the end."""
    config = StreamConfig(domains=frozenset({"localhost"}))
    text = "too many new connections from your address: slow down <&>"
    out = refusal(config, StreamErrorCondition.POLICY_VIOLATION, text).decode()
    stream_id = re.search(r" id='([^']+)'", out)
    assert stream_id is not None, out
    assert out == (
        "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'"
        f" id='{stream_id.group(1)}' from='localhost' version='1.0' xml:lang='en'>"
        "<stream:error><policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
        "<text xmlns='urn:ietf:params:xml:ns:xmpp-streams' xml:lang='en'>"
        "too many new connections from your address: slow down &lt;&amp;&gt;</text>"
        "</stream:error></stream:stream>"
    )
    again = refusal(config, StreamErrorCondition.SYSTEM_SHUTDOWN, "")
    assert b"<system-shutdown xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error>" in again
    assert f"id='{stream_id.group(1)}'".encode() not in again  # each refusal its own stream id


# ---------------------------------------------------------------------------------------- STARTTLS
@pytest.mark.parametrize(
    "first",
    [
        f"<auth xmlns='{SASL}' mechanism='PLAIN'>{b64(chr(0) + 'alice' + chr(0) + 'wonderland')}</auth>",
        "<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>",
        "<message to='bob@localhost'><body>hi</body></message>",
        "<authenticate xmlns='urn:xmpp:sasl:2' mechanism='PLAIN'/>",
    ],
)
def test_anything_before_starttls_is_a_policy_violation(first: str) -> None:
    t = Transcript.tcp()
    t.client(header())
    t.output()
    t.client(first)
    t.stream_error("policy-violation")


def test_starttls_proceeds_and_drops_pipelined_plaintext() -> None:
    t = Transcript.tcp()
    t.client(header())
    t.output()
    events = t.client(
        "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>"
        f"<auth xmlns='{SASL}' mechanism='PLAIN'>{b64(chr(0) + 'alice' + chr(0) + 'wonderland')}</auth>"
    )
    assert events == [ev.StartTlsRequested()]
    t.server("<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    # more plaintext before the handshake is done: ignored, nothing answered
    assert t.client("<iq type='get' id='2'/>") == []
    t.silent()
    t.stream.tls_established(BINDINGS)
    assert t.pump() == []  # the injected <auth/> did not survive the restart
    t.silent()
    assert t.stream.state is State.EXPECT_HEADER
    t.client(header())
    out = t.output().decode()
    assert "<mechanism>SCRAM-SHA-256-PLUS</mechanism>" in out
    assert "<channel-binding type='tls-exporter'/>" in out


def test_tls_established_out_of_turn_is_our_bug() -> None:
    t = Transcript.tcp()
    with pytest.raises(LocalProtocolError):
        t.stream.tls_established({})


# ---------------------------------------------------------------------------------------- features
def test_secure_stream_features_list_plus_mechanisms_and_binding_types() -> None:
    t = Transcript.tcp(secure=True, bindings=BINDINGS)
    t.client(header())
    t.server(
        server_header() + "<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
        "<mechanism>SCRAM-SHA-512-PLUS</mechanism><mechanism>SCRAM-SHA-256-PLUS</mechanism>"
        "<mechanism>SCRAM-SHA-1-PLUS</mechanism><mechanism>SCRAM-SHA-512</mechanism>"
        "<mechanism>SCRAM-SHA-256</mechanism><mechanism>SCRAM-SHA-1</mechanism><mechanism>PLAIN</mechanism>"
        "</mechanisms><authentication xmlns='urn:xmpp:sasl:2'>"
        "<mechanism>SCRAM-SHA-512-PLUS</mechanism><mechanism>SCRAM-SHA-256-PLUS</mechanism>"
        "<mechanism>SCRAM-SHA-1-PLUS</mechanism><mechanism>SCRAM-SHA-512</mechanism>"
        "<mechanism>SCRAM-SHA-256</mechanism><mechanism>SCRAM-SHA-1</mechanism><mechanism>PLAIN</mechanism>"
        "<inline><sm xmlns='urn:xmpp:sm:3'/><bind xmlns='urn:xmpp:bind:0'><inline>"
        "<feature var='urn:xmpp:sm:3'/><feature var='urn:xmpp:carbons:2'/><feature var='urn:xmpp:csi:0'/>"
        "</inline></bind></inline>"
        "<upgrade xmlns='urn:xmpp:sasl:upgrade:0'>UPGR-SCRAM-SHA-256</upgrade>"
        "<upgrade xmlns='urn:xmpp:sasl:upgrade:0'>UPGR-SCRAM-SHA-512</upgrade></authentication>"
        "<sasl-channel-binding xmlns='urn:xmpp:sasl-cb:0'>"
        "<channel-binding type='tls-exporter'/><channel-binding type='tls-server-end-point'/>"
        "</sasl-channel-binding></stream:features>"
    )


def test_plain_can_be_switched_off() -> None:
    t = Transcript.tcp(secure=True, allow_plain=False)
    t.client(header())
    out = t.output()
    assert b"<mechanism>SCRAM-SHA-256</mechanism>" in out, out  # the mechanisms did arrive ...
    assert b"PLAIN" not in out  # ... without PLAIN


def test_unencrypted_websocket_is_refused_before_any_mechanism() -> None:
    t = Transcript.websocket(secure=False)
    t.client("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>")
    out = t.output().decode()
    assert "mechanism" not in out
    assert "<policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in out
    assert out.endswith("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>")


# ---------------------------------------------------------------------------------------- SASL
def test_it_refuses_stanzas_before_authentication() -> None:
    t = Transcript.tcp(secure=True)
    t.open_secure()
    t.client("<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>")
    t.stream_error("not-authorized")


def scram_login(t: Transcript, mech: str, user: str, password: str, **client_kw: object) -> bytes:
    hash_name = mech.removeprefix("SCRAM-").removesuffix("-PLUS")
    client = ScramClient(hash_name, user, password, nonce="CNONCE", **client_kw)  # type: ignore[arg-type]
    t.client(f"<auth xmlns='{SASL}' mechanism='{mech}'>{b64(client.first())}</auth>")
    out = t.output()
    if b"<failure" in out:
        return out
    server_first = sasl_payload(out, "challenge")
    assert server_first.startswith(b"r=CNONCESNONCE,s=")
    t.client(f"<response xmlns='{SASL}'>{b64(client.final(server_first))}</response>")
    out = t.output()
    if b"<success" in out:
        assert client.verify_server_final(sasl_payload(out, "success"))
    return out


@pytest.mark.parametrize("mech", ["SCRAM-SHA-1", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_scram_login_restart_and_bind(mech: str) -> None:
    t = Transcript.tcp(secure=True)
    t.open_secure()
    out = scram_login(t, mech, "alice", "wonderland")
    assert out.startswith(f"<success xmlns='{SASL}'>".encode())
    assert t.last(ev.Authenticated) == ev.Authenticated(localpart="alice", mechanism=mech)
    assert t.last(ev.CredentialsNeeded).hash_name == mech.removeprefix("SCRAM-")
    assert t.stream.state is State.EXPECT_HEADER  # RFC 6120 §6.4.6: the client restarts
    t.client(header())
    t.server(
        server_header() + "<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>"
        "<session xmlns='urn:ietf:params:xml:ns:xmpp-session'><optional/></session>"
        "<sm xmlns='urn:xmpp:sm:3'/><csi xmlns='urn:xmpp:csi:0'/><ver xmlns='urn:xmpp:features:rosterver'/></stream:features>"
    )
    t.client("<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>")
    assert t.last(ev.BindRequested) == ev.BindRequested(resource=None)
    t.server(
        "<iq xmlns='jabber:client' type='result' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
        "<jid>alice@localhost/generated-1</jid></bind></iq>"
    )
    assert t.stream.jid == JID("alice", "localhost", "generated-1")
    assert t.stream.state is State.BOUND


@pytest.mark.parametrize("mech", ["SCRAM-SHA-1-PLUS", "SCRAM-SHA-256-PLUS", "SCRAM-SHA-512-PLUS"])
@pytest.mark.parametrize("cb_type", ["tls-exporter", "tls-server-end-point"])
def test_scram_plus_succeeds_with_the_right_binding(mech: str, cb_type: str) -> None:
    t = Transcript.tcp(secure=True, bindings=BINDINGS)
    t.open_secure()
    out = scram_login(t, mech, "alice", "wonderland", cb_type=cb_type, cb_data=BINDINGS[cb_type])
    assert out.startswith(b"<success"), out


@pytest.mark.parametrize("cb_type", ["tls-exporter", "tls-server-end-point"])
def test_scram_plus_fails_with_a_wrong_binding(cb_type: str) -> None:
    t = Transcript.tcp(secure=True, bindings=BINDINGS)
    t.open_secure()
    out = scram_login(t, "SCRAM-SHA-256-PLUS", "alice", "wonderland", cb_type=cb_type, cb_data=b"Z" * 32)
    assert out.startswith(f"<failure xmlns='{SASL}'><not-authorized/>".encode()), out
    assert t.stream.state is State.EXPECT_AUTH


def test_flag_y_is_refused_when_plus_was_offered() -> None:
    t = Transcript.tcp(secure=True, bindings=BINDINGS)
    t.open_secure()
    out = scram_login(t, "SCRAM-SHA-256", "alice", "wonderland", gs2_flag="y")
    assert out.startswith(f"<failure xmlns='{SASL}'><not-authorized/>".encode()), out


def test_flag_y_is_accepted_when_plus_was_not_offered() -> None:
    t = Transcript.tcp(secure=True)
    t.open_secure()
    out = scram_login(t, "SCRAM-SHA-256", "alice", "wonderland", gs2_flag="y")
    assert out.startswith(b"<success"), out


def test_plus_is_not_offered_without_channel_binding_and_is_refused() -> None:
    t = Transcript.tcp(secure=True)
    t.open_secure()
    t.client(
        f"<auth xmlns='{SASL}' mechanism='SCRAM-SHA-256-PLUS'>{b64('p=tls-exporter,,n=alice,r=x')}</auth>"
    )
    t.server(
        f"<failure xmlns='{SASL}'><invalid-mechanism/><text xml:lang='en'>SCRAM-SHA-256-PLUS is not offered</text></failure>"
    )


def test_wrong_password_and_unknown_user_fail_alike() -> None:
    t = Transcript.tcp(secure=True)
    t.open_secure()
    wrong = scram_login(t, "SCRAM-SHA-256", "alice", "not-the-password")
    unknown = scram_login(t, "SCRAM-SHA-256", "mallory", "whatever")
    assert (
        wrong
        == unknown
        == (
            f"<failure xmlns='{SASL}'><not-authorized/><text xml:lang='en'>invalid credentials</text></failure>".encode()
        )
    )


def test_unknown_user_gets_a_stable_fake_salt() -> None:
    def server_first(user: str) -> bytes:
        t = Transcript.tcp(secure=True)
        t.open_secure()
        client = ScramClient("SHA-256", user, "x", nonce="CNONCE")
        t.client(f"<auth xmlns='{SASL}' mechanism='SCRAM-SHA-256'>{b64(client.first())}</auth>")
        return sasl_payload(t.output(), "challenge")

    first = server_first("mallory")
    assert first == server_first("mallory")
    assert first != server_first("trudy")
    assert b",i=4096" in first


def test_bad_base64_is_incorrect_encoding() -> None:
    t = Transcript.tcp(secure=True)
    t.open_secure()
    t.client(f"<auth xmlns='{SASL}' mechanism='PLAIN'>not base64!</auth>")
    t.server(
        f"<failure xmlns='{SASL}'><incorrect-encoding/><text xml:lang='en'>the initial response is not valid base64</text></failure>"
    )


def test_abort_and_the_third_failure_closes_the_stream() -> None:
    t = Transcript.tcp(secure=True)
    t.open_secure()
    t.client(f"<auth xmlns='{SASL}' mechanism='SCRAM-SHA-1'/>")
    t.server(f"<challenge xmlns='{SASL}'>=</challenge>")
    t.client(f"<abort xmlns='{SASL}'/>")
    t.server(f"<failure xmlns='{SASL}'><aborted/><text xml:lang='en'>aborted by the client</text></failure>")
    t.login_plain(password="wrong")
    assert t.stream.state is State.EXPECT_AUTH
    t.client(f"<auth xmlns='{SASL}' mechanism='PLAIN'>{b64(chr(0) + 'alice' + chr(0) + 'wrong')}</auth>")
    out = t.output().decode()
    assert out.startswith(f"<failure xmlns='{SASL}'><not-authorized/>")
    assert "<policy-violation xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in out
    assert t.stream.state is State.CLOSED


def test_plain_login_and_authzid_rules() -> None:
    t = Transcript.tcp(secure=True)
    t.open_secure()
    t.client(
        f"<auth xmlns='{SASL}' mechanism='PLAIN'>{b64('bob@localhost' + chr(0) + 'alice' + chr(0) + 'wonderland')}</auth>"
    )
    t.server(
        f"<failure xmlns='{SASL}'><invalid-authzid/><text xml:lang='en'>the authorization identity is not yours</text></failure>"
    )
    t.client(
        f"<auth xmlns='{SASL}' mechanism='PLAIN'>{b64('alice@localhost' + chr(0) + 'alice' + chr(0) + 'wonderland')}</auth>"
    )
    t.server(f"<success xmlns='{SASL}'/>")


def test_a_stream_from_naming_another_account_cannot_log_in_as_alice() -> None:
    t = Transcript.tcp(secure=True)
    t.client(header(extra=" from='bob@localhost'"))
    t.output()
    t.login_plain("alice")
    assert t.stream.state is State.EXPECT_AUTH
    assert t.last(ev.AuthFailed).condition.value == "invalid-authzid"


def test_usernames_are_case_folded_to_the_account() -> None:
    t = Transcript.tcp(secure=True)
    t.open_secure()
    t.client(f"<auth xmlns='{SASL}' mechanism='PLAIN'>{b64(chr(0) + 'Alice' + chr(0) + 'wonderland')}</auth>")
    assert t.last(ev.Authenticated).localpart == "alice"


# ---------------------------------------------------------------------------------------- bind
def test_bind_takes_the_requested_resource_and_refuses_a_bad_one() -> None:
    t = Transcript.tcp(secure=True)
    t.open_secure()
    t.login_plain()
    t.client(header())
    t.output()
    t.client(
        f"<iq type='set' id='b0'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>{'r' * 1100}</resource></bind></iq>"
    )
    out = t.output().decode()
    assert 'type="error"' in out
    assert "<bad-request" in out
    t.client(
        "<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>phone</resource></bind></iq>"
    )
    assert t.last(ev.BindRequested).resource == "phone"
    assert str(t.stream.jid) == "alice@localhost/phone"


def test_stanzas_before_bind_are_refused() -> None:
    t = Transcript.tcp(secure=True)
    t.open_secure()
    t.login_plain()
    t.client(header())
    t.output()
    t.client("<message to='bob@localhost'><body>hi</body></message>")
    t.stream_error("not-authorized")


# ---------------------------------------------------------------------------------------- stanzas
def bound() -> Transcript:
    t = Transcript.tcp(secure=True)
    t.session("alice", "res")
    return t


def test_from_is_stamped_with_the_full_jid() -> None:
    t = bound()
    (received,) = t.client("<message to='bob@localhost/x' type='chat' id='m1'><body>hi</body></message>")
    assert isinstance(received, ev.StanzaReceived)
    assert received.kind == "message"
    assert received.type == "chat"
    assert received.to == JID("bob", "localhost", "x")
    assert received.stanza.get("from") == "alice@localhost/res"


@pytest.mark.parametrize("claimed", ["alice@localhost", "ALICE@localhost/res", "alice@localhost/res"])
def test_a_from_naming_this_session_is_accepted_and_normalised(claimed: str) -> None:
    t = bound()
    (received,) = t.client(f"<message from='{claimed}' to='bob@localhost'><body>hi</body></message>")
    assert received.stanza.get("from") == "alice@localhost/res"


@pytest.mark.parametrize(
    "claimed", ["bob@localhost/res", "bob@localhost", "alice@localhost/other", "not a jid@"]
)
def test_a_spoofed_from_is_invalid_from(claimed: str) -> None:
    t = bound()
    t.client(f"<message from='{claimed}' to='bob@localhost'><body>hi</body></message>")
    t.stream_error("invalid-from")


def test_namespaced_look_alikes_of_the_stanza_attributes_are_removed_and_other_ones_stay() -> None:
    """Found by a black-box attack: ``j:from`` (``j`` bound to jabber:client) went through beside the
    stamped ``from``, and a client that reads attributes as text could take it for the sender."""
    t = bound()
    (received,) = t.client(
        "<message xmlns:j='jabber:client' xmlns:e='urn:example' j:from='bob@localhost/x' j:id='forged'"
        " e:type='x' e:colour='blue' xml:lang='en' to='carol@localhost' type='chat' id='m1'>"
        "<body>hi</body></message>"
    )
    assert isinstance(received, ev.StanzaReceived)
    attributes: dict[str, str] = {str(k): str(v) for k, v in received.stanza.attrib.items()}
    assert attributes == {
        "to": "carol@localhost",
        "type": "chat",
        "id": "m1",
        "from": "alice@localhost/res",
        "{http://www.w3.org/XML/1998/namespace}lang": "en",
        "{urn:example}colour": "blue",  # not named like a stanza attribute: extended content, kept
    }
    # xml: is bound without a declaration; xml:lang is the stanza's own, xml:from is not
    (received,) = t.client(
        "<message xml:from='bob@localhost' xml:id='x' xml:lang='de' to='carol@localhost'/>"
    )
    assert {str(k): str(v) for k, v in received.stanza.attrib.items()} == {
        "{http://www.w3.org/XML/1998/namespace}lang": "de",
        "to": "carol@localhost",
        "from": "alice@localhost/res",
    }
    # the stanza element itself prefixed, no default namespace: its prefix is the only one in scope
    (received,) = t.client("<k:message xmlns:k='jabber:client' k:from='bob@localhost' to='carol@localhost'/>")
    assert isinstance(received, ev.StanzaReceived)
    assert {str(k): str(v) for k, v in received.stanza.attrib.items()} == {
        "to": "carol@localhost",
        "from": "alice@localhost/res",
    }


def test_a_message_without_to_goes_to_the_own_bare_jid() -> None:
    t = bound()
    (received,) = t.client("<message><body>note to self</body></message>")
    assert received.to == JID("alice", "localhost")


def test_ping_the_server() -> None:
    t = bound()
    assert t.client("<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>") == []
    t.server("<iq xmlns='jabber:client' type='result' id='p1' from='localhost' to='alice@localhost/res'/>")
    t.client("<iq type='get' id='p2'><ping xmlns='urn:xmpp:ping'/></iq>")
    t.server("<iq xmlns='jabber:client' type='result' id='p2' to='alice@localhost/res'/>")


def test_disco_info_of_the_server_lists_what_is_implemented() -> None:
    t = bound()
    t.client(
        "<iq type='get' id='d1' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
    )
    t.server(
        "<iq xmlns='jabber:client' type='result' id='d1' from='localhost' to='alice@localhost/res'>"
        "<query xmlns='http://jabber.org/protocol/disco#info'>"
        "<identity category='server' type='im' name='xmppauth'/>"
        "<feature var='urn:xmpp:carbons:2'/>"
        "<feature var='http://jabber.org/protocol/disco#info'/>"
        "<feature var='http://jabber.org/protocol/disco#items'/>"
        "<feature var='urn:xmpp:ping'/></query></iq>"
    )


def test_disco_info_of_the_own_account() -> None:
    t = bound()
    t.client(
        "<iq type='get' id='d2' to='alice@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
    )
    t.server(
        "<iq xmlns='jabber:client' type='result' id='d2' from='alice@localhost' to='alice@localhost/res'>"
        "<query xmlns='http://jabber.org/protocol/disco#info'><identity category='account' type='registered'/>"
        "<feature var='http://jabber.org/protocol/disco#info'/><feature var='urn:xmpp:ping'/></query></iq>"
    )


def stanza_error(iq: str, condition: str, error_type: str, text: str = "*") -> str:
    text_el = f"<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas' xml:lang='en'>{text}</text>" if text else ""
    return f"{iq}<error type='{error_type}'><{condition} xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>{text_el}</error></iq>"


@pytest.mark.parametrize(
    ("request_xml", "condition", "error_type", "text"),
    [
        (
            "<iq type='get' id='e1'><query xmlns='jabber:iq:version'/></iq>",
            "service-unavailable",
            "cancel",
            "",
        ),
        (
            "<iq type='get' id='e1'><query xmlns='jabber:iq:roster'/></iq>",
            "service-unavailable",
            "cancel",
            "",
        ),
        (
            "<iq type='set' id='e1'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
            "feature-not-implemented",
            "cancel",
            "*",
        ),
        (
            "<iq type='set' id='e1'><ping xmlns='urn:xmpp:ping'/></iq>",
            "feature-not-implemented",
            "cancel",
            "*",
        ),
        ("<iq type='get' id='e1'/>", "bad-request", "modify", "*"),
        (
            "<iq type='get' id='e1'><ping xmlns='urn:xmpp:ping'/><ping xmlns='urn:xmpp:ping'/></iq>",
            "bad-request",
            "modify",
            "*",
        ),
        ("<iq type='fetch' id='e1'><ping xmlns='urn:xmpp:ping'/></iq>", "bad-request", "modify", "*"),
        (
            "<iq type='get' id='e1'><query xmlns='http://jabber.org/protocol/disco#info' node='x'/></iq>",
            "item-not-found",
            "cancel",
            "",
        ),
    ],
)
def test_unhandled_iqs_get_the_right_stanza_error(
    request_xml: str, condition: str, error_type: str, text: str
) -> None:
    t = bound()
    t.client(request_xml)
    t.server(
        stanza_error(
            "<iq xmlns='jabber:client' type='error' id='e1' from='localhost' to='alice@localhost/res'>",
            condition,
            error_type,
            text,
        )
    )


def test_iq_to_another_accounts_bare_jid_is_service_unavailable() -> None:
    t = bound()
    t.client(
        "<iq type='get' id='o1' to='bob@localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
    )
    t.server(
        stanza_error(
            "<iq xmlns='jabber:client' type='error' id='o1' from='bob@localhost' to='alice@localhost/res'>",
            "service-unavailable",
            "cancel",
            "",
        )
    )


def test_results_to_the_server_are_not_answered() -> None:
    t = bound()
    (answered,) = t.client("<iq type='result' id='r1'/>")  # the driver may be waiting for it
    assert isinstance(answered, ev.IqAnswered)
    assert answered.stanza.get("id") == "r1"
    t.silent()
    # an answer to another account's bare JID ends here too, and nobody is told
    assert t.client("<iq type='error' id='r3' to='bob@localhost'/>") == []
    t.silent()
    # control: the same stream answers a request to the server at once
    t.client("<iq type='get' id='r2'><ping xmlns='urn:xmpp:ping'/></iq>")
    t.server("<iq xmlns='jabber:client' type='result' id='r2' to='alice@localhost/res'/>")


def test_iq_to_a_full_jid_is_routed() -> None:
    t = bound()
    (received,) = t.client(
        "<iq type='get' id='q1' to='bob@localhost/phone'><ping xmlns='urn:xmpp:ping'/></iq>"
    )
    assert received.kind == "iq"
    assert received.to == JID("bob", "localhost", "phone")


def test_remote_domains_are_not_reachable() -> None:
    t = bound()
    t.client("<message to='carol@example.org' id='m9'><body>hi</body></message>")
    out = t.output().decode()
    assert "<remote-server-not-found" in out
    assert 'id="m9"' in out


def test_a_bad_to_is_jid_malformed() -> None:
    t = bound()
    t.client("<message to='a@b@c/' id='m1'><body>x</body></message>")
    assert b"<jid-malformed" in t.output()


@pytest.mark.parametrize("kind", ["subscribe", "subscribed", "unsubscribe", "unsubscribed", "probe"])
def test_a_subscription_stanza_goes_to_the_router(kind: str) -> None:
    """RFC 6121 §3: the server's business (xmppauth/subscriptions.py), not refused by the core."""
    t = bound()
    (received,) = t.client(f"<presence to='Bob@localhost' type='{kind}' id='s1'/>")
    assert (received.kind, received.type, str(received.to)) == ("presence", kind, "bob@localhost")
    assert t.output() == b""


def test_broadcast_presence_goes_to_the_router() -> None:
    t = bound()
    (received,) = t.client("<presence><priority>5</priority></presence>")
    assert received.kind == "presence"
    assert received.type == "available"
    assert received.to is None


def test_a_non_stanza_after_bind_is_unsupported_stanza_type() -> None:
    t = bound()
    t.client("<foo xmlns='urn:example'/>")
    t.stream_error("unsupported-stanza-type")


def test_bounce_answers_with_an_error_but_never_an_error_to_an_error() -> None:
    t = bound()
    (received,) = t.client("<message to='bob@localhost' id='m1' type='chat'><body>hi</body></message>")
    from xmppauth.proto.errors import StanzaErrorCondition

    t.stream.bounce(received.stanza, StanzaErrorCondition.SERVICE_UNAVAILABLE, "offline")
    out = t.output().decode()
    assert 'type="error"' in out
    assert 'from="bob@localhost"' in out
    assert "<service-unavailable" in out
    (err,) = t.client("<message to='bob@localhost' id='m2' type='error'/>")
    t.stream.bounce(err.stanza, StanzaErrorCondition.SERVICE_UNAVAILABLE)
    t.silent()


# ---------------------------------------------------------------------------------------- limits and restricted XML
def test_restricted_xml_closes_the_stream() -> None:
    t = bound()
    t.client("<!-- hello -->")
    t.stream_error("restricted-xml")


def test_a_doctype_before_the_header_is_restricted_xml() -> None:
    t = Transcript.tcp()
    t.client("<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'b'>]>")
    t.stream_error("restricted-xml")


def test_preauth_stanza_limit_is_a_policy_violation() -> None:
    t = Transcript.tcp(secure=True, max_preauth_stanza_bytes=4096)
    t.open_secure()
    t.client(f"<auth xmlns='{SASL}' mechanism='PLAIN'>{'A' * 8000}</auth>")
    t.stream_error("policy-violation")


def test_the_post_auth_limit_applies_after_binding() -> None:
    t = Transcript.tcp(secure=True, max_preauth_stanza_bytes=4096, max_stanza_bytes=20_000)
    t.session()
    (received,) = t.client(f"<message to='bob@localhost'><body>{'x' * 8000}</body></message>")
    assert isinstance(received, ev.StanzaReceived)
    t.client(f"<message to='bob@localhost'><body>{'x' * 30_000}</body></message>")
    t.stream_error("policy-violation")


def test_garbage_is_not_well_formed() -> None:
    t = bound()
    t.client("<message></presence>")
    t.stream_error("not-well-formed")


# ---------------------------------------------------------------------------------------- closing
def test_the_client_closes_and_we_answer_with_the_footer() -> None:
    t = bound()
    (closed,) = t.client("</stream:stream>")
    assert closed == ev.StreamClosed(condition=None, by_peer=True)
    t.server("</stream:stream>")
    assert t.stream.state is State.CLOSED


def test_the_driver_closes_with_a_stream_error() -> None:
    t = bound()
    closed = t.stream.close(StreamErrorCondition.CONFLICT, "replaced")
    assert closed.condition is StreamErrorCondition.CONFLICT
    out = t.output().decode()
    assert "<conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>" in out
    assert out.endswith("</stream:stream>")
    t.stream.send_raw(b"<message/>")
    t.silent()


def test_eof_ends_the_stream_silently() -> None:
    t = bound()
    t.stream.receive_eof()
    (closed,) = t.pump()
    assert closed == ev.StreamClosed(condition=None, text="connection lost", by_peer=True)
    t.silent()


# ---------------------------------------------------------------------------------------- WebSocket framing (RFC 7395)
OPEN = "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='localhost' version='1.0'/>"


def test_websocket_login_uses_open_and_close_frames() -> None:
    t = Transcript.websocket()
    t.client(OPEN)
    frames = t.frames()
    assert frames[0].startswith(b"<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' id='")
    assert frames[1].startswith(
        b"<stream:features xmlns:stream='http://etherx.jabber.org/streams'><mechanisms"
    )
    t.client(f"<auth xmlns='{SASL}' mechanism='PLAIN'>{b64(chr(0) + 'alice' + chr(0) + 'wonderland')}</auth>")
    assert t.frames() == [f"<success xmlns='{SASL}'/>".encode()]
    t.client(OPEN)
    frames = t.frames()
    assert b"<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>" in frames[1]
    t.client(
        "<iq xmlns='jabber:client' type='set' id='b'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>"
    )
    (frame,) = t.frames()
    assert b"<jid>alice@localhost/generated-1</jid>" in frame
    t.client("<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>")
    assert t.frames() == [b"<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>"]


def test_websocket_stream_error_is_framed() -> None:
    t = Transcript.websocket()
    t.client("<open xmlns='urn:ietf:params:xml:ns:xmpp-framing' to='elsewhere' version='1.0'/>")
    frames = t.frames()
    assert frames[0].startswith(b"<open ")
    assert frames[1].startswith(
        b"<stream:error xmlns:stream='http://etherx.jabber.org/streams'><host-unknown"
    )
    assert frames[2] == b"<close xmlns='urn:ietf:params:xml:ns:xmpp-framing'/>"


def test_the_stanza_size_limit_is_advertised_before_and_after_authentication() -> None:
    """XEP-0478: <limits/> in every <stream:features/>, the pre-authentication limit until the client
    has authenticated, the stanza limit afterwards (here after a Bind2 <success/>)."""
    t = Transcript.tcp(secure=True, advertise_limits=True, max_preauth_stanza_bytes=10_000)
    t.client(header())
    features = t.output()
    assert (
        b"<limits xmlns='urn:xmpp:stream-limits:0'><max-bytes>10000</max-bytes></limits></stream:features>"
        in features
    ), features
    auth = base64.b64encode(b"\0alice\0wonderland").decode()
    t.client(
        f"<authenticate xmlns='urn:xmpp:sasl:2' mechanism='PLAIN'><initial-response>{auth}</initial-response>"
        "<user-agent id='d4565fa7-4d72-4749-b3d3-740edbf87770'/><bind xmlns='urn:xmpp:bind:0'/></authenticate>"
    )
    after = t.output()
    assert b"<success" in after, after
    assert f"<max-bytes>{256 * 1024}</max-bytes>".encode() in after.split(b"</success>")[1], after
    plain = Transcript.tcp(secure=True)  # the core says nothing unless asked to
    plain.client(header())
    assert b"stream-limits" not in plain.output()
