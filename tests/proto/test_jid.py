from __future__ import annotations

import unicodedata
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from precis_i18n import get_profile

from xmppauth.proto.jid import JID, InvalidJID, prep_localpart, prep_resource


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("localhost", JID(None, "localhost")),
        ("Alice@LocalHost", JID("alice", "localhost")),
        ("alice@localhost/Phone/2", JID("alice", "localhost", "Phone/2")),
        ("alice@localhost.", JID("alice", "localhost")),
    ],
)
def test_it_parses_and_prepares(text: str, expected: JID) -> None:
    assert JID.parse(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        "@localhost",
        "alice@",
        "alice@localhost/",
        "a b@localhost",
        "a@b@c",
        "x@localhost/\u0007",
        "a" * 1024 + "@x",
    ],
)
def test_it_refuses_invalid_jids(text: str) -> None:
    with pytest.raises(InvalidJID):
        JID.parse(text)


def test_str_and_bare_round_trip() -> None:
    jid = JID.parse("alice@localhost/phone")
    assert str(jid) == "alice@localhost/phone"
    assert str(jid.bare) == "alice@localhost"
    assert jid.bare.is_bare
    assert not jid.is_bare


# ---------------------------------------------------------------------- PRECIS (RFC 7622 §3.3, §3.4)
@pytest.mark.parametrize(
    ("resource", "message"),
    [
        # RFC 8264 §9.13 PrecisIgnorableProperties: Default_Ignorable_Code_Point ...
        (
            "\u202ephone",
            "resourcepart contains U+202E, which PRECIS disallows"
            " (an invisible or formatting code point, Default_Ignorable_Code_Point)",
        ),
        ("pho\u200bne", "resourcepart contains U+200B, which PRECIS disallows (an invisible"),
        ("\ufeffphone", "resourcepart contains U+FEFF, which PRECIS disallows (an invisible"),
        ("phone\u2060", "resourcepart contains U+2060, which PRECIS disallows (an invisible"),
        ("\u2066phone\u2069", "resourcepart contains U+2066, which PRECIS disallows (an invisible"),
        # ... and Noncharacter_Code_Point
        ("phone\uffff", "resourcepart contains U+FFFF, which PRECIS disallows (a noncharacter)"),
        ("\ufdd0", "resourcepart contains U+FDD0, which PRECIS disallows (a noncharacter)"),
        # §9.12 Controls
        ("ph\u0007one", "resourcepart contains U+0007, which PRECIS disallows (a control character)"),
        ("ph\u0085one", "resourcepart contains U+0085, which PRECIS disallows (a control character)"),
        # §9.6 Unassigned (U+0378 is unassigned up to at least Unicode 16)
        ("x\u0378", "resourcepart contains U+0378, which PRECIS disallows (unassigned in Unicode "),
        # §9.10 OldHangulJamo
        ("\u1100\u1161\u11a8\u1160", "resourcepart contains U+1160, which PRECIS disallows"),
        # §9.19: nothing else takes private use or format characters
        ("x\ue000", "resourcepart contains U+E000, which PRECIS disallows (a private-use code point)"),
        ("\u0600x", "resourcepart contains U+0600, which PRECIS disallows (a format character)"),
        # CONTEXTJ: a zero width joiner only after a virama
        ("a\u200db", "resourcepart contains U+200D, which PRECIS allows only in context"),
    ],
)
def test_resourcepart_refuses_what_precis_disallows_and_says_which_code_point(
    resource: str, message: str
) -> None:
    with pytest.raises(InvalidJID) as caught:
        JID.parse(f"bob@localhost/{resource}")
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    ("resource", "prepared"),
    [
        ("Телефон", "Телефон"),  # non-Latin letters are kept, and case too (no case mapping)
        ("電話", "電話"),
        ("Phone 2", "Phone 2"),  # U+0020 is allowed in the FreeformClass
        ("Phone\u00a02", "Phone 2"),  # non-ASCII spaces become U+0020 (RFC 8265 §4.2.1)
        ("Phone\u30002", "Phone 2"),
        ("Cafe\u0301", "Caf\u00e9"),  # NFC composes
        ("\uff30hone", "\uff30hone"),  # no width mapping: fullwidth P stays
        ("\u00e9\u263a\u2192!", "\u00e9\u263a\u2192!"),  # symbols and punctuation are FREE_PVAL
        ("\u0915\u094d\u200d\u0937", "\u0915\u094d\u200d\u0937"),  # ZWJ after a virama (RFC 5892 A.2)
        ("ExampleChat~rQ7Lwut0CcxW6", "ExampleChat~rQ7Lwut0CcxW6"),
        ("alice@localhost/2", "alice@localhost/2"),  # RFC 7622 §3.1: '@' and '/' are fine here
    ],
)
def test_resourcepart_maps_and_keeps_what_opaquestring_allows(resource: str, prepared: str) -> None:
    jid = JID.parse(f"bob@localhost/{resource}")
    assert jid.resource == prepared
    assert JID.parse(str(jid)) == jid


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("pho\u200bne@localhost", "localpart contains U+200B, which PRECIS disallows (an invisible"),
        ("\u202ebob@localhost", "localpart contains U+202E, which PRECIS disallows (an invisible"),
        ("bob\ufeff@localhost", "localpart contains U+FEFF, which PRECIS disallows (an invisible"),
        ("a\u3000b@localhost", "localpart contains U+0020, which PRECIS disallows (a space)"),
        ("\u2603@localhost", "localpart contains U+2603, which PRECIS disallows (a symbol outside ASCII)"),
        ("\u05d0a@localhost", "localpart mixes right-to-left and other text against the Bidi Rule"),
        ("a:b@localhost", "localpart contains ':', which RFC 7622 §3.3.1 forbids"),
    ],
)
def test_localpart_refuses_what_usernamecasemapped_disallows(text: str, message: str) -> None:
    with pytest.raises(InvalidJID) as caught:
        JID.parse(text)
    assert str(caught.value).startswith(message)


