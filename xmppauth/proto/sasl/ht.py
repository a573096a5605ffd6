"""The HT-* token mechanisms of XEP-0484 FAST (draft-schmaus-kitten-sasl-ht), server side.

One message each way, in the form Prosody's ``mod_sasl2_fast`` and @xmpp/client use::

    initial response = authcid NUL HMAC-SHA-256(key=token, msg="Initiator" || cb-data)
    additional data  =             HMAC-SHA-256(key=token, msg="Responder" || cb-data)

Both HMACs are the raw 32 bytes. ``cb-data`` is empty for ``-NONE``, the RFC 5929
``tls-server-end-point`` data for ``-ENDP`` and the RFC 9266 ``tls-exporter`` data for ``-EXPR``.
The server's answer proves that it knows the token too (mutual authentication) and, with
channel binding, that client and server see the same TLS channel.

The mechanism parses the client's message and asks for the tokens it may have used
(:class:`~xmppauth.proto.sasl.base.NeedToken`); looking them up, expiry, replay counters and
rotation are the caller's business.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import types
from collections.abc import Mapping, Sequence

from xmppauth.proto.errors import LocalProtocolError, SaslCondition
from xmppauth.proto.sasl.base import (
    ChannelBindingContext,
    Failure,
    Mechanism,
    NeedToken,
    Result,
    ScramCredentials,
    Success,
    TokenCandidate,
)
from xmppauth.proto.sasl.saslprep import saslprep

__all__ = ["EXPIRED_TEXT", "HT_MECHANISMS", "MAX_MESSAGE_LENGTH", "HtServer", "fast_mechanism_names"]

#: The HT-* mechanisms we implement, in the order they are advertised (strongest binding
#: first), each with the channel-binding type it needs (None: no channel binding).
#: ``HT-SHA-256-UNIQ`` (tls-unique) is left out: tls-unique does not exist on TLS 1.3.
HT_MECHANISMS: Mapping[str, str | None] = types.MappingProxyType(
    {
        "HT-SHA-256-EXPR": "tls-exporter",
        "HT-SHA-256-ENDP": "tls-server-end-point",
        "HT-SHA-256-NONE": None,
    }
)

#: authcid (a localpart, at most 1023 octets) + NUL + 32 bytes, with room to spare.
MAX_MESSAGE_LENGTH = 1100

#: The failure text for a token that does not match (XEP-0484: ``credentials-expired``, so that
#: the client drops the token and falls back to its password).
EXPIRED_TEXT = "this token is not valid (expired, replaced or revoked); authenticate with your password"

_DIGEST = "sha256"
_MAC_LENGTH = hashlib.new(_DIGEST).digest_size
_INITIATOR = b"Initiator"
_RESPONDER = b"Responder"


def fast_mechanism_names(bindings: Mapping[str, bytes]) -> tuple[str, ...]:
    """The HT-* mechanisms usable on a connection with these channel bindings, in advertising order.

    ``HT-SHA-256-NONE`` is always there; the binding ones only when their data is available.
    """
    return tuple(name for name, cb in HT_MECHANISMS.items() if cb is None or cb in bindings)


class _State(enum.Enum):
    INITIAL = enum.auto()
    AWAIT_TOKENS = enum.auto()
    DONE = enum.auto()


class HtServer(Mechanism):
    """Server side of one HT-* exchange: :meth:`start`, then :meth:`provide_tokens`."""

    def __init__(self, name: str, *, cb: ChannelBindingContext) -> None:
        if name not in HT_MECHANISMS:
            raise ValueError(f"unsupported HT mechanism {name!r}")
        self.name = name
        self._cb_type = HT_MECHANISMS[name]
        self._cb = cb
        self._state = _State.INITIAL
        self._username = ""
        self._mac = b""

    def __repr__(self) -> str:
        return f"<HtServer {self.name} {self._state.name}>"

    def _expect(self, state: _State) -> None:
        if self._state is not state:
            raise LocalProtocolError(f"{self.name}: call not allowed in state {self._state.name}")

    def _malformed(self, text: str) -> Failure:
        self._state = _State.DONE
        return Failure(condition=SaslCondition.MALFORMED_REQUEST, text=text)

    # -- Mechanism API ---------------------------------------------------------------------

    def start(self, initial_response: bytes | None) -> Result:
        """Parse ``authcid NUL HMAC``; HT has no challenge, so a missing message is malformed."""
        self._expect(_State.INITIAL)
        if self._cb_type is not None and self._cb_type not in self._cb.bindings:
            return self._malformed(
                f"{self.name} needs {self._cb_type} channel binding, which this connection does not offer"
            )
        if not initial_response:
            return self._malformed(f"{self.name} needs an initial response: username, NUL, HMAC")
        if len(initial_response) > MAX_MESSAGE_LENGTH:
            return self._malformed(f"{self.name} message too long")
        # The HMAC is binary and may itself contain NUL: split at the first one only (the
        # authcid is UTF-8 text and has none).
        authcid, sep, mac = initial_response.partition(b"\0")
        if not sep or len(mac) != _MAC_LENGTH:
            return self._malformed(f"{self.name} message must be username, NUL and a 32-byte HMAC")
        try:
            username = saslprep(authcid.decode("utf-8"), allow_unassigned=True)
        except (UnicodeDecodeError, ValueError):  # not UTF-8, or fails SASLprep
            return self._malformed(f"{self.name} username is not a valid SASL name")
        if not username:
            return self._malformed("empty username")
        self._username = username
        self._mac = mac
        self._state = _State.AWAIT_TOKENS
        return NeedToken(username=username)

    def step(self, response: bytes) -> Result:
        raise LocalProtocolError(f"{self.name} is a single message: there is no challenge to answer")

    def provide_credentials(
        self, creds: ScramCredentials | None, alternatives: Sequence[ScramCredentials] = ()
    ) -> Result:
        raise LocalProtocolError(f"{self.name} does not use stored SCRAM credentials")

    def password_checked(self, ok: bool, credential_id: str = "") -> Result:
        raise LocalProtocolError(f"{self.name} does not check passwords")

    def provide_tokens(self, candidates: Sequence[TokenCandidate]) -> Result:
        """Check the client's HMAC against every candidate (constant time, no early exit).

        A candidate issued for another mechanism never matches, even with the right key.
        """
        self._expect(_State.AWAIT_TOKENS)
        self._state = _State.DONE
        mac, self._mac = self._mac, b""
        cb_data = self._cb.bindings[self._cb_type] if self._cb_type is not None else b""
        initiator = _INITIATOR + cb_data
        matched: TokenCandidate | None = None
        for candidate in candidates:
            expected = hmac.new(candidate.key, initiator, _DIGEST).digest()
            ok = hmac.compare_digest(expected, mac)
            if ok and candidate.mechanism == self.name and matched is None:
                matched = candidate
        if matched is None:
            return Failure(condition=SaslCondition.CREDENTIALS_EXPIRED, text=EXPIRED_TEXT)
        return Success(
            username=self._username,
            additional_data=hmac.new(matched.key, _RESPONDER + cb_data, _DIGEST).digest(),
            credential_id=matched.credential_id,
        )
