"""The reference client's login and what follows: XEP-0388 SASL2 (SCRAM-SHA-256/512 with the server's
signature checked, or PLAIN), XEP-0386 Bind2, XEP-0484 FAST (HT-SHA-256-NONE), the SASL2 tasks of
:mod:`.tasks`; then XEP-0199 ping and chat messages. Every step is told to a :class:`~.tasks.Report`."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass

from lxml import etree

from xmppauth.client.fasttoken import FastToken, TokenFile
from xmppauth.client.tasks import Answers, CannotAnswer, Report, Task, choose
from xmppauth.client.transport import ConnectionProblem, Transport
from xmppauth.proto import ns
from xmppauth.proto.sasl import ScramClient
from xmppauth.proto.xep0474_ssdp import ssdp_attribute
from xmppauth.proto.xml import escape_attr, escape_text

_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
_FAST_MECHANISM = "HT-SHA-256-NONE"
_ids = itertools.count(1)


def _q(namespace: str, name: str) -> str:
    return f"{{{namespace}}}{name}"


class AuthFailed(Exception):
    """The server refused the login, or the client could not or would not go on (exit code 1)."""

    def __init__(self, condition: str, text: str = "") -> None:
        super().__init__(f"{condition}: {text}" if text else condition)
        self.condition = condition
        self.text = text


@dataclass(frozen=True, kw_only=True)
class LoginOptions:
    username: str  # the localpart
    domain: str
    mechanism: str  # SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN
    tag: str  # Bind2 <tag/>
    software: str
    user_agent_id: str
    upgrade: bool


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(text: str | None) -> bytes:
    if text is None or text.strip() in ("", "="):
        return b""
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise AuthFailed("malformed-response", "the server sent malformed base64") from None


def _failure(element: etree._Element) -> AuthFailed:
    condition = next(
        (etree.QName(c).localname for c in element if etree.QName(c).namespace == _SASL), "not-authorized"
    )
    return AuthFailed(condition, element.findtext(_q(ns.SASL2, "text")) or "")


class _Login:
    """One ``<authenticate/>`` and the exchange that follows, to ``<success/>`` or ``<failure/>``."""

    def __init__(
        self,
        transport: Transport,
        options: LoginOptions,
        answers: Answers,
        password: Callable[[], str],
        report: Report,
        seen: tuple[tuple[str, ...], tuple[str, ...]] = ((), ()),
    ) -> None:
        self.transport = transport
        self.options = options
        self.answers = answers
        self.password = password
        #: the SASL2 mechanisms and XEP-0440 channel-binding types the features showed (XEP-0474)
        self.seen = seen
        self.report = report
        self.scram: ScramClient | None = None
        self.expected_proof: bytes | None = None  # HT-*: the server's additional-data in <success/>
        self.verified = False
        self.task: Task | None = None
        self.done_tasks: list[str] = []

    def _authenticate(self, mechanism: str, initial: bytes, inline: str) -> str:
        agent = (
            f"<user-agent id='{escape_attr(self.options.user_agent_id)}'>"
            f"<software>{escape_text(self.options.software)}</software></user-agent>"
        )
        bind = f"<bind xmlns='{ns.BIND2}'><tag>{escape_text(self.options.tag)}</tag></bind>"
        return (
            f"<authenticate xmlns='{ns.SASL2}' mechanism='{escape_attr(mechanism)}'>"
            f"<initial-response>{_b64(initial)}</initial-response>{agent}{bind}{inline}</authenticate>"
        )

    async def with_password(self, request_token: bool, upgrades: list[str]) -> etree._Element:
        mechanism = self.options.mechanism
        if mechanism == "PLAIN":
            initial = f"\0{self.options.username}\0{self.password()}".encode()
            self.verified = True  # nothing to verify: PLAIN proves nothing about the server
        else:
            self.scram = ScramClient(mechanism.removeprefix("SCRAM-"), self.options.username, self.password())
            initial = self.scram.first()
        inline = f"<request-token xmlns='{ns.FAST}' mechanism='{_FAST_MECHANISM}'/>" if request_token else ""
        if self.options.upgrade:
            inline += "".join(f"<upgrade xmlns='{ns.SASL_UPGRADE}'>{name}</upgrade>" for name in upgrades)
        await self.transport.send(self._authenticate(mechanism, initial, inline))
        return await self._exchange()

    async def with_token(self, token: FastToken) -> etree._Element:
        """XEP-0484 §3.3 with HT-SHA-256-NONE: username NUL HMAC(token, "Initiator"); the server proves
        itself with HMAC(token, "Responder") in ``<success/>``'s additional-data."""
        key = token.token.encode()
        initial = (
            self.options.username.encode() + b"\0" + hmac.new(key, b"Initiator", hashlib.sha256).digest()
        )
        self.expected_proof = hmac.new(key, b"Responder", hashlib.sha256).digest()
        await self.transport.send(self._authenticate(_FAST_MECHANISM, initial, f"<fast xmlns='{ns.FAST}'/>"))
        return await self._exchange()

    def _lists_untouched(self) -> bool:
        """XEP-0474: the server's ``h=`` hashes the mechanisms and channel-binding types it advertised;
        they must be what this client saw, or someone in between removed some (the strongest, say
        -PLUS). A server without ``h=`` (older than XEP-0474) cannot be checked; the server-final
        signature covers the attribute, so it cannot be removed on the way."""
        assert self.scram is not None
        told = self.scram.server_first_attributes.get("h")
        if told is None:
            return True
        mechanisms, bindings = self.seen
        expected = ssdp_attribute(self.options.mechanism, mechanisms, dict.fromkeys(bindings, b""))
        return hmac.compare_digest(f"h={told}".encode(), expected.encode())

    def _verify(self, data: bytes) -> None:
        """The server's proof, once: SCRAM's server-final-message, or the HT-* responder HMAC."""
        if self.verified:
            return
        if self.scram is not None:
            if not self.scram.verify_server_final(data):
                raise AuthFailed("server-not-verified", "the server's SCRAM signature is wrong")
        elif self.expected_proof is not None and not hmac.compare_digest(data, self.expected_proof):
            raise AuthFailed("server-not-verified", "the server did not prove that it knows the FAST token")
        self.verified = True

    async def _abort(self, reason: str) -> AuthFailed:
        await self.transport.send(f"<abort xmlns='{ns.SASL2}'/>")  # XEP-0388 §2.6.4
        with_reply = await self.transport.receive()
        if with_reply.tag != _q(ns.SASL2, "failure"):
            raise ConnectionProblem(f"expected <failure/> after <abort/>, got {with_reply.tag}")
        return AuthFailed("aborted", reason)

    async def _exchange(self) -> etree._Element:
        while True:
            element = await self.transport.receive()
            tag = element.tag
            if tag == _q(ns.SASL2, "challenge"):
                if self.scram is None or self.scram.server_first_attributes:
                    raise await self._abort("unexpected SASL challenge")
                try:
                    final = self.scram.final(_unb64(element.text))
                except ValueError as exc:
                    raise await self._abort(f"bad SCRAM challenge: {exc}") from None
                if not self._lists_untouched():
                    raise await self._abort(
                        "downgrade: the mechanisms or channel-binding types this client was shown are not "
                        "the ones the server sent (XEP-0474)"
                    )
                await self.transport.send(f"<response xmlns='{ns.SASL2}'>{_b64(final)}</response>")
            elif tag == _q(ns.SASL2, "continue"):
                await self._continue(element)
            elif tag == _q(ns.SASL2, "task-data"):
                await self._task_data(element)
            elif tag == _q(ns.SASL2, "success"):
                self._verify(_unb64(element.findtext(_q(ns.SASL2, "additional-data"))))
                return element
            elif tag == _q(ns.SASL2, "failure"):
                raise _failure(element)
            else:
                raise ConnectionProblem(f"unexpected {tag} during SASL2")

    async def _continue(self, element: etree._Element) -> None:
        try:
            self._verify(_unb64(element.findtext(_q(ns.SASL2, "additional-data"))))
        except AuthFailed as exc:
            raise await self._abort(exc.text) from None
        offered = [
            (t.text or "").strip()
            for t in element.iterfind(f"{_q(ns.SASL2, 'tasks')}/{_q(ns.SASL2, 'task')}")
        ]
        text = element.findtext(_q(ns.SASL2, "text")) or ""
        self.report(
            "tasks", f"tasks: {' '.join(offered)}" + (f" ({text})" if text else ""), tasks=offered, text=text
        )
        try:
            self.task = choose(offered, self.answers, self.password, self.report)
            payload = await self.task.first()
        except CannotAnswer as exc:
            raise await self._abort(str(exc)) from None
        await self.transport.send(
            f"<next xmlns='{ns.SASL2}' task='{escape_attr(self.task.name)}'>{payload}</next>"
        )
        self.done_tasks.append(self.task.name)
        self.report("task", f"task {self.task.name}: answered", task=self.task.name)

    async def _task_data(self, element: etree._Element) -> None:
        if self.task is None:
            raise await self._abort("<task-data/> before any task")
        challenge = element[0] if len(element) else None
        try:
            payload = await self.task.answer(challenge)
        except CannotAnswer as exc:
            raise await self._abort(str(exc)) from None
        await self.transport.send(f"<task-data xmlns='{ns.SASL2}'>{payload}</task-data>")
        self.report("task", f"task {self.task.name}: challenge answered", task=self.task.name)


