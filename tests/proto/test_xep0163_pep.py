"""XEP-0163 PEP over XEP-0060: requests and answers from the XEPs' own examples (XEP-0060, XEP-0163,
XEP-0084, XEP-0223, XEP-0384), the errors of XEP-0060, access and interest, and XEP-0115 caps."""

from __future__ import annotations

import string
from collections.abc import Callable
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from xmppauth.proto import xep0163_pep as pep
from xmppauth.proto.errors import StanzaErrorCondition
from xmppauth.proto.jid import JID
from xmppauth.proto.replies import Refusal

_PARSER = etree.XMLParser(remove_blank_text=True)
ERRORS = "http://jabber.org/protocol/pubsub#errors"
C = StanzaErrorCondition


def xml(text: str | bytes) -> etree._Element:
    return etree.fromstring(text, _PARSER)


def canonical(element: etree._Element | str | bytes) -> object:
    """Clark names, sorted attributes, text (whitespace-only dropped): equal whatever the prefixes,
    quoting and namespace declarations of the two serialisations."""
    if not isinstance(element, etree._Element):
        element = xml(element)

    def text(value: str | None) -> str | None:
        return value if value and value.strip() else None

    return (
        element.tag,
        sorted(element.attrib.items()),
        text(element.text),
        [(canonical(child), text(child.tail)) for child in element],
    )


def parse(iq: str) -> pep.Request:
    stanza = xml(iq)
    return pep.parse_pubsub(stanza.get("type", ""), stanza[0])


def refused(iq: str) -> Refusal:
    with pytest.raises(Refusal) as caught:
        parse(iq)
    return caught.value


T = TypeVar("T")


def outcome(call: Callable[[], T]) -> T | Refusal:
    """What ``call`` returns, or the Refusal it raises (anything else propagates and fails the test)."""
    try:
        return call()
    except Refusal as refusal:
        return refusal


def assert_refusal(refusal: Refusal, condition: C, app: str | None, text: str) -> None:
    assert refusal.condition is condition
    assert refusal.application == ((ERRORS, app) if app else None)
    assert refusal.text == text


def error_without_text(stanza: str, refusal: Refusal) -> etree._Element:
    """The <error/> of the answer, its <text/> taken out (the XEPs' examples have none)."""
    (error,) = pep.error_reply(xml(stanza), refusal).findall("{jabber:client}error")
    for text in error.findall("{urn:ietf:params:xml:ns:xmpp-stanzas}text"):
        error.remove(text)
    return error


TUNE = "http://jabber.org/protocol/tune"

# ------------------------------------------------------------------------------------ publishing


def test_xep0163_section_3_publish_tune() -> None:
    request = parse(
        """<iq from='juliet@capulet.lit/balcony' type='set' id='pub1'>
             <pubsub xmlns='http://jabber.org/protocol/pubsub'>
               <publish node='http://jabber.org/protocol/tune'>
                 <item>
                   <tune xmlns='http://jabber.org/protocol/tune'>
                     <artist>Gerald Finzi</artist>
                     <length>255</length>
                     <source>Music for "Love's Labors Lost" (Suite for small orchestra)</source>
                     <title>Introduction (Allegro vigoroso)</title>
                     <track>1</track>
                   </tune>
                 </item>
               </publish>
             </pubsub>
           </iq>"""
    )
    assert isinstance(request, pep.Publish)
    assert (request.node, request.item_id, request.options) == (TUNE, None, {})
    assert request.item.tag == f"{{{TUNE}}}tune"
    assert request.item.findtext(f"{{{TUNE}}}artist") == "Gerald Finzi"
    assert len(pep.new_item_id()) == 32
    assert pep.new_item_id() != pep.new_item_id()


AVATAR_DATA_PUBLISH = """<iq type='set' from='juliet@capulet.lit/chamber' id='publish1'>
  <pubsub xmlns='http://jabber.org/protocol/pubsub'>
    <publish node='urn:xmpp:avatar:data'>
      <item id='111f4b3c50d7b0df729d299bc6f8e9ef9066971f'>
        <data xmlns='urn:xmpp:avatar:data'>
          qANQR1DBwU4DX7jmYZnncm...
        </data>
      </item>
    </publish>
  </pubsub>
</iq>"""


def test_xep0084_publish_avatar_data_and_metadata() -> None:
    data = parse(AVATAR_DATA_PUBLISH)
    assert isinstance(data, pep.Publish)
    assert (data.node, data.item_id) == ("urn:xmpp:avatar:data", "111f4b3c50d7b0df729d299bc6f8e9ef9066971f")
    assert data.item.tag == "{urn:xmpp:avatar:data}data"
    metadata = parse(
        """<iq type='set' from='juliet@capulet.lit/chamber' id='publish2'>
             <pubsub xmlns='http://jabber.org/protocol/pubsub'>
               <publish node='urn:xmpp:avatar:metadata'>
                 <item id='111f4b3c50d7b0df729d299bc6f8e9ef9066971f'>
                   <metadata xmlns='urn:xmpp:avatar:metadata'>
                     <info bytes='12345'
                           id='111f4b3c50d7b0df729d299bc6f8e9ef9066971f'
                           height='64'
                           type='image/png'
                           width='64'/>
                   </metadata>
                 </item>
               </publish>
             </pubsub>
           </iq>"""
    )
    assert isinstance(metadata, pep.Publish)
    assert metadata.node == "urn:xmpp:avatar:metadata"
    assert metadata.item.find("{urn:xmpp:avatar:metadata}info").get("bytes") == "12345"


def test_xep0223_private_storage_with_publish_options() -> None:
    request = parse(
        """<iq from='juliet@capulet.lit/balcony' type='set' id='pdp1'>
             <pubsub xmlns='http://jabber.org/protocol/pubsub'>
               <publish node='storage:bookmarks'>
                 <item>
                   <conference xmlns='storage:bookmarks'
                               autojoin='true'
                               jid='theplay@conference.shakespeare.lit'
                               name='The Play&apos;s the Thing'>
                     <nick>JC</nick>
                     <password>Gl0b3</password>
                   </conference>
                 </item>
               </publish>
               <publish-options>
                 <x xmlns='jabber:x:data' type='submit'>
                   <field var='FORM_TYPE' type='hidden'>
                     <value>http://jabber.org/protocol/pubsub#publish-options</value>
                   </field>
                   <field var='pubsub#persist_items'>
                     <value>true</value>
                   </field>
                   <field var='pubsub#access_model'>
                     <value>whitelist</value>
                   </field>
                 </x>
               </publish-options>
             </pubsub>
           </iq>"""
    )
    assert isinstance(request, pep.Publish)
    assert request.options == {"pubsub#persist_items": ["true"], "pubsub#access_model": ["whitelist"]}
    created = pep.check_publish_options(None, request.options)  # auto-create with the preconditions
    assert created == pep.NodeConfig(access_model="whitelist", persist_items=True)
    assert pep.check_publish_options(created, request.options) is created  # met: publish goes on
    assert not pep.may_access(created, "subscribed")  # XEP-0223 §2: for the owner only
    assert pep.may_access(created, "self")


OMEMO_DEVICES = """<iq from='juliet@capulet.lit' type='set' id='announce1'>
  <pubsub xmlns='http://jabber.org/protocol/pubsub'>
    <publish node='urn:xmpp:omemo:2:devices'>
      <item id='current'>
        <devices xmlns='urn:xmpp:omemo:2'>
          <device id='12345' label='Dino on Lenovo Thinkpad T495' labelsig='b64/encoded/data' />
          <device id='4223' />
          <device id='31415' label='Conversations on Pixel 3' labelsig='b64/encoded/data' />
        </devices>
      </item>
    </publish>
    <publish-options>
      <x xmlns='jabber:x:data' type='submit'>
        <field var='FORM_TYPE' type='hidden'>
          <value>http://jabber.org/protocol/pubsub#publish-options</value>
        </field>
        <field var='pubsub#access_model'>
          <value>open</value>
        </field>
      </x>
    </publish-options>
  </pubsub>
</iq>"""

OMEMO_BUNDLE = """<iq from='juliet@capulet.lit' type='set' id='annouce2'>
  <pubsub xmlns='http://jabber.org/protocol/pubsub'>
    <publish node='urn:xmpp:omemo:2:bundles'>
      <item id='31415'>
        <bundle xmlns='urn:xmpp:omemo:2'>
          <spk id='1'>b64/encoded/data</spk>
          <spks>b64/encoded/data</spks>
          <ik>b64/encoded/data</ik>
          <prekeys>
            <pk id='1'>b64/encoded/data</pk>
            <pk id='2'>b64/encoded/data</pk>
            <pk id='100'>b64/encoded/data</pk>
          </prekeys>
        </bundle>
      </item>
    </publish>
    <publish-options>
      <x xmlns='jabber:x:data' type='submit'>
        <field var='FORM_TYPE' type='hidden'>
          <value>http://jabber.org/protocol/pubsub#publish-options</value>
        </field>
        <field var='pubsub#max_items'>
          <value>max</value>
        </field>
        <field var='pubsub#access_model'>
          <value>open</value>
        </field>
      </x>
    </publish-options>
  </pubsub>
</iq>"""


