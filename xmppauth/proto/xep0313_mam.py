"""XEP-0313 Message Archive Management: the query, its results, the metadata, the archive ids.

The pure pieces of a user's one-to-one chat archive (``urn:xmpp:mam:2`` with ``#extended``); the
server keeps the messages and answers the iq, calling these. Implemented, by section of XEP-0313
(version 0.8):

* §3.5 and XEP-0359: the ``<stanza-id/>`` an archived message is delivered with (``by`` the
  account's bare JID), after removing any a sender put there in the archive's name
  (:func:`add_stanza_id`); archive ids that sort by time (:func:`new_archive_id`).
* §4.1: the query form, with FORM_TYPE, ``with``, ``start``, ``end`` and the ``#extended`` fields
  ``before-id``, ``after-id`` and ``ids`` (:func:`parse_query`); §4.1.5 the form's fields
  (:func:`form_fields`). §4.1.3: an id the archive does not hold is ``item-not-found``
  (:func:`require_ids`, once the server has looked the ids up).
* §4.2: each result as a message with ``<result/>``, XEP-0297 ``<forwarded/>`` and XEP-0203
  ``<delay/>`` (:func:`result_message`); §4.3 paging with XEP-0059 (:mod:`.xep0059_rsm`), the
  ``<fin/>`` (:func:`fin`) and ``<flip-page/>``.
* §5: the archive's ``<metadata/>`` (:func:`metadata`), also the one XEP-0386 puts in ``<bound/>``.
* §6.1.1: which messages a user archive keeps (:func:`should_store`, with XEP-0334 hints).
* XEP-0441, split from XEP-0313 but in its namespace: ``<prefs/>`` (:func:`parse_prefs`,
  :func:`prefs_element`, :func:`should_archive`).
* XEP-0082 DateTime, as the fields and stamps use it (:func:`parse_timestamp`, :func:`format_timestamp`).

Not implemented: MUC archives (§3.3.2, §6.1.2), pubsub node archives (XEP-0442: a query with a
``node`` is refused with ``feature-not-implemented``), groupchat messages in the user archive (the
``include-groupchat`` field, which is then an unknown field, and its disco features), the
XEP-0441 ad-hoc configuration, and unstable results beyond the ``stable`` flag of :func:`fin`.
States touched: none (BOUND, through the server's iq handler).

Choices where the XEPs leave room:

* An unknown form field is ``feature-not-implemented`` (§4.1.5 says MUST); a form of another
  FORM_TYPE, not of type ``submit``, with a field twice or a single-value field with two values is
  ``bad-request``. A form without FORM_TYPE is taken as ours. A field without a value, or with an
  empty one, filters nothing.
* ``ids`` is advertised as ``list-multi`` with an open XEP-0122 ``<validate/>`` (§4.1.5; the
  registry text says ``text-multi``): any field type is accepted on submit. Duplicates are dropped;
  more ids than one page holds (``max_max``) is ``policy-violation``.
* ``start`` after ``end`` is not refused: it matches nothing. Timestamps with an offset are turned
  into UTC; without a zone, or with a leap second, they are ``bad-request``.
* The ``queryid`` is echoed as given, up to 1023 bytes (``bad-request`` beyond).
* §5 wants ``<start/>`` and ``<end/>`` in the metadata; an empty archive has neither, so its
  ``<metadata/>`` is empty.
* Result messages carry ``from`` the archive's bare JID, the entity queried, which §8.2 has clients
  check (the §4.2 examples leave ``from`` out, meaning the same).
* XEP-0441: a JID on both lists is never archived (the XEP sets no precedence: privacy wins);
  listed JIDs keep their resource, if any, and match as its §2.3 says.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Final, Literal

from lxml import etree

from . import ns
from .errors import StanzaErrorCondition
from .jid import JID, InvalidJID, parse_jid
from .replies import Refusal
from .xep0059_rsm import SET as RSM_SET
from .xep0059_rsm import Page
from .xep0059_rsm import parse as parse_page
from .xml import escape_attr

__all__ = [
    "FEATURES",
    "MAM",
    "MAM_EXTENDED",
    "SID",
    "Prefs",
    "Query",
    "add_stanza_id",
    "fin",
    "form_fields",
    "format_timestamp",
    "is_archive_id",
    "metadata",
    "new_archive_id",
    "parse_prefs",
    "parse_query",
    "parse_timestamp",
    "prefs_element",
    "referenced_ids",
    "require_ids",
    "result_message",
    "should_archive",
    "should_store",
    "stanza_id_element",
    "strip_foreign_stanza_ids",
]

MAM: Final = "urn:xmpp:mam:2"
MAM_EXTENDED: Final = "urn:xmpp:mam:2#extended"  # before-id, after-id, ids, flip-page, metadata
SID: Final = "urn:xmpp:sid:0"  # XEP-0359
XDATA_VALIDATE: Final = "http://jabber.org/protocol/xdata-validate"  # XEP-0122
FEATURES: Final = (MAM, MAM_EXTENDED)  # §7: advertised on the account's bare JID

QUERY: Final = ns.qname(MAM, "query")
FIN: Final = ns.qname(MAM, "fin")
PREFS: Final = ns.qname(MAM, "prefs")
METADATA: Final = ns.qname(MAM, "metadata")
STANZA_ID: Final = ns.qname(SID, "stanza-id")
_Q_FLIP = ns.qname(MAM, "flip-page")
_Q_START = ns.qname(MAM, "start")
_Q_END = ns.qname(MAM, "end")
_Q_ALWAYS = ns.qname(MAM, "always")
_Q_NEVER = ns.qname(MAM, "never")
_Q_JID = ns.qname(MAM, "jid")
_Q_X = ns.qname(ns.DATA_FORMS, "x")
_Q_FIELD = ns.qname(ns.DATA_FORMS, "field")
_Q_VALUE = ns.qname(ns.DATA_FORMS, "value")
_Q_VALIDATE = ns.qname(XDATA_VALIDATE, "validate")
_Q_OPEN = ns.qname(XDATA_VALIDATE, "open")
_Q_BODY = ns.qname(ns.CLIENT, "body")
_Q_STORE = ns.qname(ns.HINTS, "store")  # XEP-0334 Message Processing Hints
_Q_NO_STORE = ns.qname(ns.HINTS, "no-store")
_Q_NO_PERMANENT_STORE = ns.qname(ns.HINTS, "no-permanent-store")

MAX_QUERYID: Final = 1023  # bytes of UTF-8
_SINGLE_FIELDS: Final = ("with", "start", "end", "before-id", "after-id")
_FIELDS: Final = frozenset((*_SINGLE_FIELDS, "ids"))
_FORM: Final = (  # §4.1.5, in the order of its example; the types of the registry (§10.2)
    ("with", "jid-single"),
    ("start", "text-single"),
    ("end", "text-single"),
    ("before-id", "text-single"),
    ("after-id", "text-single"),
)
_SHOWN: Final = 64  # characters of a client's value repeated in a refusal's text
_C = StanzaErrorCondition


def _shown(value: str) -> str:
    """``value`` quoted for a refusal's text, cut short."""
    return repr(value if len(value) <= _SHOWN else value[:_SHOWN] + "…")


