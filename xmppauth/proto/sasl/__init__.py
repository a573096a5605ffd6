"""RFC 4422 SASL mechanisms for the sans-IO core: SCRAM (RFC 5802, RFC 7677), PLAIN (RFC 4616)
and the XEP-0484 FAST token mechanisms HT-SHA-256-{NONE,ENDP,EXPR}.

Pure computation: no I/O, no Django, no asyncio. See :mod:`.base` for the driving protocol.
"""

from __future__ import annotations

from collections.abc import Callable

from xmppauth.proto.sasl.base import (
    Challenge,
    ChannelBindingContext,
    Failure,
    Mechanism,
    NeedCredentials,
    NeedPasswordCheck,
    NeedToken,
    Result,
    ScramCredentials,
    Success,
    TokenCandidate,
)
from xmppauth.proto.sasl.ht import HT_MECHANISMS, HtServer, fast_mechanism_names
from xmppauth.proto.sasl.plain import PlainServer
from xmppauth.proto.sasl.saslprep import saslprep
from xmppauth.proto.sasl.scram import (
    HASHES,
    MIN_ITERATIONS,
    ScramClient,
    ScramServer,
    credentials_from_salted_password,
    derive_credentials,
    fake_credentials,
    mechanism_names,
)

__all__ = [
    "HASHES",
    "HT_MECHANISMS",
    "MECHANISMS",
    "MIN_ITERATIONS",
    "Challenge",
    "ChannelBindingContext",
    "Failure",
    "HtServer",
    "Mechanism",
    "NeedCredentials",
    "NeedPasswordCheck",
    "NeedToken",
    "PlainServer",
    "Result",
    "ScramClient",
    "ScramCredentials",
    "ScramServer",
    "Success",
    "TokenCandidate",
    "credentials_from_salted_password",
    "derive_credentials",
    "fake_credentials",
    "fast_mechanism_names",
    "make_mechanism",
    "mechanism_names",
    "saslprep",
]

#: Every mechanism name :func:`make_mechanism` knows.
MECHANISMS: frozenset[str] = frozenset(["PLAIN", *mechanism_names(plus=True), *HT_MECHANISMS])


def make_mechanism(
    name: str,
    *,
    cb: ChannelBindingContext,
    nonce_factory: Callable[[], str] | None = None,
    server_first_extensions: str = "",
) -> Mechanism:
    """A fresh server-side mechanism for ``name``; :class:`KeyError` if we do not implement it.

    Whether ``name`` was offered on this stream is the caller's check, not ours.
    """
    if name == "PLAIN":
        return PlainServer()
    if name in HT_MECHANISMS:
        # XEP-0484 FAST; a binding type missing from ``cb`` fails at start() (malformed-request)
        return HtServer(name, cb=cb)
    if name not in MECHANISMS:
        raise KeyError(name)
    plus = name.endswith("-PLUS")
    hash_name = name.removeprefix("SCRAM-").removesuffix("-PLUS")
    return ScramServer(
        hash_name,
        plus=plus,
        cb=cb,
        nonce_factory=nonce_factory,
        server_first_extensions=server_first_extensions,
    )
