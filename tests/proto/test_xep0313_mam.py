"""XEP-0313 Message Archive Management (with XEP-0441 preferences and XEP-0359 stanza ids): the
XEP's examples parsed and built, every refusal, and properties of the ids and of the query parser."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from tests.proto.test_xep0059_rsm import canonical
from xmppauth.proto import xep0313_mam as mam
from xmppauth.proto.errors import StanzaErrorCondition
from xmppauth.proto.jid import JID
from xmppauth.proto.replies import Refusal
from xmppauth.proto.xep0059_rsm import Page, result_set
from xmppauth.proto.xml import serialize

C = StanzaErrorCondition
MAM = "urn:xmpp:mam:2"
JULIET = JID.parse("juliet@capulet.lit")


def parse(iq_text: str, default_max: int = 50, max_max: int = 100) -> mam.Query:
    iq = etree.fromstring(iq_text)
    query = iq.find(f"{{{MAM}}}query")
    assert query is not None
    return mam.parse_query(iq, query, default_max=default_max, max_max=max_max)


def refused(iq_text: str, condition: StanzaErrorCondition, max_max: int = 100) -> str:
    """The text of the refusal of the query ``iq_text``, which must have ``condition``."""
    with pytest.raises(Refusal) as caught:
        parse(iq_text, max_max=max_max)
    assert caught.value.condition is condition, caught.value.text
    return caught.value.text


def form(*fields: str, form_type: str = "submit", hidden: bool = True) -> str:
    """A query iq with a data form of ``fields`` (literal ``<field/>`` elements)."""
    head = f"<field var='FORM_TYPE' type='hidden'><value>{MAM}</value></field>" if hidden else ""
    return (
        f"<iq type='set' id='q'><query xmlns='{MAM}'><x xmlns='jabber:x:data' type='{form_type}'>"
        f"{head}{''.join(fields)}</x></query></iq>"
    )


def field(var: str, *values: str) -> str:
    return f"<field var='{var}'>{''.join(f'<value>{v}</value>' for v in values)}</field>"


def query(**changes: object) -> mam.Query:
    """The query of no filters, changed."""
    base: dict[str, object] = {
        "queryid": None,
        "with_jid": None,
        "start": None,
        "end": None,
        "before_id": None,
        "after_id": None,
        "ids": (),
        "page": Page(max=50),
        "flip": False,
    }
    base.update(changes)
    return mam.Query(**base)


# ------------------------------------------------------------------ §4 queries, as the XEP has them


def test_example_querying_the_whole_archive() -> None:
    assert parse("""
<iq type='set' id='juliet1'>
  <query xmlns='urn:xmpp:mam:2' queryid='f27' />
</iq>""") == query(queryid="f27")


def test_example_filtering_by_jid() -> None:
    assert parse("""
<iq type='set' id='juliet1'>
  <query xmlns='urn:xmpp:mam:2'>
    <x xmlns='jabber:x:data' type='submit'>
      <field var='FORM_TYPE' type='hidden'>
        <value>urn:xmpp:mam:2</value>
      </field>
      <field var='with'>
        <value>juliet@capulet.lit</value>
      </field>
    </x>
  </query>
</iq>""") == query(with_jid=JULIET)


def test_example_filtering_by_a_timespan() -> None:
    assert parse("""
<iq type='set' id='juliet1'>
  <query xmlns='urn:xmpp:mam:2'>
    <x xmlns='jabber:x:data' type='submit'>
      <field var='FORM_TYPE' type='hidden'>
        <value>urn:xmpp:mam:2</value>
      </field>
      <field var='start'>
        <value>2010-06-07T00:00:00Z</value>
      </field>
      <field var='end'>
        <value>2010-07-07T13:23:54Z</value>
      </field>
    </x>
  </query>
</iq>""") == query(start=datetime(2010, 6, 7, tzinfo=UTC), end=datetime(2010, 7, 7, 13, 23, 54, tzinfo=UTC))


def test_example_messages_after_a_certain_message() -> None:
    assert parse("""
<iq type='set' id='juliet1'>
  <query xmlns='urn:xmpp:mam:2'>
    <x xmlns='jabber:x:data' type='submit'>
      <field var='FORM_TYPE' type='hidden'>
        <value>urn:xmpp:mam:2</value>
      </field>
      <field var='after-id'>
        <value>09af3-cc343-b409f</value>
      </field>
    </x>
  </query>
</iq>""") == query(after_id="09af3-cc343-b409f")


def test_example_messages_between_two_known_messages() -> None:
    assert parse("""
<iq type='set' id='juliet1'>
  <query xmlns='urn:xmpp:mam:2'>
    <x xmlns='jabber:x:data' type='submit'>
      <field var='FORM_TYPE' type='hidden'>
        <value>urn:xmpp:mam:2</value>
      </field>
      <field var='after-id'>
        <value>28482-98726-73623</value>
      </field>
      <field var='before-id'>
        <value>09af3-cc343-b409f</value>
      </field>
    </x>
  </query>
</iq>""") == query(after_id="28482-98726-73623", before_id="09af3-cc343-b409f")


def test_example_fetching_a_specific_message() -> None:
    assert parse("""
<iq type='set' id='juliet1'>
  <query xmlns='urn:xmpp:mam:2'>
    <x xmlns='jabber:x:data' type='submit'>
      <field var='FORM_TYPE' type='hidden'>
        <value>urn:xmpp:mam:2</value>
      </field>
      <field var='ids'>
        <value>28482-98726-73623</value>
      </field>
    </x>
  </query>
