"""Numbers from the wire: the one strict parser for counts, ids and counters (pure).

Python's ``int()`` is far too lenient for protocol input: it takes a sign, surrounding whitespace,
underscores (``'1_0'``) and any Unicode decimal digit (``'٣'``, ARABIC-INDIC DIGIT THREE, is 3), and
``str.isdigit()`` is true for superscripts such as ``'²'``, which ``int()`` then refuses. Every
number read from a peer goes through :func:`parse_uint` instead: ASCII digits and nothing else,
at most :data:`MAX_DIGITS` of them.
"""

from __future__ import annotations

__all__ = ["MAX_DIGITS", "parse_uint"]

MAX_DIGITS = 20  # enough for any 64-bit value; longer input is refused before int() sees it


def parse_uint(text: str | None, *, maximum: int | None = None, positive: bool = False) -> int | None:
    """The value of ``text`` if it is an unsigned decimal number, else None.

    Only ``0``-``9``: no sign, no whitespace, no underscores, no other digits, at most
    :data:`MAX_DIGITS` characters, and not above ``maximum`` when one is given. With ``positive``
    the text must be RFC 5802's ``posit-number`` (§7: ``%x31-39 *DIGIT``): no zero and no leading
    zeros.
    """
    if not text or len(text) > MAX_DIGITS or not (text.isascii() and text.isdigit()):
        return None  # for ASCII text, isdigit() means 0-9 only
    if positive and text[0] == "0":
        return None
    value = int(text)
    if maximum is not None and value > maximum:
        return None
    return value
