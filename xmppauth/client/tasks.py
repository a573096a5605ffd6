"""SASL2 tasks the reference client answers (XEP-0388 §2.7): ``TOTP`` and ``TOTP-INIT`` (XEP-0400,
docs/protocol/totp-task.md), ``X-WEBAUTHN`` (docs/protocol/webauthn-task.md, with the software
authenticator of :mod:`.softkey`), ``X-RECOVERY`` (docs/protocol/recovery-task.md) and the XEP-0480
SCRAM upgrades. One class per task, picked by :func:`choose`."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import struct
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, urlparse

from lxml import etree

from xmppauth.client.softkey import SoftKey
from xmppauth.proto import ns
from xmppauth.proto.sasl import saslprep
from xmppauth.proto.xml import escape_text

#: XEP-0480 iteration counts this client computes; more is a server wasting the client's time.
_MAX_UPGRADE_ITERATIONS = 10_000_000


class CannotAnswer(Exception):
    """The client cannot answer a task (no code given, unknown task): it aborts the login."""


class Report(Protocol):
    def __call__(self, event: str, message: str, **data: object) -> None: ...


def totp_code(secret: bytes, moment: float | None = None) -> str:
    """RFC 6238 with HMAC-SHA-1, 30-second steps from the Unix epoch, 6 digits (XEP-0400 §3)."""
    counter = int((time.time() if moment is None else moment) // 30)
    digest = hmac.new(secret, struct.pack(">Q", counter), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 1_000_000:06d}"


def secret_from_base32(text: str) -> bytes:
    """An authenticator secret as written in otpauth URIs (RFC 4648 base32, padding optional)."""
    clean = text.replace(" ", "").upper()
    try:
        return base64.b32decode(clean + "=" * (-len(clean) % 8))
    except (binascii.Error, ValueError):
        raise ValueError("not a base32 secret") from None


def secret_from_uri(uri: str) -> bytes:
    secret = parse_qs(urlparse(uri).query).get("secret", [""])[0]
    if not secret:
        raise ValueError("the otpauth URI has no secret")
    return secret_from_base32(secret)


@dataclass(frozen=True, kw_only=True)
class Answers:
    """What the command line gave for the tasks."""

    totp_code: str | None = None
    totp_secret: bytes | None = None
    recovery_code: str | None = None
    totp_from_init: bool = False
    webauthn_key: Path | None = None  # a software authenticator's file (.softkey)
    webauthn_origin: str = ""  # the origin it claims to sign in (default https://DOMAIN)
    upgrade: bool = False
    prompt: bool = True


async def _prompt(question: str) -> str:
    def ask() -> str:
        sys.stderr.write(question)
        sys.stderr.flush()
        return sys.stdin.readline().strip()

    answer = await asyncio.to_thread(ask)
    if not answer:
        raise CannotAnswer("no code was typed")
    return answer


class Task:
    """One task: the payload of ``<next/>``, then answers to the server's ``<task-data/>``."""

    name = ""

    async def first(self) -> str:
        return ""

    async def answer(self, challenge: etree._Element | None) -> str:
        raise CannotAnswer(f"task {self.name}: unexpected challenge")


async def _totp_from(answers: Answers, question: str) -> str:
    if answers.totp_code is not None:
        return answers.totp_code
    if answers.totp_secret is not None:
        return totp_code(answers.totp_secret)
    if answers.prompt:
        return await _prompt(question)
    raise CannotAnswer("a TOTP code is needed: give --totp-code or --totp-secret (or drop --no-prompt)")


def _totp(code: str) -> str:
    return f"<totp xmlns='{ns.MFA}'>{escape_text(code)}</totp>"


class TotpTask(Task):
    """XEP-0400 ``TOTP``: the code travels with the choice (docs/protocol/totp-task.md §4)."""

    name = "TOTP"

    def __init__(self, answers: Answers) -> None:
        self.answers = answers

    async def first(self) -> str:
        return _totp(await _totp_from(self.answers, "TOTP code: "))

    async def answer(self, challenge: etree._Element | None) -> str:  # a server that asks again
        return _totp(await _totp_from(self.answers, "TOTP code: "))


class RecoveryTask(Task):
    """``X-RECOVERY``: the code travels with the choice (docs/protocol/recovery-task.md §3)."""

    name = "X-RECOVERY"

    def __init__(self, code: str) -> None:
        self.code = code

    async def first(self) -> str:
        return f"<code xmlns='{ns.RECOVERY}'>{escape_text(self.code)}</code>"


