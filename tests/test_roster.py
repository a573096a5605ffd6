"""RFC 6121 §2 roster management: roster get, set, remove, pushes and every error case."""

from __future__ import annotations

from typing import Any

import pytest
from lxml import etree

from accounts.models import User
from tests.helpers import canon, db
from xmppauth import subscriptions
from xmppauth.features import rfc6121_roster as roster
from xmppauth.models import RosterItem
from xmppauth.proto.jid import JID
from xmppauth.proto.rfc6121_roster import push_iq

# database_sync_to_async runs the ORM in a worker thread: the rows must be committed to be seen.
pytestmark = pytest.mark.django_db(transaction=True)

ACCOUNT = JID("alice", "example.org", "phone")
_PARSER = etree.XMLParser(remove_blank_text=True)


def assert_xml(el: etree._Element | None, expected: str) -> None:
    assert el is not None
    assert canon(el) == canon(expected)


def request(xml: str) -> tuple[etree._Element, etree._Element]:
    stanza = etree.fromstring(xml, _PARSER)
    return stanza, stanza[0]


def rows(**filters: Any) -> list[tuple[Any, ...]]:
    return list(
        RosterItem.objects.filter(**filters)
        .order_by("user_id", "jid")
        .values_list("jid", "name", "groups", "subscription", "ask")
    )


async def version(user: User) -> str:
    """The account's roster version now (RFC 6121 §2.6): what the last push carried."""
    return str(await db(subscriptions.roster_version, user.pk))


async def send(user: User, xml: str) -> roster.RosterOutcome:
    stanza, payload = request(xml)
    return await roster.handle(user.pk, ACCOUNT, stanza, payload)


def roster_set(item: str, iq_id: str = "s1", to: str = "") -> str:
    to_attr = f" to='{to}'" if to else ""
    return (
        f"<iq xmlns='jabber:client' type='set' id='{iq_id}' from='alice@example.org/phone'{to_attr}>"
        f"<query xmlns='jabber:iq:roster'>{item}</query></iq>"
    )


def error(iq_id: str, error_type: str, condition: str, text: str, frm: str = "") -> str:
    from_attr = f" from='{frm}'" if frm else ""
    return f"""
        <iq xmlns='jabber:client' type='error' id='{iq_id}' to='alice@example.org/phone'{from_attr}>
          <error type='{error_type}'>
            <{condition} xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>
            <text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas' xml:lang='en'>{text}</text>
          </error>
        </iq>"""


GET = "<iq xmlns='jabber:client' type='get' id='g1' from='alice@example.org/phone'><query xmlns='jabber:iq:roster'/></iq>"


# ---------------------------------------------------------------------------------- get
async def test_an_empty_roster_is_an_empty_query_without_ver(alice: User) -> None:
    outcome = await send(alice, GET)
    assert_xml(
        outcome.reply,
        "<iq xmlns='jabber:client' type='result' id='g1' to='alice@example.org/phone'>"
        "<query xmlns='jabber:iq:roster'/></iq>",
    )
    assert outcome.push is None


async def test_get_lists_every_item_sorted_by_jid_with_the_current_ver(alice: User, bob: User) -> None:
    await db(
        RosterItem.objects.create,
        user=alice,
        jid="romeo@example.net",
        name="Romeo",
        groups=["Friends", "Verona"],
    )
    await db(RosterItem.objects.create, user=alice, jid="benvolio@example.net")
    await db(
        RosterItem.objects.create,
        user=alice,
        jid="nurse@example.com",
        name="Nurse",
        groups=["Servants"],
        ask=True,
    )
    await db(RosterItem.objects.create, user=bob, jid="tybalt@example.net")
    outcome = await send(
        alice,
        "<iq xmlns='jabber:client' type='get' id='g2' from='alice@example.org/phone' to='alice@example.org'>"
        "<query xmlns='jabber:iq:roster' ver='ver7'/></iq>",
    )
    assert_xml(
        outcome.reply,
        """
        <iq xmlns='jabber:client' type='result' id='g2' from='alice@example.org' to='alice@example.org/phone'>
          <query xmlns='jabber:iq:roster' ver='0'>
            <item jid='benvolio@example.net' subscription='none'/>
            <item jid='nurse@example.com' name='Nurse' subscription='none' ask='subscribe'>
              <group>Servants</group>
            </item>
            <item jid='romeo@example.net' name='Romeo' subscription='none'>
              <group>Friends</group>
              <group>Verona</group>
            </item>
          </query>
        </iq>""",
    )
    assert outcome.push is None


