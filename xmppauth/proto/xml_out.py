"""XML output: escaping for the stanzas built as text, and serialization of elements (RFC 6120 §11).

Re-exported by :mod:`.xml`, where callers import them from.
"""

from __future__ import annotations

import re
from typing import Final

from lxml import etree

__all__ = ["escape_attr", "escape_text", "serialize"]

_ILLEGAL_XML_CHARS: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _legal(s: str) -> str:
    return _ILLEGAL_XML_CHARS.sub("\ufffd", s)


def escape_text(s: str) -> str:
    """Escape ``s`` for character data: ``& < >`` become entities, ``\\r`` a character reference.

    Characters XML 1.0 cannot carry at all (C0 controls but tab/LF/CR, lone surrogates, U+FFFE,
    U+FFFF) are replaced by U+FFFD so the output is always well-formed.
    """
    s = _legal(s)
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("\r", "&#13;")


def escape_attr(s: str) -> str:
    """Escape ``s`` for an attribute value delimited by either ``'`` or ``"``.

    Both quote characters are escaped, so the result is safe inside ``'...'`` and ``"..."`` alike
    (no need to remember which style the caller's template uses); tab, LF and CR become character
    references so attribute-value normalization on the receiving side gives back the same string.
    Illegal characters become U+FFFD as in :func:`escape_text`.
    """
    s = _legal(s)
    return (
        s.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
        .replace("'", "&apos;")
        .replace("\t", "&#9;")
        .replace("\n", "&#10;")
        .replace("\r", "&#13;")
    )


def serialize(element: etree._Element) -> bytes:
    """UTF-8 bytes of ``element`` without XML declaration and without its tail.

    A detached ``jabber:client`` stanza comes out as ``<message xmlns="jabber:client" ...>``:
    lxml declares the namespaces the subtree uses on its top element, with the original prefixes.
    """
    return etree.tostring(element, encoding="utf-8", xml_declaration=False, with_tail=False)
