"""RFC 6121 §4.7.2.3: a presence's priority is an integer from -128 to 127, 0 when absent or invalid."""

from __future__ import annotations

import pytest
from lxml import etree

from xmppauth.router import _priority


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5", 5),
        (" -1 ", -1),
        ("127", 127),
        ("-128", -128),
        ("128", 0),
        ("-129", 0),
        ("+5", 0),  # no sign but the minus
        ("٣", 0),  # an Arabic-Indic three is not a number on the wire
        ("²", 0),
        ("1_0", 0),
        ("--1", 0),
        ("-", 0),
        ("", 0),
        ("9" * 5000, 0),
    ],
)
def test_it_reads_the_priority_strictly(text: str, expected: int) -> None:
    presence = etree.fromstring(f"<presence xmlns='jabber:client'><priority>{text}</priority></presence>")
    assert _priority(presence) == expected


def test_it_is_zero_without_a_priority() -> None:
    assert _priority(etree.fromstring("<presence xmlns='jabber:client'/>")) == 0
