"""XEP-0059 Result Set Management: the ``<set/>`` a request pages with, and the one an answer carries.

Implements §2.1 (``<max/>``, with a server default and a server maximum), §2.2 (``<after/>`` and the
``<first/>``/``<last/>``/``<count/>`` of a page, an empty page carrying only ``<count/>``), §2.3
(``<before/>``), §2.5 (an empty ``<before/>``: the last page), §2.6 (``<index/>``) and §2.7 (``<max>0``:
the count alone). No I/O: the using protocol (XEP-0313, :mod:`.xep0313_mam`) parses the request with
:func:`parse`, looks the page up, and answers with :func:`result_set`. Checking that an ``<after/>``
or ``<before/>`` names an item that exists (§2.4, ``item-not-found``) is the caller's: only it has
the items. The exact-count attributes of version 1.1 (``exact``, ``exact-index``) are not written.

Choices where the XEP leaves room, all refused with ``bad-request`` and a text that says why:

* ``<after/>`` and ``<before/>`` together: XEP-0059 does not define the pair (XEP-0313 §4.3.2 says so
  and points to its ``after-id``/``before-id`` fields instead), so it is refused rather than guessed.
* ``<index/>`` together with ``<after/>`` or ``<before/>``: §2.6 offers the index only when no UID is
  known, so the two are contradictory.
* ``<max/>`` or ``<index/>`` that is not a whole number written in ASCII digits (no sign, no
  blank ``<max/>``), an ``<index/>`` beyond ``xs:int`` (2147483647); any element given twice.

Lenient where nothing is lost: a ``<max/>`` above the server's maximum, however large, is cut to it
(§2.1 lets the responder limit the page), an empty ``<after/>`` is the same as none (§2.2: the
default is "before the first item"), and the text of ``<after/>``/``<before/>`` is stripped of
surrounding whitespace. Children of ``<set/>`` a request has no use for (``<first/>``, ...) are ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from lxml import etree

from . import ns
from .errors import StanzaErrorCondition
from .replies import Refusal

__all__ = ["FEATURE", "RSM", "Page", "parse", "result_set"]

RSM: Final = "http://jabber.org/protocol/rsm"
FEATURE: Final = RSM  # §4, the disco feature

SET: Final = ns.qname(RSM, "set")
_Q_MAX = ns.qname(RSM, "max")
_Q_AFTER = ns.qname(RSM, "after")
_Q_BEFORE = ns.qname(RSM, "before")
_Q_INDEX = ns.qname(RSM, "index")
_Q_FIRST = ns.qname(RSM, "first")
_Q_LAST = ns.qname(RSM, "last")
_Q_COUNT = ns.qname(RSM, "count")

_XS_INT_MAX: Final = 2**31 - 1  # the schema types <max/> and <index/> as xs:int
_DIGITS: Final = re.compile(r"[0-9]+")  # not \d: that takes any Unicode digit
_SHOWN: Final = 40  # characters of a bad value repeated in a refusal's text


@dataclass(frozen=True, slots=True)
class Page:
    """The page a request asks for.

    ``max`` is what the server will send at most: the client's ``<max/>`` cut to the server maximum,
    or the server default when the client gave none; 0 asks for the count alone (§2.7).
    ``after`` is the UID the page starts after (§2.2). ``before`` is the UID the page ends before
    (§2.3), or ``""`` for an empty ``<before/>``: the last page of the set (§2.5). ``index`` is the
    position of the page's first item (§2.6). At most one of the three is set.
    """

    max: int
    after: str | None = None
    before: str | None = None
    index: int | None = None

    @property
    def backwards(self) -> bool:
        """The page is counted back from its end: a ``<before/>``, empty or not."""
        return self.before is not None

    @property
    def last_page(self) -> bool:
        """An empty ``<before/>``: the last ``max`` items of the set (§2.5)."""
        return self.before == ""


def parse(set_el: etree._Element | None, *, default_max: int, max_max: int) -> Page:
    """The page the request's ``<set/>`` asks for (``None``: the request had none, the first page).

    ``default_max`` is the page size without ``<max/>``, ``max_max`` the most the server sends at
    once; a larger ``<max/>`` is cut to it. Refuses a malformed ``<set/>`` with ``bad-request``."""
    if not 0 <= default_max <= max_max:
        raise ValueError(f"need 0 <= default_max <= max_max, not {default_max} and {max_max}")
    if set_el is None:
        return Page(max=default_max)
    if set_el.tag != SET:
        raise ValueError(f"not an RSM <set/>: {set_el.tag!r}")
    max_el = _only(set_el, _Q_MAX, "max")
    after_el = _only(set_el, _Q_AFTER, "after")
    before_el = _only(set_el, _Q_BEFORE, "before")
    index_el = _only(set_el, _Q_INDEX, "index")

    size = default_max if max_el is None else min(_integer(max_el, "max", cap=True), max_max)
    after = (after_el.text or "").strip() or None if after_el is not None else None
    before = (before_el.text or "").strip() if before_el is not None else None
    index = _integer(index_el, "index") if index_el is not None else None

    if after is not None and before is not None:
        raise Refusal(
            StanzaErrorCondition.BAD_REQUEST,
            "RSM <after/> and <before/> together are undefined (XEP-0059); "
            "for a range between two known items use the after-id and before-id form fields",
        )
    if index is not None and (after is not None or before is not None):
        raise Refusal(
            StanzaErrorCondition.BAD_REQUEST,
            "RSM <index/> cannot be combined with <after/> or <before/> (XEP-0059 §2.6)",
        )
    return Page(max=size, after=after, before=before, index=index)


def result_set(
    first: str | None, first_index: int | None, last: str | None, count: int | None
) -> etree._Element:
    """The answer's ``<set/>``: ``<first index>``, ``<last/>`` and ``<count/>`` (§2.2).

    ``first`` and ``last`` are the UIDs of the page's first and last items (the same UID for a page
    of one), both ``None`` for an empty page, which then carries only the ``<count/>`` (§2.2, §2.7).
    ``first_index`` is the position of ``first`` in the whole set (§2.2: 0 for the first item),
    ``count`` the size of the whole set; either is left out when ``None``."""
    if (first is None) != (last is None):
        raise ValueError("a page has both a first and a last item, or neither")
    if first is None and first_index is not None:
        raise ValueError("an empty page has no first item to give the index of")
    for name, number in (("first_index", first_index), ("count", count)):
        if number is not None and number < 0:
            raise ValueError(f"{name} must not be negative, not {number}")
    result = etree.Element(SET, nsmap=ns.default(RSM))
    if first is not None and last is not None:
        first_el = etree.SubElement(result, _Q_FIRST)
        if first_index is not None:
            first_el.set("index", str(first_index))
        first_el.text = first
        etree.SubElement(result, _Q_LAST).text = last
    if count is not None:
        etree.SubElement(result, _Q_COUNT).text = str(count)
    return result


def _only(set_el: etree._Element, tag: str, name: str) -> etree._Element | None:
    """The one child ``tag`` of ``set_el``, or None; twice is refused."""
    found = set_el.findall(tag)
    if len(found) > 1:
        raise Refusal(StanzaErrorCondition.BAD_REQUEST, f"RSM <{name}/> given more than once")
    return found[0] if found else None


def _integer(element: etree._Element, name: str, *, cap: bool = False) -> int:
    """The text of ``<max/>`` or ``<index/>`` as a non-negative ``xs:int``; with ``cap``, a larger
    number is cut to the largest ``xs:int`` rather than refused."""
    text = (element.text or "").strip()
    if _DIGITS.fullmatch(text):
        digits = text.lstrip("0") or "0"
        if len(digits) <= 10 and int(digits) <= _XS_INT_MAX:  # the length first: int() of 5000 digits raises
            return int(digits)
        if cap:
            return _XS_INT_MAX
    shown = text if len(text) <= _SHOWN else text[:_SHOWN] + "…"
    raise Refusal(
        StanzaErrorCondition.BAD_REQUEST,
        f"RSM <{name}/> must be a whole number from 0 to {_XS_INT_MAX}, not {shown!r}",
    )
