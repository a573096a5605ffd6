"""XEP-0059 Result Set Management: the request's ``<set/>`` parsed, the answer's built, from the XEP's examples."""

from __future__ import annotations

import copy

import pytest
from lxml import etree

from xmppauth.proto.errors import StanzaErrorCondition
from xmppauth.proto.replies import Refusal
from xmppauth.proto.xep0059_rsm import RSM, Page, parse, result_set

BAD = StanzaErrorCondition.BAD_REQUEST


def canonical(xml: str | bytes | etree._Element) -> bytes:
    """C14N of ``xml`` without whitespace-only text between elements: equal for equal XML."""
    element = etree.fromstring(xml) if isinstance(xml, str | bytes) else copy.deepcopy(xml)
    for node in element.iter():
        if node.text is not None and not node.text.strip():
            node.text = None
        if node.tail is not None and not node.tail.strip():
            node.tail = None
    return etree.tostring(element, method="c14n")


def set_of(iq: str) -> etree._Element | None:
    """The RSM ``<set/>`` in a literal iq of the XEP (or the literal ``<set/>`` itself)."""
    return next(etree.fromstring(iq).iter(f"{{{RSM}}}set"), None)


def page_of(iq: str, default_max: int = 50, max_max: int = 100) -> Page:
    return parse(set_of(iq), default_max=default_max, max_max=max_max)


def refusal(iq: str) -> Refusal:
    with pytest.raises(Refusal) as caught:
        page_of(iq)
    return caught.value


def rsm(inner: str) -> str:
    return f"<set xmlns='{RSM}'>{inner}</set>"


# ---------------------------------------------------------------------- requests (XEP-0059 §2)


def test_example_1_requesting_a_limit() -> None:
    iq = """
<iq type='set' from='stpeter@jabber.org/roundabout' to='users.jabber.org' id='limit1'>
  <query xmlns='jabber:iq:search'>
    <nick>Pete</nick>
    <set xmlns='http://jabber.org/protocol/rsm'>
      <max>10</max>
    </set>
  </query>
</iq>"""
    assert page_of(iq) == Page(max=10, after=None, before=None, index=None)


def test_example_5_requesting_the_second_page() -> None:
    iq = """
<iq type='set' from='stpeter@jabber.org/roundabout' to='users.jabber.org' id='page2'>
  <query xmlns='jabber:iq:search'>
    <nick>Pete</nick>
    <set xmlns='http://jabber.org/protocol/rsm'>
      <max>10</max>
      <after>peterpan@neverland.lit</after>
    </set>
  </query>
</iq>"""
    page = page_of(iq)
    assert page == Page(max=10, after="peterpan@neverland.lit")
    assert not page.backwards


def test_example_8_requesting_the_previous_page() -> None:
    iq = """
<iq type='set' from='stpeter@jabber.org/roundabout' to='users.jabber.org' id='back1'>
  <query xmlns='jabber:iq:search'>
    <nick>Pete</nick>
    <set xmlns='http://jabber.org/protocol/rsm'>
      <max>10</max>
      <before>peter@pixyland.org</before>
    </set>
  </query>
</iq>"""
    page = page_of(iq)
    assert page == Page(max=10, before="peter@pixyland.org")
    assert page.backwards
    assert not page.last_page


def test_example_11_requesting_the_last_page_is_an_empty_before() -> None:
    iq = """
<iq type='set' from='stpeter@jabber.org/roundabout' to='users.jabber.org' id='page1'>
  <query xmlns='jabber:iq:search'>
    <nick>Pete</nick>
    <set xmlns='http://jabber.org/protocol/rsm'>
      <max>10</max>
      <before/>
    </set>
  </query>
</iq>"""
    page = page_of(iq)
    assert page == Page(max=10, before="")
    assert page.backwards
    assert page.last_page


def test_example_12_requesting_a_page_by_index() -> None:
    iq = """
<iq type='set' from='stpeter@jabber.org/roundabout' to='users.jabber.org' id='index10'>
  <query xmlns='jabber:iq:search'>
    <nick>Pete</nick>
    <set xmlns='http://jabber.org/protocol/rsm'>
      <max>10</max>
      <index>371</index>
    </set>
  </query>
</iq>"""
    assert page_of(iq) == Page(max=10, index=371)


def test_example_15_max_zero_asks_for_the_count_alone() -> None:
    iq = """
<iq type='set' from='stpeter@jabber.org/roundabout' to='users.jabber.org' id='count1'>
  <query xmlns='jabber:iq:search'>
    <nick>Pete</nick>
    <set xmlns='http://jabber.org/protocol/rsm'>
      <max>0</max>
    </set>
  </query>
</iq>"""
    assert page_of(iq) == Page(max=0)


def test_no_set_is_the_first_page_of_the_server_default() -> None:
    assert parse(None, default_max=20, max_max=100) == Page(max=20)


def test_a_set_without_max_takes_the_server_default() -> None:
    assert page_of(rsm("<after>x</after>"), default_max=7) == Page(max=7, after="x")


@pytest.mark.parametrize("asked", ["101", "1000000", "2147483648", "9" * 5000])
def test_a_max_above_the_server_maximum_is_cut_to_it(asked: str) -> None:
    assert page_of(rsm(f"<max>{asked}</max>"), max_max=100) == Page(max=100)