def test_xep0384_device_list_and_bundle_with_publish_options() -> None:
    devices = parse(OMEMO_DEVICES)
    assert isinstance(devices, pep.Publish)
    assert (devices.node, devices.item_id) == ("urn:xmpp:omemo:2:devices", "current")
    assert pep.check_publish_options(None, devices.options) == pep.NodeConfig(access_model="open")
    bundle = parse(OMEMO_BUNDLE)
    assert isinstance(bundle, pep.Publish)
    assert (bundle.node, bundle.item_id, bundle.item.tag) == (
        "urn:xmpp:omemo:2:bundles",
        "31415",
        "{urn:xmpp:omemo:2}bundle",
    )
    config = pep.check_publish_options(None, bundle.options)
    assert config == pep.NodeConfig(access_model="open", max_items="max")
    assert config.item_limit(500) == 500
    assert pep.may_access(config, "none")  # XEP-0384: strangers must read bundles


def test_xep0384_bundle_to_a_node_configured_otherwise_is_precondition_not_met() -> None:
    """XEP-0060 §7.1.5 rule 1, which XEP-0384 §5.3.2 relies on ("the bundle publication will fail")."""
    bundle = parse(OMEMO_BUNDLE)
    assert isinstance(bundle, pep.Publish)
    with pytest.raises(Refusal) as caught:
        pep.check_publish_options(pep.NodeConfig(), bundle.options)
    assert_refusal(
        caught.value, C.CONFLICT, "precondition-not-met", "the node's pubsub#max_items is 1, not max"
    )
    assert caught.value.error_type == "cancel"


def test_legacy_omemo_nodes_are_ordinary_nodes() -> None:
    request = parse(
        "<iq type='set' id='l'><pubsub xmlns='http://jabber.org/protocol/pubsub'>"
        "<publish node='eu.siacs.conversations.axolotl.bundles:31415'><item id='current'>"
        "<bundle xmlns='eu.siacs.conversations.axolotl'><identityKey>AAAA</identityKey></bundle>"
        "</item></publish></pubsub></iq>"
    )
    assert isinstance(request, pep.Publish)
    assert request.node == "eu.siacs.conversations.axolotl.bundles:31415"


def test_section_7_1_2_publish_result() -> None:
    expected = xml(
        """<iq type='result' from='pubsub.shakespeare.lit' to='hamlet@denmark.lit/blogbot' id='publish2'>
             <pubsub xmlns='http://jabber.org/protocol/pubsub'>
               <publish node='princely_musings'>
                 <item id='ae890ac52d0df67ed7cfdf51b644e901'/>
               </publish>
             </pubsub>
           </iq>"""
    )[0]
    result = pep.publish_result("princely_musings", "ae890ac52d0df67ed7cfdf51b644e901")
    assert canonical(result) == canonical(expected)


# ---------------------------------------------------------------------- retract, items, owner ops


def test_section_7_2_retract() -> None:
    request = parse(
        """<iq type='set' from='hamlet@denmark.lit/elsinore' to='pubsub.shakespeare.lit' id='retract1'>
             <pubsub xmlns='http://jabber.org/protocol/pubsub'>
               <retract node='princely_musings'>
                 <item id='ae890ac52d0df67ed7cfdf51b644e901'/>
               </retract>
             </pubsub>
           </iq>"""
    )
    assert request == pep.Retract("princely_musings", "ae890ac52d0df67ed7cfdf51b644e901", False)
    notify = parse(
        "<iq type='set' id='r'><pubsub xmlns='http://jabber.org/protocol/pubsub'>"
        "<retract node='n' notify='1'><item id='x'/></retract></pubsub></iq>"
    )
    assert notify == pep.Retract("n", "x", True)


@pytest.mark.parametrize(
    ("iq", "expected"),
    [
        (
            """<iq type='get' from='francisco@denmark.lit/barracks' to='pubsub.shakespeare.lit' id='items1'>
                 <pubsub xmlns='http://jabber.org/protocol/pubsub'>
                   <items node='princely_musings'/>
                 </pubsub>
               </iq>""",
            pep.Items("princely_musings"),
        ),
        (
            """<iq type='get' from='francisco@denmark.lit/barracks' to='pubsub.shakespeare.lit' id='items2'>
                 <pubsub xmlns='http://jabber.org/protocol/pubsub'>
                   <items node='princely_musings' max_items='2'/>
                 </pubsub>
               </iq>""",
            pep.Items("princely_musings", 2),
        ),
        (
            """<iq type='get' from='francisco@denmark.lit/barracks' to='pubsub.shakespeare.lit' id='items3'>
                 <pubsub xmlns='http://jabber.org/protocol/pubsub'>
                   <items node='princely_musings'>
                     <item id='368866411b877c30064a5f62b917cffe'/>
                     <item id='4e30f35051b7b8b42abe083742187228'/>
                   </items>
                 </pubsub>
               </iq>""",
            pep.Items(
                "princely_musings",
                None,
                ("368866411b877c30064a5f62b917cffe", "4e30f35051b7b8b42abe083742187228"),
            ),
        ),
        (
            """<iq type='get' from='romeo@montague.lit/home' to='juliet@capulet.lit' id='retrieve1'>
                 <pubsub xmlns='http://jabber.org/protocol/pubsub'>
                   <items node='urn:xmpp:avatar:data'>
                     <item id='111f4b3c50d7b0df729d299bc6f8e9ef9066971f'/>
                   </items>
                 </pubsub>
               </iq>""",
            pep.Items("urn:xmpp:avatar:data", None, ("111f4b3c50d7b0df729d299bc6f8e9ef9066971f",)),
        ),
        (  # XEP-0059's <set/> is not ours to read: it is ignored
            "<iq type='get' id='i'><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='n'/>"
            "<set xmlns='http://jabber.org/protocol/rsm'><max>1</max></set></pubsub></iq>",
            pep.Items("n"),
        ),
    ],
)
def test_section_6_5_items_requests(iq: str, expected: pep.Items) -> None:
    assert parse(iq) == expected


def test_xep0084_items_result_is_the_examples_iq() -> None:
    request = xml(
        """<iq type='get' from='romeo@montague.lit/home' to='juliet@capulet.lit' id='retrieve1'>
             <pubsub xmlns='http://jabber.org/protocol/pubsub'>
               <items node='urn:xmpp:avatar:data'>
                 <item id='111f4b3c50d7b0df729d299bc6f8e9ef9066971f'/>
               </items>
             </pubsub>
           </iq>"""
    )
    expected = xml(
        """<iq xmlns='jabber:client' type='result' from='juliet@capulet.lit' to='romeo@montague.lit/home' id='retrieve1'>
  <pubsub xmlns='http://jabber.org/protocol/pubsub'>
    <items node='urn:xmpp:avatar:data'>
      <item id='111f4b3c50d7b0df729d299bc6f8e9ef9066971f'>
        <data xmlns='urn:xmpp:avatar:data'>
          qANQR1DBwU4DX7jmYZnncm...
        </data>
      </item>
    </items>
  </pubsub>
</iq>"""
    )
    published = parse(AVATAR_DATA_PUBLISH)
    assert isinstance(published, pep.Publish)
    items = [("111f4b3c50d7b0df729d299bc6f8e9ef9066971f", published.item)]
    assert canonical(pep.items_result("urn:xmpp:avatar:data", items, request)) == canonical(expected)
    assert canonical(pep.items_result("urn:xmpp:avatar:data", items)) == canonical(expected[0])
    stored = etree.tostring(published.item)  # what the driver keeps: the same answer from bytes
    assert canonical(pep.items_result("urn:xmpp:avatar:data", [(items[0][0], stored)])) == canonical(
        expected[0]
    )


def test_section_6_5_11_no_items_is_an_empty_items() -> None:
    expected = xml(
        """<iq from='pubsub.shakespeare.lit' id='items1' to='francisco@denmark.lit/barracks' type='result'>
             <pubsub xmlns='http://jabber.org/protocol/pubsub'>
               <items node='princely_musings'/>
             </pubsub>
           </iq>"""
    )[0]
    assert canonical(pep.items_result("princely_musings", [])) == canonical(expected)


