"""XEP-0191 Blocking Command: the requests, pushes and errors of the XEP's own examples, and matching."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from tests.proto.test_xep0163_pep import canonical
from xmppauth.proto import xep0191_blocking as blocking
from xmppauth.proto.errors import StanzaErrorCondition
from xmppauth.proto.jid import JID
from xmppauth.proto.replies import Refusal

_PARSER = etree.XMLParser(remove_blank_text=True)


def xml(text: str) -> etree._Element:
    return etree.fromstring(text, _PARSER)


def payload(iq: str) -> tuple[str, etree._Element]:
    stanza = xml(iq)
    return stanza.get("type", ""), stanza[0]


def refused(iq: str) -> Refusal:
    with pytest.raises(Refusal) as caught:
        blocking.parse(*payload(iq))
    return caught.value


# ------------------------------------------------------------------ §3.2-§3.5: the client's requests


def test_section_3_2_blocklist_request() -> None:
    request = blocking.parse(
        *payload("<iq type='get' id='blocklist1'><blocklist xmlns='urn:xmpp:blocking'/></iq>")
    )
    assert request == blocking.GetList()


def test_section_3_3_block_command() -> None:
    request = blocking.parse(
        *payload(
            """<iq from='juliet@capulet.com/chamber' type='set' id='block1'>
                 <block xmlns='urn:xmpp:blocking'>
                   <item jid='romeo@montague.net'/>
                 </block>
               </iq>"""
        )
    )
    assert request == blocking.Block(("romeo@montague.net",))


def test_section_3_4_unblock_command() -> None:
    request = blocking.parse(
        *payload(
            """<iq type='set' id='unblock1'>
                 <unblock xmlns='urn:xmpp:blocking'>
                   <item jid='romeo@montague.net'/>
                 </unblock>
               </iq>"""
        )
    )
    assert request == blocking.Unblock(("romeo@montague.net",))
    assert not request.everything


def test_section_3_5_unblock_all_command() -> None:
    request = blocking.parse(
        *payload("<iq type='set' id='unblock2'><unblock xmlns='urn:xmpp:blocking'/></iq>")
    )
    assert request == blocking.Unblock(())
    assert isinstance(request, blocking.Unblock)
    assert request.everything


def test_jids_are_prepared_and_kept_once_in_request_order() -> None:
    request = blocking.parse(
        *payload(
            """<iq type='set' id='b'><block xmlns='urn:xmpp:blocking'>
                 <item jid='Romeo@Montague.NET'/><item jid='montague.net/Orchard'/>
                 <item jid='romeo@montague.net'/><x xmlns='urn:example:extension'/>
               </block></iq>"""
        )
    )
    assert request == blocking.Block(("romeo@montague.net", "montague.net/Orchard"))


# ----------------------------------------------------------------------------------- refusals


def test_an_empty_block_is_a_bad_request() -> None:
    refusal = refused("<iq type='set' id='b'><block xmlns='urn:xmpp:blocking'/></iq>")
    assert refusal.condition is StanzaErrorCondition.BAD_REQUEST
    assert refusal.application is None
    assert refusal.text == "<block/> must contain at least one <item/>"


def test_a_malformed_jid_is_jid_malformed() -> None:
    refusal = refused(
        "<iq type='set' id='b'><block xmlns='urn:xmpp:blocking'>"
        "<item jid='romeo@montague.net'/><item jid='a b@montague.net'/></block></iq>"
    )
    assert refusal.condition is StanzaErrorCondition.JID_MALFORMED
    assert refusal.error_type == "modify"
    assert refusal.application is None
    assert refusal.text.startswith("<item/> number 2 is not a JID: localpart contains U+0020")


def test_an_item_without_jid_is_a_bad_request() -> None:
    refusal = refused("<iq type='set' id='u'><unblock xmlns='urn:xmpp:blocking'><item/></unblock></iq>")
    assert refusal.condition is StanzaErrorCondition.BAD_REQUEST
    assert refusal.application is None
    assert refusal.text == "<item/> number 1 has no jid attribute"


def test_a_stray_element_of_the_namespace_is_a_bad_request() -> None:
    refusal = refused("<iq type='set' id='b'><block xmlns='urn:xmpp:blocking'><blocklist/></block></iq>")
    assert refusal.condition is StanzaErrorCondition.BAD_REQUEST
    assert refusal.text == "<block/> holds only <item/> elements, not <blocklist/>"


@pytest.mark.parametrize(
    ("iq", "text"),
    [
        (
            "<iq type='set' id='x'><blocklist xmlns='urn:xmpp:blocking'/></iq>",
            "<blocklist/> goes in an iq of type get, not 'set'",
        ),
        (
            "<iq type='get' id='x'><block xmlns='urn:xmpp:blocking'><item jid='a@b'/></block></iq>",
            "<block/> goes in an iq of type set, not 'get'",
        ),
        (
            "<iq type='result' id='x'><unblock xmlns='urn:xmpp:blocking'/></iq>",
            "<unblock/> goes in an iq of type set, not 'result'",
        ),
    ],
)
def test_a_request_under_the_wrong_iq_type_is_a_bad_request(iq: str, text: str) -> None:
    refusal = refused(iq)
    assert refusal.condition is StanzaErrorCondition.BAD_REQUEST
    assert refusal.application is None
    assert refusal.text == text


def test_an_unknown_element_is_not_implemented() -> None:
    refusal = refused("<iq type='get' id='x'><blocked xmlns='urn:xmpp:blocking'/></iq>")
    assert refusal.condition is StanzaErrorCondition.FEATURE_NOT_IMPLEMENTED
    assert refusal.text == "<blocked/> is not a request of urn:xmpp:blocking"


def test_check_size_refuses_past_the_servers_limit_with_policy_violation() -> None:
    stored = {"a@example.org", "b@example.org"}
    blocking.check_size(stored, blocking.Block(("a@example.org", "c@example.org")), 3, 10_000)
    with pytest.raises(Refusal) as caught:
        blocking.check_size(stored, blocking.Block(("c@example.org", "d@example.org")), 3, 10_000)
    refusal = caught.value
    assert refusal.condition is StanzaErrorCondition.POLICY_VIOLATION
    assert refusal.error_type == "modify"
    assert refusal.application is None
    assert refusal.text == "a blocklist holds at most 3 addresses and this would make it 4"


def test_check_size_counts_the_bytes_of_the_answer_as_it_is_sent() -> None:
    """Found by a black-box attack: 1,000 JIDs with resources of 1,000 quotes (each sent back as
    ``&quot;``, six bytes) made a blocklist answer of 6 MB, and every client that fetched it was dropped."""
    quoted = "a@example.org/" + '"' * 100  # 114 characters, 614 bytes once escaped
    item = len("<item jid=''/>") + 14 + 600
    blocking.check_size(set(), blocking.Block((quoted,)), 10, item)
    with pytest.raises(Refusal) as caught:
        blocking.check_size({"b@example.org"}, blocking.Block((quoted,)), 10, item)
    assert caught.value.condition is StanzaErrorCondition.POLICY_VIOLATION
    assert (
        caught.value.text
        == f"the blocklist would take {item + 27} bytes to send, more than {item}: unblock some first"
    )


# -------------------------------------------------------------------------------- what we build


def test_section_3_2_blocklist_results() -> None:
    expected = xml(
        """<iq type='result' id='blocklist1'>
             <blocklist xmlns='urn:xmpp:blocking'>
               <item jid='romeo@montague.net'/>
               <item jid='iago@shakespeare.lit'/>
             </blocklist>
           </iq>"""
    )[0]
    assert canonical(blocking.blocklist_result(["romeo@montague.net", "iago@shakespeare.lit"])) == canonical(
        expected
    )
    empty = xml("<iq type='result' id='blocklist1'><blocklist xmlns='urn:xmpp:blocking'/></iq>")[0]
    assert canonical(blocking.blocklist_result([])) == canonical(empty)


@pytest.mark.parametrize(
    ("block", "jids", "push"),
    [
        (
            True,
            ["romeo@montague.net"],
            """<iq to='juliet@capulet.com/chamber' type='set' id='push1'>
                 <block xmlns='urn:xmpp:blocking'>
                   <item jid='romeo@montague.net'/>
                 </block>
               </iq>""",
        ),
        (
            False,
            ["romeo@montague.net"],
            """<iq to='juliet@capulet.com/chamber' type='set' id='push3'>
                 <unblock xmlns='urn:xmpp:blocking'>
                   <item jid='romeo@montague.net'/>
                 </unblock>
               </iq>""",
        ),
        (
            False,
            [],
            "<iq to='juliet@capulet.com/chamber' type='set' id='push5'><unblock xmlns='urn:xmpp:blocking'/></iq>",
        ),
    ],
)
def test_sections_3_3_to_3_5_pushes(block: bool, jids: list[str], push: str) -> None:
    assert canonical(blocking.push(block, jids)) == canonical(xml(push)[0])


def test_a_block_push_names_someone() -> None:
    with pytest.raises(ValueError, match="at least one JID"):
        blocking.push(True, [])


def test_section_3_3_blocked_error() -> None:
    example = xml(
        """<message xmlns='jabber:client' type='error' from='romeo@montague.net' to='juliet@capulet.com'>
             <body>Can you hear me now?</body>
             <error type='cancel'>
               <not-acceptable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>
               <blocked xmlns='urn:xmpp:blocking:errors'/>
             </error>
           </message>"""
    )
    error = blocking.blocked_error()
    (text,) = error.findall("{urn:ietf:params:xml:ns:xmpp-stanzas}text")
    assert text.text == "you have blocked this address; unblock it to reach it again"
    error.remove(text)  # the example has no <text/>; ours says why
    assert canonical(error) == canonical(example[1])
    refusal = blocking.blocked_refusal()
    assert (refusal.condition, refusal.error_type) == (StanzaErrorCondition.NOT_ACCEPTABLE, "cancel")
    assert refusal.application == ("urn:xmpp:blocking:errors", "blocked")


@pytest.mark.parametrize(
    ("kind", "stanza_type", "decision"),
    [
        ("presence", "", "drop"),  # "MUST NOT respond and MUST NOT return an error"
        ("presence", "subscribe", "drop"),
        ("presence", "probe", "drop"),
        ("presence", "unavailable", "drop"),
        ("message", "", "error"),  # "SHOULD return an error, which SHOULD be service-unavailable"
        ("message", "chat", "error"),
        ("message", "normal", "error"),
        ("message", "headline", "error"),
        ("message", "groupchat", "error"),
        ("message", "error", "drop"),  # RFC 6120 §8.3.1: no error for an error
        ("iq", "get", "error"),  # "MUST return an error"
        ("iq", "set", "error"),
        ("iq", "result", "drop"),  # "MUST be silently dropped"
        ("iq", "error", "drop"),
    ],
)
def test_section_3_3_stanzas_from_a_blocked_jid(kind: str, stanza_type: str, decision: str) -> None:
    assert blocking.inbound_decision(kind, stanza_type) == decision
    assert blocking.INBOUND_ERROR is StanzaErrorCondition.SERVICE_UNAVAILABLE


def test_inbound_decision_knows_only_stanzas() -> None:
    with pytest.raises(ValueError, match="not a stanza kind"):
        blocking.inbound_decision("stream", "")


def test_the_feature() -> None:
    assert blocking.FEATURE == "urn:xmpp:blocking"


# ------------------------------------------------------------------------------ §6 JID matching


@pytest.mark.parametrize(
    ("item", "jid", "expected"),
    [
        ("romeo@montague.net/orchard", "romeo@montague.net/orchard", True),
        ("romeo@montague.net/orchard", "romeo@montague.net/balcony", False),
        ("romeo@montague.net/orchard", "romeo@montague.net", False),
        ("romeo@montague.net", "romeo@montague.net", True),
        ("romeo@montague.net", "romeo@montague.net/orchard", True),
        ("romeo@montague.net", "benvolio@montague.net/orchard", False),
        ("romeo@montague.net", "montague.net", False),
        ("montague.net/orchard", "montague.net/orchard", True),
        ("montague.net/orchard", "romeo@montague.net/orchard", False),
        ("montague.net/orchard", "montague.net", False),
        ("montague.net", "montague.net", True),
        ("montague.net", "montague.net/orchard", True),
        ("montague.net", "romeo@montague.net", True),
        ("montague.net", "romeo@montague.net/orchard", True),
        ("montague.net", "romeo@sub.montague.net", False),
        ("Romeo@Montague.NET", "romeo@montague.net/orchard", True),  # items are compared prepared
        ("not a jid@x", "romeo@montague.net", False),
    ],
)
def test_section_6_matching(item: str, jid: str, expected: bool) -> None:
    assert blocking.matches(item, JID.parse(jid)) is expected


def test_blocked_looks_up_the_keys_and_spares_the_owner() -> None:
    juliet = JID.parse("juliet@capulet.com/balcony")
    items = {"capulet.com", "romeo@montague.net"}
    assert blocking.blocked(items, JID.parse("romeo@montague.net/orchard"))
    assert blocking.blocked(items, JID.parse("nurse@capulet.com"))
    assert not blocking.blocked(items, JID.parse("benvolio@montague.net"))
    # §5 (note): never between the account's own resources, even when its domain is blocked
    assert blocking.blocked(items, JID.parse("juliet@capulet.com/chamber"))
    assert not blocking.blocked(items, JID.parse("juliet@capulet.com/chamber"), owner=juliet)
    assert blocking.match_keys(JID.parse("romeo@montague.net/orchard")) == (
        "romeo@montague.net/orchard",
        "romeo@montague.net",
        "montague.net",
    )
    assert blocking.match_keys(JID.parse("montague.net")) == ("montague.net",)


_LABEL = st.text("abcdefghij0123456789", min_size=1, max_size=6)
_DOMAINS = st.lists(_LABEL, min_size=1, max_size=3).map(".".join)
_LOCALS = st.none() | st.text("abcdefxyz._-", min_size=1, max_size=6)
_RESOURCES = st.none() | st.text("ABCabc 0123/@", min_size=1, max_size=6)
_JIDS = st.builds(JID, _LOCALS, _DOMAINS, _RESOURCES)


def _reference(item: JID, jid: JID) -> bool:
    """XEP-0191 §6 spelled out case by case."""
    if item.local is not None and item.resource is not None:
        return jid == item  # user@domain/resource: only that resource
    if item.local is not None:
        return jid.bare == item  # user@domain: any resource
    if item.resource is not None:
        return jid == item  # domain/resource: only that resource
    return jid.domain == item.domain  # domain: the domain and everything at it


@settings(max_examples=300, deadline=None)
@given(_JIDS, _JIDS)
def test_matches_follows_the_four_rules(item: JID, jid: JID) -> None:
    assert blocking.matches(str(item), jid) is _reference(item, jid)
    assert blocking.blocked([str(item)], jid) is _reference(item, jid)


@settings(max_examples=200, deadline=None)
@given(_JIDS, st.data())
def test_each_kind_of_item_covers_what_it_should(jid: JID, data: st.DataObject) -> None:
    other = data.draw(_RESOURCES.filter(lambda r: r != jid.resource))
    assert blocking.matches(jid.domain, jid)  # a domain item covers everything at the domain
    assert blocking.matches(str(jid.bare), jid)  # a bare item covers all its resources
    assert blocking.matches(str(jid), jid)  # a full item covers itself ...
    moved = JID(jid.local, jid.domain, other)
    assert blocking.matches(str(moved), jid) is (other is None)  # another resource never does
    assert not blocking.matches(f"x{jid.domain}", jid)  # ... and nothing at another domain


_XML_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff"))


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(["blocklist", "block", "unblock", "item", "other"]),
    st.sampled_from(["get", "set", "result", "error", ""]),
    st.lists(st.none() | _XML_TEXT, max_size=4),
)
def test_parse_raises_only_refusals(name: str, iq_type: str, values: list[str | None]) -> None:
    element = etree.Element(f"{{urn:xmpp:blocking}}{name}")
    for value in values:
        item = etree.SubElement(element, "{urn:xmpp:blocking}item")
        if value is not None:
            item.set("jid", value)
    try:
        request: object = blocking.parse(iq_type, element)
    except Refusal as refusal:  # anything else fails the test
        request = refusal
    if isinstance(request, Refusal):
        assert request.text
    else:
        assert isinstance(request, blocking.GetList | blocking.Block | blocking.Unblock)
