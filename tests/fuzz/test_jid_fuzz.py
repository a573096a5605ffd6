"""Fuzzing JID preparation (xmppauth/proto/jid.py), beyond the per-part properties of tests/proto/test_jid.py.

Properties:

- parsing any string raises nothing but InvalidJID;
- a parsed JID is a fixed point: parsing its string form gives the same JID (whole-JID idempotence,
  the domainpart included), and every part is at most 1023 bytes after preparation;
- the 1023-byte limit is on the prepared part, at the exact boundary, for 1- to 4-byte characters.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from tests.fuzz.common import fuzz
from xmppauth.proto.jid import JID, InvalidJID, parse_jid, prep_domain, prep_localpart, prep_resource

# Pieces that make JIDs interesting: separators, dots, case, compatibility forms, invisible and
# right-to-left characters, controls, noncharacters, combining marks.
_PIECES = st.sampled_from(
    ["@", "/", ".", "..", "a", "B", "example.com", "ß", "ﬁ", "Ⅳ", "\u200d", "\u05d0", "\u0627", "\u0301",
     " ", "\u3000", "\x00", "\x7f", "\ufdd0", "\U0010ffff", "ǰ", "ΐ", "İ", "\u0345", "'", "&", ":"]
)  # fmt: skip
jid_text = st.lists(st.one_of(_PIECES, st.text(max_size=4)), max_size=8).map("".join)


def _parse(value: str) -> JID | None:
    try:
        return JID.parse(value)
    except InvalidJID:
        return None


@fuzz(5)
@given(value=jid_text)
@example(value="a@example.com..")
@example(value="a@.example.com")
def test_a_parsed_jid_is_a_fixed_point(value: str) -> None:
    jid = _parse(value)
    if jid is None:
        return
    for part in (jid.local, jid.domain, jid.resource):
        assert part is None or 0 < len(part.encode()) <= 1023
    again = JID.parse(str(jid))
    assert again == jid, (value, str(jid), str(again))
    assert parse_jid(str(jid)) == jid
    assert jid.bare == JID.parse(str(jid.bare))


@fuzz(3)
@given(value=jid_text)
def test_each_part_prepares_to_a_fixed_point_or_is_refused(value: str) -> None:
    for prep in (prep_localpart, prep_domain, prep_resource):
        try:
            prepared = prep(value)
        except InvalidJID:
            continue
        assert prep(prepared) == prepared, (prep.__name__, value, prepared)


@pytest.mark.parametrize("char", ["a", "é", "€", "\U0001f600"])
@pytest.mark.parametrize("prep", [prep_localpart, prep_domain, prep_resource])
def test_the_limit_is_1023_bytes_at_the_boundary(prep: object, char: str) -> None:
    assert callable(prep)
    width = len(char.encode())
    fill = "a" * (1023 % width)
    longest = char * (1023 // width) + fill
    assert len(longest.encode()) == 1023
    try:
        prepared = prep(longest)
    except InvalidJID as exc:
        refused = str(exc)
    else:
        refused = ""
        assert prepared == longest
    if refused:  # that part refuses the character itself, whatever the length
        assert "1023" not in refused
        return
    with pytest.raises(InvalidJID, match="1023"):
        prep(longest + "a")


@fuzz(1)
@given(count=st.integers(300, 700))
def test_the_limit_applies_after_preparation(count: int) -> None:
    # "ﬁ" is three bytes and prepares to the two bytes "fi"; "Ⅳ" (3 bytes) to "iv"
    value = "ﬁ" * count
    assert len(value.encode()) >= 900
    if 2 * count <= 1023:
        assert prep_localpart(value) == "fi" * count
    else:
        with pytest.raises(InvalidJID, match="1023"):
            prep_localpart(value)