def test_section_8_4_delete_and_its_notification() -> None:
    request = parse(
        """<iq type='set' from='hamlet@denmark.lit/elsinore' to='pubsub.shakespeare.lit' id='delete1'>
             <pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>
               <delete node='princely_musings'/>
             </pubsub>
           </iq>"""
    )
    assert request == pep.Delete("princely_musings")
    # §8.4.2's example, without the optional <redirect/> (not offered here) and as PEP sends it
    expected = """<message xmlns='jabber:client' from='hamlet@denmark.lit' to='francisco@denmark.lit' id='foo' type='headline'>
                    <event xmlns='http://jabber.org/protocol/pubsub#event'>
                      <delete node='princely_musings'/>
                    </event>
                  </message>"""
    message = pep.delete_message(
        "hamlet@denmark.lit", "francisco@denmark.lit", "princely_musings", stanza_id="foo"
    )
    assert canonical(message) == canonical(expected)


def test_section_8_1_create_with_a_configuration() -> None:
    request = parse(
        """<iq type='set' from='hamlet@denmark.lit/elsinore' to='pubsub.shakespeare.lit' id='create1'>
             <pubsub xmlns='http://jabber.org/protocol/pubsub'>
               <create node='princely_musings'/>
               <configure>
                 <x xmlns='jabber:x:data' type='submit'>
                   <field var='FORM_TYPE' type='hidden'>
                     <value>http://jabber.org/protocol/pubsub#node_config</value>
                   </field>
                   <field var='pubsub#access_model'><value>whitelist</value></field>
                 </x>
               </configure>
             </pubsub>
           </iq>"""
    )
    assert request == pep.Create("princely_musings", {"pubsub#access_model": ["whitelist"]})
    assert isinstance(request, pep.Create)
    assert pep.apply_configuration(pep.DEFAULTS, request.options) == pep.NodeConfig(access_model="whitelist")
    plain = parse(
        "<iq type='set' id='c'><pubsub xmlns='http://jabber.org/protocol/pubsub'><create node='princely_musings'/></pubsub></iq>"
    )
    assert plain == pep.Create("princely_musings", {})


CONFIGURE_SUBMIT = """<iq type='set' from='hamlet@denmark.lit/elsinore' to='pubsub.shakespeare.lit' id='config2'>
  <pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>
    <configure node='princely_musings'>
      <x xmlns='jabber:x:data' type='submit'>
        <field var='FORM_TYPE' type='hidden'>
          <value>http://jabber.org/protocol/pubsub#node_config</value>
        </field>
        <field var='pubsub#title'><value>Princely Musings (Atom)</value></field>
        <field var='pubsub#deliver_notifications'><value>1</value></field>
        <field var='pubsub#deliver_payloads'><value>1</value></field>
        <field var='pubsub#persist_items'><value>1</value></field>
        <field var='pubsub#max_items'><value>10</value></field>
        <field var='pubsub#access_model'><value>roster</value></field>
        <field var='pubsub#roster_groups_allowed'>
          <value>friends</value>
          <value>servants</value>
          <value>courtiers</value>
        </field>
        <field var='pubsub#send_last_published_item'><value>never</value></field>
        <field var='pubsub#notification_type'><value>headline</value></field>
        <field var='pubsub#notify_retract'><value>0</value></field>
      </x>
    </configure>
  </pubsub>
</iq>"""


def test_section_8_2_configure_get_submit_and_cancel() -> None:
    get = parse(
        """<iq type='get' from='hamlet@denmark.lit/elsinore' to='pubsub.shakespeare.lit' id='config1'>
             <pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>
               <configure node='princely_musings'/>
             </pubsub>
           </iq>"""
    )
    assert get == pep.ConfigureGet("princely_musings")
    submitted = parse(CONFIGURE_SUBMIT)
    assert isinstance(submitted, pep.ConfigureSet)
    assert submitted.node == "princely_musings"
    assert submitted.options is not None
    assert submitted.options["pubsub#roster_groups_allowed"] == ["friends", "servants", "courtiers"]
    with pytest.raises(Refusal) as caught:  # pubsub#title is not kept here
        pep.apply_configuration(pep.DEFAULTS, submitted.options)
    assert_refusal(
        caught.value, C.NOT_ACCEPTABLE, None, "pubsub#title is not a node option this service knows"
    )
    del submitted.options["pubsub#title"]
    assert pep.apply_configuration(pep.DEFAULTS, submitted.options) == pep.NodeConfig(
        access_model="roster",
        max_items=10,
        persist_items=True,
        send_last_published_item="never",
        roster_groups_allowed=frozenset({"friends", "servants", "courtiers"}),
        notify_retract=False,
    )
    cancel = parse(
        """<iq type='set' from='hamlet@denmark.lit/elsinore' to='pubsub.shakespeare.lit' id='config2'>
             <pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>
               <configure node='princely_musings'>
                 <x xmlns='jabber:x:data' type='cancel'/>
               </configure>
             </pubsub>
           </iq>"""
    )
    assert cancel == pep.ConfigureSet("princely_musings", None)


def test_configure_form_round_trips() -> None:
    config = pep.NodeConfig(
        access_model="roster", max_items="max", roster_groups_allowed=frozenset({"b", "a"})
    )
    form = pep.configure_form("n", config)
    x = form.find("{http://jabber.org/protocol/pubsub#owner}configure/{jabber:x:data}x")
    assert form.find("{http://jabber.org/protocol/pubsub#owner}configure").get("node") == "n"
    assert x.get("type") == "form"
    fields = {
        f.get("var"): [v.text for v in f.findall("{jabber:x:data}value")]
        for f in x.findall("{jabber:x:data}field")
    }
    assert fields["FORM_TYPE"] == ["http://jabber.org/protocol/pubsub#node_config"]
    assert fields["pubsub#access_model"] == ["roster"]
    assert fields["pubsub#roster_groups_allowed"] == ["a", "b"]
    options = x.find("{jabber:x:data}field[@var='pubsub#access_model']").findall("{jabber:x:data}option")
    assert [o.findtext("{jabber:x:data}value") for o in options] == [
        "presence",
        "open",
        "whitelist",
        "roster",
    ]
    del fields["FORM_TYPE"]
    submitted = {var: [value or "" for value in values] for var, values in fields.items()}
    assert pep.apply_configuration(pep.DEFAULTS, submitted) == config  # the form, sent back, is the config


# --------------------------------------------------------------------------- subscribe/unsubscribe


def test_section_6_1_and_6_2_subscribe_and_unsubscribe() -> None:
    subscribe = parse(
        """<iq type='set' from='francisco@denmark.lit/barracks' to='pubsub.shakespeare.lit' id='sub1'>
             <pubsub xmlns='http://jabber.org/protocol/pubsub'>
               <subscribe node='princely_musings' jid='francisco@denmark.lit'/>
             </pubsub>
           </iq>"""
    )
    assert subscribe == pep.Subscribe("princely_musings", JID.parse("francisco@denmark.lit"))
    unsubscribe = parse(
        """<iq type='set' from='francisco@denmark.lit/barracks' to='pubsub.shakespeare.lit' id='unsub1'>
             <pubsub xmlns='http://jabber.org/protocol/pubsub'>
               <unsubscribe node='princely_musings' jid='francisco@denmark.lit'/>
             </pubsub>
           </iq>"""
    )
    assert unsubscribe == pep.Unsubscribe("princely_musings", JID.parse("francisco@denmark.lit"))
    assert isinstance(subscribe, pep.Subscribe)
    assert isinstance(unsubscribe, pep.Unsubscribe)
    francisco = JID.parse("francisco@denmark.lit/barracks")
    pep.check_subscriber(subscribe, francisco)
    pep.check_subscriber(unsubscribe, francisco)
    # §6.1.2's example less the subid (no subscription ids here)
    expected = """<pubsub xmlns='http://jabber.org/protocol/pubsub'>
                    <subscription node='princely_musings' jid='francisco@denmark.lit' subscription='subscribed'/>
                  </pubsub>"""
    result = pep.subscription_result("princely_musings", subscribe.jid)
    assert canonical(result) == canonical(expected)
    none = pep.subscription_result("princely_musings", subscribe.jid, subscribed=False)
    assert none[0].get("subscription") == "none"


def test_section_6_1_3_1_jids_do_not_match() -> None:
    request = pep.Subscribe("princely_musings", JID.parse("bernardo@denmark.lit"))
    with pytest.raises(Refusal) as caught:
        pep.check_subscriber(request, JID.parse("francisco@denmark.lit/barracks"))
    assert_refusal(
        caught.value, C.BAD_REQUEST, "invalid-jid", "you can only subscribe an address of your own account"
    )
    example = xml(
        """<iq xmlns='jabber:client' type='error' from='pubsub.shakespeare.lit' to='francisco@denmark.lit/barracks' id='sub1'>
             <error type='modify'>
               <bad-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>
               <invalid-jid xmlns='http://jabber.org/protocol/pubsub#errors'/>
             </error>
           </iq>"""
    )
    stanza = "<iq xmlns='jabber:client' type='set' from='francisco@denmark.lit/barracks' to='pubsub.shakespeare.lit' id='sub1'/>"
    assert canonical(error_without_text(stanza, caught.value)) == canonical(example[0])
    with pytest.raises(Refusal) as caught:
        pep.check_subscriber(
            pep.Unsubscribe("n", JID.parse("bernardo@denmark.lit")), JID.parse("francisco@denmark.lit")
        )
    assert_refusal(caught.value, C.FORBIDDEN, None, "you can only unsubscribe an address of your own account")