def _list(parent: etree._Element | None, path: str) -> list[str]:
    return [] if parent is None else [(e.text or "").strip() for e in parent.iterfind(path)]


async def login(
    transport: Transport,
    features: etree._Element,
    options: LoginOptions,
    *,
    answers: Answers,
    password: Callable[[], str],
    tokens: TokenFile | None,
    report: Report,
) -> str:
    """Log in over an open stream; the full JID. Raises :class:`AuthFailed` when refused."""
    auth = features.find(_q(ns.SASL2, "authentication"))
    if auth is None:
        raise AuthFailed("unsupported", "the server does not offer SASL2 (XEP-0388)")
    mechanisms = _list(auth, _q(ns.SASL2, "mechanism"))
    fast = _list(auth, f".//{_q(ns.FAST, 'fast')}/{_q(ns.FAST, 'mechanism')}")
    upgrades = _list(auth, _q(ns.SASL_UPGRADE, "upgrade"))
    report(
        "offered",
        f"offered: {' '.join(mechanisms)}" + (f"; FAST: {' '.join(fast)}" if fast else ""),
        mechanisms=mechanisms,
        fast=fast,
        upgrades=upgrades,
    )
    bare = f"{options.username}@{options.domain}"
    token = tokens.load() if tokens is not None else None
    success: etree._Element | None = None
    bindings = tuple(
        str(el.get("type")) for el in features.iter(_q(ns.SASL_CB, "channel-binding")) if el.get("type")
    )
    seen = (tuple(mechanisms), bindings)
    attempt = _Login(transport, options, answers, password, report, seen)
    if token is not None and tokens is not None:
        if token.jid and token.jid != bare:
            report("fast", f"fast token in {tokens.path} is for {token.jid}: not used", used=False)
        elif token.expired():
            report("fast", f"fast token expired {token.expiry}: deleted", used=False)
            tokens.delete()
        elif _FAST_MECHANISM not in fast:
            report(
                "fast",
                f"the server does not offer {_FAST_MECHANISM}: logging in with the password",
                used=False,
            )
        else:
            try:
                success = await attempt.with_token(token)
                report("fast", f"logged in with the FAST token ({_FAST_MECHANISM})", used=True)
            except AuthFailed as exc:
                if exc.condition == "server-not-verified":
                    raise
                tokens.delete()  # XEP-0484 §3.4: a refused token is gone; the password comes next
                report(
                    "fast",
                    f"fast token refused ({exc}): deleted, logging in with the password",
                    used=False,
                    condition=exc.condition,
                    text=exc.text,
                )
                attempt = _Login(transport, options, answers, password, report, seen)
    if success is None:
        if options.mechanism not in mechanisms:
            raise AuthFailed("invalid-mechanism", f"the server does not offer {options.mechanism}")
        report("authenticate", f"authenticate: {options.mechanism} as {bare}", mechanism=options.mechanism)
        success = await attempt.with_password(tokens is not None and _FAST_MECHANISM in fast, upgrades)
    jid = (success.findtext(_q(ns.SASL2, "authorization-identifier")) or "").strip()
    issued = success.find(_q(ns.FAST, "token"))
    if issued is not None and tokens is not None and issued.get("token"):
        stored = FastToken(
            token=issued.get("token", ""),
            expiry=issued.get("expiry", ""),
            mechanism=_FAST_MECHANISM,
            user_agent_id=options.user_agent_id,
            jid=bare,
        )
        tokens.save(stored)
        report("token", f"fast token stored in {tokens.path} (expires {stored.expiry})", expiry=stored.expiry)
    bound = success.find(_q(ns.BIND2, "bound")) is not None
    report("success", f"success: {jid}", jid=jid, bound=bound, tasks=attempt.done_tasks)
    return jid


async def ping(transport: Transport, domain: str, report: Report) -> None:
    """XEP-0199 §4.2 to the server; stanzas that arrive meanwhile are skipped."""
    stanza_id = f"ping{next(_ids)}"
    started = time.monotonic()
    await transport.send(
        f"<iq type='get' id='{stanza_id}' to='{escape_attr(domain)}'><ping xmlns='{ns.PING}'/></iq>"
    )
    while True:
        element = await transport.receive()
        if element.tag == "{jabber:client}iq" and element.get("id") == stanza_id:
            break
    millis = round((time.monotonic() - started) * 1000)
    if element.get("type") != "result":
        error = element.find("{jabber:client}error")
        condition = etree.QName(error[0]).localname if error is not None and len(error) else "unknown"
        raise AuthFailed(condition, "the server answered the ping with an error")
    report("ping", f"ping: pong in {millis} ms", ms=millis)


async def send_message(transport: Transport, to: str, text: str, report: Report) -> None:
    await transport.send(
        f"<message to='{escape_attr(to)}' type='chat' id='msg{next(_ids)}'>"
        f"<body>{escape_text(text)}</body></message>"
    )
    report("sent", f"sent a chat message to {to}", to=to)
