"""RFC 6121 §2.6 roster versioning, the pure part: when a get is answered empty, and the ``ver`` that
roster results and pushes carry (xmppauth/proto/rfc6121_roster.py). Literal XML, compared whole."""

from __future__ import annotations

import pytest
from lxml import etree

from tests.helpers import canon
from xmppauth.proto.jid import JID
from xmppauth.proto.rfc6121_roster import (
    FEATURE,
    INITIAL,
    Item,
    push_iq,
    push_payload,
    roster_payload,
    unchanged,
    version,
)

NURSE = Item("nurse@example.com", "Nurse", ("Servants",), "both", False)
ROMEO = Item("romeo@example.net", "", (), "none", True)


def assert_xml(el: etree._Element, expected: str) -> None:
    assert canon(el) == canon(expected)


# ------------------------------------------------------------------ §2.6.1 stream feature, §2.1.1 ver
def test_the_stream_feature_is_an_empty_ver_in_the_rosterver_namespace() -> None:
    assert canon(FEATURE) == canon("<ver xmlns='urn:xmpp:features:rosterver'/>")


def test_a_version_is_the_counter_and_the_tag_of_the_row() -> None:
    assert version(1, "a1b2c3d4") == "1-a1b2c3d4"
    assert version(1, "a1b2c3d4") != version(2, "a1b2c3d4")
    assert version(7, "a1b2c3d4") != version(7, "0f0f0f0f")  # the same name made again counts anew
    assert INITIAL not in {version(n, "a1b2c3d4") for n in range(3)}


# ------------------------------------------------------------------ §2.6.3 the empty result
@pytest.mark.parametrize(
    ("requested", "current", "empty"),
    [
        ("5-a1b2c3d4", "5-a1b2c3d4", True),  # the client holds the current version
        ("4-a1b2c3d4", "5-a1b2c3d4", False),  # an older one: the whole roster
        ("5-0f0f0f0f", "5-a1b2c3d4", False),  # another incarnation of the account
        ("", "5-a1b2c3d4", False),  # §2.6.2: ver='' bootstraps versioning
        (None, "5-a1b2c3d4", False),  # no ver: a client without versioning
        (INITIAL, INITIAL, False),  # a roster never versioned is always sent whole
        ("", INITIAL, False),
    ],
)
def test_only_the_current_version_is_answered_empty(requested: str | None, current: str, empty: bool) -> None:
    assert unchanged(requested, current) is empty


# ------------------------------------------------------------------ §2.1.4 result, §2.1.6 push
def test_a_result_for_a_versioning_client_carries_the_current_ver() -> None:
    assert_xml(
        roster_payload([NURSE, ROMEO], "3-a1b2c3d4"),
        """<query xmlns='jabber:iq:roster' ver='3-a1b2c3d4'>
             <item jid='nurse@example.com' name='Nurse' subscription='both'><group>Servants</group></item>
             <item jid='romeo@example.net' subscription='none' ask='subscribe'/>
           </query>""",
    )


def test_a_result_for_a_client_without_versioning_has_no_ver() -> None:
    assert_xml(roster_payload([], None), "<query xmlns='jabber:iq:roster'/>")
    assert_xml(
        roster_payload([ROMEO], None),
        "<query xmlns='jabber:iq:roster'><item jid='romeo@example.net' subscription='none' ask='subscribe'/></query>",
    )


def test_an_empty_roster_for_a_versioning_client_still_says_its_version() -> None:
    assert_xml(roster_payload([], INITIAL), "<query xmlns='jabber:iq:roster' ver='0'/>")


def test_a_push_carries_the_version_of_its_change_into_every_sessions_copy() -> None:
    push = push_payload(Item("nurse@example.com", "", (), "remove", False), ver="4-a1b2c3d4")
    for resource, iq_id in (("balcony", "a78b4q6ha463"), ("chamber", "b89c5r7ib574")):
        assert_xml(
            push_iq(push, JID("juliet", "example.com", resource), iq_id),
            f"""<iq xmlns='jabber:client' type='set' id='{iq_id}' to='juliet@example.com/{resource}'>
                  <query xmlns='jabber:iq:roster' ver='4-a1b2c3d4'>
                    <item jid='nurse@example.com' subscription='remove'/>
                  </query>
                </iq>""",
        )