# ------------------------------------------------------------------------------ request refusals

PUBSUB_SET = "<iq type='set' id='x'><pubsub xmlns='http://jabber.org/protocol/pubsub'>{}</pubsub></iq>"
PUBSUB_GET = "<iq type='get' id='x'><pubsub xmlns='http://jabber.org/protocol/pubsub'>{}</pubsub></iq>"
OWNER_SET = "<iq type='set' id='x'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>{}</pubsub></iq>"
OWNER_GET = "<iq type='get' id='x'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>{}</pubsub></iq>"
P = "<item><p xmlns='urn:example'/></item>"
LONG = "n" * 1024


def options(
    *fields: str, form_type: str = "http://jabber.org/protocol/pubsub#publish-options", kind: str = "submit"
) -> str:
    return (
        f"<publish-options><x xmlns='jabber:x:data' type='{kind}'>"
        f"<field var='FORM_TYPE' type='hidden'><value>{form_type}</value></field>{''.join(fields)}</x></publish-options>"
    )


@pytest.mark.parametrize(
    ("iq", "condition", "app", "text"),
    [
        (
            PUBSUB_SET.format(f"<publish>{P}</publish>"),
            C.BAD_REQUEST,
            "nodeid-required",
            "the request names no node (a 'node' attribute)",
        ),
        (
            PUBSUB_SET.format(f"<publish node=''>{P}</publish>"),
            C.BAD_REQUEST,
            "nodeid-required",
            "the request names no node (a 'node' attribute)",
        ),
        (
            PUBSUB_SET.format(f"<publish node='{LONG}'>{P}</publish>"),
            C.NOT_ACCEPTABLE,
            None,
            "node names are at most 1023 bytes long",
        ),
        (
            PUBSUB_SET.format("<publish node='n'/>"),
            C.BAD_REQUEST,
            "item-required",
            "publish an <item/> with one payload element",
        ),
        (
            PUBSUB_SET.format(f"<publish node='n'>{P}{P}</publish>"),
            C.BAD_REQUEST,
            "invalid-payload",
            "publish one <item/> per request (batch publishing was removed)",
        ),
        (
            PUBSUB_SET.format("<publish node='n'><item id='i'/></publish>"),
            C.BAD_REQUEST,
            "payload-required",
            "the <item/> has no payload element",
        ),
        (
            PUBSUB_SET.format(
                "<publish node='n'><item><a xmlns='urn:a'/><b xmlns='urn:b'/></item></publish>"
            ),
            C.BAD_REQUEST,
            "invalid-payload",
            "an <item/> holds exactly one payload element and nothing else",
        ),
        (
            PUBSUB_SET.format("<publish node='n'><item>text<a xmlns='urn:a'/></item></publish>"),
            C.BAD_REQUEST,
            "invalid-payload",
            "an <item/> holds exactly one payload element and nothing else",
        ),
        (
            PUBSUB_SET.format("<publish node='n'><item><a xmlns='urn:a'/>text</item></publish>"),
            C.BAD_REQUEST,
            "invalid-payload",
            "an <item/> holds exactly one payload element and nothing else",
        ),
        (
            PUBSUB_SET.format("<publish node='n'><item><body xmlns='jabber:client'/></item></publish>"),
            C.BAD_REQUEST,
            "invalid-payload",
            "the payload element needs a namespace of its own",
        ),
        (
            PUBSUB_SET.format("<publish node='n'><item><body xmlns=''/></item></publish>"),
            C.BAD_REQUEST,
            "invalid-payload",
            "the payload element needs a namespace of its own",
        ),
        (
            PUBSUB_SET.format("<publish node='n'><item id=''><p xmlns='urn:p'/></item></publish>"),
            C.BAD_REQUEST,
            None,
            "an item id is never empty: leave the attribute out to have one made",
        ),
        (
            PUBSUB_SET.format(f"<publish node='n'><item id='{LONG}'><p xmlns='urn:p'/></item></publish>"),
            C.NOT_ACCEPTABLE,
            None,
            "item ids are at most 1023 bytes long",
        ),
        (
            PUBSUB_SET.format(f"<publish node='n'>{P}</publish>" + options(form_type="urn:other")),
            C.BAD_REQUEST,
            None,
            "the form's FORM_TYPE must be http://jabber.org/protocol/pubsub#publish-options",
        ),
        (
            PUBSUB_SET.format(f"<publish node='n'>{P}</publish>" + options(kind="form")),
            C.BAD_REQUEST,
            None,
            "<publish-options/> takes a form of type 'submit', not 'form'",
        ),
        (
            PUBSUB_SET.format(f"<publish node='n'>{P}</publish>" + options(kind="cancel")),
            C.BAD_REQUEST,
            None,
            "<publish-options/> takes a submitted form, not a cancelled one",
        ),
        (
            PUBSUB_SET.format(
                f"<publish node='n'>{P}</publish>" + options("<field var='a'/><field var='a'/>")
            ),
            C.BAD_REQUEST,
            None,
            "each field of a submitted form has a 'var' of its own, not 'a'",
        ),
        (
            PUBSUB_SET.format(
                f"<publish node='n'>{P}</publish>" + options("<field><value>1</value></field>")
            ),
            C.BAD_REQUEST,
            None,
            "each field of a submitted form has a 'var' of its own, not None",
        ),
        (
            PUBSUB_GET.format(f"<publish node='n'>{P}</publish>"),
            C.BAD_REQUEST,
            None,
            "<publish/> goes in an iq of type set, not 'get'",
        ),
        (
            PUBSUB_SET.format("<items node='n'/>"),
            C.BAD_REQUEST,
            None,
            "<items/> goes in an iq of type get, not 'set'",
        ),
        (
            OWNER_SET.format("<configure node='n'/>").replace("'set'", "'result'"),
            C.BAD_REQUEST,
            None,
            "<configure/> goes in an iq of type get or set, not 'result'",
        ),
        (
            PUBSUB_SET.format(f"<publish node='n'>{P}</publish><retract node='n'><item id='i'/></retract>"),
            C.BAD_REQUEST,
            None,
            "one request per <pubsub/>: <publish/> cannot be combined with what follows it",
        ),
        (
            PUBSUB_SET.format(f"<publish node='n'>{P}</publish>{options()}{options()}"),
            C.BAD_REQUEST,
            None,
            "one request per <pubsub/>: <publish/> cannot be combined with what follows it",
        ),
        (PUBSUB_SET.format(""), C.BAD_REQUEST, None, "the <pubsub/> holds no request"),
        (
            PUBSUB_SET.format("<frobnicate/>"),
            C.FEATURE_NOT_IMPLEMENTED,
            None,
            "<frobnicate/> is not a pubsub request",
        ),
        (
            PUBSUB_SET.format("<retract node='n'/>"),
            C.BAD_REQUEST,
            "item-required",
            "name the item to retract: <item id='...'/>",
        ),
        (
            PUBSUB_SET.format("<retract node='n'><item/></retract>"),
            C.BAD_REQUEST,
            "item-required",
            "name the item to retract: <item id='...'/>",
        ),
        (
            PUBSUB_SET.format("<retract><item id='i'/></retract>"),
            C.BAD_REQUEST,
            "nodeid-required",
            "the request names no node (a 'node' attribute)",
        ),
        (
            PUBSUB_SET.format("<retract node='n'><item id='i'/><item id='j'/></retract>"),
            C.BAD_REQUEST,
            None,
            "retract one item per request",
        ),
        (
            PUBSUB_SET.format("<retract node='n' notify='yes'><item id='i'/></retract>"),
            C.BAD_REQUEST,
            None,
            "'notify' is a boolean (true, false, 1 or 0), not 'yes'",
        ),
        (
            PUBSUB_GET.format("<items node='n' max_items='0'/>"),
            C.BAD_REQUEST,
            None,
            "max_items is a positive whole number, not '0'",
        ),
        (
            PUBSUB_GET.format("<items node='n' max_items='-1'/>"),
            C.BAD_REQUEST,
            None,
            "max_items is a positive whole number, not '-1'",
        ),
        (
            PUBSUB_GET.format("<items node='n' max_items='9999999999'/>"),
            C.BAD_REQUEST,
            None,
            "max_items is a positive whole number, not '9999999999'",
        ),
        (
            PUBSUB_GET.format("<items node='n'><item/></items>"),
            C.BAD_REQUEST,
            None,
            "each <item/> of an items request names an item by its 'id'",
        ),
        (
            PUBSUB_GET.format("<items/>"),
            C.BAD_REQUEST,
            "nodeid-required",
            "the request names no node (a 'node' attribute)",
        ),
        (
            PUBSUB_SET.format("<create/>"),
            C.NOT_ACCEPTABLE,
            "nodeid-required",
            "PEP has no instant nodes: name the node to create",
        ),
        (
            PUBSUB_SET.format("<create node='n'/><configure node='n'/>"),
            C.BAD_REQUEST,
            None,
            "the <configure/> that follows <create/> names no node of its own",
        ),
        (
            OWNER_SET.format("<configure node='n'/>"),
            C.BAD_REQUEST,
            None,
            "a configuration is submitted as a data form in <configure/>",
        ),
        (
            OWNER_GET.format("<configure/>"),
            C.BAD_REQUEST,
            "nodeid-required",
            "the request names no node (a 'node' attribute)",
        ),
        (
            OWNER_SET.format("<delete/>"),
            C.BAD_REQUEST,
            "nodeid-required",
            "the request names no node (a 'node' attribute)",
        ),
        (
            PUBSUB_SET.format("<subscribe node='n'/>"),
            C.BAD_REQUEST,
            "jid-required",
            "<subscribe/> needs the subscriber's 'jid'",
        ),
        (
            PUBSUB_SET.format("<unsubscribe node='n' jid='a@b@c'/>"),
            C.BAD_REQUEST,
            "invalid-jid",
            "the 'jid' is not a JID: localpart contains '@', which RFC 7622 §3.3.1 forbids",
        ),
        (
            PUBSUB_SET.format("<subscribe jid='a@b'/>"),
            C.BAD_REQUEST,
            "nodeid-required",
            "the request names no node (a 'node' attribute)",
        ),
    ],
)
def test_malformed_requests_get_the_xep0060_errors(iq: str, condition: C, app: str | None, text: str) -> None:
    assert_refusal(refused(iq), condition, app, text)


