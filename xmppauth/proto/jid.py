"""RFC 7622 JIDs: parsing, PRECIS preparation and comparison.

The resourcepart is prepared and enforced with the PRECIS OpaqueString profile (RFC 7622 §3.4,
RFC 8265 §4.2) and the localpart is checked against the IdentifierClass with the Bidi Rule
(RFC 7622 §3.3, RFC 8265 §3.3); both come from the precis-i18n library, on the Unicode version of
the running Python's ``unicodedata``. Localparts keep the mapping accounts were created with (NFKC,
case folding; see :func:`prep_localpart`). The domainpart is NFKC-normalised and case-folded, a
stand-in for IDNA2008. Each part is at most 1023 bytes; invalid input raises :class:`InvalidJID`
naming the offending code point and why.
"""

from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass, field

from precis_i18n import get_profile
from precis_i18n.derived import FREE_PVAL, PVALID, derived_property
from precis_i18n.profile import Profile

_MAX_PART = 1023
_LOCAL_FORBIDDEN = frozenset("\"&'/:<>@")

# RFC 7622 §3.4: "The resourcepart of a JID is an instance of the OpaqueString profile of the
# PRECIS FreeformClass, which is specified in [RFC7613]."
_OPAQUE_STRING = get_profile("OpaqueString")
# RFC 7622 §3.3: "The localpart of a JID is an instance of the UsernameCaseMapped profile of the
# PRECIS IdentifierClass". The CaseFold variant: see prep_localpart.
_USERNAME = get_profile("UsernameCaseMapped:CaseFold")
_FREEFORM_CLASS = frozenset({PVALID, FREE_PVAL})  # RFC 8264 §4.3.1, §4.2.1: what each class takes
_IDENTIFIER_CLASS = frozenset({PVALID})

# Why PRECIS (RFC 8264 §9) refuses a code point, by the library's reason.
_WHY = {
    "controls": "a control character",
    "precis_ignorable_properties": "an invisible or formatting code point, Default_Ignorable_Code_Point",
    "old_hangul_jamo": "an old Hangul jamo",
    "has_compat": "a compatibility character",
    "other_letter_digits": "not a letter or digit an identifier may use",
    "spaces": "a space",
    "symbols": "a symbol outside ASCII",
    "punctuation": "punctuation outside ASCII",
}
_WHY_OTHER = {"Co": "a private-use code point", "Cs": "a surrogate", "Cf": "a format character"}


class InvalidJID(ValueError):
    """The string is not a valid JID; the message says why."""


def _has_control(value: str) -> bool:
    return any(unicodedata.category(ch) in {"Cc", "Cs", "Co", "Cn"} for ch in value)


def _refused(part: str, exc: UnicodeEncodeError) -> InvalidJID:
    """The library's UnicodeEncodeError ("DISALLOWED/<reason>") as an InvalidJID a person can read."""
    reason = exc.reason.removeprefix("DISALLOWED/")
    if reason == "bidi_rule":
        return InvalidJID(f"{part} mixes right-to-left and other text against the Bidi Rule (RFC 5893)")
    if reason == "not_idempotent":
        return InvalidJID(f"{part} is not stable under PRECIS preparation")
    if reason == "empty":
        return InvalidJID(f"empty {part}")
    ch = exc.object[exc.start]
    cp = ord(ch)
    if reason == "precis_ignorable_properties" and (0xFDD0 <= cp <= 0xFDEF or cp & 0xFFFE == 0xFFFE):
        why = "a noncharacter"
    elif reason == "unassigned":
        why = f"unassigned in Unicode {unicodedata.unidata_version}"
    elif reason == "other":
        why = _WHY_OTHER.get(unicodedata.category(ch), "in no class PRECIS allows")
    elif reason in _WHY:
        why = _WHY[reason]
    else:  # a CONTEXTJ/CONTEXTO rule of RFC 5892 Appendix A failed
        return InvalidJID(
            f"{part} contains U+{cp:04X}, which PRECIS allows only in context (rule {reason}, RFC 5892)"
        )
    return InvalidJID(f"{part} contains U+{cp:04X}, which PRECIS disallows ({why})")


@functools.lru_cache(maxsize=16384)
def _derived_property(ch: str) -> str:
    """RFC 8264 §8, by the library. Memoised: computing it is most of the cost of a check."""
    return derived_property(ord(ch), _OPAQUE_STRING.base.ucd)[0]


def _precis(profile: Profile, allowed: frozenset[str], part: str, value: str) -> str:
    """``profile.enforce(value)``, with the code-point check memoised per code point.

    The library's enforce() applies the five rules, checks that they are idempotent, and then
    derives each code point's property: the result is the mapped string when every property is
    in ``allowed``. That is checked here from the memo; anything else (context rules, refusals)
    goes to enforce(), which decides and says why. Over 1023 bytes is refused before any walk.
    """
    try:
        prepared = profile.apply_five_rules(value)  # mappings and NFC (regex and C), Bidi Rule
        if len(prepared.encode()) > _MAX_PART:
            raise InvalidJID(f"{part} longer than 1023 bytes")
        if (
            prepared
            and profile.apply_five_rules(prepared) == prepared
            and all(_derived_property(ch) in allowed for ch in prepared)
        ):
            return prepared
        return profile.enforce(value)
    except UnicodeEncodeError as exc:
        raise _refused(part, exc) from None