def test_leading_zeros_and_surrounding_whitespace_are_fine() -> None:
    assert page_of(rsm("<max> 007 </max><after>\n  abc\n</after>")) == Page(max=7, after="abc")


def test_an_empty_after_is_the_same_as_none() -> None:
    assert page_of(rsm("<max>5</max><after/>")) == Page(max=5)


def test_children_a_request_has_no_use_for_are_ignored() -> None:
    assert page_of(rsm("<max>5</max><count>3</count><first>a</first>")) == Page(max=5)


def test_the_server_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="default_max"):
        parse(None, default_max=200, max_max=100)
    with pytest.raises(ValueError, match="default_max"):
        parse(None, default_max=-1, max_max=100)
    with pytest.raises(ValueError, match="not an RSM"):
        parse(etree.fromstring("<set/>"), default_max=10, max_max=100)


# ------------------------------------------------------------------------------------ refusals


@pytest.mark.parametrize("bad", ["-1", "ten", "", "+5", "1.5", "1e3", "\u0663", "5 5"])
def test_a_max_that_is_not_a_whole_number_is_refused(bad: str) -> None:
    refused = refusal(rsm(f"<max>{bad}</max>"))
    assert refused.condition is BAD
    assert refused.text.startswith("RSM <max/> must be a whole number from 0 to 2147483647, not ")
    assert repr(bad.strip()) in refused.text


def test_an_overlong_bad_value_is_cut_in_the_text() -> None:
    refused = refusal(rsm(f"<max>{'x' * 500}</max>"))
    assert refused.condition is BAD
    assert "x" * 40 + "…" in refused.text
    assert "x" * 41 not in refused.text


@pytest.mark.parametrize("bad", ["-1", "abc", "2147483648", "9" * 5000])
def test_a_bad_index_is_refused(bad: str) -> None:
    refused = refusal(rsm(f"<index>{bad}</index>"))
    assert refused.condition is BAD
    assert refused.text.startswith("RSM <index/> must be a whole number from 0 to 2147483647")


def test_after_and_before_together_are_refused() -> None:
    refused = refusal(rsm("<max>10</max><after>a</after><before>b</before>"))
    assert refused.condition is BAD
    assert "<after/> and <before/> together" in refused.text
    assert "after-id and before-id" in refused.text


def test_after_with_an_empty_before_is_refused_too() -> None:
    assert "together" in refusal(rsm("<after>a</after><before/>")).text


@pytest.mark.parametrize("other", ["<after>a</after>", "<before>b</before>", "<before/>"])
def test_index_with_an_id_is_refused(other: str) -> None:
    refused = refusal(rsm(f"<index>3</index>{other}"))
    assert refused.condition is BAD
    assert refused.text == "RSM <index/> cannot be combined with <after/> or <before/> (XEP-0059 §2.6)"


@pytest.mark.parametrize("name", ["max", "after", "before", "index"])
def test_an_element_given_twice_is_refused(name: str) -> None:
    refused = refusal(rsm(f"<{name}>1</{name}><{name}>2</{name}>"))
    assert refused.condition is BAD
    assert refused.text == f"RSM <{name}/> given more than once"


# ----------------------------------------------------------------------- answers (XEP-0059 §2)


def test_example_4_returning_the_first_page() -> None:
    expected = """
    <set xmlns='http://jabber.org/protocol/rsm'>
      <first index='0'>stpeter@jabber.org</first>
      <last>peterpan@neverland.lit</last>
      <count>800</count>
    </set>"""
    built = result_set("stpeter@jabber.org", 0, "peterpan@neverland.lit", 800)
    assert canonical(built) == canonical(expected)


def test_example_6_returning_the_second_page_serialises_exactly() -> None:
    built = result_set("peter@pixyland.org", 10, "peter@rabbit.lit", 800)
    assert etree.tostring(built) == (
        b'<set xmlns="http://jabber.org/protocol/rsm"><first index="10">peter@pixyland.org</first>'
        b"<last>peter@rabbit.lit</last><count>800</count></set>"
    )


def test_example_7_an_empty_page_carries_only_the_count() -> None:
    expected = """
    <set xmlns='http://jabber.org/protocol/rsm'>
      <count>790</count>
    </set>"""
    assert canonical(result_set(None, None, None, 790)) == canonical(expected)


def test_without_index_or_count_they_are_left_out() -> None:
    assert canonical(result_set("a", None, "a", None)) == canonical(
        "<set xmlns='http://jabber.org/protocol/rsm'><first>a</first><last>a</last></set>"
    )
    assert canonical(result_set(None, None, None, None)) == canonical(
        "<set xmlns='http://jabber.org/protocol/rsm'/>"
    )


def test_ids_are_escaped_as_text() -> None:
    built = result_set("<&>", 0, "'\"", 2)
    assert etree.fromstring(etree.tostring(built)).findtext(f"{{{RSM}}}first") == "<&>"


@pytest.mark.parametrize(
    ("first", "index", "last", "count"),
    [("a", 0, None, 1), (None, None, "b", 1), (None, 0, None, 1), ("a", -1, "b", 1), ("a", 0, "b", -1)],
)
def test_an_impossible_page_is_a_programming_error(
    first: str | None, index: int | None, last: str | None, count: int | None
) -> None:
    with pytest.raises(ValueError):
        result_set(first, index, last, count)