def test_a_non_pubsub_element_is_not_implemented() -> None:
    with pytest.raises(Refusal) as caught:
        pep.parse_pubsub("get", xml("<query xmlns='http://jabber.org/protocol/disco#items'/>"))
    assert_refusal(caught.value, C.FEATURE_NOT_IMPLEMENTED, None, "not a <pubsub/> request")


@pytest.mark.parametrize(
    ("iq", "feature", "text"),
    [
        (
            PUBSUB_GET.format("<subscriptions/>"),
            "retrieve-subscriptions",
            "<subscriptions/> is not offered by this PEP service",
        ),
        (
            PUBSUB_GET.format("<affiliations/>"),
            "retrieve-affiliations",
            "<affiliations/> is not offered by this PEP service",
        ),
        (
            PUBSUB_GET.format("<options node='n' jid='a@b'/>"),
            "subscription-options",
            "<options/> is not offered by this PEP service",
        ),
        (
            PUBSUB_GET.format("<default/>"),
            "retrieve-default-sub",
            "<default/> is not offered by this PEP service",
        ),
        (OWNER_GET.format("<default/>"), "retrieve-default", "<default/> is not offered by this PEP service"),
        (OWNER_SET.format("<purge node='n'/>"), "purge-nodes", "<purge/> is not offered by this PEP service"),
        (
            OWNER_GET.format("<subscriptions node='n'/>"),
            "manage-subscriptions",
            "<subscriptions/> is not offered by this PEP service",
        ),
        (
            OWNER_GET.format("<affiliations node='n'/>"),
            "modify-affiliations",
            "<affiliations/> is not offered by this PEP service",
        ),
        (
            PUBSUB_SET.format("<subscribe node='n' jid='a@b'/><options/>"),
            "subscription-options",
            "subscription options are not supported",
        ),
    ],
)
def test_requests_not_offered_name_their_feature(iq: str, feature: str, text: str) -> None:
    refusal = refused(iq)
    assert isinstance(refusal, pep.Unsupported)
    assert_refusal(refusal, C.FEATURE_NOT_IMPLEMENTED, "unsupported", text)
    assert refusal.feature == feature


def test_error_reply_carries_the_unsupported_feature() -> None:
    """XEP-0060 §6.1.3.10, "Subscribing not supported", as a PEP service that refused it would say it."""
    example = xml(
        """<iq xmlns='jabber:client' type='error' from='pubsub.shakespeare.lit' to='francisco@denmark.lit/barracks' id='sub1'>
             <error type='cancel'>
               <feature-not-implemented xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>
               <unsupported xmlns='http://jabber.org/protocol/pubsub#errors' feature='subscribe'/>
             </error>
           </iq>"""
    )
    stanza = "<iq xmlns='jabber:client' type='set' from='francisco@denmark.lit/barracks' to='pubsub.shakespeare.lit' id='sub1'/>"
    error = error_without_text(stanza, pep.Unsupported("subscribe", "subscriptions are off"))
    assert canonical(error) == canonical(example[0])
    plain = pep.error_reply(xml(stanza), Refusal(C.FORBIDDEN, "no"))
    assert plain.get("type") == "error"
    assert plain.find(f"{{jabber:client}}error/{{{ERRORS}}}unsupported") is None


@pytest.mark.parametrize(
    ("stanza", "example"),
    [
        (  # §7.1.3.7 "Publisher attempts to publish to persistent node with no item"
            "<iq xmlns='jabber:client' type='set' id='publish1'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='princely_musings'/></pubsub></iq>",
            """<error type='modify'>
                 <bad-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>
                 <item-required xmlns='http://jabber.org/protocol/pubsub#errors'/>
               </error>""",
        ),
        (  # §7.1.3.6 "Entity attempts to publish item with multiple payload elements"
            "<iq xmlns='jabber:client' type='set' id='publish1'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='princely_musings'><item><a xmlns='urn:a'/><b xmlns='urn:b'/></item></publish></pubsub></iq>",
            """<error type='modify'>
                 <bad-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>
                 <invalid-payload xmlns='http://jabber.org/protocol/pubsub#errors'/>
               </error>""",
        ),
        (  # §7.2.3.3 "Request does not specify a node"
            "<iq xmlns='jabber:client' type='set' id='retract1'><pubsub xmlns='http://jabber.org/protocol/pubsub'><retract><item id='i'/></retract></pubsub></iq>",
            """<error type='modify'>
                 <bad-request xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>
                 <nodeid-required xmlns='http://jabber.org/protocol/pubsub#errors'/>
               </error>""",
        ),
        (  # §8.1.1 "Service does not support instant nodes"
            "<iq xmlns='jabber:client' type='set' id='create2'><pubsub xmlns='http://jabber.org/protocol/pubsub'><create/></pubsub></iq>",
            """<error type='modify'>
                 <not-acceptable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>
                 <nodeid-required xmlns='http://jabber.org/protocol/pubsub#errors'/>
               </error>""",
        ),
    ],
)
def test_errors_look_like_the_xep0060_examples(stanza: str, example: str) -> None:
    refusal = refused(stanza)
    wrapped = f"<iq xmlns='jabber:client' type='error'>{example}</iq>"
    assert canonical(error_without_text(stanza, refusal)) == canonical(xml(wrapped)[0])


# --------------------------------------------------------------------------- options and config


def fields(**values: str | list[str]) -> dict[str, list[str]]:
    return {f"pubsub#{k}": v if isinstance(v, list) else [v] for k, v in values.items()}


def test_publish_options_that_are_met_or_fixed() -> None:
    node = pep.NodeConfig(max_items=10, access_model="open")
    assert pep.check_publish_options(node, fields(max_items="10", access_model="open")) is node
    fixed = fields(
        deliver_payloads="1", deliver_notifications="true", publish_model="publishers", purge_offline="0"
    )
    assert pep.check_publish_options(node, fixed) is node
    assert pep.check_publish_options(None, fixed) == pep.DEFAULTS
    defaults = pep.NodeConfig(max_items="max")
    assert pep.check_publish_options(None, {}, defaults=defaults) == defaults


@pytest.mark.parametrize(
    ("config", "options", "text"),
    [
        (
            pep.NodeConfig(),
            fields(access_model="open"),
            "the node's pubsub#access_model is presence, not open",
        ),
        (
            pep.NodeConfig(),
            fields(persist_items="false"),
            "the node's pubsub#persist_items is true, not false",
        ),
        (
            pep.NodeConfig(),
            fields(roster_groups_allowed=["a"]),
            "the node's pubsub#roster_groups_allowed is (none), not a",
        ),
        (None, fields(title="Bookmarks"), "pubsub#title is not a node option this service knows"),
        (pep.NodeConfig(), {"urn:x#y": ["1"]}, "urn:x#y is not a node option this service knows"),
        (None, fields(deliver_payloads="false"), "pubsub#deliver_payloads is always true on this service"),
        (
            pep.NodeConfig(),
            fields(notification_type="normal"),
            "pubsub#notification_type is always headline on this service",
        ),
    ],
)
def test_publish_options_not_met(
    config: pep.NodeConfig | None, options: dict[str, list[str]], text: str
) -> None:
    with pytest.raises(Refusal) as caught:
        pep.check_publish_options(config, options)
    assert_refusal(caught.value, C.CONFLICT, "precondition-not-met", text)


