"""RFC 7622 JIDs: parsing, a pragmatic PRECIS-style preparation and comparison.

We approximate the PRECIS profiles with what the standard library offers: localpart and domain are
NFKC-normalised and case-folded (UsernameCaseMapped, IDNA-style lowercase), the resourcepart is NFC
normalised and otherwise kept as is (OpaqueString). Characters RFC 7622 §3.3.1 forbids in a
localpart are refused, as are controls and empty parts; each part is at most 1023 bytes.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

_MAX_PART = 1023
_LOCAL_FORBIDDEN = frozenset("\"&'/:<>@")


class InvalidJID(ValueError):
    """The string is not a valid JID; the message says why."""


def _has_control(value: str) -> bool:
    return any(unicodedata.category(ch) in {"Cc", "Cs", "Co", "Cn"} for ch in value)


def prep_localpart(value: str) -> str:
    part = unicodedata.normalize("NFKC", value).casefold()
    if not part:
        raise InvalidJID("empty localpart")
    if len(part.encode()) > _MAX_PART:
        raise InvalidJID("localpart longer than 1023 bytes")
    if any(ch in _LOCAL_FORBIDDEN or ch.isspace() for ch in part) or _has_control(part):
        raise InvalidJID("localpart contains a forbidden character")
    return part


def prep_domain(value: str) -> str:
    part = unicodedata.normalize("NFKC", value).casefold().removesuffix(".")
    if not part:
        raise InvalidJID("empty domainpart")
    if len(part.encode()) > _MAX_PART:
        raise InvalidJID("domainpart longer than 1023 bytes")
    if any(ch.isspace() or ch in "@/" for ch in part) or _has_control(part):
        raise InvalidJID("domainpart contains a forbidden character")
    return part


def prep_resource(value: str) -> str:
    part = unicodedata.normalize("NFC", value)
    if not part:
        raise InvalidJID("empty resourcepart")
    if len(part.encode()) > _MAX_PART:
        raise InvalidJID("resourcepart longer than 1023 bytes")
    if _has_control(part):
        raise InvalidJID("resourcepart contains a control character")
    return part


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
