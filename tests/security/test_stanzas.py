"""Catalogue rows 18 and 19 (docs/security.md) on the wire: a ``from`` is either the sender's own
address (then the delivered stanza carries its full JID) or the stream ends with ``<invalid-from/>``
and nothing is delivered, whatever the spelling; one full JID is never held by two sessions, and a
resource that is not a valid resourcepart (PRECIS, 1023 bytes) is refused with ``bad-request``."""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.rawclient import RawClient, Session, available, parse_stream_error
from tests.integration.server import Server
from tests.security.helpers import closed_with
from xmppauth.proto.xml import escape_attr

pytestmark = pytest.mark.integration

BIND = "urn:ietf:params:xml:ns:xmpp-bind"
SASL2 = "urn:xmpp:sasl:2"
SENDER = "grace@localhost/café"  # bound over RFC 6120 with a resource PRECIS maps (NFC)
_ids = itertools.count(1)


@pytest.fixture(scope="module")
def receiver(server: Server) -> Iterator[Session]:
    """bob, available, for the whole module (hypothesis runs many examples against one receiver)."""
    session = available(server)
    yield session
    session.close()


def sender(server: Server) -> RawClient:
    client = RawClient(server.c2s)
    assert client.login("grace", "grace-pw-1", "café") == SENDER
    return client


STANZAS = {
    "message": "<message to='{to}' from='{claimed}' id='{id}' type='chat'><body>spoof?</body></message>",
    "presence": "<presence to='{to}' from='{claimed}' id='{id}'><status>spoof?</status></presence>",
    "iq": "<iq to='{to}' from='{claimed}' id='{id}' type='get'><query xmlns='jabber:iq:version'/></iq>",
}


def attempt(server: Server, receiver: Session, claimed: str, kind: str = "message") -> str:
    """Send one stanza with ``from=claimed`` from grace to bob; "invalid-from" if the stream ended so
    (then bob got nothing), else the ``from`` bob saw on it."""
    client = sender(server)
    stanza_id = f"spoof-{next(_ids)}"
    client.send(STANZAS[kind].format(to=receiver.jid, claimed=escape_attr(claimed), id=stanza_id))
    client.send("<iq type='get' id='after'><ping xmlns='urn:xmpp:ping'/></iq>")
    out = client.read_until(rb"id=['\"]after['\"]|</stream:stream>")
    condition = parse_stream_error(out)
    if condition is not None:
        client.close()
        # the positive control: a stanza sent after it from a new stream arrives, the spoofed one not before
        witness = sender(server)
        mark = f"mark-{next(_ids)}"
        witness.send(f"<message to='{receiver.jid}' id='{mark}' type='chat'><body>{mark}</body></message>")
        before = receiver.expect(mark)
        witness.close()
        assert stanza_id.encode() not in before, before
        return condition
    got = receiver.expect(f"<{kind}(?=[^>]*id=['\"]{stanza_id}['\"])[^>]*>")
    client.close()
    found = re.search(rb"from='([^']*)'", got[got.rindex(f"<{kind}".encode()) :])
    assert found, got
    return found.group(1).decode()


@pytest.mark.parametrize("kind", list(STANZAS))
@pytest.mark.parametrize(
    "claimed",
    [
        "bob@localhost/desk",
        "bob@localhost",
        "grace@localhost/other",
        "grace@localhost/Café",  # resources are case-sensitive
        "grace@localhost/café ",
        "grace@localhost/café\u200b",
        "grace@localhost/café/extra",
        "localhost",
        "grace@[::1]/café",
        "",
    ],
)
def test_a_from_that_is_not_the_senders_ends_the_stream_with_invalid_from(
    server: Server, receiver: Session, claimed: str, kind: str
) -> None:
    assert attempt(server, receiver, claimed, kind) == "invalid-from"


@pytest.mark.parametrize("kind", list(STANZAS))
def test_a_from_naming_the_receiver_is_invalid_from(server: Server, receiver: Session, kind: str) -> None:
    assert attempt(server, receiver, receiver.jid, kind) == "invalid-from"


@pytest.mark.parametrize(
    "claimed",
    [
        "grace@localhost",  # the sender's bare JID
        "GRACE@LOCALHOST/café",  # another case in localpart and domain
        "\uff47\uff52\uff41\uff43\uff45@localhost/café",  # fullwidth letters: width-mapped (RFC 8265)
        "grace@localhost/cafe\u0301",  # the resource decomposed (NFD): NFC makes it the same
        SENDER,
    ],
    ids=["bare", "case", "fullwidth", "nfd", "exact"],
)
def test_a_from_that_prepares_to_the_sender_is_stamped_with_the_full_jid(
    server: Server, receiver: Session, claimed: str
) -> None:
    assert attempt(server, receiver, claimed) == SENDER