@pytest.mark.parametrize(
    ("options", "app", "text"),
    [
        (
            fields(access_model="authorize"),
            "unsupported-access-model",
            "pubsub#access_model is one of presence, open, whitelist, roster, not 'authorize'",
        ),
        (fields(access_model=["open", "presence"]), None, "pubsub#access_model takes exactly one value"),
        (fields(max_items="lots"), None, "pubsub#max_items is a positive whole number or 'max', not 'lots'"),
        (fields(max_items="0"), None, "pubsub#max_items is a positive whole number or 'max', not '0'"),
        (fields(max_items="1001"), None, "pubsub#max_items is at most 1000 here (or 'max')"),
        (
            fields(persist_items="yes"),
            None,
            "pubsub#persist_items is a boolean (true, false, 1 or 0), not 'yes'",
        ),
        (
            fields(send_last_published_item="always"),
            None,
            "pubsub#send_last_published_item is one of never, on_sub, on_sub_and_presence, not 'always'",
        ),
        (fields(notify_retract=[]), None, "pubsub#notify_retract takes exactly one value"),
    ],
)
def test_ill_formed_option_values_are_not_acceptable(
    options: dict[str, list[str]], app: str | None, text: str
) -> None:
    with pytest.raises(Refusal) as caught:
        pep.check_publish_options(None, options, ceiling=1000)
    assert_refusal(caught.value, C.NOT_ACCEPTABLE, app, text)
    with pytest.raises(Refusal) as caught:
        pep.apply_configuration(pep.DEFAULTS, options, ceiling=1000)
    assert_refusal(caught.value, C.NOT_ACCEPTABLE, app, text)


def test_apply_configuration_refuses_fixed_fields_set_otherwise() -> None:
    with pytest.raises(Refusal) as caught:
        pep.apply_configuration(pep.DEFAULTS, fields(purge_offline="1"))
    assert_refusal(
        caught.value, C.NOT_ACCEPTABLE, None, "pubsub#purge_offline is always false on this service"
    )


def test_defaults_and_item_limit() -> None:
    config = pep.NodeConfig()
    assert (config.access_model, config.max_items, config.persist_items) == ("presence", 1, True)
    assert config.send_last_published_item == "on_sub_and_presence"  # XEP-0163 §5
    assert config.item_limit(100) == 1
    assert pep.NodeConfig(max_items=250).item_limit(100) == 100


# ---------------------------------------------------------------------------------- access model


@pytest.mark.parametrize(
    ("model", "relation", "groups", "allowed"),
    [
        ("presence", "self", (), True),
        ("presence", "subscribed", (), True),
        ("presence", "roster", (), False),
        ("presence", "none", (), False),
        ("open", "none", (), True),
        ("open", "roster", (), True),
        ("whitelist", "self", (), True),
        ("whitelist", "subscribed", ("friends",), False),
        ("roster", "self", (), True),
        ("roster", "subscribed", ("friends",), True),
        ("roster", "subscribed", ("enemies",), False),
        ("roster", "roster", ("friends",), False),
        ("roster", "none", (), False),
    ],
)
def test_may_access(
    model: pep.AccessModel, relation: pep.Relation, groups: tuple[str, ...], allowed: bool
) -> None:
    config = pep.NodeConfig(access_model=model, roster_groups_allowed=frozenset({"friends"}))
    assert pep.may_access(config, relation, groups) is allowed
    assert (pep.access_refusal(config, relation, groups) is None) is allowed


@pytest.mark.parametrize(
    ("model", "relation", "condition", "app", "text"),
    [
        (
            "presence",
            "none",
            C.NOT_AUTHORIZED,
            "presence-subscription-required",
            "this node is for the owner's presence subscribers",
        ),
        (
            "roster",
            "roster",
            C.NOT_AUTHORIZED,
            "presence-subscription-required",
            "this node is for the owner's presence subscribers",
        ),
        (
            "roster",
            "subscribed",
            C.NOT_AUTHORIZED,
            "not-in-roster-group",
            "this node is for roster groups you are not in",
        ),
        ("whitelist", "subscribed", C.NOT_ALLOWED, "closed-node", "only the owner may read this node"),
    ],
)
def test_section_6_5_9_access_errors(
    model: pep.AccessModel, relation: pep.Relation, condition: C, app: str, text: str
) -> None:
    refusal = pep.access_refusal(pep.NodeConfig(access_model=model), relation, ("strangers",))
    assert refusal is not None
    assert_refusal(refusal, condition, app, text)


def test_xep0060_section_9_2_who_gets_notified() -> None:
    """Juliet's contacts of XEP-0060 §9.2: the nurse wants activity, geoloc and tune; Romeo geoloc and tune."""
    nurse = pep.notify_nodes(
        [
            "http://jabber.org/protocol/activity",
            "http://jabber.org/protocol/activity+notify",
            "http://jabber.org/protocol/geoloc",
            "http://jabber.org/protocol/geoloc+notify",
            "http://jabber.org/protocol/muc",
            "http://jabber.org/protocol/tune",
            "http://jabber.org/protocol/tune+notify",
        ]
    )
    romeo = pep.notify_nodes(
        [
            "http://jabber.org/protocol/geoloc",
            "http://jabber.org/protocol/geoloc+notify",
            "http://jabber.org/protocol/tune",
            "http://jabber.org/protocol/tune+notify",
            "+notify",
        ]
    )
    assert romeo == {"http://jabber.org/protocol/geoloc", TUNE}
    presence = pep.NodeConfig()
    geoloc = pep.NodeConfig(access_model="roster", roster_groups_allowed=frozenset({"Friends"}))

    def notified(config: pep.NodeConfig, node: str, wants: frozenset[str], groups: tuple[str, ...]) -> bool:
        return pep.receives_notification(config, "subscribed", interested=node in wants, groups=groups)

    assert notified(presence, TUNE, nurse, ("Servants",))
    assert notified(presence, TUNE, romeo, ("Friends",))
    activity = "http://jabber.org/protocol/activity"
    assert notified(presence, activity, nurse, ("Servants",))
    assert not notified(presence, activity, romeo, ("Friends",))
    geo = "http://jabber.org/protocol/geoloc"
    assert not notified(geoloc, geo, nurse, ("Servants",))  # not in the roster group
    assert notified(geoloc, geo, romeo, ("Friends",))


def test_receives_notification_other_cases() -> None:
    presence, open_ = pep.NodeConfig(), pep.NodeConfig(access_model="open")
    assert pep.receives_notification(presence, "self", interested=True)  # the owner, with interest
    assert not pep.receives_notification(presence, "self", interested=False)
    assert not pep.receives_notification(presence, "none", interested=True)  # benvolio
    assert not pep.receives_notification(presence, "none", interested=True, subscribed=True)
    assert pep.receives_notification(open_, "none", interested=True)  # XEP-0060 §9.1.3
    assert pep.receives_notification(open_, "none", interested=False, subscribed=True)  # §6.1


# ------------------------------------------------------------------------------------ notifications


def test_xep0223_notification_is_the_examples_message() -> None:
    expected = """<message xmlns='jabber:client' from='juliet@capulet.lit' to='juliet@capulet.lit/balcony' type='headline' id='bmfoo1'>
  <event xmlns='http://jabber.org/protocol/pubsub#event'>
    <items node='storage:bookmarks'>
      <item id='SomeID'>
        <conference xmlns='storage:bookmarks'
                    autojoin='true'
                    jid='theplay@conference.shakespeare.lit'
                    name='The Play&apos;s the Thing'>
          <nick>JC</nick>
          <password>Gl0b3</password>
        </conference>
      </item>
    </items>
  </event>
</message>"""
    conference = xml(expected)[0][0][0][0]  # the payload, as a client's publish would carry it
    message = pep.event_message(
        "juliet@capulet.lit",
        "juliet@capulet.lit/balcony",
        "storage:bookmarks",
        [("SomeID", conference)],
        stanza_id="bmfoo1",
    )
    assert canonical(message) == canonical(expected)