# ------------------------------------------------------------------------------ XEP-0082 DateTime

_DATETIME: Final = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?(Z|[+-][0-9]{2}:[0-9]{2})"
)


def parse_timestamp(text: str, what: str = "timestamp") -> datetime:
    """XEP-0082 §3.2 DateTime (``CCYY-MM-DDThh:mm:ss[.sss]TZD``, the zone ``Z`` or ``±hh:mm``) as an
    aware datetime in UTC. Fractions beyond microseconds are cut; ``what`` names the value in the
    ``bad-request`` a malformed one, or one without a zone, gets."""
    found = _DATETIME.fullmatch(text.strip())
    if found is None:
        raise Refusal(
            _C.BAD_REQUEST,
            f"{what} {_shown(text)} is not an XEP-0082 DateTime with a time zone, "
            "such as 2010-07-10T23:08:25Z or 2010-07-10T23:08:25.123+02:00",
        )
    year, month, day, hour, minute, second, fraction, zone = found.groups()
    micro = int((fraction or "")[:6].ljust(6, "0"))
    try:
        offset = timedelta(0)
        if zone != "Z":
            hours, minutes = int(zone[1:3]), int(zone[4:6])
            if hours > 23 or minutes > 59:
                raise ValueError(zone)
            offset = timedelta(hours=hours, minutes=minutes) * (-1 if zone[0] == "-" else 1)
        moment = datetime(
            int(year), int(month), int(day), int(hour), int(minute), int(second), micro, timezone(offset)
        )
        return moment.astimezone(UTC)
    except (ValueError, OverflowError):
        raise Refusal(
            _C.BAD_REQUEST, f"{what} {_shown(text)} is not a valid date, time and time zone"
        ) from None