def prep_localpart(value: str) -> str:
    """RFC 7622 §3.3: UsernameCaseMapped, plus the characters §3.3.1 forbids.

    The code points allowed are RFC 8265's (IdentifierClass, Bidi Rule). The mapping is the one
    accounts were created with: NFKC and Unicode case folding first (so "ﬁ" or "Straße" keep
    finding the account "fi" or "strasse"), where RFC 8265 maps only width and uses toLowerCase.
    """
    if not value:
        raise InvalidJID("empty localpart")
    part = value.lower() if value.isascii() else unicodedata.normalize("NFKC", value).casefold()
    # ASCII: IdentifierClass allows exactly U+0021..U+007E (RFC 8264 §9.11) and maps nothing else
    if part.isascii() and part.isprintable() and " " not in part:
        if len(part) > _MAX_PART:
            raise InvalidJID("localpart longer than 1023 bytes")
    else:
        part = _precis(_USERNAME, _IDENTIFIER_CLASS, "localpart", part)
    forbidden = next((ch for ch in part if ch in _LOCAL_FORBIDDEN), None)
    if forbidden is not None:
        raise InvalidJID(f"localpart contains {forbidden!r}, which RFC 7622 §3.3.1 forbids")
    return part


def prep_domain(value: str) -> str:
    # NFKC again after case folding: folding can undo it ("ß" + U+0301 folds to "ss" + U+0301,
    # which composes to "sś"), and a prepared domainpart must prepare to itself.
    folded = unicodedata.normalize("NFKC", value).casefold()
    part = unicodedata.normalize("NFKC", folded).removesuffix(".")
    if not part:
        raise InvalidJID("empty domainpart")
    if len(part.encode()) > _MAX_PART:
        raise InvalidJID("domainpart longer than 1023 bytes")
    if any(ch.isspace() or ch in "@/" for ch in part) or _has_control(part):
        raise InvalidJID("domainpart contains a forbidden character")
    # RFC 7622 §3.2: only "a final character considered to be a label separator (dot)" is stripped;
    # a domain name has no empty label (RFC 1034 §3.1), so "a..b", ".a" and "a.." are refused
    # (else "a.." would prepare to "a.", which prepares again to "a": two JIDs for one domain).
    if part.startswith(".") or part.endswith(".") or ".." in part:
        raise InvalidJID("domainpart has an empty label")
    return part


def prep_resource(value: str) -> str:
    """RFC 7622 §3.4: the OpaqueString profile (RFC 8265 §4.2) on the FreeformClass (RFC 8264).

    Non-ASCII spaces become U+0020, then NFC; no width or case mapping, no directionality rule.
    Refused: controls, Default_Ignorable_Code_Point (U+200B, U+202A..U+202E, U+2060..U+206F,
    U+FEFF, ...), noncharacters, unassigned code points, old Hangul jamo, private use. Idempotent.
    """
    if not value:
        raise InvalidJID("empty resourcepart")
    # Printable ASCII (U+0020..U+007E) is all allowed and maps to itself (RFC 8264 §9.11, §9.14).
    if value.isascii() and value.isprintable():
        if len(value) > _MAX_PART:
            raise InvalidJID("resourcepart longer than 1023 bytes")
        return value
    return _precis(_OPAQUE_STRING, _FREEFORM_CLASS, "resourcepart", value)


@dataclass(frozen=True, slots=True)
class JID:
    """A prepared JID. Build with :meth:`parse` or the constructor with already prepared parts."""

    local: str | None
    domain: str
    resource: str | None = None
    # The bare form, made once: routing asks for it on every stanza.
    _bare: JID | None = field(default=None, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.resource is not None:
            object.__setattr__(self, "_bare", JID(self.local, self.domain))

    @classmethod
    def parse(cls, value: str) -> JID:
        """Split per RFC 7622 §3.1 (first '/' ends the domain, last '@' before it ends the localpart)."""
        bare, slash, resource = value.partition("/")
        local, at, domain = bare.rpartition("@")
        if slash and not resource:
            raise InvalidJID("empty resourcepart")
        if at and not local:
            raise InvalidJID("empty localpart")
        return cls(
            prep_localpart(local) if at else None,
            prep_domain(domain),
            prep_resource(resource) if slash else None,
        )

    @property
    def bare(self) -> JID:
        return self._bare or self

    @property
    def is_bare(self) -> bool:
        return self.resource is None

    def with_resource(self, resource: str) -> JID:
        return JID(self.local, self.domain, prep_resource(resource))

    def __str__(self) -> str:
        text = f"{self.local}@{self.domain}" if self.local is not None else self.domain
        return f"{text}/{self.resource}" if self.resource is not None else text


@functools.lru_cache(maxsize=8192)
def parse_jid(value: str) -> JID:
    """:meth:`JID.parse`, memoised: the same few addresses recur on every stanza."""
    return JID.parse(value)