async def test_a_get_with_children_is_bad_request(alice: User) -> None:
    outcome = await send(
        alice,
        "<iq xmlns='jabber:client' type='get' id='g3' from='alice@example.org/phone'>"
        "<query xmlns='jabber:iq:roster'><item jid='romeo@example.net'/></query></iq>",
    )
    assert_xml(
        outcome.reply, error("g3", "modify", "bad-request", "a roster get carries an empty &lt;query/&gt;")
    )


async def test_another_payload_is_service_unavailable(alice: User) -> None:
    outcome = await send(
        alice,
        "<iq xmlns='jabber:client' type='get' id='g4' from='alice@example.org/phone' to='example.org'>"
        "<query xmlns='jabber:iq:version'/></iq>",
    )
    assert_xml(
        outcome.reply,
        error("g4", "cancel", "service-unavailable", "not a jabber:iq:roster query", frm="example.org"),
    )


# ---------------------------------------------------------------------------------- set: add and update
async def test_adding_an_item_answers_an_empty_result_and_pushes_the_item(alice: User) -> None:
    outcome = await send(
        alice,
        roster_set("<item jid='nurse@example.com' name='Nurse'><group>Servants</group></item>", "ph1xaz53"),
    )
    assert_xml(
        outcome.reply, "<iq xmlns='jabber:client' type='result' id='ph1xaz53' to='alice@example.org/phone'/>"
    )
    assert_xml(
        outcome.push,
        f"<query xmlns='jabber:iq:roster' ver='{await version(alice)}'>"
        "<item jid='nurse@example.com' name='Nurse' subscription='none'><group>Servants</group></item>"
        "</query>",
    )
    assert await db(rows, user=alice) == [("nurse@example.com", "Nurse", ["Servants"], "none", False)]


async def test_the_reply_comes_from_the_address_the_set_was_sent_to(alice: User) -> None:
    outcome = await send(alice, roster_set("<item jid='nurse@example.com'/>", to="alice@example.org"))
    assert_xml(
        outcome.reply,
        "<iq xmlns='jabber:client' type='result' id='s1' from='alice@example.org' to='alice@example.org/phone'/>",
    )


async def test_the_jid_is_stored_prepared_and_bare(alice: User) -> None:
    outcome = await send(alice, roster_set("<item jid='Nurse@Example.COM./balcony'/>"))
    assert_xml(
        outcome.push,
        f"<query xmlns='jabber:iq:roster' ver='{await version(alice)}'>"
        "<item jid='nurse@example.com' subscription='none'/></query>",
    )
    assert await db(rows) == [("nurse@example.com", "", [], "none", False)]


async def test_an_update_replaces_name_and_groups_and_ignores_subscription_ask_approved(alice: User) -> None:
    await db(
        RosterItem.objects.create,
        user=alice,
        jid="romeo@example.net",
        name="Romeo",
        groups=["Friends", "Lovers"],
    )
    outcome = await send(
        alice,
        roster_set(
            "<item jid='romeo@example.net' subscription='both' ask='subscribe' approved='true'>"
            "<group>Verona</group></item>"
        ),
    )
    assert_xml(
        outcome.reply, "<iq xmlns='jabber:client' type='result' id='s1' to='alice@example.org/phone'/>"
    )
    assert_xml(
        outcome.push,
        f"<query xmlns='jabber:iq:roster' ver='{await version(alice)}'>"
        "<item jid='romeo@example.net' subscription='none'><group>Verona</group></item></query>",
    )
    assert await db(rows) == [("romeo@example.net", "", ["Verona"], "none", False)]


async def test_a_set_then_get_round_trips_unicode_and_unknown_children_are_ignored(alice: User) -> None:
    await send(
        alice,
        roster_set(
            "<item jid='julia@example.net' name='Júlia 🌹'><group>Família</group>"
            "<x xmlns='urn:example:extension'/><group>Amigos</group></item>"
        ),
    )
    outcome = await send(alice, GET)
    assert_xml(
        outcome.reply,
        "<iq xmlns='jabber:client' type='result' id='g1' to='alice@example.org/phone'>"
        "<query xmlns='jabber:iq:roster'><item jid='julia@example.net' name='Júlia 🌹' subscription='none'>"
        "<group>Família</group><group>Amigos</group></item></query></iq>",
    )