def format_timestamp(moment: datetime) -> str:
    """XEP-0082 DateTime in UTC, ``Z``-suffixed, with milliseconds when they are not zero."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("a naive datetime: give the time zone (UTC)")
    utc = moment.astimezone(UTC)
    text = f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}"
    millis = utc.microsecond // 1000
    return f"{text}.{millis:03d}Z" if millis else f"{text}Z"


# ------------------------------------------------------------------------------------- the query


@dataclass(frozen=True, slots=True)
class Query:
    """A MAM query (§4), checked. The server filters its archive by all of it at once:

    ``with_jid``: §4.1.1, a bare JID matches the bare ``to`` or ``from`` of a message, a full JID
    the exact one; the account's own bare JID matches only messages both to and from the account.
    ``start``/``end``: §4.1.2, inclusive bounds on the archive timestamp (aware, UTC).
    ``after_id``/``before_id``: §4.1.3, exclusive bounds by archive id; unlike RSM ``<before/>``,
    ``before_id`` does not make the page count back from the end. ``ids``: only these messages.
    ``page``: the XEP-0059 page of what matched (§4.3); ``flip``: send the page newest first
    (§4.3.4), the same messages in reverse order. ``node`` is always None: node queries are refused.
    Every id referenced must be in the archive: :func:`referenced_ids`, :func:`require_ids`.
    """

    queryid: str | None
    with_jid: JID | None
    start: datetime | None
    end: datetime | None
    before_id: str | None
    after_id: str | None
    ids: tuple[str, ...]
    page: Page
    flip: bool
    node: None = None


def parse_query(iq: etree._Element, query: etree._Element, *, default_max: int, max_max: int) -> Query:
    """The ``<query/>`` of the iq-set ``iq``, checked (§4), with its XEP-0059 page: ``default_max``
    results when the client gives no ``<max/>``, never more than ``max_max``.

    Refusals: ``bad-request`` for a malformed query or form, ``feature-not-implemented`` for an
    unknown field or a pubsub ``node``, ``jid-malformed`` for a ``with`` that is not a JID,
    ``policy-violation`` for more ``ids`` than ``max_max``."""
    if query.tag != QUERY:
        raise ValueError(f"not a MAM query: {query.tag!r}")
    if iq.get("type") != "set":
        raise Refusal(
            _C.BAD_REQUEST, "a MAM query is an iq of type 'set'; type 'get' asks for the query's form fields"
        )
    if query.get("node"):
        raise Refusal(
            _C.FEATURE_NOT_IMPLEMENTED,
            "this server keeps no archives of pubsub nodes (XEP-0442): query without 'node'",
        )
    queryid = query.get("queryid")
    if queryid is not None and len(queryid.encode("utf-8", "surrogatepass")) > MAX_QUERYID:
        raise Refusal(_C.BAD_REQUEST, f"the queryid is longer than {MAX_QUERYID} bytes")
    forms = query.findall(_Q_X)
    sets = query.findall(RSM_SET)
    if len(forms) > 1:
        raise Refusal(_C.BAD_REQUEST, "the query holds more than one data form")
    if len(sets) > 1:
        raise Refusal(_C.BAD_REQUEST, "the query holds more than one RSM <set/>")
    fields = _submitted(forms[0]) if forms else {}
    single = {var: _single(fields, var) for var in _SINGLE_FIELDS}
    with_jid = None
    if single["with"] is not None:
        try:
            with_jid = JID.parse(single["with"])
        except InvalidJID as exc:
            raise Refusal(
                _C.JID_MALFORMED, f"the 'with' field {_shown(single['with'])} is not a JID: {exc}"
            ) from None
    start = parse_timestamp(single["start"], "the 'start' field") if single["start"] else None
    end = parse_timestamp(single["end"], "the 'end' field") if single["end"] else None
    ids = tuple(dict.fromkeys(text for value in fields.get("ids", ()) if (text := value.strip())))
    if len(ids) > max_max:
        raise Refusal(
            _C.POLICY_VIOLATION, f"the 'ids' field lists {len(ids)} ids; this server takes at most {max_max}"
        )
    return Query(
        queryid=queryid,
        with_jid=with_jid,
        start=start,
        end=end,
        before_id=single["before-id"],
        after_id=single["after-id"],
        ids=ids,
        page=parse_page(sets[0] if sets else None, default_max=default_max, max_max=max_max),
        flip=query.find(_Q_FLIP) is not None,
    )


def _submitted(form: etree._Element) -> dict[str, list[str]]:
    """The submitted form's values by field, without FORM_TYPE (XEP-0004, XEP-0068)."""
    if form.get("type") != "submit":
        raise Refusal(
            _C.BAD_REQUEST,
            f"the query's data form must be of type 'submit', not {_shown(form.get('type') or '')}",
        )
    fields: dict[str, list[str]] = {}
    for field in form.iterchildren(_Q_FIELD):
        var = field.get("var")
        if not var:
            raise Refusal(_C.BAD_REQUEST, "a field of the query's data form has no 'var'")
        if var in fields:
            raise Refusal(_C.BAD_REQUEST, f"the field {_shown(var)} is in the query's form twice")
        fields[var] = [value.text or "" for value in field.iterchildren(_Q_VALUE)]
    form_type = fields.pop("FORM_TYPE", None)
    if form_type is not None and [value.strip() for value in form_type] != [MAM]:
        raise Refusal(_C.BAD_REQUEST, f"the FORM_TYPE of a MAM query form must be {MAM}")
    unknown = sorted(set(fields) - _FIELDS)
    if unknown:
        raise Refusal(
            _C.FEATURE_NOT_IMPLEMENTED,
            f"unknown query field {_shown(unknown[0])}; this archive knows "
            "with, start, end, before-id, after-id and ids",
        )
    return fields