@pytest.mark.parametrize(
    ("text", "local"),
    [
        ("\u0410\u043b\u0438\u0441\u0430@localhost", "\u0430\u043b\u0438\u0441\u0430"),  # Алиса
        ("\uff21lice@localhost", "alice"),  # width mapping (here by NFKC)
        ("\u212aevin@localhost", "kevin"),  # KELVIN SIGN
        ("Jos\u00e9@localhost", "jos\u00e9"),
        ("\u05d0\u05d1@localhost", "\u05d0\u05d1"),  # right-to-left alone passes the Bidi Rule
        ("Stra\u00dfe@localhost", "strasse"),  # the mapping accounts were made with: case folding
    ],
)
def test_localpart_keeps_identifier_letters(text: str, local: str) -> None:
    assert JID.parse(text).local == local


def test_a_part_over_1023_bytes_after_preparation_is_refused() -> None:
    with pytest.raises(InvalidJID, match="resourcepart longer than 1023 bytes"):
        JID.parse("bob@localhost/" + "\u00e9" * 512)  # 1024 bytes
    with pytest.raises(InvalidJID, match="resourcepart longer than 1023 bytes"):
        JID.parse("bob@localhost/" + "\u00e9" * 100_000)
    assert JID.parse("bob@localhost/" + "\u00e9" * 511 + "x").resource == "\u00e9" * 511 + "x"
    # measured after NFC: 600 decomposed e-acutes are 1800 bytes in, 1200 out
    with pytest.raises(InvalidJID, match="resourcepart longer than 1023 bytes"):
        JID.parse("bob@localhost/" + "e\u0301" * 600)
    assert JID.parse("bob@localhost/" + "e\u0301" * 511).resource == "\u00e9" * 511
    with pytest.raises(InvalidJID, match="localpart longer than 1023 bytes"):
        JID.parse("\u00e9" * 512 + "@localhost")


def _prepared(prep: Callable[[str], str], value: str) -> str | None:
    try:
        return prep(value)
    except InvalidJID:
        return None


@settings(max_examples=500)
@given(st.text(min_size=1, max_size=40))
def test_resource_preparation_is_idempotent(value: str) -> None:
    prepared = _prepared(prep_resource, value)
    if prepared is not None:
        assert prep_resource(prepared) == prepared


@settings(max_examples=500)
@given(st.text(min_size=1, max_size=40))
def test_localpart_preparation_is_idempotent(value: str) -> None:
    prepared = _prepared(prep_localpart, value)
    if prepared is not None:
        assert prep_localpart(prepared) == prepared


def _library(profile: str, value: str) -> str | None:
    try:
        return get_profile(profile).enforce(value)
    except UnicodeEncodeError:
        return None


@settings(max_examples=1000)
@given(st.text(alphabet=st.characters(max_codepoint=0x7F), min_size=1) | st.text(min_size=1, max_size=40))
def test_preparation_agrees_with_the_precis_library(value: str) -> None:
    """Our shortcuts (printable ASCII, the per-code-point memo) change nothing the library decides."""
    assert _prepared(prep_resource, value) == _library("OpaqueString", value)
    mapped = value.lower() if value.isascii() else unicodedata.normalize("NFKC", value).casefold()
    local = _library("UsernameCaseMapped:CaseFold", mapped)
    if local is not None and any(ch in "\"&'/:<>@" for ch in local):
        local = None
    assert _prepared(prep_localpart, value) == local
