"""Lean asyncio XMPP client used as the load generator by bench/login_msg.py.

It speaks just enough RFC 6120 for the login path and message routing:
TCP connect, stream open, STARTTLS, SASL SCRAM-SHA-x (or PLAIN), stream restart,
resource binding, and a close with ``</stream:stream>``.  Replies are recognised with
string/regex matching on the few elements we need -- this is a benchmark driver, not a
general XMPP parser, and it deliberately does no XML parsing per stanza so that the
client side stays cheap compared with the server under test.

SCRAM: the PBKDF2 step (``SaltedPassword``, thousands of HMAC iterations) is cached per
(hash, password, salt, iterations), as a real client would cache it after its first
login, so the generator does not spend ~1-3 ms of CPU per login on key stretching.
The server-side cost is unaffected: servers store StoredKey/ServerKey and never run
PBKDF2 at login time.
"""

from __future__ import annotations

import asyncio
import base64
import codecs
import hashlib
import hmac
import os
import re
import ssl
import time
from dataclasses import dataclass, field

NS_CLIENT = "jabber:client"
NS_STREAMS = "http://etherx.jabber.org/streams"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"

_FEATURES_END = re.compile(r"</(?:[\w.-]+:)?features\s*>|<(?:[\w.-]+:)?features\b[^>]*/>")
_STREAM_ERROR = re.compile(r"<(?:[\w.-]+:)?error\b[^>]*>(.*?)</(?:[\w.-]+:)?error\s*>", re.S)
_STREAM_END = re.compile(r"</(?:[\w.-]+:)?stream\s*>")
_MECHANISM = re.compile(r"<(?:[\w.-]+:)?mechanism>\s*([^<\s]+)\s*</(?:[\w.-]+:)?mechanism>")
_PROCEED = re.compile(r"<(?:[\w.-]+:)?proceed\b[^>]*?(?:/>|>\s*</(?:[\w.-]+:)?proceed\s*>)")
_TLS_FAILURE = re.compile(r"<failure\b[^>]*" + re.escape(NS_TLS))
# Element names may carry a namespace prefix (``<ns1:message xmlns:ns1='jabber:client'>``):
# valid XML, so every pattern below accepts an optional prefix (_P).
_P = r"(?:[\w.-]+:)?"
_SASL_REPLY = re.compile(
    rf"<{_P}(challenge|success|failure)\b[^>]*?(?:/>|>(.*?)</{_P}\1\s*>)",
    re.S,
)
_IQ_END = re.compile(rf"</{_P}iq\s*>|<{_P}iq\b[^>]*/>")
_BIND_JID = re.compile(rf"<{_P}jid>\s*([^<\s]+)\s*</{_P}jid>")
_IQ_TYPE = re.compile(rf"<{_P}iq\b[^>]*?\stype=(['\"])(\w+)\1")

# message stanzas as the receiver sees them: (prefix, start tag's attributes).
MESSAGE_START = re.compile(rf"<({_P})message\b([^>]*)>")
ATTR_ID = re.compile(r"\sid=(['\"])([^'\"]*)\1")
ATTR_TYPE_ERROR = re.compile(r"\stype=(['\"])error\1")


class XmppError(Exception):
    """Protocol-level failure (stream error, SASL failure, unexpected reply)."""


# --------------------------------------------------------------------------- SCRAM


@dataclass(frozen=True)
class _ScramKeys:
    client_key: bytes
    stored_key: bytes
    server_key: bytes


class ScramCache:
    """Caches SaltedPassword-derived keys per (hash, password, salt, iterations)."""

    def __init__(self) -> None:
        self._keys: dict[tuple[str, str, bytes, int], _ScramKeys] = {}
        self.misses = 0

    def keys(self, hash_name: str, password: str, salt: bytes, iterations: int) -> _ScramKeys:
        k = (hash_name, password, salt, iterations)
        got = self._keys.get(k)
        if got is None:
            self.misses += 1
            salted = hashlib.pbkdf2_hmac(hash_name, password.encode(), salt, iterations)
            client_key = hmac.digest(salted, b"Client Key", hash_name)
            got = _ScramKeys(
                client_key=client_key,
                stored_key=hashlib.new(hash_name, client_key).digest(),
                server_key=hmac.digest(salted, b"Server Key", hash_name),
            )
            self._keys[k] = got
        return got


