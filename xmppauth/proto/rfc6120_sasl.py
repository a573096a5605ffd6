"""RFC 6120 §6 SASL negotiation, and the mechanism exchange SASL2 shares with it.

Implements §6.3.3 (mechanisms offered only on encrypted streams, PLAIN only under TLS), §6.4.2-
§6.4.6 (``<auth/>``, ``<challenge/>``/``<response/>``, ``<abort/>``, ``<failure/>``, ``<success/>``
and the restart after it), §6.4.5 (a few retries, then the stream closes), §6.3.8 (an account acts
only as itself). The exchange itself (a :class:`~.sasl.Mechanism` and the driver's answers to
its requests) is the same under XEP-0388, which :mod:`.xep0388_sasl2` wraps around it: ``profile``
says which one is in use. States touched: EXPECT_AUTH → SASL → EXPECT_HEADER (restart) or
EXPECT_AUTH (failure); under SASL2, SASL → TASKS.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from typing import TYPE_CHECKING

from lxml import etree

from . import ns
from .errors import LocalProtocolError, SaslCondition, StreamError, StreamErrorCondition
from .events import (
    Authenticated,
    AuthFailed,
    CredentialsNeeded,
    Event,
    PasswordCheckNeeded,
    TokenCheckNeeded,
)
from .jid import JID, InvalidJID, parse_jid, prep_localpart
from .sasl import Challenge as SaslChallenge
from .sasl import ChannelBindingContext, Mechanism, ScramCredentials, TokenCandidate, make_mechanism
from .sasl import Failure as SaslFailure
from .sasl import NeedCredentials as SaslNeedCredentials
from .sasl import NeedPasswordCheck as SaslNeedPasswordCheck
from .sasl import NeedToken as SaslNeedToken
from .sasl import Success as SaslSuccess
from .states import State, Waiting
from .xep0474_ssdp import ssdp_attribute
from .xml import escape_text

if TYPE_CHECKING:
    from .stream import C2SStream

__all__ = ["MAX_AUTH_FAILURES", "SCRAM_HASHES", "SaslExchange", "b64", "is_auth_element"]

SCRAM_HASHES = ("SHA-512", "SHA-256", "SHA-1")
# §6.4.5: allow a reasonable number of retries (at least 2), then close the stream.
MAX_AUTH_FAILURES = 3

_SASL_PREFIX = "{" + ns.SASL + "}"
#: what :meth:`SaslExchange.refuse` may answer: a request for credentials (refused before any check,
#: e.g. by a guessing limit) or a mechanism that succeeded
_REFUSABLE = (Waiting.CREDENTIALS, Waiting.PASSWORD, Waiting.TOKEN, Waiting.AUTHORIZE, Waiting.TASKS)
_SASL2_PREFIX = "{" + ns.SASL2 + "}"


class SaslExchange:
    """The SASL negotiation of one stream: what was offered, the mechanism running, the failures."""

    __slots__ = (
        "additional_data",
        "failures",
        "limited",
        "mechanism",
        "offered",
        "profile",
        "stream",
        "username",
    )

    def __init__(self, stream: C2SStream) -> None:
        self.stream = stream
        self.mechanism: Mechanism | None = None
        self.offered: tuple[str, ...] = ()
        self.failures = 0
        self.username: str | None = None
        self.profile = "sasl"  # or "sasl2": which profile the exchange in progress uses
        self.additional_data: bytes | None = None  # for <success/> (or SASL2's first <continue/>)
        #: the failure the driver asked for instead of not-authorized when no credential matches (an
        #: account held by its guessing limit, where only app passwords are still checked)
        self.limited: tuple[SaslCondition, str] | None = None

    # ------------------------------------------------------------------ offering
    def advertisement(self) -> str:
        """§6.3.3 ``<mechanisms/>``; also remembers the list, which SASL2 advertises too."""
        stream = self.stream
        names: list[str] = []
        if stream.channel_bindings:
            names.extend(f"SCRAM-{h}-PLUS" for h in SCRAM_HASHES)
        names.extend(f"SCRAM-{h}" for h in SCRAM_HASHES)
        if stream.config.allow_plain and stream.secure:
            names.append("PLAIN")  # only ever under TLS
        self.offered = tuple(names)
        return f"<mechanisms xmlns='{ns.SASL}'>{mechanism_list(self.offered)}</mechanisms>"

    # ------------------------------------------------------------------ elements
    def on_element(self, el: etree._Element) -> Event | None:
        """An element in EXPECT_AUTH or SASL."""
        stream = self.stream
        tag = el.tag
        in_exchange = stream.state is State.SASL
        if isinstance(tag, str) and tag.startswith(_SASL2_PREFIX):
            return stream.sasl2.on_element(el, tag[len(_SASL2_PREFIX) :])
        if not isinstance(tag, str) or not tag.startswith(_SASL_PREFIX):
            if in_exchange and self.profile == "sasl2":
                # XEP-0388 §2.6: nothing but the exchange may be sent while it is in progress.
                raise StreamError(StreamErrorCondition.POLICY_VIOLATION, "authentication is in progress")
            raise StreamError(StreamErrorCondition.NOT_AUTHORIZED, "authenticate first")
        if in_exchange and self.profile == "sasl2":
            raise StreamError(StreamErrorCondition.POLICY_VIOLATION, "a SASL2 exchange is in progress")
        local = tag[len(_SASL_PREFIX) :]
        if local == "auth":
            if in_exchange:
                return self.fail(SaslCondition.MALFORMED_REQUEST, "an exchange is already in progress")
            self.profile = "sasl"
            stream.sasl2.forget()
            stream.fast.forget()
            text = (el.text or "").strip()
            return self.start(el.get("mechanism", ""), text or None)
        if local == "response" and in_exchange:
            return self.on_response(el)
        if local == "abort" and in_exchange:
            return self.fail(SaslCondition.ABORTED, "aborted by the client")
        return self.fail(SaslCondition.MALFORMED_REQUEST, f"unexpected <{local}/>")

    def on_response(self, el: etree._Element) -> Event | None:
        assert self.mechanism is not None
        data = decode_b64(el.text)
        if data is None:
            return self.fail(SaslCondition.INCORRECT_ENCODING, "the response is not valid base64")
        return self.after(self.mechanism.step(data))

    def usable(self) -> tuple[str, ...]:
        """What the client may ask for: the advertised list, plus FAST's HT-* under SASL2."""
        if self.profile == "sasl2":
            return self.offered + self.stream.fast.extra_mechanisms()
        return self.offered

    def start(self, name: str, text: str | None) -> Event | None:
        """Start mechanism ``name``; ``text`` is the initial response as sent: None for none, '='
        for an empty one."""
        stream = self.stream
        stream.mechanism_name = name
        if name not in self.usable():
            return self.fail(SaslCondition.INVALID_MECHANISM, f"{name or 'no mechanism'} is not offered")
        initial: bytes | None
        if text is None:
            initial = None  # §6.4.2: no initial response
        elif text == "=":
            initial = b""  # ... and '=' is an empty one
        else:
            initial = decode_b64(text)
            if initial is None:
                return self.fail(SaslCondition.INCORRECT_ENCODING, "the initial response is not valid base64")
        cb = ChannelBindingContext(
            bindings=stream.channel_bindings,
            plus_advertised=any(m.endswith("-PLUS") for m in self.offered),
        )
        extensions = (
            ssdp_attribute(name, self.offered, stream.channel_bindings) if name.startswith("SCRAM-") else ""
        )
        self.mechanism = make_mechanism(
            name, cb=cb, nonce_factory=stream.nonce_factory, server_first_extensions=extensions
        )
        stream.move(State.SASL)
        return self.after(self.mechanism.start(initial))

    # ------------------------------------------------------------------ the driver's answers
    def provide_credentials(
        self,
        creds: ScramCredentials,
        alternatives: Sequence[ScramCredentials],
        limited: tuple[SaslCondition, str] | None = None,
    ) -> None:
        assert self.mechanism is not None
        self.limited = limited
        self.stream.push_event(self.after(self.mechanism.provide_credentials(creds, alternatives)))

    def password_checked(
        self, ok: bool, credential_id: str, limited: tuple[SaslCondition, str] | None = None
    ) -> None:
        assert self.mechanism is not None
        self.limited = limited
        self.stream.push_event(self.after(self.mechanism.password_checked(ok, credential_id)))

    def _user_agent_id(self) -> str | None:
        agent = self.stream.sasl2.user_agent if self.profile == "sasl2" else None
        return agent.id if agent is not None else None

    def provide_tokens(self, candidates: Sequence[TokenCandidate]) -> None:
        assert self.mechanism is not None
        self.stream.push_event(self.after(self.mechanism.provide_tokens(candidates)))

    def refuse(self, condition: SaslCondition, text: str) -> None:
        """The driver does not admit a login whose mechanism succeeded: see :meth:`C2SStream.refuse`."""
        stream = self.stream
        if stream.waiting not in _REFUSABLE:
            raise LocalProtocolError(f"nothing to refuse (waiting: {stream.waiting})")
        stream.waiting = None
        self.additional_data = None
        self.limited = None
        stream.push_event(self.fail(condition, text))

    def accept(self) -> None:
        """§6.4.6: the driver admits an RFC 6120 login (which has no tasks): ``<success/>``, restart."""
        extra, self.additional_data = self.additional_data, None
        if extra:
            self.stream.emit(f"<success xmlns='{ns.SASL}'>{b64(extra)}</success>".encode())
        else:
            self.stream.emit(f"<success xmlns='{ns.SASL}'/>".encode())
        self.stream.restart()

    # ------------------------------------------------------------------ results of the mechanism
    def after(self, result: object) -> Event | None:
        stream = self.stream
        if isinstance(result, SaslChallenge):
            namespace = ns.SASL2 if self.profile == "sasl2" else ns.SASL
            stream.emit(f"<challenge xmlns='{namespace}'>{b64(result.data)}</challenge>".encode())
            return None
        if isinstance(result, SaslNeedCredentials):
            stream.wait(Waiting.CREDENTIALS)
            self.username = result.username
            assert self.mechanism is not None
            hash_name = self.mechanism.name.removeprefix("SCRAM-").removesuffix("-PLUS")
            return CredentialsNeeded(
                username=result.username,
                localpart=localpart_or_none(result.username),
                hash_name=hash_name,
                user_agent_id=self._user_agent_id(),
            )
        if isinstance(result, SaslNeedPasswordCheck):
            stream.wait(Waiting.PASSWORD)
            self.username = result.username
            return PasswordCheckNeeded(
                username=result.username,
                localpart=localpart_or_none(result.username),
                password=result.password,
                user_agent_id=self._user_agent_id(),
            )
        if isinstance(result, SaslNeedToken):
            user_agent = stream.sasl2.user_agent
            ua_id = user_agent.id if user_agent is not None else None
            assert ua_id  # Fast.parse lets no HT-* through without a user-agent id
            assert stream.mechanism_name is not None
            stream.wait(Waiting.TOKEN)
            self.username = result.username
            return TokenCheckNeeded(
                username=result.username,
                localpart=localpart_or_none(result.username),
                mechanism=stream.mechanism_name,
                user_agent_id=ua_id,
                count=stream.fast.count,
                invalidate=stream.fast.invalidate,
            )
        if isinstance(result, SaslFailure):
            if self.limited is not None and result.condition is SaslCondition.NOT_AUTHORIZED:
                return self.fail(*self.limited)  # the driver's reason: the account's guessing limit
            return self.fail(result.condition, result.text)
        if isinstance(result, SaslSuccess):
            return self.succeeded(result)
        raise LocalProtocolError(f"unknown SASL result {result!r}")  # pragma: no cover

    def succeeded(self, result: SaslSuccess) -> Event | None:
        """The mechanism succeeded: check the identities, then the driver decides (§6.3.8)."""
        stream = self.stream
        localpart = localpart_or_none(result.username)
        if localpart is None:  # pragma: no cover - the driver never vouches for an invalid localpart
            return self.fail(SaslCondition.NOT_AUTHORIZED, "invalid credentials")
        if result.authzid:
            # §6.3.8: we only let an account act as itself.
            try:
                authz: JID | None = parse_jid(result.authzid)
            except InvalidJID:
                authz = None
            if authz is None or authz != JID(localpart, stream.domain or ""):
                return self.fail(SaslCondition.INVALID_AUTHZID, "the authorization identity is not yours")
        stream_from = stream.stream_from
        if stream_from is not None and stream_from.local is not None and stream_from.local != localpart:
            return self.fail(SaslCondition.INVALID_AUTHZID, "the stream 'from' names another account")
        self.additional_data = result.additional_data
        stream.authenticated_localpart = localpart
        self.mechanism = None
        assert stream.mechanism_name is not None
        if self.profile == "sasl2":
            return stream.sasl2.authenticated(localpart, result.credential_id)
        # the driver still decides (account policy, grants) before <success/> goes out.
        stream.wait(Waiting.AUTHORIZE)
        return Authenticated(
            localpart=localpart, mechanism=stream.mechanism_name, credential_id=result.credential_id
        )

    def fail(self, condition: SaslCondition, text: str) -> Event:
        """``<failure/>`` in the profile's namespace; the client may try again, a few times."""
        stream = self.stream
        username, self.username = self.username, None
        self.mechanism = None
        self.limited = None
        stream.authenticated_localpart = None  # a failed task fails the whole authentication
        stream.sasl2.failed()
        stream.fast.issued = None
        self.failures += 1
        text_el = f"<text xml:lang='en'>{escape_text(text)}</text>"
        if self.profile == "sasl2":
            # XEP-0388 §2.6.5: the RFC 6120 condition, qualified by the SASL namespace
            condition_el = f"<{condition.value} xmlns='{ns.SASL}'/>"
            stream.emit(f"<failure xmlns='{ns.SASL2}'>{condition_el}{text_el}</failure>".encode())
        else:
            stream.emit(f"<failure xmlns='{ns.SASL}'><{condition.value}/>{text_el}</failure>".encode())
        stream.move(State.EXPECT_AUTH)
        failed = AuthFailed(
            username=username, mechanism=stream.mechanism_name or "", condition=condition, text=text
        )
        if self.failures >= MAX_AUTH_FAILURES:
            stream.fail_next(StreamErrorCondition.POLICY_VIOLATION, "too many failed authentication attempts")
        return failed


def mechanism_list(names: Sequence[str]) -> str:
    return "".join(f"<mechanism>{name}</mechanism>" for name in names)


def is_auth_element(el: etree._Element) -> bool:
    tag = el.tag
    return isinstance(tag, str) and (tag.startswith(_SASL_PREFIX) or tag.startswith(_SASL2_PREFIX))


def decode_b64(text: str | None) -> bytes | None:
    value = (text or "").strip()
    if value == "=":
        return b""
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def localpart_or_none(username: str) -> str | None:
    try:
        return prep_localpart(username)
    except InvalidJID:
        return None


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii") if data else "="