# ---------------------------------------------------------------------------------- set: remove
async def test_removing_an_item_deletes_it_and_pushes_subscription_remove(alice: User) -> None:
    await db(
        RosterItem.objects.create, user=alice, jid="nurse@example.com", name="Nurse", groups=["Servants"]
    )
    outcome = await send(
        alice, roster_set("<item jid='Nurse@example.com' subscription='remove'/>", "hm4hs97y")
    )
    assert_xml(
        outcome.reply, "<iq xmlns='jabber:client' type='result' id='hm4hs97y' to='alice@example.org/phone'/>"
    )
    assert_xml(
        outcome.push,
        f"<query xmlns='jabber:iq:roster' ver='{await version(alice)}'>"
        "<item jid='nurse@example.com' subscription='remove'/></query>",
    )
    assert await db(rows) == []


async def test_removing_an_unknown_item_is_item_not_found(alice: User, bob: User) -> None:
    await db(RosterItem.objects.create, user=bob, jid="nurse@example.com")
    outcome = await send(
        alice, roster_set("<item jid='nurse@example.com' subscription='remove'/>", "uj4b1ca8")
    )
    assert_xml(outcome.reply, error("uj4b1ca8", "cancel", "item-not-found", "no such item in the roster"))
    assert outcome.push is None
    assert await db(rows) == [("nurse@example.com", "", [], "none", False)]


# ---------------------------------------------------------------------------------- set: error cases
@pytest.mark.parametrize(
    ("items", "text"),
    [
        ("", "a roster set carries exactly one &lt;item/&gt;"),
        (
            "<item jid='nurse@example.com'/><item jid='romeo@example.net'/>",
            "a roster set carries exactly one &lt;item/&gt;",
        ),
        ("<item name='Nurse'/>", "the &lt;item/&gt; has no 'jid' attribute"),
        (
            "<item jid='nurse@example.com'><group>Servants</group><group>Servants</group></item>",
            "the group 'Servants' is given twice",
        ),
    ],
    ids=["no-item", "two-items", "no-jid", "duplicate-group"],
)
async def test_bad_request(alice: User, items: str, text: str) -> None:
    outcome = await send(alice, roster_set(items, "e1"))
    assert_xml(outcome.reply, error("e1", "modify", "bad-request", text))
    assert outcome.push is None
    assert await db(rows) == []


@pytest.mark.parametrize(
    ("jid", "reason"),
    [
        ("@example.com", "empty localpart"),
        ("nurse@", "empty domainpart"),
        ("a b@example.com", "localpart contains U+0020, which PRECIS disallows (a space)"),
        ("nurse@example.com/", "empty resourcepart"),
    ],
)
async def test_an_invalid_jid_is_jid_malformed(alice: User, jid: str, reason: str) -> None:
    outcome = await send(alice, roster_set(f"<item jid='{jid}'/>", "e2"))
    assert_xml(
        outcome.reply, error("e2", "modify", "jid-malformed", f"the item's JID is not valid: {reason}")
    )
    assert await db(rows) == []


@pytest.mark.parametrize("jid", ["alice@example.org", "Alice@Example.org/tablet"])
async def test_the_accounts_own_jid_is_not_allowed(alice: User, jid: str) -> None:
    outcome = await send(alice, roster_set(f"<item jid='{jid}'/>", "e3"))
    assert_xml(
        outcome.reply, error("e3", "cancel", "not-allowed", "the account's own JID cannot be a roster item")
    )
    assert await db(rows) == []


async def test_an_empty_group_is_not_acceptable(alice: User) -> None:
    outcome = await send(alice, roster_set("<item jid='nurse@example.com'><group/></item>", "e4"))
    assert_xml(outcome.reply, error("e4", "modify", "not-acceptable", "a &lt;group/&gt; is empty"))


async def test_a_name_over_1023_bytes_is_not_acceptable(alice: User) -> None:
    fits = "é" * 511 + "x"  # 1023 bytes
    outcome = await send(alice, roster_set(f"<item jid='nurse@example.com' name='{fits}'/>", "ok"))
    assert outcome.reply.get("type") == "result"
    outcome = await send(alice, roster_set(f"<item jid='nurse@example.com' name='{'é' * 512}'/>", "e5"))
    assert_xml(
        outcome.reply, error("e5", "modify", "not-acceptable", "the item name is longer than 1023 bytes")
    )
    assert await db(rows) == [("nurse@example.com", fits, [], "none", False)]