SCRAM_HASHES = {"SCRAM-SHA-1": "sha1", "SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}


class ScramClient:
    """RFC 5802 client without channel binding (gs2 header ``n,,``)."""

    def __init__(self, mechanism: str, user: str, password: str, cache: ScramCache) -> None:
        self.hash_name = SCRAM_HASHES[mechanism]
        self.user = user
        self.password = password
        self.cache = cache
        self.cnonce = base64.b64encode(os.urandom(18)).decode()
        self.client_first_bare = f"n={user},r={self.cnonce}"
        self.expected_server_sig: bytes | None = None

    def first(self) -> bytes:
        return ("n,," + self.client_first_bare).encode()

    def final(self, server_first: bytes) -> bytes:
        sf = server_first.decode()
        attrs = dict(item.split("=", 1) for item in sf.split(","))
        nonce, salt, iterations = attrs["r"], base64.b64decode(attrs["s"]), int(attrs["i"])
        if not nonce.startswith(self.cnonce):
            raise XmppError("SCRAM: server nonce does not extend client nonce")
        keys = self.cache.keys(self.hash_name, self.password, salt, iterations)
        without_proof = "c=biws,r=" + nonce  # biws = base64("n,,")
        auth_message = f"{self.client_first_bare},{sf},{without_proof}".encode()
        client_sig = hmac.digest(keys.stored_key, auth_message, self.hash_name)
        proof = bytes(a ^ b for a, b in zip(keys.client_key, client_sig, strict=True))
        self.expected_server_sig = hmac.digest(keys.server_key, auth_message, self.hash_name)
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def verify(self, server_final: bytes) -> None:
        sf = server_final.decode()
        if sf.startswith("e="):
            raise XmppError(f"SCRAM server error: {sf}")
        attrs = dict(item.split("=", 1) for item in sf.split(","))
        if self.expected_server_sig is None or not hmac.compare_digest(
            base64.b64decode(attrs.get("v", "")), self.expected_server_sig
        ):
            raise XmppError("SCRAM: bad server signature")


# --------------------------------------------------------------------------- connection


def make_client_tls_context() -> ssl.SSLContext:
    """TLS context for the load generator: no certificate verification (self-signed
    test certificates), default protocol versions and ciphers of the local OpenSSL."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


@dataclass
class LoginTimes:
    connect: float = 0.0
    tls: float = 0.0
    sasl: float = 0.0
    bind: float = 0.0


@dataclass
class Session:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    jid: str = ""
    buf: str = ""
    tls_version: str = ""
    tls_cipher: str = ""
    mechanism: str = ""
    times: LoginTimes = field(default_factory=LoginTimes)
    _decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")()
    )

    # ---- low level

    async def _fill(self) -> None:
        data = await self.reader.read(65536)
        if not data:
            raise XmppError(f"connection closed by server (buffer tail: {self.buf[-300:]!r})")
        self.buf += self._decoder.decode(data)

    async def expect(
        self, pattern: re.Pattern[str], what: str, time_limit: float | None = None
    ) -> re.Match[str]:
        """Read until ``pattern`` matches; consume the buffer up to the end of the match.

        Inside ``login`` one ``asyncio.timeout`` covers the whole login (cheaper than a
        ``wait_for`` per read, which creates a task each time); pass ``time_limit`` elsewhere."""
        if time_limit is not None:
            try:
                async with asyncio.timeout(time_limit):
                    return await self.expect(pattern, what)
            except TimeoutError:
                raise TimeoutError(f"timeout waiting for {what}; buffer: {self.buf[-300:]!r}") from None
        while True:
            m = pattern.search(self.buf)
            if m is not None:
                self.buf = self.buf[m.end() :]
                return m
            if "stream:error" in self.buf:
                err = _STREAM_ERROR.search(self.buf)
                if err is not None:
                    raise XmppError(f"stream error while waiting for {what}: {err.group(0)[:300]}")
            await self._fill()

    def send(self, data: str | bytes) -> None:
        self.writer.write(data.encode() if isinstance(data, str) else data)

    def open_stream(self, domain: str) -> None:
        self.send(
            f"<?xml version='1.0'?><stream:stream to='{domain}' version='1.0' xml:lang='en' "
            f"xmlns='{NS_CLIENT}' xmlns:stream='{NS_STREAMS}'>"
        )

    # ---- close

    async def close(self, time_limit: float = 5.0) -> None:
        """Send ``</stream:stream>``, wait for the server's (or EOF), then close TCP/TLS."""
        try:
            async with asyncio.timeout(time_limit):
                self.send("</stream:stream>")
                while not _STREAM_END.search(self.buf):
                    data = await self.reader.read(65536)
                    if not data:
                        break
                    self.buf += self._decoder.decode(data)
        except (TimeoutError, OSError, ConnectionError, ssl.SSLError):
            pass
        self.abort_or_close()
        try:
            async with asyncio.timeout(time_limit):
                await self.writer.wait_closed()
        except (TimeoutError, OSError, ConnectionError, ssl.SSLError):
            self.writer.transport.abort()

    def abort_or_close(self) -> None:
        try:
            self.writer.close()
        except (OSError, RuntimeError):
            self.writer.transport.abort()


async def login(
    host: str,
    port: int,
    domain: str,
    user: str,
    password: str,
    resource: str,
    *,
    tls_ctx: ssl.SSLContext,
    scram_cache: ScramCache,
    mechanism: str = "SCRAM-SHA-1",
    time_limit: float = 10.0,
) -> Session:
    """Full RFC 6120 login: connect, STARTTLS, SASL, restart, bind.  Returns a bound Session."""
    t0 = time.perf_counter()
    s: Session | None = None
    try:
        async with asyncio.timeout(time_limit):
            reader, writer = await asyncio.open_connection(host, port)
            s = Session(reader, writer)
            return await _login_on(s, t0, domain, user, password, resource, tls_ctx, scram_cache, mechanism)
    except TimeoutError:
        where = f"; buffer: {s.buf[-300:]!r}" if s is not None else " (connect)"
        raise TimeoutError(f"login of {user}/{resource} timed out after {time_limit}s{where}") from None
    finally:
        if s is not None and not s.jid:
            s.writer.transport.abort()


async def _login_on(
    s: Session,
    t0: float,
    domain: str,
    user: str,
    password: str,
    resource: str,
    tls_ctx: ssl.SSLContext,
    scram_cache: ScramCache,
    mechanism: str,
) -> Session:
    s.times.connect = time.perf_counter() - t0
    # 1. plaintext stream, STARTTLS
    s.open_stream(domain)
    m = await s.expect(_FEATURES_END, "initial stream features")
    if NS_TLS not in s_prefix(m):
        raise XmppError("server did not offer STARTTLS")
    s.send(f"<starttls xmlns='{NS_TLS}'/>")
    while not _PROCEED.search(s.buf):
        if _TLS_FAILURE.search(s.buf):
            raise XmppError("STARTTLS refused: " + s.buf[:300])
        await s._fill()
    s.buf = ""
    await s.writer.start_tls(tls_ctx, server_hostname=domain)
    s._decoder = codecs.getincrementaldecoder("utf-8")()
    sslobj = s.writer.get_extra_info("ssl_object")
    if sslobj is not None:
        s.tls_version = sslobj.version() or ""
        cipher = sslobj.cipher()
        s.tls_cipher = cipher[0] if cipher else ""
    s.times.tls = time.perf_counter() - t0

    # 2. SASL
    s.open_stream(domain)
    m = await s.expect(_FEATURES_END, "post-TLS stream features")
    offered = _MECHANISM.findall(s_prefix(m))
    if mechanism not in offered:
        raise XmppError(f"mechanism {mechanism} not offered (offered: {offered})")
    s.mechanism = mechanism
    if mechanism == "PLAIN":
        initial = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        s.send(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{initial}</auth>")
        kind, _ = await _sasl_reply(s)
        if kind != "success":
            raise XmppError(f"PLAIN: unexpected {kind}")
    else:
        scram = ScramClient(mechanism, user, password, scram_cache)
        s.send(
            f"<auth xmlns='{NS_SASL}' mechanism='{mechanism}'>"
            f"{base64.b64encode(scram.first()).decode()}</auth>"
        )
        kind, payload = await _sasl_reply(s)
        if kind != "challenge":
            raise XmppError(f"SCRAM: expected challenge, got {kind}")
        s.send(f"<response xmlns='{NS_SASL}'>{base64.b64encode(scram.final(payload)).decode()}</response>")
        kind, payload = await _sasl_reply(s)
        if kind == "challenge":  # server-final sent as a challenge, success follows empty
            scram.verify(payload)
            s.send(f"<response xmlns='{NS_SASL}'/>")
            kind, _ = await _sasl_reply(s)
        elif kind == "success":
            scram.verify(payload)
        if kind != "success":
            raise XmppError(f"SCRAM: unexpected {kind}")
    s.times.sasl = time.perf_counter() - t0

    # 3. restart and bind
    s.open_stream(domain)
    m = await s.expect(_FEATURES_END, "post-SASL stream features")
    if NS_BIND not in s_prefix(m):
        raise XmppError("server did not offer resource binding")
    s.send(f"<iq type='set' id='bind1'><bind xmlns='{NS_BIND}'><resource>{resource}</resource></bind></iq>")
    m = await s.expect(_IQ_END, "bind result")
    stanza = s_prefix(m)
    t = _IQ_TYPE.search(stanza)
    if t is None or t.group(2) != "result":
        raise XmppError(f"bind failed: {stanza[-400:]}")
    j = _BIND_JID.search(stanza)
    if j is None:
        raise XmppError(f"bind result without jid: {stanza[-400:]}")
    s.jid = j.group(1)
    s.times.bind = time.perf_counter() - t0
    return s


def s_prefix(m: re.Match[str]) -> str:
    """Text consumed by ``Session.expect`` up to and including the match."""
    return m.string[: m.end()]


async def _sasl_reply(s: Session) -> tuple[str, bytes]:
    m = await s.expect(_SASL_REPLY, "SASL reply")
    kind, body = m.group(1), (m.group(2) or "").strip()
    if kind == "failure":
        raise XmppError(f"SASL failure: {m.group(0)[:300]}")
    if body in ("", "="):
        return kind, b""
    return kind, base64.b64decode(body)
