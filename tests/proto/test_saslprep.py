"""RFC 4013 SASLprep: the §3 examples and each rule of §2 separately."""

from __future__ import annotations

import pytest

from xmppauth.proto.sasl.saslprep import saslprep


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("I\u00adX", "IX"),  # SOFT HYPHEN mapped to nothing
        ("user", "user"),  # no transformation
        ("USER", "USER"),  # case preserved, will not match #2
        ("\u00aa", "a"),  # output is NFKC, input in ISO 8859-1
        ("\u2168", "IX"),  # output is NFKC, will match #1
    ],
)
def test_rfc4013_section3_examples(value: str, expected: str) -> None:
    assert saslprep(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "\u0007",  # Error - prohibited character
        "\u0627\u0031",  # Error - bidirectional check
    ],
)
def test_rfc4013_section3_error_examples(value: str) -> None:
    with pytest.raises(ValueError, match="SASLprep"):
        saslprep(value)


def test_non_ascii_space_maps_to_space() -> None:
    # C.1.2 (e.g. NO-BREAK SPACE, IDEOGRAPHIC SPACE) map to U+0020.
    assert saslprep("a\u00a0b\u3000c") == "a b c"


def test_commonly_mapped_to_nothing() -> None:
    # B.1: ZERO WIDTH SPACE, ZERO WIDTH JOINER, VARIATION SELECTOR-1 ...
    assert saslprep("p\u200bass\u200dw\ufe00ord") == "password"


def test_empty_string_stays_empty() -> None:
    assert saslprep("") == ""
    assert saslprep("\u00ad") == ""


@pytest.mark.parametrize(
    "value",
    [
        "a\u0000b",  # C.2.1 ASCII control
        "a\u007fb",  # C.2.1 DEL
        "a\u0085b",  # C.2.2 non-ASCII control
        "a\ue000b",  # C.3 private use
        "a\ufdd0b",  # C.4 non-character
        "a\ufff9b",  # C.6 inappropriate for plain text
        "a\u2ff0b",  # C.7 inappropriate for canonical representation
        "a\u200eb",  # C.8 LEFT-TO-RIGHT MARK
        "a\U000e0001b",  # C.9 tagging character
    ],
)
def test_prohibited_output(value: str) -> None:
    with pytest.raises(ValueError, match="prohibited"):
        saslprep(value)


def test_surrogate_prohibited() -> None:
    # C.5: a lone surrogate can reach us from surrogateescape'd input.
    with pytest.raises(ValueError, match="surrogate"):
        saslprep("a\ud800b")


def test_unassigned_code_points_only_for_queries() -> None:
    # U+0221 was unassigned in Unicode 3.2 (table A.1).
    with pytest.raises(ValueError, match="unassigned"):
        saslprep("\u0221")
    assert saslprep("\u0221", allow_unassigned=True) == "\u0221"


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("\u0627\u0628", True),  # all RandALCat
        ("\u0627\u0031\u0628", True),  # European number in between is neither L nor RandAL
        ("\u0627a\u0628", False),  # RandALCat together with LCat
        ("1\u0627", False),  # RandALCat not first
        ("abc", True),  # no RandALCat: rules do not apply
    ],
)
def test_bidi_rules(value: str, ok: bool) -> None:
    if ok:
        assert saslprep(value) == value
    else:
        with pytest.raises(ValueError, match="right-to-left"):
            saslprep(value)


def test_error_message_does_not_echo_the_value() -> None:
    secret = "hunter2\u0007"
    with pytest.raises(ValueError) as excinfo:
        saslprep(secret)
    assert "hunter2" not in str(excinfo.value)
    assert "prohibited ASCII control character" in str(excinfo.value)  # it says what is wrong instead
