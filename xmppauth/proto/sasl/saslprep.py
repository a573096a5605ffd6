"""RFC 4013 SASLprep: the stringprep (RFC 3454) profile for user names and passwords.

Built on the stdlib :mod:`stringprep` tables, which are the Unicode 3.2 tables RFC 3454 refers to;
normalisation therefore uses ``unicodedata.ucd_3_2_0`` as well so that the two agree.
"""

from __future__ import annotations

import stringprep
import unicodedata
from collections.abc import Callable

__all__ = ["saslprep"]

# RFC 4013 §2.3: "This profile specifies the following characters as prohibited input".
_PROHIBITED: tuple[tuple[Callable[[str], bool], str], ...] = (
    (stringprep.in_table_c12, "non-ASCII space character"),
    (stringprep.in_table_c21, "ASCII control character"),
    (stringprep.in_table_c22, "non-ASCII control character"),
    (stringprep.in_table_c3, "private use character"),
    (stringprep.in_table_c4, "non-character code point"),
    (stringprep.in_table_c5, "surrogate code point"),
    (stringprep.in_table_c6, "character inappropriate for plain text"),
    (stringprep.in_table_c7, "character inappropriate for canonical representation"),
    (stringprep.in_table_c8, "character that changes display properties or is deprecated"),
    (stringprep.in_table_c9, "tagging character"),
)


def _map(value: str) -> str:
    # RFC 4013 §2.1: "non-ASCII space characters [StringPrep, C.1.2] that can be mapped to
    # SPACE (U+0020)" and "the 'commonly mapped to nothing' characters [StringPrep, B.1] that
    # can be mapped to nothing."
    out: list[str] = []
    for ch in value:
        if stringprep.in_table_b1(ch):
            continue
        out.append(" " if stringprep.in_table_c12(ch) else ch)
    return "".join(out)


def saslprep(value: str, *, allow_unassigned: bool = False) -> str:
    """Prepare ``value`` with the SASLprep profile.

    ``allow_unassigned=False`` is for *stored strings* (what goes into the database), ``True`` for
    *queries* (what a client sends), per RFC 3454 §7. Raises :class:`ValueError` naming the
    offending rule; the value itself is never put into the message, since it may be a password.
    """
    # RFC 3454 §7: "stored strings using the profile MUST NOT contain any unassigned code
    # points" -- checked on the input, as the unassigned check is defined on it.
    if not allow_unassigned:
        for ch in value:
            if stringprep.in_table_a1(ch):
                raise ValueError("SASLprep: unassigned code point")

    # RFC 4013 §2.2: "This profile specifies using Unicode normalization form KC".
    prepared = unicodedata.ucd_3_2_0.normalize("NFKC", _map(value))

    for ch in prepared:
        for in_table, reason in _PROHIBITED:
            if in_table(ch):
                raise ValueError(f"SASLprep: prohibited {reason}")

    # RFC 4013 §2.4 applies the bidirectional rules of RFC 3454 §6.
    has_randal = any(stringprep.in_table_d1(ch) for ch in prepared)
    if has_randal:
        # RFC 3454 §6: "If a string contains any RandALCat character, the string MUST NOT
        # contain any LCat character."
        if any(stringprep.in_table_d2(ch) for ch in prepared):
            raise ValueError("SASLprep: mixes right-to-left and left-to-right characters")
        # RFC 3454 §6: "a RandALCat character MUST be the first character of the string, and a
        # RandALCat character MUST be the last character of the string."
        if not (stringprep.in_table_d1(prepared[0]) and stringprep.in_table_d1(prepared[-1])):
            raise ValueError("SASLprep: right-to-left string must start and end with a RandALCat")
    return prepared
