"""PRECIS at the stream level (RFC 7622 §3.4): resources asked for in RFC 6120 binding, Bind2 tags
(XEP-0386) and the resources of stanza addresses, with U+202E and its kind."""

from __future__ import annotations

import base64

import pytest

from tests.proto.transcript import Transcript, header
from xmppauth.proto import events as ev
from xmppauth.proto.stream import State

SASL2 = "urn:xmpp:sasl:2"
BIND = "urn:ietf:params:xml:ns:xmpp-bind"
RLO_TEXT = (
    "resourcepart contains U+202E, which PRECIS disallows"
    " (an invisible or formatting code point, Default_Ignorable_Code_Point)"
)


def bind_iq(resource: str) -> str:
    return f"<iq type='set' id='b1'><bind xmlns='{BIND}'><resource>{resource}</resource></bind></iq>"


def logged_in() -> Transcript:
    t = Transcript.tcp(secure=True)
    t.open_secure()
    t.login_plain()
    t.client(header())
    t.output()
    return t


def sasl2_plain(bind: str) -> str:
    initial = base64.b64encode(b"\0alice\0wonderland").decode()
    return (
        f"<authenticate xmlns='{SASL2}' mechanism='PLAIN'><initial-response>{initial}</initial-response>"
        f"<user-agent id='8f0c7b3e-3d8a-4c2e-9d3b-5f1e2a7c9b10'/>{bind}</authenticate>"
    )


# ---------------------------------------------------------------------- RFC 6120 §7 binding
@pytest.mark.parametrize(
    ("resource", "text"),
    [
        ("\u202eenohp", RLO_TEXT),
        ("pho\u200bne", "resourcepart contains U+200B, which PRECIS disallows (an invisible or formatting"),
        ("\ufeffphone", "resourcepart contains U+FEFF, which PRECIS disallows (an invisible or formatting"),
        ("phone\ufdd0", "resourcepart contains U+FDD0, which PRECIS disallows (a noncharacter)"),
    ],
)
def test_bind_refuses_a_resource_precis_disallows_with_bad_request(resource: str, text: str) -> None:
    t = logged_in()
    events = t.client(bind_iq(resource))
    out = t.output().decode()
    assert out.startswith(
        '<iq xmlns="jabber:client" type="error" id="b1"><error type="modify">'
        '<bad-request xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/>'
        '<text xmlns="urn:ietf:params:xml:ns:xmpp-stanzas" xml:lang="en">'
    ), out
    assert text in out
    assert not [e for e in events if isinstance(e, ev.BindRequested)]
    assert t.stream.jid is None
    # the client can try again with a resource PRECIS allows
    t.client(bind_iq("Телефон"))
    assert t.last(ev.BindRequested).resource == "Телефон"
    assert str(t.stream.jid) == "alice@localhost/Телефон"


def test_bind_error_as_a_literal_transcript() -> None:
    t = logged_in()
    t.client(bind_iq("\u202eenohp"))
    t.server(
        "<iq xmlns='jabber:client' type='error' id='b1'><error type='modify'>"
        "<bad-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
        f"<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas' xml:lang='en'>{RLO_TEXT}</text></error></iq>"
    )


def test_bind_maps_non_ascii_spaces_and_composes() -> None:
    t = logged_in()
    t.client(bind_iq("Cafe\u0301\u00a0phone"))
    t.server(
        "<iq xmlns='jabber:client' type='result' id='b1'>"
        f"<bind xmlns='{BIND}'><jid>alice@localhost/Caf\u00e9 phone</jid></bind></iq>"
    )