</iq>""") == query(ids=("28482-98726-73623",))


def test_example_a_query_using_rsm() -> None:
    assert parse("""
<iq type='set' id='q29302'>
  <query xmlns='urn:xmpp:mam:2'>
    <x xmlns='jabber:x:data' type='submit'>
      <field var='FORM_TYPE' type='hidden'>
        <value>urn:xmpp:mam:2</value>
      </field>
      <field var='start'>
        <value>2010-08-07T00:00:00Z</value>
      </field>
    </x>
    <set xmlns='http://jabber.org/protocol/rsm'>
      <max>10</max>
    </set>
  </query>
</iq>""") == query(start=datetime(2010, 8, 7, tzinfo=UTC), page=Page(max=10))


def test_example_a_page_query() -> None:
    assert parse("""
<iq type='set' id='q29303'>
  <query xmlns='urn:xmpp:mam:2'>
      <x xmlns='jabber:x:data' type='submit'>
        <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>
        <field var='start'><value>2010-08-07T00:00:00Z</value></field>
      </x>
      <set xmlns='http://jabber.org/protocol/rsm'>
         <max>10</max>
         <after>09af3-cc343-b409f</after>
      </set>
  </query>
</iq>""") == query(start=datetime(2010, 8, 7, tzinfo=UTC), page=Page(max=10, after="09af3-cc343-b409f"))


def test_example_requesting_the_last_page() -> None:
    parsed = parse("""
<iq type='set' id='q29303'>
  <query xmlns='urn:xmpp:mam:2'>
      <x xmlns='jabber:x:data' type='submit'>
        <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>
        <field var='start'><value>2010-08-07T00:00:00Z</value></field>
      </x>
      <set xmlns='http://jabber.org/protocol/rsm'>
         <max>10</max>
         <before/>
      </set>
  </query>
</iq>""")
    assert parsed == query(start=datetime(2010, 8, 7, tzinfo=UTC), page=Page(max=10, before=""))
    assert parsed.page.last_page


def test_example_requesting_a_flipped_page() -> None:
    assert parse("""
<iq type='set' id='q29309'>
  <query xmlns='urn:xmpp:mam:2'>
      <x xmlns='jabber:x:data' type='submit'>
        <field var='FORM_TYPE' type='hidden'><value>urn:xmpp:mam:2</value></field>
        <field var='start'><value>2010-08-07T00:00:00Z</value></field>
      </x>
      <set xmlns='http://jabber.org/protocol/rsm'>
         <max>10</max>
         <after>09af3-cc343-b409f</after>
      </set>
      <flip-page/>
  </query>
</iq>""") == query(
        start=datetime(2010, 8, 7, tzinfo=UTC), page=Page(max=10, after="09af3-cc343-b409f"), flip=True
    )


def test_example_fields_this_server_does_not_know_are_not_implemented() -> None:
    text = refused(
        """