def test_xep0384_device_list_notification() -> None:
    expected = """<message xmlns='jabber:client' from='juliet@capulet.lit' to='romeo@montague.lit' type='headline' id='update_01'>
  <event xmlns='http://jabber.org/protocol/pubsub#event'>
    <items node='urn:xmpp:omemo:2:devices'>
      <item id='current'>
        <devices xmlns='urn:xmpp:omemo:2'>
          <device id='12345' />
          <device id='4223' label='Gajim on Ubuntu Linux' labelsig='b64/encoded/data' />
        </devices>
      </item>
    </items>
  </event>
</message>"""
    stored = b"<devices xmlns='urn:xmpp:omemo:2'><device id='12345'/><device id='4223' label='Gajim on Ubuntu Linux' labelsig='b64/encoded/data'/></devices>"
    message = pep.event_message(
        "juliet@capulet.lit",
        "romeo@montague.lit",
        "urn:xmpp:omemo:2:devices",
        [("current", stored)],
        stanza_id="update_01",
    )
    assert canonical(message) == canonical(expected)
    generated = xml(pep.event_message("juliet@capulet.lit", "romeo@montague.lit", "n", [("current", stored)]))
    assert len(generated.get("id", "")) == 32  # XEP-0060 §7.1.2: notifications SHOULD have an id


def test_xep0084_notification_with_replyto() -> None:
    example = xml(
        """<message xmlns='jabber:client' to='romeo@montague.lit/home' from='juliet@capulet.lit'>
  <event xmlns='http://jabber.org/protocol/pubsub#event'>
    <items node='urn:xmpp:avatar:metadata'>
      <item id='111f4b3c50d7b0df729d299bc6f8e9ef9066971f'>
        <metadata xmlns='urn:xmpp:avatar:metadata'>
          <info bytes='12345'
                height='64'
                id='111f4b3c50d7b0df729d299bc6f8e9ef9066971f'
                type='image/png'
                width='64'/>
        </metadata>
      </item>
    </items>
  </event>
  <addresses xmlns='http://jabber.org/protocol/address'>
    <address type='replyto' jid='juliet@capulet.lit/chamber'/>
  </addresses>
</message>"""
    )
    metadata = example[0][0][0][0]
    message = xml(
        pep.event_message(
            "juliet@capulet.lit",
            "romeo@montague.lit/home",
            "urn:xmpp:avatar:metadata",
            [("111f4b3c50d7b0df729d299bc6f8e9ef9066971f", metadata)],
            replyto="juliet@capulet.lit/chamber",
        )
    )
    assert (message.get("from"), message.get("to"), message.get("type")) == (
        "juliet@capulet.lit",
        "romeo@montague.lit/home",
        "headline",
    )
    assert [canonical(child) for child in message] == [
        canonical(child) for child in example
    ]  # the example has no type/id


def test_xep0163_last_published_item_carries_its_delay() -> None:
    example = xml(
        """<message xmlns='jabber:client' from='juliet@capulet.lit' to='romeo@montague.lit/orchard' type='headline' id='foo'>
  <event xmlns='http://jabber.org/protocol/pubsub#event'>
    <items node='http://jabber.org/protocol/tune'>
      <item>
        <tune xmlns='http://jabber.org/protocol/tune'>
          <artist>Gerald Finzi</artist>
          <length>255</length>
          <source>Music for "Love's Labors Lost" (Suite for small orchestra)</source>
          <title>Introduction (Allegro vigoroso)</title>
          <track>1</track>
        </tune>
      </item>
    </items>
  </event>
  <delay xmlns='urn:xmpp:delay' stamp='2003-12-13T23:58:37Z'/>
</message>"""
    )
    tune = example[0][0][0][0]
    message = xml(
        pep.event_message(
            "juliet@capulet.lit",
            "romeo@montague.lit/orchard",
            TUNE,
            [("t1", tune)],
            stanza_id="foo",
            delay="2003-12-13T23:58:37Z",
        )
    )
    example[0][0][0].set("id", "t1")  # the example's item has no id; ours always does (§7.1.2.1)
    assert canonical(message) == canonical(example)


def test_section_7_2_2_1_retract_notification() -> None:
    example = xml(
        """<message xmlns='jabber:client' from='pubsub.shakespeare.lit' to='francisco@denmark.lit' id='foo'>
  <event xmlns='http://jabber.org/protocol/pubsub#event'>
    <items node='princely_musings'>
      <retract id='ae890ac52d0df67ed7cfdf51b644e901'/>
    </items>
  </event>
</message>"""
    )
    message = xml(
        pep.event_message(
            "pubsub.shakespeare.lit",
            "francisco@denmark.lit",
            "princely_musings",
            retracts=["ae890ac52d0df67ed7cfdf51b644e901"],
            stanza_id="foo",
        )
    )
    assert message.get("type") == "headline"
    del message.attrib["type"]
    assert canonical(message) == canonical(example)
    with pytest.raises(ValueError, match="not both"):
        pep.event_message("a@b", "c@d", "n", [("i", b"<p xmlns='urn:p'/>")], retracts=["j"])


def test_payloads_keep_their_namespace_prefixes_when_copied() -> None:
    request = parse(
        "<iq type='set' id='p' xmlns:t='urn:t'><pubsub xmlns='http://jabber.org/protocol/pubsub'>"
        "<publish node='n'><item id='i'><t:tune><t:title>&lt;&amp;</t:title></t:tune></item></publish></pubsub></iq>"
    )
    assert isinstance(request, pep.Publish)
    message = xml(pep.event_message("a@b", "c@d/e", "n&'<", [("i'\"", request.item)]))
    item = message.find(
        "{http://jabber.org/protocol/pubsub#event}event/{http://jabber.org/protocol/pubsub#event}items"
    )
    assert item.get("node") == "n&'<"
    assert item[0].get("id") == "i'\""
    assert item[0][0].findtext("{urn:t}title") == "<&"


# ------------------------------------------------------------------------------------ XEP-0115


def test_xep0163_presence_caps_and_legacy_format() -> None:
    presence = xml(
        """<presence from='romeo@montague.lit/orchard'>
             <c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='http://www.chatopus.com' ver='zHyEOgxTrkpSdGcQKH8EFPLsriY='/>
           </presence>"""
    )
    caps = pep.caps_from_presence(presence)
    assert caps == ("sha-1", "http://www.chatopus.com", "zHyEOgxTrkpSdGcQKH8EFPLsriY=")
    assert caps is not None
    assert (caps.hash, caps.node, caps.ver) == (
        "sha-1",
        "http://www.chatopus.com",
        "zHyEOgxTrkpSdGcQKH8EFPLsriY=",
    )
    legacy = xml(  # XEP-0060 §9.2's presence: no 'hash', so the 'ver' is no verification string
        """<presence from='romeo@montague.lit/orchard'>
             <c xmlns='http://jabber.org/protocol/caps' node='http://www.chatopus.com/#2.2' ver='AFBT0mPr29zQE5aGtCJp97CIS6E='/>
           </presence>"""
    )
    assert pep.caps_from_presence(legacy) is None
    assert pep.caps_from_presence(xml("<presence/>")) is None


SIMPLE = """<query xmlns='http://jabber.org/protocol/disco#info'
         node='http://code.google.com/p/exodus#QgayPKawpkPSDYmwT/WM94uAlu0='>
    <identity category='client' name='Exodus 0.9.1' type='pc'/>
    <feature var='http://jabber.org/protocol/caps'/>
    <feature var='http://jabber.org/protocol/disco#info'/>
    <feature var='http://jabber.org/protocol/disco#items'/>
    <feature var='http://jabber.org/protocol/muc'/>
  </query>"""

COMPLEX = """<query xmlns='http://jabber.org/protocol/disco#info'
         node='http://psi-im.org#q07IKJEyjvHSyhy//CH0CxmKi8w='>
    <identity xml:lang='en' category='client' name='Psi 0.11' type='pc'/>
    <identity xml:lang='el' category='client' name='&#936; 0.11' type='pc'/>
    <feature var='http://jabber.org/protocol/caps'/>
    <feature var='http://jabber.org/protocol/disco#info'/>
    <feature var='http://jabber.org/protocol/disco#items'/>
    <feature var='http://jabber.org/protocol/muc'/>
    <x xmlns='jabber:x:data' type='result'>
      <field var='FORM_TYPE' type='hidden'>
        <value>urn:xmpp:dataforms:softwareinfo</value>
      </field>
      <field var='ip_version' type='text-multi' >
        <value>ipv4</value>
        <value>ipv6</value>
      </field>
      <field var='os'>
        <value>Mac</value>
      </field>
      <field var='os_version'>
        <value>10.5.1</value>
      </field>
      <field var='software'>
        <value>Psi</value>
      </field>
      <field var='software_version'>
        <value>0.11</value>
      </field>
    </x>
  </query>"""


def test_xep0115_section_5_2_simple_example() -> None:
    assert pep.caps_ver("sha-1", xml(SIMPLE)) == "QgayPKawpkPSDYmwT/WM94uAlu0="
    assert pep.verify_caps("QgayPKawpkPSDYmwT/WM94uAlu0=", "sha-1", xml(SIMPLE))