def _single(fields: dict[str, list[str]], var: str) -> str | None:
    """The one value of a single-value field, stripped; None when absent or empty."""
    values = fields.get(var, [])
    if len(values) > 1:
        raise Refusal(_C.BAD_REQUEST, f"the field {var!r} takes one value, not {len(values)}")
    return (values[0].strip() or None) if values else None


def referenced_ids(query: Query) -> tuple[str, ...]:
    """Every archive id the query names (form fields and RSM), each once: what the server must
    find in the archive before answering, then tell :func:`require_ids` which it found."""
    return tuple(dict.fromkeys(archive_id for _, archive_id in _references(query)))


def require_ids(query: Query, found: Collection[str]) -> None:
    """§4.1.3, §4.3.2: ``item-not-found`` for the first id the query names that is not among the
    ``found`` ones (the ids of :func:`referenced_ids` the archive holds)."""
    for where, archive_id in _references(query):
        if archive_id not in found:
            raise Refusal(
                _C.ITEM_NOT_FOUND, f"no message with the id {_shown(archive_id)} ({where}) in this archive"
            )


def _references(query: Query) -> list[tuple[str, str]]:
    pairs = [
        ("the 'after-id' field", query.after_id),
        ("the 'before-id' field", query.before_id),
        ("RSM <after/>", query.page.after),
        ("RSM <before/>", query.page.before or None),  # empty: the last page, no id
    ]
    found = [(where, archive_id) for where, archive_id in pairs if archive_id is not None]
    return found + [("the 'ids' field", archive_id) for archive_id in query.ids]