# ---------------------------------------------------------------------- XEP-0386 Bind2 <tag>
@pytest.mark.parametrize(
    ("tag", "text"),
    [
        ("Example\u202eChat", "the Bind2 &lt;tag&gt; cannot be part of a resource: " + RLO_TEXT),
        (
            "Example\u200bChat",
            "the Bind2 &lt;tag&gt; cannot be part of a resource: resourcepart contains U+200B",
        ),
        # a disallowed code point past the 64 characters that go into the resource still counts
        (
            "x" * 70 + "\ufeff",
            "the Bind2 &lt;tag&gt; cannot be part of a resource: resourcepart contains U+FEFF",
        ),
    ],
)
def test_bind2_tag_precis_disallows_refuses_the_authenticate(tag: str, text: str) -> None:
    t = Transcript.tcp(secure=True)
    t.open_secure()
    events = t.client(sasl2_plain(f"<bind xmlns='urn:xmpp:bind:0'><tag>{tag}</tag></bind>"))
    out = t.output().decode()
    assert out.startswith(
        f"<failure xmlns='{SASL2}'><malformed-request xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"
        "<text xml:lang='en'>"
    ), out
    assert text in out
    # refused before the mechanism ran: no password check, no authentication, nothing bound
    assert [type(e) for e in events] == [ev.AuthFailed]
    assert t.stream.state is State.EXPECT_AUTH
    assert t.stream.jid is None


def test_bind2_refusal_as_a_literal_transcript() -> None:
    t = Transcript.tcp(secure=True)
    t.open_secure()
    t.client(sasl2_plain("<bind xmlns='urn:xmpp:bind:0'><tag>\u202eExampleChat</tag></bind>"))
    t.server(
        f"<failure xmlns='{SASL2}'><malformed-request xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"
        f"<text xml:lang='en'>the Bind2 &lt;tag&gt; cannot be part of a resource: {RLO_TEXT}</text></failure>"
    )
    # the same client without the override gets its tag in the resource
    t.client(sasl2_plain("<bind xmlns='urn:xmpp:bind:0'><tag>ExampleChat</tag></bind>"))
    resource = t.last(ev.BindRequested).resource
    assert resource.startswith("ExampleChat~")
    t.server(
        f"<success xmlns='{SASL2}'><authorization-identifier>alice@localhost/{resource}"
        "</authorization-identifier><bound xmlns='urn:xmpp:bind:0'/></success>"
        "<stream:features><csi xmlns='urn:xmpp:csi:0'/><ver xmlns='urn:xmpp:features:rosterver'/><sm xmlns='urn:xmpp:sm:3'/></stream:features>"
    )


@pytest.mark.parametrize(
    ("tag", "prefix"),
    [
        ("\u96fb\u8a71", "\u96fb\u8a71~"),  # 電話: kept as-is
        ("Example\u3000Chat", "Example Chat~"),  # mapped like any resourcepart
        ("x" * 70, "x" * 64 + "~"),  # at most 64 characters of the tag
    ],
)
def test_bind2_tag_precis_allows_goes_into_the_resource(tag: str, prefix: str) -> None:
    t = Transcript.tcp(secure=True)
    t.open_secure()
    t.client(sasl2_plain(f"<bind xmlns='urn:xmpp:bind:0'><tag>{tag}</tag></bind>"))
    resource = t.last(ev.BindRequested).resource
    assert resource.startswith(prefix)
    assert len(resource) == len(prefix) + 12
    assert t.stream.state is State.BOUND


# ---------------------------------------------------------------------- stanza addresses
def test_a_message_to_a_resource_with_an_override_is_jid_malformed() -> None:
    t = Transcript.tcp(secure=True)
    t.session()
    events = t.client("<message to='bob@localhost/\u202ephone' id='m1' type='chat'><body>hi</body></message>")
    assert not [e for e in events if isinstance(e, ev.StanzaReceived)]
    t.server(
        "<message xmlns='jabber:client' from='bob@localhost/\u202ephone' to='alice@localhost/res' id='m1'"
        " type='error'><error type='modify'><jid-malformed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
        f"<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas' xml:lang='en'>{RLO_TEXT}</text></error></message>"
    )


# (a C0 control cannot even be written in XML 1.0; U+0085 NEL can)
@pytest.mark.parametrize("resource", ["pho\u200bne", "\ufeffphone", "phone\u2060", "ph\u0085one"])
def test_stanzas_to_resources_precis_disallows_are_jid_malformed(resource: str) -> None:
    t = Transcript.tcp(secure=True)
    t.session()
    events = t.client(
        f"<iq to='bob@localhost/{resource}' id='i1' type='get'><ping xmlns='urn:xmpp:ping'/></iq>"
    )
    assert not [e for e in events if isinstance(e, ev.StanzaReceived)]
    out = t.output().decode()
    assert "<jid-malformed" in out
    assert "which PRECIS disallows" in out
