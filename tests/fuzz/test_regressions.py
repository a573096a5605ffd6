"""What the fuzz tests found, each as a plain test: the shrunk input, and what the client must see.

Found in xmppauth/proto/jid.py (fixed there):

- ``prep_domain`` was not idempotent: ``a@example.com..`` prepared to the domain ``example.com.``,
  which prepares again to ``example.com`` (one domain, two JIDs), and ``..`` to ``.``, which is
  refused when prepared again. A domainpart with an empty label is now refused.
- ``prep_domain`` was not idempotent for text that case folding denormalises: ``ß`` + U+0301 folds
  to ``ss`` + U+0301, which NFKC composes to ``sś``, so the domain ``ß́`` prepared to a string
  that is not itself prepared, and never equal to the configured domain ``sś``. NFKC now runs again
  after folding.

Found in xmppauth/proto/xml.py (fixed there):

- a TCP stream header whose name has an undeclared prefix (``<stream:stream>`` without
  ``xmlns:stream``, or ``<a:b>``) makes ``StreamParser.feed`` raise ``ValueError: Invalid tag name
  'stream:stream'`` (from ``etree.QName`` in ``_start_tag``) instead of a ``not-well-formed``
  StreamError; ``C2SStream.receive_data`` lets it escape to the driver.
"""

from __future__ import annotations

import pytest

from tests.proto.transcript import Transcript, header
from xmppauth.proto import events as ev
from xmppauth.proto.errors import StreamError, StreamErrorCondition
from xmppauth.proto.jid import JID, InvalidJID, prep_domain
from xmppauth.proto.stream import C2SStream, StreamConfig
from xmppauth.proto.xml import StreamParser

# ------------------------------------------------------------------------------ jid.py (fixed)


@pytest.mark.parametrize("domain", ["example.com..", "..", ".example.com", "example..com", "a.\uff0e"])
def test_a_domainpart_with_an_empty_label_is_refused(domain: str) -> None:
    with pytest.raises(InvalidJID, match="empty label"):
        prep_domain(domain)


def test_one_final_dot_is_still_stripped() -> None:
    assert prep_domain("Example.COM.") == "example.com"
    assert JID.parse("alice@localhost./r") == JID("alice", "localhost", "r")


@pytest.mark.parametrize("domain", ["ß\u0301", "SS\u0301", "s\u015b", "ss\u0301"])
def test_a_domainpart_prepares_to_itself_after_case_folding(domain: str) -> None:
    assert prep_domain(domain) == "s\u015b"
    assert prep_domain(prep_domain(domain)) == prep_domain(domain)


def test_a_message_to_a_domain_with_an_empty_label_is_jid_malformed() -> None:
    t = Transcript.tcp(secure=True)
    t.session()
    assert t.client("<message id='m1' to='bob@localhost..'><body>hi</body></message>") == []
    t.server(
        "<message xmlns='jabber:client' type='error' id='m1' from='bob@localhost..' to='alice@localhost/res'>"
        "<error type='modify'><jid-malformed xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
        "<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas' xml:lang='en'>*</text></error></message>"
    )


def test_a_message_to_a_denormalised_spelling_of_the_domain_is_delivered() -> None:
    config = StreamConfig(domains=frozenset({"s\u015b"}))
    t = Transcript(
        C2SStream(config, framed=False, secure=True, starttls=False, nonce_factory=lambda: "SNONCE")
    )
    t.client(header(to="s\u015b"))
    t.output()
    t.login_plain()
    t.client(header(to="s\u015b"))
    t.client(
        "<iq type='set' id='b1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>r</resource></bind></iq>"
    )
    t.output()
    (received,) = t.client("<message to='bob@\u00df\u0301'><body>hi</body></message>")
    assert isinstance(received, ev.StanzaReceived)
    assert received.to == JID("bob", "s\u015b")
    t.silent()


# ------------------------------------------------------------------------------ xml.py


@pytest.mark.parametrize(
    "data",
    [b"<stream:stream>", b"<a:b>", b"<stream:stream xmlns='jabber:client' to='localhost' version='1.0'>"],
)
def test_a_header_with_an_undeclared_prefix_is_not_well_formed(data: bytes) -> None:
    parser = StreamParser(max_stanza_bytes=10_000, max_depth=8)
    with pytest.raises(StreamError) as exc:
        parser.feed(data)
    assert exc.value.condition is StreamErrorCondition.NOT_WELL_FORMED


def test_a_client_whose_header_declares_no_prefix_gets_a_stream_error() -> None:
    t = Transcript.tcp(secure=True)
    t.client("<?xml version='1.0'?><stream:stream to='localhost' version='1.0'>")
    t.stream_error("not-well-formed")