def form_fields() -> etree._Element:
    """§4.1.5: the ``<query/>`` answering an iq-get, with the form of the fields this archive knows."""
    query = etree.Element(QUERY, nsmap=ns.default(MAM))
    form = etree.SubElement(query, _Q_X, nsmap=ns.default(ns.DATA_FORMS))
    form.set("type", "form")
    form_type = etree.SubElement(form, _Q_FIELD, type="hidden", var="FORM_TYPE")
    etree.SubElement(form_type, _Q_VALUE).text = MAM
    for var, field_type in _FORM:
        etree.SubElement(form, _Q_FIELD, type=field_type, var=var)
    ids = etree.SubElement(form, _Q_FIELD, type="list-multi", var="ids")
    validate = etree.SubElement(ids, _Q_VALIDATE, nsmap=ns.default(XDATA_VALIDATE))
    validate.set("datatype", "xs:string")
    etree.SubElement(validate, _Q_OPEN)  # any id, and no list of them (§4.1.5)
    return query


# ------------------------------------------------------------------------------------ the answer


def result_message(
    to: JID | str, archive: JID, queryid: str | None, archive_id: str, stamp: datetime, original: bytes
) -> bytes:
    """§4.2: one result, from the ``archive``'s bare JID to the session ``to`` that queried:
    ``<result queryid id>`` around a ``<forwarded/>`` with the ``<delay/>`` of when the archive got
    the message (``stamp``) and the stored message ``original`` (serialised, in ``jabber:client``)."""
    echo = f" queryid='{escape_attr(queryid)}'" if queryid is not None else ""
    return (
        f"<message xmlns='{ns.CLIENT}' from='{escape_attr(str(archive.bare))}' to='{escape_attr(str(to))}'>"
        f"<result xmlns='{MAM}'{echo} id='{escape_attr(archive_id)}'><forwarded xmlns='{ns.FORWARD}'>"
        f"<delay xmlns='{ns.DELAY}' stamp='{format_timestamp(stamp)}'/>".encode()
        + original
        + b"</forwarded></result></message>"
    )


def fin(complete: bool, result_set: etree._Element, *, stable: bool = True) -> etree._Element:
    """§4.3: the iq result's ``<fin/>`` around the page's XEP-0059 ``<set/>``.

    ``complete``: this page reaches the end of what matched (counting in the page's direction: the
    oldest match for a ``<before/>`` page); ``stable=False`` when the results may still change."""
    element = etree.Element(FIN, nsmap=ns.default(MAM))
    if complete:
        element.set("complete", "true")
    if not stable:
        element.set("stable", "false")
    element.append(result_set)
    return element


def metadata(first: tuple[str, datetime] | None, last: tuple[str, datetime] | None) -> etree._Element:
    """§5: ``<metadata/>`` with the id and timestamp of the archive's oldest (``<start/>``) and
    newest (``<end/>``) message; both None for an empty archive, which gets an empty ``<metadata/>``."""
    if (first is None) != (last is None):
        raise ValueError("an archive has both a first and a last message, or neither")
    element = etree.Element(METADATA, nsmap=ns.default(MAM))
    for tag, entry in ((_Q_START, first), (_Q_END, last)):
        if entry is not None:
            archive_id, moment = entry
            etree.SubElement(element, tag, id=archive_id, timestamp=format_timestamp(moment))
    return element


# ---------------------------------------------------------------------------- what is archived


def should_store(message: etree._Element) -> bool:
    """§6.1.1: a ``jabber:client`` message a user archive keeps: of type chat or normal, with a
    ``<body/>`` or an XEP-0334 ``<store/>`` hint, and no ``<no-store/>`` or ``<no-permanent-store/>``
    (which win over ``<store/>``). Groupchat, headline and error messages are not kept."""
    return archivable(message)[0]


