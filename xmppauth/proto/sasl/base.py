"""RFC 4422 (SASL) server-side results and the sans-IO mechanism protocol.

A mechanism is a small state machine. The caller feeds it what the client sent and acts on the
:data:`Result` it returns: send a :class:`Challenge`, finish with :class:`Success` or
:class:`Failure`, or do the one thing a mechanism cannot do on its own -- look something up
(:class:`NeedCredentials` for SCRAM, :class:`NeedPasswordCheck` for PLAIN, :class:`NeedToken` for
the XEP-0484 HT-* mechanisms) and hand the answer back.

Nothing here does I/O. Secrets (passwords, keys, channel-binding data) never appear in a ``repr``
or in an exception message.
"""

from __future__ import annotations

import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from xmppauth.proto.errors import SaslCondition

__all__ = [
    "Challenge",
    "ChannelBindingContext",
    "Failure",
    "Mechanism",
    "NeedCredentials",
    "NeedPasswordCheck",
    "NeedToken",
    "Result",
    "ScramCredentials",
    "Success",
    "TokenCandidate",
]


@dataclass(frozen=True, kw_only=True, slots=True)
class Challenge:
    """Send ``data`` to the client as a challenge and wait for its response."""

    data: bytes


@dataclass(frozen=True, kw_only=True, slots=True)
class Success:
    """Authentication succeeded.

    ``username`` is the SASLprep-ed authentication identity as the client gave it (not
    case-folded). ``additional_data`` is the final server message (SCRAM ``v=...``) if any.
    ``authzid`` is the authorization identity the client asked for, if it sent one; whether to
    honour it is the caller's decision (RFC 6120 §6.3.8).

    ``credential_id`` names the credential that matched: ``""`` for the account password, the
    :attr:`ScramCredentials.credential_id` of an alternative (an app password), the id the caller
    gave ``password_checked()`` for PLAIN, or the :attr:`TokenCandidate.credential_id` of the
    FAST token (HT-*).
    """

    username: str
    additional_data: bytes | None
    authzid: str | None = None
    credential_id: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class Failure:
    """Authentication failed with ``condition``; ``text`` is a short reason, never a secret."""

    condition: SaslCondition
    text: str


@dataclass(frozen=True, kw_only=True, slots=True)
class NeedCredentials:
    """SCRAM: look up the stored credentials of ``username`` and call ``provide_credentials``.

    For an unknown user the caller passes :func:`~xmppauth.proto.sasl.scram.fake_credentials`,
    so the exchange looks the same whether or not the account exists.
    """

    username: str


@dataclass(frozen=True, kw_only=True, slots=True)
class NeedPasswordCheck:
    """PLAIN: verify ``password`` for ``username`` and call ``password_checked(ok, credential_id)``."""

    username: str
    password: str = field(repr=False)


@dataclass(frozen=True, kw_only=True, slots=True)
class NeedToken:
    """HT-* (XEP-0484 FAST): look up the tokens of ``username`` and call ``provide_tokens``.

    For an unknown user the caller passes no candidates; the answer is then the same
    ``credentials-expired`` as for a wrong token.
    """

    username: str


Result = Challenge | Success | Failure | NeedCredentials | NeedPasswordCheck | NeedToken


@dataclass(frozen=True, kw_only=True, slots=True)
class ScramCredentials:
    """RFC 5802 §3 stored authentication information: salt, iteration count, StoredKey, ServerKey.

    ``credential_id`` tells which secret these keys were derived from: ``""`` is the account
    password; anything else is the caller's name for another one (an app password), reported
    back in :attr:`Success.credential_id` when it is the one that matched.
    """

    salt: bytes
    iterations: int
    stored_key: bytes = field(repr=False)
    server_key: bytes = field(repr=False)
    credential_id: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class TokenCandidate:
    """A XEP-0484 FAST token that may be the one the client used.

    ``key`` is the HMAC key of the HT-* mechanism: the token exactly as it was handed to the
    client (its UTF-8 bytes). ``mechanism`` is the HT-* mechanism the token was issued for; a
    token never matches under another one (XEP-0484: a token is bound to the mechanism chosen
    when it was issued).
    """

    credential_id: str
    key: bytes = field(repr=False)
    mechanism: str


@dataclass(frozen=True, kw_only=True, slots=True)
class ChannelBindingContext:
    """What the connection offers for RFC 5929 / RFC 9266 channel binding.

    ``bindings`` maps a channel-binding type name (``"tls-server-end-point"``, ``"tls-exporter"``)
    to the data for this connection; it is empty when the stream is not on TLS.
    ``plus_advertised`` says whether at least one ``-PLUS`` mechanism was offered on this stream,
    which is what RFC 5802 §6 means by "the server supports channel binding".
    """

    bindings: Mapping[str, bytes] = field(default_factory=dict)
    plus_advertised: bool = False

    def __post_init__(self) -> None:
        # A read-only private copy: the caller mutating its dict later must not change us.
        object.__setattr__(self, "bindings", types.MappingProxyType(dict(self.bindings)))

    def __repr__(self) -> str:
        # The binding bytes are derived from TLS secrets (tls-exporter); show only the type names.
        return (
            f"ChannelBindingContext(bindings=<{', '.join(sorted(self.bindings))}>, "
            f"plus_advertised={self.plus_advertised!r})"
        )


class Mechanism(Protocol):
    """A server-side SASL mechanism (RFC 4422 §3).

    Methods called in an order the current state does not allow raise
    :class:`~xmppauth.proto.errors.LocalProtocolError`; so does any call after the mechanism
    returned :class:`Success` or :class:`Failure`.
    """

    name: str

    def start(self, initial_response: bytes | None) -> Result:
        """Begin the exchange with the client's initial response, if it sent one."""
        ...

    def step(self, response: bytes) -> Result:
        """Feed the client's response to the last :class:`Challenge`."""
        ...

    def provide_credentials(
        self, creds: ScramCredentials | None, alternatives: Sequence[ScramCredentials] = ()
    ) -> Result:
        """Answer :class:`NeedCredentials` (SCRAM only).

        ``creds`` decide the salt and iteration count sent to the client; an ``alternatives``
        entry is tried as well when its salt and iteration count are the same as ``creds``'.
        """
        ...

    def password_checked(self, ok: bool, credential_id: str = "") -> Result:
        """Answer :class:`NeedPasswordCheck` (PLAIN only); ``credential_id`` names what matched."""
        ...

    def provide_tokens(self, candidates: Sequence[TokenCandidate]) -> Result:
        """Answer :class:`NeedToken` (HT-* only) with every token that may have been used."""
        ...