def test_xep0115_section_5_3_complex_example() -> None:
    assert pep.caps_ver("sha-1", xml(COMPLEX)) == "q07IKJEyjvHSyhy//CH0CxmKi8w="
    assert pep.verify_caps("q07IKJEyjvHSyhy//CH0CxmKi8w=", "sha-1", xml(COMPLEX))


def test_xep0115_order_does_not_matter_and_content_does() -> None:
    shuffled = xml(COMPLEX)
    children = list(shuffled)
    for child in children:
        shuffled.remove(child)
    for child in reversed(children):
        shuffled.append(child)
    assert pep.verify_caps("q07IKJEyjvHSyhy//CH0CxmKi8w=", "sha-1", shuffled)
    changed = xml(SIMPLE)
    etree.SubElement(changed, "{http://jabber.org/protocol/disco#info}feature", var="urn:xmpp:evil")
    assert not pep.verify_caps("QgayPKawpkPSDYmwT/WM94uAlu0=", "sha-1", changed)
    assert not pep.verify_caps("QgayPKawpkPSDYmwT/WM94uAlu0=", "md5", xml(SIMPLE))  # not a hash we know
    assert pep.caps_ver("sha-256", xml(SIMPLE)) not in (None, "QgayPKawpkPSDYmwT/WM94uAlu0=")


def test_xep0115_section_5_4_ill_formed_responses_never_verify() -> None:
    doubled_feature = xml(SIMPLE)
    etree.SubElement(
        doubled_feature,
        "{http://jabber.org/protocol/disco#info}feature",
        var="http://jabber.org/protocol/muc",
    )
    assert pep.caps_ver("sha-1", doubled_feature) is None
    doubled_identity = xml(SIMPLE)
    etree.SubElement(
        doubled_identity,
        "{http://jabber.org/protocol/disco#info}identity",
        category="client",
        type="pc",
        name="Exodus 0.9.1",
    )
    assert pep.caps_ver("sha-1", doubled_identity) is None
    two_forms = xml(COMPLEX)
    two_forms.append(xml(etree.tostring(two_forms.find("{jabber:x:data}x"))))
    assert pep.caps_ver("sha-1", two_forms) is None
    two_types = xml(COMPLEX)
    etree.SubElement(
        two_types.find("{jabber:x:data}x/{jabber:x:data}field"), "{jabber:x:data}value"
    ).text = "urn:other"
    assert pep.caps_ver("sha-1", two_types) is None


def test_xep0115_section_5_4_forms_without_a_hidden_form_type_are_ignored() -> None:
    extra = xml(SIMPLE)
    extra.append(
        xml("<x xmlns='jabber:x:data' type='result'><field var='FORM_TYPE'><value>urn:x</value></field></x>")
    )
    extra.append(xml("<x xmlns='jabber:x:data' type='result'><field var='os'><value>Mac</value></field></x>"))
    assert pep.verify_caps("QgayPKawpkPSDYmwT/WM94uAlu0=", "sha-1", extra)


def test_features_and_identity() -> None:
    assert pep.IDENTITY == ("pubsub", "pep")
    for name in (
        "publish",
        "publish-options",
        "auto-create",
        "auto-subscribe",
        "access-presence",
        "retrieve-items",
        "retract-items",
        "delete-nodes",
        "filtered-notifications",
        "persistent-items",
        "last-published",
    ):
        assert f"http://jabber.org/protocol/pubsub#{name}" in pep.FEATURES
    assert "http://jabber.org/protocol/pubsub#access-authorize" not in pep.FEATURES
    assert "http://jabber.org/protocol/pubsub#purge-nodes" not in pep.FEATURES
    assert len(set(pep.FEATURES)) == len(pep.FEATURES)


# --------------------------------------------------------------------------- hypothesis: no crash

_XML_TEXT = st.text(
    st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufffe\uffff"), max_size=30
)
_VALUE = (
    st.none() | _XML_TEXT | st.sampled_from(["", "1", "0", "true", "max", "a@b/c", "5", "-3", "x" * 1100])
)
_ATTRIBUTES = ("node", "jid", "id", "max_items", "notify", "subid", "type", "var")
_ACTIONS = st.sampled_from(
    [
        ("http://jabber.org/protocol/pubsub", name)
        for name in ("publish", "retract", "items", "create", "subscribe", "unsubscribe", "options", "x")
    ]
    + [
        ("http://jabber.org/protocol/pubsub#owner", name)
        for name in ("delete", "configure", "purge", "default")
    ]
)


def _element(tag: str, attributes: dict[str, str | None]) -> etree._Element:
    element = etree.Element(tag)
    for name, value in attributes.items():
        if value is not None:
            element.set(name, value)
    return element


@settings(max_examples=400, deadline=None)
@given(
    _ACTIONS,
    st.sampled_from(["get", "set", "result", ""]),
    st.fixed_dictionaries({name: _VALUE for name in _ATTRIBUTES}),
    st.fixed_dictionaries({name: _VALUE for name in _ATTRIBUTES}),
    st.lists(st.tuples(_VALUE, st.lists(_XML_TEXT, max_size=2)), max_size=3),
    st.sampled_from(["none", "payload", "publish-options", "configure", "two-items"]),
)
def test_parse_pubsub_raises_only_refusals(
    action: tuple[str, str],
    iq_type: str,
    action_attributes: dict[str, str | None],
    item_attributes: dict[str, str | None],
    form_fields: list[tuple[str | None, list[str]]],
    extra: str,
) -> None:
    namespace, name = action
    pubsub = etree.Element(f"{{{namespace}}}pubsub")
    element = _element(f"{{{namespace}}}{name}", action_attributes)
    pubsub.append(element)
    item = _element(f"{{{namespace}}}item", item_attributes)
    element.append(item)
    form = _element("{jabber:x:data}x", {"type": action_attributes["type"]})
    for var, values in [("FORM_TYPE", ["http://jabber.org/protocol/pubsub#publish-options"]), *form_fields]:
        field = _element("{jabber:x:data}field", {"var": var})
        for value in values:
            etree.SubElement(field, "{jabber:x:data}value").text = value
        form.append(field)
    if extra == "payload":
        etree.SubElement(item, "{urn:example}payload").text = action_attributes["id"]
    elif extra == "two-items":
        element.append(_element(f"{{{namespace}}}item", item_attributes))
    elif extra in ("publish-options", "configure"):
        follower = etree.SubElement(pubsub, f"{{{namespace}}}{extra}")
        follower.append(form)
    if name == "configure":
        element.append(form)
    request = outcome(lambda: pep.parse_pubsub(iq_type, pubsub))
    if isinstance(request, Refusal):
        assert request.text.strip(string.whitespace)
    else:
        assert isinstance(
            request,
            pep.Publish
            | pep.Retract
            | pep.Items
            | pep.Delete
            | pep.Create
            | pep.ConfigureGet
            | pep.ConfigureSet
            | pep.Subscribe
            | pep.Unsubscribe,
        )
        if isinstance(request, pep.Publish):
            config = outcome(lambda: pep.check_publish_options(None, request.options))
            assert isinstance(config, pep.NodeConfig) or config.text


@settings(max_examples=200, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                f"pubsub#{n}"
                for n in (
                    "access_model",
                    "max_items",
                    "persist_items",
                    "send_last_published_item",
                    "roster_groups_allowed",
                    "notify_retract",
                    "deliver_payloads",
                    "title",
                )
            ]
        ),
        st.lists(_XML_TEXT, max_size=2),
    )
)
def test_options_raise_only_refusals(options: dict[str, list[str]]) -> None:
    for config in (None, pep.DEFAULTS):
        result = outcome(lambda: pep.check_publish_options(config, options, ceiling=100))  # noqa: B023
        assert isinstance(result, pep.NodeConfig) or result.text


def test_a_separator_inside_a_value_never_verifies() -> None:
    """Found by a black-box attack: one feature holding §5.1's "<" separators hashes exactly as several
    features do, so a forged answer verified for another client's ver and poisoned the cache for it."""
    many = xml(
        "<query xmlns='http://jabber.org/protocol/disco#info'><identity category='client' type='pc' name='x'/>"
        "<feature var='urn:a'/><feature var='urn:b+notify'/></query>"
    )
    one = xml(
        "<query xmlns='http://jabber.org/protocol/disco#info'><identity category='client' type='pc' name='x'/>"
        "<feature var='urn:a&lt;urn:b+notify'/></query>"
    )
    ver = pep.caps_ver("sha-1", many)
    assert ver is not None
    assert pep.caps_ver("sha-1", one) is None  # would be ``ver`` without the check
    assert not pep.verify_caps(ver, "sha-1", one)
    named = xml(
        "<query xmlns='http://jabber.org/protocol/disco#info'><identity category='client' type='pc' name='a&lt;b'/>"
        "</query>"
    )
    assert pep.caps_ver("sha-1", named) is None