def archivable(message: etree._Element) -> tuple[bool, bool]:
    """(:func:`should_store`, whether ``message`` carries ``<stanza-id/>`` children), in one look at
    its children: the router asks it of every message it routes."""
    if message.get("type", "normal") not in ("chat", "normal"):
        return False, False
    worth = refused = ids = False
    for child in message:
        tag = child.tag
        if tag in (_Q_BODY, _Q_STORE):
            worth = True
        elif tag in (_Q_NO_STORE, _Q_NO_PERMANENT_STORE):
            refused = True
        elif tag == STANZA_ID:
            ids = True
    return worth and not refused, ids


Default = Literal["always", "roster", "never"]
_DEFAULTS: Final[dict[str, Default]] = {"always": "always", "roster": "roster", "never": "never"}


@dataclass(frozen=True, slots=True)
class Prefs:
    """XEP-0441 §2.1 preferences: the ``default`` for JIDs on neither list, the JIDs to archive
    ``always`` and ``never``. JIDs are prepared strings, bare or (rarely) full."""

    default: Default
    always: frozenset[str] = frozenset()
    never: frozenset[str] = frozenset()


def parse_prefs(prefs: etree._Element, *, max_jids: int = 1000) -> Prefs:
    """The client's ``<prefs/>`` of an iq-set: ``bad-request`` for a missing or unknown ``default``
    or a list given twice, ``jid-malformed`` for a ``<jid/>`` that is not a JID, ``policy-violation``
    for more than ``max_jids`` JIDs on a list. A missing list is an empty one (XEP-0441 §2.1.2, §2.1.3)."""
    if prefs.tag != PREFS:
        raise ValueError(f"not MAM preferences: {prefs.tag!r}")
    given = prefs.get("default")
    default = _DEFAULTS.get(given or "")
    if default is None:
        shown = "none" if given is None else _shown(given)
        raise Refusal(
            _C.BAD_REQUEST, f"the 'default' of <prefs/> must be always, roster or never, not {shown}"
        )
    return Prefs(
        default,
        _jid_list(prefs, _Q_ALWAYS, "always", max_jids),
        _jid_list(prefs, _Q_NEVER, "never", max_jids),
    )


def _jid_list(prefs: etree._Element, tag: str, name: str, max_jids: int) -> frozenset[str]:
    lists = prefs.findall(tag)
    if len(lists) > 1:
        raise Refusal(_C.BAD_REQUEST, f"<{name}/> is in <prefs/> more than once")
    if not lists:
        return frozenset()
    entries = lists[0].findall(_Q_JID)
    if len(entries) > max_jids:
        raise Refusal(_C.POLICY_VIOLATION, f"<{name}/> lists more than {max_jids} JIDs")
    jids: set[str] = set()
    for entry in entries:
        text = (entry.text or "").strip()
        try:
            jids.add(str(JID.parse(text)))
        except InvalidJID as exc:
            raise Refusal(_C.JID_MALFORMED, f"<{name}/> lists {_shown(text)}, not a JID: {exc}") from None
    return frozenset(jids)


def prefs_element(prefs: Prefs) -> etree._Element:
    """XEP-0441 §2.1: ``<prefs default>`` with both lists, even empty, their JIDs sorted."""
    element = etree.Element(PREFS, nsmap=ns.default(MAM))
    element.set("default", prefs.default)
    for tag, jids in ((_Q_ALWAYS, prefs.always), (_Q_NEVER, prefs.never)):
        listed = etree.SubElement(element, tag)
        for jid in sorted(jids):
            etree.SubElement(listed, _Q_JID).text = jid
    return element


def should_archive(prefs: Prefs, contact: JID | str, in_roster: bool) -> bool:
    """XEP-0441 §2.3: whether to archive a message with ``contact`` (the ``to`` of an outgoing
    message, the ``from`` of an incoming one; bare or full, prepared). A listed bare JID matches the
    contact's bare JID, a listed full JID only that full JID. The never list wins over the always
    list; otherwise the default decides, ``roster`` by ``in_roster`` (the contact's bare JID)."""
    jid = contact if isinstance(contact, JID) else parse_jid(contact)
    keys = {str(jid), str(jid.bare)}
    if keys & prefs.never:
        return False
    if keys & prefs.always:
        return True
    return prefs.default == "always" or (prefs.default == "roster" and in_roster)