<iq type='set' id='query4'>
  <query xmlns='urn:xmpp:mam:2'>
    <x xmlns='jabber:x:data' type='submit'>
      <field type='hidden' var='FORM_TYPE'>
        <value>urn:xmpp:mam:2</value>
      </field>
      <field type='text-single' var='urn:example:xmpp:free-text-search'>
        <value>Where arth thou, my Juliet?</value>
      </field>
      <field type='text-single' var='urn:example:xmpp:stanza-content'>
        <value>{http://jabber.org/protocol/mood}mood/lonely</value>
      </field>
    </x>
  </query>
</iq>""",
        C.FEATURE_NOT_IMPLEMENTED,
    )
    assert text == (
        "unknown query field 'urn:example:xmpp:free-text-search'; "
        "this archive knows with, start, end, before-id, after-id and ids"
    )


def test_example_include_groupchat_is_unknown_here() -> None:
    text = refused(
        """
<iq type='set' id='juliet1'>
  <query xmlns='urn:xmpp:mam:2'>
    <x xmlns='jabber:x:data' type='submit'>
      <field var='FORM_TYPE' type='hidden'>
        <value>urn:xmpp:mam:2</value>
      </field>
      <field var='include-groupchat'>
        <value>true</value>
      </field>
      ...
    </x>
  </query>
</iq>""",
        C.FEATURE_NOT_IMPLEMENTED,
    )
    assert "'include-groupchat'" in text


def test_a_pubsub_node_archive_is_not_implemented() -> None:
    text = refused(
        """
<iq to='pubsub.shakespeare.lit' type='set' id='juliet1'>
  <query xmlns='urn:xmpp:mam:2' queryid='f28' node='fdp/submitted/capulet.lit/sonnets'/>
</iq>""",
        C.FEATURE_NOT_IMPLEMENTED,
    )
    assert text == "this server keeps no archives of pubsub nodes (XEP-0442): query without 'node'"


# ------------------------------------------------------------------------- the query, in detail


def test_the_server_page_limits_apply() -> None:
    iq = f"<iq type='set' id='q'><query xmlns='{MAM}'><set xmlns='http://jabber.org/protocol/rsm'><max>500</max></set></query></iq>"
    assert parse(iq, max_max=100).page == Page(max=100)
    assert parse(f"<iq type='set' id='q'><query xmlns='{MAM}'/></iq>", default_max=20).page == Page(max=20)


def test_a_form_without_form_type_is_taken_as_ours() -> None:
    assert parse(form(field("with", "romeo@montague.lit"), hidden=False)).with_jid == JID.parse(
        "romeo@montague.lit"
    )


def test_a_full_jid_and_an_unprepared_one_are_fine() -> None:
    assert parse(form(field("with", "Romeo@Montague.LIT/Orchard"))).with_jid == JID(
        "romeo", "montague.lit", "Orchard"
    )
    assert parse(form(field("with", "capulet.lit"))).with_jid == JID(None, "capulet.lit")


def test_empty_fields_filter_nothing() -> None:
    iq = form(
        field("with"),
        field("start", ""),
        field("end", "  "),
        field("before-id", ""),
        field("after-id"),
        field("ids"),
    )
    assert parse(iq) == query()


def test_ids_are_stripped_and_given_once_in_order() -> None:
    assert parse(form(field("ids", " b ", "a", "b", "", "c"))).ids == ("b", "a", "c")


def test_timestamps_with_offsets_and_fractions_become_utc() -> None:
    parsed = parse(
        form(field("start", "1969-07-20T21:56:15-05:00"), field("end", "2010-07-10T23:08:25.123456789+02:30"))
    )
    assert parsed.start == datetime(1969, 7, 21, 2, 56, 15, tzinfo=UTC)
    assert parsed.end == datetime(2010, 7, 10, 20, 38, 25, 123456, tzinfo=UTC)
    assert parsed.end.tzinfo is UTC


def test_start_after_end_is_no_error_it_matches_nothing() -> None:
    parsed = parse(form(field("start", "2020-01-02T00:00:00Z"), field("end", "2020-01-01T00:00:00Z")))
    assert parsed.start is not None
    assert parsed.end is not None
    assert parsed.start > parsed.end


def test_a_queryid_of_1023_bytes_is_echoed() -> None:
    queryid = "€" * 341  # 1023 bytes
    parsed = parse(f"<iq type='set' id='q'><query xmlns='{MAM}' queryid='{queryid}'/></iq>")
    assert parsed.queryid == queryid


def test_other_children_of_the_query_are_ignored() -> None:
    iq = f"<iq type='set' id='q'><query xmlns='{MAM}'><unknown xmlns='urn:example'/></query></iq>"
    assert parse(iq) == query()


def test_the_caller_must_hand_a_mam_query() -> None:
    iq = etree.fromstring("<iq type='set'><query xmlns='jabber:iq:roster'/></iq>")
    with pytest.raises(ValueError, match="not a MAM query"):
        mam.parse_query(iq, iq[0], default_max=10, max_max=10)


# ---------------------------------------------------------------------------- query refusals


def test_a_query_by_get_is_refused() -> None:
    text = refused(f"<iq type='get' id='q'><query xmlns='{MAM}' queryid='x'/></iq>", C.BAD_REQUEST)
    assert text == "a MAM query is an iq of type 'set'; type 'get' asks for the query's form fields"


def test_a_queryid_over_1023_bytes_is_refused() -> None:
    text = refused(f"<iq type='set' id='q'><query xmlns='{MAM}' queryid='{'€' * 342}'/></iq>", C.BAD_REQUEST)
    assert text == "the queryid is longer than 1023 bytes"


@pytest.mark.parametrize("kind", ["form", "result", "cancel", ""])
def test_a_form_not_submitted_is_refused(kind: str) -> None:
    text = refused(form(field("with", "romeo@montague.lit"), form_type=kind), C.BAD_REQUEST)
    assert text == f"the query's data form must be of type 'submit', not {kind!r}"


def test_another_form_type_is_refused() -> None:
    iq = form(field("FORM_TYPE", "urn:xmpp:mam:1"), hidden=False)
    assert refused(iq, C.BAD_REQUEST) == "the FORM_TYPE of a MAM query form must be urn:xmpp:mam:2"


def test_a_field_without_var_is_refused() -> None:
    text = refused(form("<field><value>x</value></field>"), C.BAD_REQUEST)
    assert text == "a field of the query's data form has no 'var'"


def test_a_field_given_twice_is_refused() -> None:
    text = refused(
        form(field("start", "2010-08-07T00:00:00Z"), field("start", "2010-08-07T00:00:00Z")), C.BAD_REQUEST
    )
    assert text == "the field 'start' is in the query's form twice"


@pytest.mark.parametrize("var", ["with", "start", "end", "before-id", "after-id"])
def test_a_single_value_field_with_two_values_is_refused(var: str) -> None:
    text = refused(form(field(var, "a", "b")), C.BAD_REQUEST)
    assert text == f"the field {var!r} takes one value, not 2"


def test_two_forms_or_two_sets_are_refused() -> None:
    x = "<x xmlns='jabber:x:data' type='submit'/>"
    s = "<set xmlns='http://jabber.org/protocol/rsm'><max>1</max></set>"
    assert refused(f"<iq type='set'><query xmlns='{MAM}'>{x}{x}</query></iq>", C.BAD_REQUEST) == (
        "the query holds more than one data form"
    )
    assert refused(f"<iq type='set'><query xmlns='{MAM}'>{s}{s}</query></iq>", C.BAD_REQUEST) == (
        "the query holds more than one RSM <set/>"
    )


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("@capulet.lit", "empty localpart"),
        ("juliet@", "empty domainpart"),
        ("juliet@capulet.lit/", "empty resourcepart"),
        ("a b@capulet.lit", "localpart contains U+0020"),
    ],
)
def test_a_with_that_is_not_a_jid_is_malformed(value: str, why: str) -> None:
    text = refused(form(field("with", value)), C.JID_MALFORMED)
    assert text.startswith(f"the 'with' field {value!r} is not a JID: ")
    assert why in text


@pytest.mark.parametrize(
    "value",
    [
        "2010-06-07T00:00:00",  # no zone
        "2010-06-07",  # a date
        "yesterday",
        "2010-06-07 00:00:00Z",
        "2010-06-07t00:00:00z",
        "20100607T00:00:00Z",  # the legacy XEP-0091 form
        "2010-06-07T00:00Z",
        "\u0662010-06-07T00:00:00Z",
    ],
)
def test_a_timestamp_not_in_xep_0082_form_is_refused(value: str) -> None:
    text = refused(form(field("start", value)), C.BAD_REQUEST)
    assert text == (
        f"the 'start' field {value!r} is not an XEP-0082 DateTime with a time zone, "
        "such as 2010-07-10T23:08:25Z or 2010-07-10T23:08:25.123+02:00"
    )


@pytest.mark.parametrize(
    "value",
    [
        "2010-13-07T00:00:00Z",
        "2010-02-30T00:00:00Z",
        "2010-06-07T24:00:00Z",
        "2016-12-31T23:59:60Z",  # a leap second
        "2010-06-07T00:00:00+24:00",
        "2010-06-07T00:00:00+01:60",
        "0000-01-01T00:00:00Z",
        "0001-01-01T00:00:00+01:00",  # before year 1 in UTC
        "9999-12-31T23:59:59-01:00",  # after year 9999 in UTC
    ],
)
def test_an_impossible_timestamp_is_refused(value: str) -> None:
    text = refused(form(field("end", value)), C.BAD_REQUEST)
    assert text == f"the 'end' field {value!r} is not a valid date, time and time zone"


def test_too_many_ids_is_a_policy_violation() -> None:
    text = refused(form(field("ids", *(f"id{n}" for n in range(11)))), C.POLICY_VIOLATION, max_max=10)
    assert text == "the 'ids' field lists 11 ids; this server takes at most 10"


def test_rsm_refusals_come_through() -> None:
    iq = f"<iq type='set'><query xmlns='{MAM}'><set xmlns='http://jabber.org/protocol/rsm'><max>-1</max></set></query></iq>"
    assert "RSM <max/>" in refused(iq, C.BAD_REQUEST)


def test_an_overlong_value_is_cut_in_the_text() -> None:
    text = refused(form(field("with", "@" + "x" * 5000)), C.JID_MALFORMED)
    assert len(text) < 200


# ------------------------------------------------------------------------ ids the query names


def test_referenced_ids_are_every_id_once() -> None:
    q = query(after_id="a", before_id="b", ids=("c", "a"), page=Page(max=5, before=""))
    assert mam.referenced_ids(q) == ("a", "b", "c")
    assert mam.referenced_ids(query(page=Page(max=5, after="d"))) == ("d",)
    assert mam.referenced_ids(query()) == ()


@pytest.mark.parametrize(
    ("changes", "where"),
    [
        ({"after_id": "x"}, "the 'after-id' field"),
        ({"before_id": "x"}, "the 'before-id' field"),
        ({"ids": ("ok", "x")}, "the 'ids' field"),
        ({"page": Page(max=5, after="x")}, "RSM <after/>"),
        ({"page": Page(max=5, before="x")}, "RSM <before/>"),
    ],
)
def test_an_id_the_archive_lacks_is_item_not_found(changes: dict[str, object], where: str) -> None:
    with pytest.raises(Refusal) as caught:
        mam.require_ids(query(**changes), {"ok"})
    assert caught.value.condition is C.ITEM_NOT_FOUND
    assert caught.value.text == f"no message with the id 'x' ({where}) in this archive"


def test_ids_the_archive_holds_pass() -> None:
    mam.require_ids(query(after_id="a", ids=("b",), page=Page(max=1, before="")), {"a", "b"})


# ------------------------------------------------------------------------- §4.1.5 the form


def test_the_form_fields_are_the_xeps_minus_what_this_archive_lacks() -> None:
    expected = """
  <query xmlns='urn:xmpp:mam:2'>
    <x xmlns='jabber:x:data' type='form'>
      <field type='hidden' var='FORM_TYPE'>
        <value>urn:xmpp:mam:2</value>
      </field>
      <field type='jid-single' var='with'/>
      <field type='text-single' var='start'/>
      <field type='text-single' var='end'/>
      <field type='text-single' var='before-id'/>
      <field type='text-single' var='after-id'/>
      <field type='list-multi' var='ids'>
        <validate xmlns="http://jabber.org/protocol/xdata-validate" datatype="xs:string">
          <open/>
        </validate>
      </field>
    </x>
  </query>"""
    assert canonical(mam.form_fields()) == canonical(expected)


def test_the_features_are_mam_2_and_extended() -> None:
    assert mam.FEATURES == ("urn:xmpp:mam:2", "urn:xmpp:mam:2#extended")


# -------------------------------------------------------------------------------- §4.2 results


ROMEO = (
    b"<message xmlns='jabber:client' to='juliet@capulet.lit/balcony' from='romeo@montague.lit/orchard' "
    b"type='chat'><body>Call me but love, and I'll be new baptized; Henceforth I never will be Romeo.</body>"
    b"</message>"
)


def test_example_a_result_message() -> None:
    built = mam.result_message(
        JID.parse("juliet@capulet.lit/chamber"),
        JULIET,
        "f27",
        "28482-98726-73623",
        datetime(2010, 7, 10, 23, 8, 25, tzinfo=UTC),
        ROMEO,
    )
    assert built == (
        b"<message xmlns='jabber:client' from='juliet@capulet.lit' to='juliet@capulet.lit/chamber'>"
        b"<result xmlns='urn:xmpp:mam:2' queryid='f27' id='28482-98726-73623'>"
        b"<forwarded xmlns='urn:xmpp:forward:0'><delay xmlns='urn:xmpp:delay' stamp='2010-07-10T23:08:25Z'/>"
        + ROMEO
        + b"</forwarded></result></message>"
    )
    expected = """
<message from='juliet@capulet.lit' to='juliet@capulet.lit/chamber' xmlns='jabber:client'>
  <result xmlns='urn:xmpp:mam:2' queryid='f27' id='28482-98726-73623'>
    <forwarded xmlns='urn:xmpp:forward:0'>
      <delay xmlns='urn:xmpp:delay' stamp='2010-07-10T23:08:25Z'/>
      <message xmlns='jabber:client'
        to='juliet@capulet.lit/balcony'
        from='romeo@montague.lit/orchard'
        type='chat'>
        <body>Call me but love, and I'll be new baptized; Henceforth I never will be Romeo.</body>
      </message>
    </forwarded>
  </result>
</message>"""
    assert canonical(built) == canonical(expected)


def test_a_result_without_queryid_has_none_and_the_from_is_bare() -> None:
    built = mam.result_message(
        "juliet@capulet.lit/chamber",
        JID.parse("juliet@capulet.lit/balcony"),
        None,
        "5d398",
        datetime(2010, 7, 10, 23, 9, 32, 250000, tzinfo=timezone(timedelta(hours=2))),
        b"<message xmlns='jabber:client'/>",
    )
    element = etree.fromstring(built)
    assert element.get("from") == "juliet@capulet.lit"
    result = element[0]
    assert result.get("queryid") is None
    assert result.get("id") == "5d398"
    assert result[0][0].get("stamp") == "2010-07-10T21:09:32.250Z"


def test_attributes_of_a_result_are_escaped() -> None:
    queryid, archive_id = "q'\"<&>\t", "i'd<&>"
    built = mam.result_message(
        "juliet@capulet.lit/it's", JULIET, queryid, archive_id, datetime(2010, 1, 1, tzinfo=UTC), b"<m/>"
    )
    element = etree.fromstring(built)
    assert element.get("to") == "juliet@capulet.lit/it's"
    assert element[0].get("queryid") == queryid
    assert element[0].get("id") == archive_id


def test_example_fin_of_a_limited_page() -> None:
    expected = """
  <fin xmlns='urn:xmpp:mam:2'>
    <set xmlns='http://jabber.org/protocol/rsm'>
      <first index='0'>28482-98726-73623</first>
      <last>09af3-cc343-b409f</last>
      <count>20</count>
    </set>
  </fin>"""
    built = mam.fin(False, result_set("28482-98726-73623", 0, "09af3-cc343-b409f", 20))
    assert canonical(built) == canonical(expected)


def test_example_fin_of_the_last_page_serialises_exactly() -> None:
    built = mam.fin(True, result_set("23452-4534-1", 0, "390-2342-22", 16))
    assert serialize(built) == (
        b'<fin xmlns="urn:xmpp:mam:2" complete="true"><set xmlns="http://jabber.org/protocol/rsm">'
        b'<first index="0">23452-4534-1</first><last>390-2342-22</last><count>16</count></set></fin>'
    )


def test_an_unstable_fin_says_so() -> None:
    built = mam.fin(True, result_set(None, None, None, 0), stable=False)
    assert canonical(built) == canonical(
        "<fin xmlns='urn:xmpp:mam:2' complete='true' stable='false'>"
        "<set xmlns='http://jabber.org/protocol/rsm'><count>0</count></set></fin>"
    )


# -------------------------------------------------------------------------------- §5 metadata


def test_example_archive_metadata() -> None:
    built = mam.metadata(
        ("YWxwaGEg", datetime(2008, 8, 22, 21, 9, 4, tzinfo=UTC)),
        ("b21lZ2Eg", datetime(2020, 4, 20, 14, 34, 21, tzinfo=UTC)),
    )
    assert canonical(built) == canonical("""
  <metadata xmlns='urn:xmpp:mam:2'>
    <start id='YWxwaGEg' timestamp='2008-08-22T21:09:04Z' />
    <end id='b21lZ2Eg' timestamp='2020-04-20T14:34:21Z' />
  </metadata>""")


def test_an_empty_archive_has_empty_metadata() -> None:
    assert serialize(mam.metadata(None, None)) == b'<metadata xmlns="urn:xmpp:mam:2"/>'


def test_metadata_needs_both_ends() -> None:
    with pytest.raises(ValueError):
        mam.metadata(("a", datetime(2020, 1, 1, tzinfo=UTC)), None)


# ---------------------------------------------------------------------------- XEP-0082 stamps


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (datetime(1969, 7, 21, 2, 56, 15, tzinfo=UTC), "1969-07-21T02:56:15Z"),
        (datetime(1969, 7, 20, 21, 56, 15, tzinfo=timezone(timedelta(hours=-5))), "1969-07-21T02:56:15Z"),
        (datetime(2010, 7, 10, 23, 8, 25, 123999, tzinfo=UTC), "2010-07-10T23:08:25.123Z"),
        (datetime(2010, 7, 10, 23, 8, 25, 999, tzinfo=UTC), "2010-07-10T23:08:25Z"),
        (datetime(5, 1, 2, 3, 4, 5, tzinfo=UTC), "0005-01-02T03:04:05Z"),
    ],
)
def test_timestamps_are_written_in_utc(moment: datetime, text: str) -> None:
    assert mam.format_timestamp(moment) == text
    assert mam.parse_timestamp(text) == moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def test_a_naive_datetime_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="naive"):
        mam.format_timestamp(datetime(2020, 1, 1))


# ---------------------------------------------------------------------- XEP-0441 preferences


def prefs_of(text: str) -> mam.Prefs:
    iq = etree.fromstring(text)
    return mam.parse_prefs(iq if iq.tag == mam.PREFS else iq[0])


def prefs_refused(text: str, condition: StanzaErrorCondition) -> str:
    with pytest.raises(Refusal) as caught:
        prefs_of(text)
    assert caught.value.condition is condition, caught.value.text
    return caught.value.text


def test_example_updating_preferences() -> None:
    assert prefs_of("""
<iq type='set' id='juliet3'>
  <prefs xmlns='urn:xmpp:mam:2' default='roster'>
    <always>
      <jid>romeo@montague.lit</jid>
    </always>
    <never>
      <jid>montague@montague.lit</jid>
    </never>
  </prefs>
</iq>""") == mam.Prefs("roster", frozenset({"romeo@montague.lit"}), frozenset({"montague@montague.lit"}))


def test_example_the_answer_with_updated_preferences() -> None:
    prefs = mam.Prefs("roster", frozenset({"romeo@montague.lit"}), frozenset({"montague@montague.lit"}))
    assert canonical(mam.prefs_element(prefs)) == canonical("""
  <prefs xmlns='urn:xmpp:mam:2' default='roster'>
    <always>
      <jid>romeo@montague.lit</jid>
    </always>
    <never>
      <jid>montague@montague.lit</jid>
    </never>
  </prefs>""")


def test_example_the_current_preferences_have_both_lists_even_empty() -> None:
    assert serialize(mam.prefs_element(mam.Prefs("roster"))) == (
        b'<prefs xmlns="urn:xmpp:mam:2" default="roster"><always/><never/></prefs>'
    )


def test_missing_lists_are_empty_jids_are_prepared_and_keep_a_resource() -> None:
    assert prefs_of(
        "<prefs xmlns='urn:xmpp:mam:2' default='never'><always><jid> Romeo@Montague.LIT/Orchard </jid>"
        "<jid>nurse@capulet.lit</jid></always></prefs>"
    ) == mam.Prefs("never", frozenset({"romeo@montague.lit/Orchard", "nurse@capulet.lit"}), frozenset())


def test_listed_jids_come_out_sorted() -> None:
    prefs = mam.Prefs("always", frozenset({"b@x", "a@x", "c@x"}))
    assert [jid.text for jid in mam.prefs_element(prefs)[0]] == ["a@x", "b@x", "c@x"]


@pytest.mark.parametrize(
    ("attr", "shown"), [("", "none"), ("default='sometimes'", "'sometimes'"), ("default=''", "''")]
)
def test_a_bad_default_is_refused(attr: str, shown: str) -> None:
    text = prefs_refused(f"<prefs xmlns='urn:xmpp:mam:2' {attr}/>", C.BAD_REQUEST)
    assert text == f"the 'default' of <prefs/> must be always, roster or never, not {shown}"


def test_a_bad_jid_in_a_list_is_malformed() -> None:
    text = prefs_refused(
        "<prefs xmlns='urn:xmpp:mam:2' default='always'><never><jid>@montague.lit</jid></never></prefs>",
        C.JID_MALFORMED,
    )
    assert text == "<never/> lists '@montague.lit', not a JID: empty localpart"
    text = prefs_refused(
        "<prefs xmlns='urn:xmpp:mam:2' default='always'><always><jid/></always></prefs>", C.JID_MALFORMED
    )
    assert text == "<always/> lists '', not a JID: empty domainpart"


def test_a_list_given_twice_is_refused() -> None:
    text = prefs_refused(
        "<prefs xmlns='urn:xmpp:mam:2' default='always'><always/><always/></prefs>", C.BAD_REQUEST
    )
    assert text == "<always/> is in <prefs/> more than once"


def test_too_long_a_list_is_a_policy_violation() -> None:
    jids = "".join(f"<jid>u{n}@x</jid>" for n in range(4))
    element = etree.fromstring(
        f"<prefs xmlns='urn:xmpp:mam:2' default='always'><never>{jids}</never></prefs>"
    )
    with pytest.raises(Refusal) as caught:
        mam.parse_prefs(element, max_jids=3)
    assert caught.value.condition is C.POLICY_VIOLATION
    assert caught.value.text == "<never/> lists more than 3 JIDs"


def test_prefs_must_be_prefs() -> None:
    with pytest.raises(ValueError):
        mam.parse_prefs(etree.fromstring("<prefs default='always'/>"))


ROSTER_PREFS = mam.Prefs(
    "roster",
    always=frozenset({"romeo@montague.lit", "nurse@capulet.lit/kitchen", "tybalt@capulet.lit"}),
    never=frozenset({"montague@montague.lit", "romeo@montague.lit/masked", "tybalt@capulet.lit"}),
)


@pytest.mark.parametrize(
    ("prefs", "contact", "in_roster", "archived"),
    [
        (ROSTER_PREFS, "romeo@montague.lit", False, True),  # always, bare
        (ROSTER_PREFS, "romeo@montague.lit/orchard", False, True),  # a bare entry matches any resource
        (ROSTER_PREFS, "romeo@montague.lit/masked", True, False),  # never (full) wins over always (bare)
        (ROSTER_PREFS, "tybalt@capulet.lit", True, False),  # on both lists: never wins
        (ROSTER_PREFS, "montague@montague.lit/x", True, False),
        (ROSTER_PREFS, "nurse@capulet.lit/kitchen", False, True),  # a full entry matches itself
        (ROSTER_PREFS, "nurse@capulet.lit", False, False),  # ... and not the bare JID: default roster
        (ROSTER_PREFS, "nurse@capulet.lit/garden", True, True),
        (ROSTER_PREFS, JID.parse("friar@verona.lit/cell"), True, True),
        (mam.Prefs("always"), "anyone@x", False, True),
        (mam.Prefs("never"), "anyone@x", True, False),
        (mam.Prefs("never", always=frozenset({"anyone@x"})), "anyone@x/r", False, True),
    ],
)
def test_should_archive(prefs: mam.Prefs, contact: JID | str, in_roster: bool, archived: bool) -> None:
    assert mam.should_archive(prefs, contact, in_roster) is archived


# -------------------------------------------------------------------- §6.1.1 what is stored


@pytest.mark.parametrize(
    ("message", "stored"),
    [
        ("<message type='chat'><body>hi</body></message>", True),
        ("<message><body>hi</body></message>", True),
        ("<message type='normal'><body/></message>", True),
        ("<message type='chat'><active xmlns='http://jabber.org/protocol/chatstates'/></message>", False),
        ("<message type='groupchat'><body>hi</body></message>", False),
        ("<message type='headline'><body>hi</body></message>", False),
        ("<message type='error'><body>hi</body></message>", False),
        ("<message type='chat'><store xmlns='urn:xmpp:hints'/></message>", True),
        ("<message type='chat'><body>hi</body><no-store xmlns='urn:xmpp:hints'/></message>", False),
        ("<message type='chat'><body>hi</body><no-permanent-store xmlns='urn:xmpp:hints'/></message>", False),
        ("<message><store xmlns='urn:xmpp:hints'/><no-store xmlns='urn:xmpp:hints'/></message>", False),
        ("<message type='error'><store xmlns='urn:xmpp:hints'/></message>", False),
        ("<message><body xmlns='urn:example'>hi</body></message>", False),
    ],
)
def test_should_store(message: str, stored: bool) -> None:
    element = etree.fromstring(message.replace("<message", "<message xmlns='jabber:client'", 1))
    assert mam.should_store(element) is stored


# ----------------------------------------------------------------- archive ids and XEP-0359


def test_an_archive_id_is_26_characters_of_crockford_base32() -> None:
    archive_id = mam.new_archive_id()
    assert len(archive_id) == 26
    assert set(archive_id) <= set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")
    assert mam.is_archive_id(archive_id)
    assert mam.new_archive_id(0).startswith("0000000000")
    assert mam.new_archive_id((1 << 48) - 1).startswith("7ZZZZZZZZZ")
    assert mam.new_archive_id(1_700_000_000_000)[:10] == "01HF7YAT00"  # as a ULID of that time


def test_ids_of_one_millisecond_are_unique() -> None:
    assert len({mam.new_archive_id(1_700_000_000_000) for _ in range(2000)}) == 2000


@pytest.mark.parametrize("bad", [-1, 1 << 48])
def test_a_time_out_of_48_bits_is_a_programming_error(bad: int) -> None:
    with pytest.raises(ValueError, match="48 bits"):
        mam.new_archive_id(bad)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "28482-98726-73623",
        "8ZZZZZZZZZZZZZZZZZZZZZZZZZ",
        "01HF4Q3Y00ABCDEFGHJKMNPQRI",
        "01hf4q3y00abcdefghjkmnpqrs",
        "0" * 27,
    ],
)
def test_other_strings_are_not_archive_ids(text: str) -> None:
    assert not mam.is_archive_id(text)


@settings(max_examples=300)
@given(st.integers(0, (1 << 48) - 2), st.integers(1, (1 << 48) - 1))
def test_ids_of_later_milliseconds_sort_after_as_strings(earlier: int, gap: int) -> None:
    later = min(earlier + gap, (1 << 48) - 1)
    assert mam.new_archive_id(earlier) < mam.new_archive_id(later)


def test_the_stanza_id_element() -> None:
    built = mam.stanza_id_element("28482-98726-73623", JID.parse("juliet@capulet.lit/balcony"))
    assert canonical(built) == canonical(
        "<stanza-id xmlns='urn:xmpp:sid:0' by='juliet@capulet.lit' id='28482-98726-73623' />"
    )


def test_stanza_ids_in_the_archives_name_are_removed_others_kept() -> None:
    message = etree.fromstring(
        "<message xmlns='jabber:client' to='juliet@capulet.lit/balcony' from='romeo@montague.lit/orchard' type='chat'>"
        "<body>hi</body>"
        "<stanza-id xmlns='urn:xmpp:sid:0' by='juliet@capulet.lit' id='forged-1'/>"
        "<stanza-id xmlns='urn:xmpp:sid:0' by='Juliet@Capulet.LIT.' id='forged-2'/>"
        "<stanza-id xmlns='urn:xmpp:sid:0' by='romeo@montague.lit' id='theirs'/>"
        "<stanza-id xmlns='urn:xmpp:sid:0' by='@@' id='junk'/>"
        "<stanza-id xmlns='urn:xmpp:sid:0' id='no-by'/>"
        "<origin-id xmlns='urn:xmpp:sid:0' id='origin'/>"
        "</message>"
    )
    mam.strip_foreign_stanza_ids(message, "juliet@capulet.lit")
    assert [child.get("id") for child in message] == [None, "theirs", "junk", "no-by", "origin"]


def test_add_stanza_id_replaces_a_forged_one() -> None:
    message = etree.fromstring(
        "<message xmlns='jabber:client' type='chat'><body>hi</body>"
        "<stanza-id xmlns='urn:xmpp:sid:0' by='juliet@capulet.lit' id='forged'/> tail</message>"
    )
    mam.add_stanza_id(message, "01HF4Q3Y00ABCDEFGHJKMNPQRS", JID.parse("juliet@capulet.lit/balcony"))
    assert canonical(message) == canonical(
        "<message xmlns='jabber:client' type='chat'><body>hi</body> tail"
        "<stanza-id xmlns='urn:xmpp:sid:0' id='01HF4Q3Y00ABCDEFGHJKMNPQRS' by='juliet@capulet.lit'/></message>"
    )


# ------------------------------------------------------------------------------- properties


def xml_text(max_size: int = 30) -> st.SearchStrategy[str]:
    """Strings XML 1.0 can carry (what reaches the parser from a real stream)."""
    return st.text(
        st.characters(exclude_categories=("Cs",)).filter(
            lambda ch: ch in "\t\n\r" or (ch >= " " and ch not in "\ufffe\uffff")
        ),
        max_size=max_size,
    )


VARS = st.sampled_from(["with", "start", "end", "before-id", "after-id", "ids", "FORM_TYPE", "other", ""])
RSM_CHILDREN = st.sampled_from(["max", "after", "before", "index"])


@settings(max_examples=400, deadline=None)
@given(
    fields=st.lists(st.tuples(VARS, st.lists(xml_text(), max_size=3)), max_size=6),
    rsm_children=st.lists(st.tuples(RSM_CHILDREN, xml_text(12)), max_size=4),
    queryid=st.none() | xml_text(),
    form_type=st.sampled_from(["submit", "form"]),
    node=st.none() | xml_text(5),
    flip=st.booleans(),
)
def test_parse_query_refuses_or_answers_never_crashes(
    fields: list[tuple[str, list[str]]],
    rsm_children: list[tuple[str, str]],
    queryid: str | None,
    form_type: str,
    node: str | None,
    flip: bool,
) -> None:
    iq = etree.Element("{jabber:client}iq", type="set", id="q")
    query_el = etree.SubElement(iq, f"{{{MAM}}}query")
    if queryid is not None:
        query_el.set("queryid", queryid)
    if node is not None:
        query_el.set("node", node)
    x = etree.SubElement(query_el, "{jabber:x:data}x", type=form_type)
    for var, values in fields:
        field_el = etree.SubElement(x, "{jabber:x:data}field", var=var)
        for value in values:
            etree.SubElement(field_el, "{jabber:x:data}value").text = value
    if rsm_children:
        set_el = etree.SubElement(query_el, "{http://jabber.org/protocol/rsm}set")
        for name, text in rsm_children:
            etree.SubElement(set_el, f"{{http://jabber.org/protocol/rsm}}{name}").text = text
    if flip:
        etree.SubElement(query_el, f"{{{MAM}}}flip-page")
    try:
        parsed: mam.Query | Refusal = mam.parse_query(iq, query_el, default_max=10, max_max=50)
    except Refusal as refusal:
        parsed = refusal
    if isinstance(parsed, Refusal):
        assert parsed.text
        assert parsed.condition in C
        return
    assert 0 <= parsed.page.max <= 50
    assert parsed.flip is flip
    assert parsed.start is None or parsed.start.tzinfo is UTC
    assert parsed.end is None or parsed.end.tzinfo is UTC
    assert len(parsed.ids) <= 50
    for archive_id in mam.referenced_ids(parsed):
        assert archive_id


@settings(max_examples=300)
@given(xml_text(40))
def test_parse_timestamp_refuses_or_answers_in_utc(text: str) -> None:
    try:
        moment: datetime | Refusal = mam.parse_timestamp(text, "the 'start' field")
    except Refusal as refusal:
        moment = refusal
    if isinstance(moment, Refusal):
        assert moment.condition is C.BAD_REQUEST
        assert moment.text.startswith("the 'start' field ")
        return
    assert moment.tzinfo is UTC
    assert abs(mam.parse_timestamp(mam.format_timestamp(moment)) - moment) < timedelta(milliseconds=1)