async def test_a_group_name_over_1023_bytes_is_not_acceptable(alice: User) -> None:
    outcome = await send(
        alice, roster_set(f"<item jid='nurse@example.com'><group>{'g' * 1024}</group></item>", "e6")
    )
    assert_xml(
        outcome.reply, error("e6", "modify", "not-acceptable", "a group name is longer than 1023 bytes")
    )


async def test_more_than_32_groups_is_not_acceptable(alice: User) -> None:
    groups = "".join(f"<group>g{n}</group>" for n in range(32))
    outcome = await send(alice, roster_set(f"<item jid='nurse@example.com'>{groups}</item>", "ok"))
    assert outcome.reply.get("type") == "result"
    outcome = await send(
        alice, roster_set(f"<item jid='nurse@example.com'>{groups}<group>g32</group></item>", "e7")
    )
    assert_xml(outcome.reply, error("e7", "modify", "not-acceptable", "an item is in at most 32 groups"))
    assert [len(groups) for _, _, groups, _, _ in await db(rows)] == [32]


async def test_a_full_roster_is_resource_constraint_but_updates_and_removals_still_work(
    alice: User, bob: User, settings: object
) -> None:
    settings.XMPP_MAX_ROSTER_ITEMS = 2  # type: ignore[attr-defined]
    await db(RosterItem.objects.create, user=bob, jid="other@example.net")
    for jid in ("a@example.net", "b@example.net"):
        assert (await send(alice, roster_set(f"<item jid='{jid}'/>"))).reply.get("type") == "result"
    outcome = await send(alice, roster_set("<item jid='c@example.net'/>", "e8"))
    assert_xml(
        outcome.reply, error("e8", "cancel", "resource-constraint", "the roster is full: at most 2 items")
    )
    assert outcome.push is None
    outcome = await send(alice, roster_set("<item jid='b@example.net' name='B'/>"))
    assert outcome.reply.get("type") == "result"
    await send(alice, roster_set("<item jid='a@example.net' subscription='remove'/>"))
    assert (await send(alice, roster_set("<item jid='c@example.net'/>"))).reply.get("type") == "result"
    assert [jid for jid, *_ in await db(rows, user=alice)] == ["b@example.net", "c@example.net"]


async def test_the_default_limit_is_1000_items(alice: User, settings: object) -> None:
    del settings.XMPP_MAX_ROSTER_ITEMS  # type: ignore[attr-defined]
    await db(
        RosterItem.objects.bulk_create, [RosterItem(user=alice, jid=f"c{n}@example.net") for n in range(1000)]
    )
    outcome = await send(alice, roster_set("<item jid='one-more@example.net'/>", "e9"))
    assert_xml(
        outcome.reply, error("e9", "cancel", "resource-constraint", "the roster is full: at most 1000 items")
    )


async def test_a_result_type_iq_is_bad_request(alice: User) -> None:
    outcome = await send(
        alice,
        "<iq xmlns='jabber:client' type='result' id='e10' from='alice@example.org/phone'>"
        "<query xmlns='jabber:iq:roster'/></iq>",
    )
    assert_xml(
        outcome.reply, error("e10", "modify", "bad-request", "a roster request is an iq of type get or set")
    )


# ---------------------------------------------------------------------------------- pushes
def test_push_iq_wraps_a_copy_of_the_payload_for_each_session() -> None:
    push = etree.fromstring(
        "<query xmlns='jabber:iq:roster'><item jid='nurse@example.com' subscription='remove'/></query>"
    )
    first = push_iq(push, JID("alice", "example.org", "phone"), "p1")
    second = push_iq(push, JID("alice", "example.org", "tablet"), "p2")
    for iq, resource, iq_id in ((first, "phone", "p1"), (second, "tablet", "p2")):
        assert_xml(
            iq,
            f"<iq xmlns='jabber:client' type='set' id='{iq_id}' to='alice@example.org/{resource}'>"
            "<query xmlns='jabber:iq:roster'><item jid='nurse@example.com' subscription='remove'/></query></iq>",
        )
    assert len(push) == 1


def test_roster_item_str() -> None:
    assert str(RosterItem(user_id=7, jid="nurse@example.com", name="Nurse")) == (
        "Nurse <nurse@example.com> in the roster of 7"
    )
    assert str(RosterItem(user_id=7, jid="nurse@example.com")) == "nurse@example.com in the roster of 7"