# ------------------------------------------------------------------------------------ archive ids

_SID_NSMAP: Final = ns.default(SID)
_CROCKFORD: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford's base32, in ASCII order
_ARCHIVE_ID: Final = re.compile(r"[0-7][0-9A-HJKMNP-TV-Z]{25}")
_RANDOM_BITS: Final = 80
_PAIRS: Final = [a + b for a in _CROCKFORD for b in _CROCKFORD]  # 10 bits -> two characters
_SHIFTS: Final = tuple(range(120, -1, -10))


def new_archive_id(now_ms: int | None = None) -> str:
    """A new archive id (§6.2, XEP-0359): 26 characters of Crockford base32 (digits and capitals
    without I, L, O, U), big-endian, of 128 bits: the 48-bit Unix time in milliseconds (``now_ms``,
    the clock's by default) and then 80 random bits, as in a ULID.

    Unique and unguessable by the random part; ids of different milliseconds compare as strings in
    time order (the first ten characters are the time), ids of the same millisecond in random
    order, so the archive keeps its own order (§3.1) and uses ids to find messages. An id tells the
    time its message was archived, which a result's ``<delay/>`` says anyway, and nothing else."""
    if now_ms is None:
        now_ms = time.time_ns() // 1_000_000
    if not 0 <= now_ms < 1 << 48:
        raise ValueError(f"the time must fit in 48 bits of milliseconds, not {now_ms}")
    value = now_ms << _RANDOM_BITS | secrets.randbits(_RANDOM_BITS)
    # 13 pairs of characters, 10 bits each, the first two bits (of 130) zero
    return "".join([_PAIRS[value >> shift & 1023] for shift in _SHIFTS])


def is_archive_id(text: str) -> bool:
    """Whether ``text`` has the form of :func:`new_archive_id`'s ids (a client's id that has not
    cannot be in the archive: ``item-not-found`` without a look-up)."""
    return _ARCHIVE_ID.fullmatch(text) is not None


def stanza_id_element(archive_id: str, by: JID) -> etree._Element:
    """§3.5, XEP-0359 §2.1: ``<stanza-id id by/>``, ``by`` the archive's (bare) JID."""
    return etree.Element(STANZA_ID, {"id": archive_id, "by": str(by.bare)}, nsmap=_SID_NSMAP)


def strip_foreign_stanza_ids(message: etree._Element, by: JID | str) -> None:
    """XEP-0359 §3: remove every ``<stanza-id/>`` child of ``message`` whose ``by`` is ``by`` (the
    archive's JID), compared prepared: only the archive may say what it stored a message as."""
    own = by if isinstance(by, JID) else parse_jid(by)
    for element in message.findall(STANZA_ID):
        try:
            claimed = parse_jid(element.get("by") or "")
        except InvalidJID:
            continue  # not an address, so not ours; a client will not take it for one
        if claimed == own:
            _remove(element)


def add_stanza_id(message: etree._Element, archive_id: str, by: JID) -> None:
    """§3.5: the archived ``message`` as delivered to the account's sessions: any ``<stanza-id/>`` in
    the archive's name removed, then the archive's own appended. Only for the account's own
    sessions (and its carbons): never in a message to a contact, who cannot query the archive."""
    strip_foreign_stanza_ids(message, by.bare)
    etree.SubElement(message, STANZA_ID, {"id": archive_id, "by": str(by.bare)}, nsmap=_SID_NSMAP)


def _remove(element: etree._Element) -> None:
    """Remove ``element`` from its parent, keeping the text that followed it (its tail)."""
    parent = element.getparent()
    if parent is None:
        return
    if element.tail:
        previous = element.getprevious()
        if previous is not None:
            previous.tail = (previous.tail or "") + element.tail
        else:
            parent.text = (parent.text or "") + element.tail
    parent.remove(element)