class WebAuthnTask(Task):
    """``X-WEBAUTHN`` (docs/protocol/webauthn-task.md): the server's request options in, the software
    authenticator's assertion out; the key file is saved with its new signature counter."""

    name = "X-WEBAUTHN"

    def __init__(self, path: Path, origin: str, report: Report) -> None:
        self.path = path
        self.origin = origin
        self.report = report

    async def answer(self, challenge: etree._Element | None) -> str:
        if (
            challenge is None
            or challenge.tag != f"{{{ns.WEBAUTHN}}}options"
            or not (challenge.text or "").strip()
        ):
            raise CannotAnswer("X-WEBAUTHN: expected <options/> with the request options as JSON")
        try:
            key = SoftKey.load(self.path)
            assertion = key.get(challenge.text or "", self.origin)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CannotAnswer(f"X-WEBAUTHN: {exc}") from None
        key.save(self.path)
        self.report("webauthn", f"task X-WEBAUTHN: signed with key {key.credential_id[:12]}…")
        return f"<assertion xmlns='{ns.WEBAUTHN}'>{escape_text(assertion)}</assertion>"


class TotpInitTask(Task):
    """``TOTP-INIT`` (docs/protocol/totp-task.md §7): show the otpauth URI, answer a current code.

    With ``--totp-from-init`` the code is computed from the URI's own secret: for scripts and tests,
    which then find the secret in the ``setup`` line; a person adds the URI to an app and types the code.
    """

    name = "TOTP-INIT"

    def __init__(self, answers: Answers, report: Report) -> None:
        self.answers = answers
        self.report = report

    async def answer(self, challenge: etree._Element | None) -> str:
        if challenge is None or challenge.tag != f"{{{ns.MFA}}}setup" or not (challenge.text or "").strip():
            raise CannotAnswer("TOTP-INIT: expected <setup/> with an otpauth URI")
        uri = (challenge.text or "").strip()
        self.report("setup", f"task TOTP-INIT: add this to an authenticator app: {uri}", uri=uri)
        if self.answers.totp_from_init:
            try:
                return _totp(totp_code(secret_from_uri(uri)))
            except ValueError as exc:
                raise CannotAnswer(f"TOTP-INIT: {exc}") from None
        return _totp(await _totp_from(self.answers, "code from the authenticator app: "))


class ScramUpgradeTask(Task):
    """XEP-0480 §3: answer the server's salt with the SaltedPassword (RFC 5802 Hi()) for it."""

    def __init__(self, name: str, password: Callable[[], str]) -> None:
        self.name = name
        self.hash_name = name.removeprefix("UPGR-SCRAM-")
        self.password = password

    async def answer(self, challenge: etree._Element | None) -> str:
        if challenge is None or challenge.tag != f"{{{ns.SCRAM_UPGRADE}}}salt":
            raise CannotAnswer(f"{self.name}: expected <salt/>")
        try:
            salt = base64.b64decode((challenge.text or "").strip(), validate=True)
            iterations = int(challenge.get("iterations", ""))
        except (binascii.Error, ValueError):
            raise CannotAnswer(f"{self.name}: malformed <salt/>") from None
        if not salt or not 0 < iterations <= _MAX_UPGRADE_ITERATIONS:
            raise CannotAnswer(f"{self.name}: unacceptable salt or iteration count {iterations}")
        digest = self.hash_name.replace("-", "").lower()
        secret = saslprep(self.password(), allow_unassigned=True).encode()
        salted = await asyncio.to_thread(hashlib.pbkdf2_hmac, digest, secret, salt, iterations)
        return f"<hash xmlns='{ns.SCRAM_UPGRADE}'>{base64.b64encode(salted).decode()}</hash>"


_UPGRADES = ("UPGR-SCRAM-SHA-256", "UPGR-SCRAM-SHA-512")


def choose(offered: list[str], answers: Answers, password: Callable[[], str], report: Report) -> Task:
    """The task to answer among the alternatives of one ``<continue/>``; :class:`CannotAnswer` if none."""
    for name in offered:
        if name in _UPGRADES and answers.upgrade:
            return ScramUpgradeTask(name, password)
    if "TOTP-INIT" in offered:
        return TotpInitTask(answers, report)
    if "X-RECOVERY" in offered and answers.recovery_code is not None:
        return RecoveryTask(answers.recovery_code)
    if "X-WEBAUTHN" in offered and answers.webauthn_key is not None:
        return WebAuthnTask(answers.webauthn_key, answers.webauthn_origin, report)
    if "TOTP" in offered and (
        answers.totp_code is not None or answers.totp_secret is not None or answers.prompt
    ):
        return TotpTask(answers)
    if {"TOTP", "X-RECOVERY", "X-WEBAUTHN"} & set(offered):
        raise CannotAnswer(
            "a second factor is needed: give --totp-code, --totp-secret, --recovery-code or --webauthn-key "
            "(or drop --no-prompt)"
        )
    raise CannotAnswer("no task this client can answer: " + " ".join(offered))