_parts = st.sampled_from(["grace", "GRACE", "bob", "Grace", "\uff47race", "carol", "", "x" * 1100])
_domains = st.sampled_from(["localhost", "LOCALHOST", "example.org", "[::1]", "localhost."])
_resources = st.one_of(
    st.none(),
    st.sampled_from(["café", "cafe\u0301", "Café", "other", "", "café\u202e", "desk"]),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=12),
)


@st.composite
def claimed_froms(draw: st.DrawFn) -> str:
    if draw(st.booleans()):
        return draw(st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=30))
    local, domain, resource = draw(_parts), draw(_domains), draw(_resources)
    text = f"{local}@{domain}" if local else domain
    return text if resource is None else f"{text}/{resource}"


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(claimed=claimed_froms())
def test_any_from_is_either_stamped_as_the_sender_or_invalid_from(
    server: Server, receiver: Session, claimed: str
) -> None:
    outcome = attempt(server, receiver, claimed)
    assert outcome in {"invalid-from", SENDER}, (claimed, outcome)


# ---------------------------------------------------------------------------------------- row 19
def bind(client: RawClient, resource: str, stanza_id: str = "b") -> bytes:
    client.send(
        f"<iq type='set' id='{stanza_id}'><bind xmlns='{BIND}'><resource>{resource}</resource></bind></iq>"
    )
    return client.read_until(rb"</iq>|<iq[^>]*/>")


@pytest.mark.parametrize(
    "resource",
    ["x" * 1024, "é" * 512, "\u202eenohp", "pho\u200bne", "phone\ufdd0"],
    ids=["1024-bytes", "1024-bytes-of-e-acute", "right-to-left-override", "zero-width-space", "noncharacter"],
)
def test_binding_an_invalid_resource_is_bad_request_and_binds_nothing(server: Server, resource: str) -> None:
    client = RawClient(server.c2s)
    client.starttls()
    assert b"<success" in client.scram("SCRAM-SHA-256", "heidi", "heidi-pw-1")
    client.open_stream()
    reply = bind(client, resource)
    assert b"type='error'" in reply.replace(b'"', b"'"), reply
    assert b"<bad-request" in reply, reply
    longest = "y" * 1023  # the longest resourcepart RFC 7622 §3.4 allows is still fine
    assert f"heidi@localhost/{longest}".encode() in bind(client, longest, "b2")
    client.close()


@pytest.mark.parametrize(
    "tag",
    ["t" * 1024, "\u202eExampleChat", "Example\u200bChat"],
    ids=["1024-bytes", "right-to-left-override", "zero-width-space"],
)
def test_a_bind2_tag_that_cannot_be_a_resource_refuses_the_login(server: Server, tag: str) -> None:
    client = RawClient(server.c2s_tls, direct_tls=True)
    client.open_stream()
    client.authenticate_plain(
        "heidi", "heidi-pw-1", inline=f"<bind xmlns='urn:xmpp:bind:0'><tag>{tag}</tag></bind>"
    )
    reply = client.read_until(rb"</failure>|</success>")
    client.close()
    assert b"<failure" in reply, reply
    assert b"<malformed-request" in reply, reply


def test_the_same_bind2_client_logging_in_again_takes_its_resource_and_ends_the_old_session(
    server: Server, receiver: Session
) -> None:
    ua = str(uuid.uuid4())
    first = Session(server, "heidi", "heidi-pw-1", ua=ua)
    second = Session(server, "heidi", "heidi-pw-1", ua=ua)
    assert first.ok
    assert second.ok
    assert first.jid == second.jid  # the server makes the resource: the same for one client
    assert closed_with(first.raw) == "conflict"
    other = Session(server, "heidi", "heidi-pw-1", ua=str(uuid.uuid4()))
    assert other.ok
    assert other.jid != second.jid  # another client never gets it
    receiver.send(f"<message to='{second.jid}' type='chat' id='which'><body>which one?</body></message>")
    assert b"which one?" in second.expect("</message>")
    assert b"which one?" not in other.quiet(0.3)
    for session in (first, second, other):
        session.close()
