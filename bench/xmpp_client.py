"""Lean asyncio XMPP client used as the load generator by bench/login_msg.py.

It speaks just enough RFC 6120 for the login path and message routing:
TCP connect, stream open, STARTTLS, SASL SCRAM-SHA-x (or PLAIN), stream restart,
resource binding, and a close with ``</stream:stream>``.  ``login2`` does the same login with
XEP-0388 SASL2 + XEP-0386 Bind2 (optionally enabling XEP-0198 stream management inline), and
``resume2`` resumes such a session inline (``<resume/>`` inside ``<authenticate/>``) on a new
connection.  ``login2`` also speaks XEP-0484 FAST: it can ask for a token (``request_token``) and
log in with one (``fast_token``, mechanism ``HT-SHA-256-NONE``).  ``watch_close`` reads an open
session until the server ends it (revocation benchmark).  Replies are recognised with
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
import html
import os
import re
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

NS_CLIENT = "jabber:client"
NS_STREAMS = "http://etherx.jabber.org/streams"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"
NS_SASL2 = "urn:xmpp:sasl:2"
NS_BIND2 = "urn:xmpp:bind:0"
NS_SM = "urn:xmpp:sm:3"
NS_FAST = "urn:xmpp:fast:0"  # XEP-0484
NS_CAM = "urn:xmpp:cam:0"  # XEP-0494
ALPN_XMPP_CLIENT = "xmpp-client"  # XEP-0368 direct TLS

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

# SASL2 (XEP-0388): the <authentication/> feature, the server's replies, and what <success/> carries
_SASL2_FEATURE = re.compile(
    rf"<{_P}authentication\b[^>]*?xmlns=(['\"]){re.escape(NS_SASL2)}\1[^>]*>(.*?)</{_P}authentication\s*>",
    re.S,
)
_SASL2_REPLY = re.compile(
    rf"<{_P}(challenge|success|failure|continue)\b[^>]*?(?:/>|>(.*?)</{_P}\1\s*>)",
    re.S,
)
_ADDITIONAL_DATA = re.compile(rf"<{_P}additional-data>\s*([^<\s]*)\s*</{_P}additional-data\s*>")
_AUTHZ_ID = re.compile(rf"<{_P}authorization-identifier>\s*([^<\s]+)\s*</{_P}authorization-identifier\s*>")
_SM_ENABLED = re.compile(rf"<{_P}enabled\b([^>]*)>")
_SM_RESUMED = re.compile(rf"<{_P}resumed\b([^>]*)>")
_SM_FAILED = re.compile(rf"<{_P}failed\b[^>]*?(?:/>|>.*?</{_P}failed\s*>)", re.S)
_BOUND = re.compile(rf"<{_P}bound\b")
# XEP-0484: the HT-* mechanisms are offered inside <inline><fast xmlns='urn:xmpp:fast:0'>, and a
# requested token comes back as <token xmlns='urn:xmpp:fast:0' token=… expiry=…/> in <success/>
_FAST_FEATURE = re.compile(
    rf"<{_P}fast\b[^>]*?xmlns=(['\"]){re.escape(NS_FAST)}\1[^>]*>(.*?)</{_P}fast\s*>", re.S
)
_FAST_TOKEN = re.compile(rf"<{_P}token\b([^>]*?xmlns=(['\"]){re.escape(NS_FAST)}\2[^>]*)/?>")
_ATTR = re.compile(r"([\w:.-]+)=(['\"])([^'\"]*)\2")
# what a stream-managed session receives between stanzas: complete stanzas (counted into h) and <r/>
_SM_ITEM = re.compile(
    rf"<({_P})(message|presence|iq)\b([^>]*?)(?:/>|>.*?</\1\2\s*>)"
    rf"|<{_P}r\b[^>]*?xmlns=(['\"]){re.escape(NS_SM)}\4[^>]*?/>",
    re.S,
)

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


def make_client_tls_context(alpn: list[str] | None = None) -> ssl.SSLContext:
    """TLS context for the load generator: no certificate verification (self-signed
    test certificates), default protocol versions and ciphers of the local OpenSSL.
    ``alpn``: protocols to offer (``[ALPN_XMPP_CLIENT]`` for XEP-0368 direct TLS)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


@dataclass
class LoginTimes:
    connect: float = 0.0
    tls: float = 0.0
    sasl: float = 0.0
    bind: float = 0.0


@dataclass
class SmState:
    """XEP-0198 state of a session, kept by the client across connections.

    ``h_in``: stanzas received from (handled for) the server since SM was enabled -- the ``h`` of
    the next ``<resume/>`` and of ``<a/>``; ``h_out``: stanzas sent to the server (what its
    ``<resumed h=…/>`` must say).  Both wrap at 2^32."""

    previd: str
    max_seconds: int | None = None
    h_in: int = 0
    h_out: int = 0


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
    sm: SmState | None = None
    user_agent_id: str = ""
    success: str = ""  # SASL2: the server's <success/> element as received
    resumed: dict[str, str] | None = None  # resume2: the <resumed/> attributes
    fast_token: str = ""  # XEP-0484: a token the server issued in <success/> ("" when none)
    fast_expiry: str = ""
    unexpected: list[str] = field(default_factory=list)  # sm_consume: what was neither stanza nor <r/>
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

    def abort(self) -> None:
        """Drop the connection without a word (no ``</stream:stream>``, no TLS close_notify):
        what a phone losing its network looks like to the server."""
        self.writer.transport.abort()

    # ---- stream management

    def sm_consume(self) -> list[str]:
        """Consume the complete stanzas and ``<r/>`` requests at the head of the buffer, in order:
        every stanza counts into ``sm.h_in`` (the bench handles all it receives), every ``<r/>`` is
        answered with ``<a h=…/>`` at that point of the count.  Returns the start-tag attributes of
        the ``<message/>`` stanzas consumed.  Anything else skipped between them (stream features,
        unknown nonzas) is kept in ``unexpected``."""
        sm = self.sm
        assert sm is not None
        messages: list[str] = []
        end = 0
        answer: list[str] = []
        for m in _SM_ITEM.finditer(self.buf):
            gap = self.buf[end : m.start()]
            if gap.strip() and len(self.unexpected) < 20:
                self.unexpected.append(gap[:500])
            end = m.end()
            if m.group(2) is None:  # <r/>
                answer.append(f"<a xmlns='{NS_SM}' h='{sm.h_in}'/>")
                continue
            sm.h_in = (sm.h_in + 1) % 2**32
            if m.group(2) == "message":
                messages.append(m.group(3))
        if end:
            self.buf = self.buf[end:]
        if answer:
            self.send("".join(answer))
        return messages

    async def sm_read(self) -> list[str]:
        """Wait for more data, then ``sm_consume`` it (raises on EOF and on a stream error)."""
        await self._fill()
        if "stream:error" in self.buf:
            err = _STREAM_ERROR.search(self.buf)
            if err is not None:
                raise XmppError(f"stream error: {err.group(0)[:300]}")
        return self.sm_consume()


async def gather_limited(n: int, limit: int, fn: Callable[[int], Awaitable[Any]]) -> list[Any]:
    """Run fn(0..n-1) with at most ``limit`` in flight; results in order (exceptions returned)."""
    sem = asyncio.Semaphore(limit)

    async def one(i: int) -> Any:
        async with sem:
            return await fn(i)

    return await asyncio.gather(*(one(i) for i in range(n)), return_exceptions=True)


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


async def _starttls(s: Session, domain: str, tls_ctx: ssl.SSLContext) -> None:
    """Plaintext stream header, STARTTLS, TLS handshake (RFC 6120 §5)."""
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
    _record_tls(s)


def _record_tls(s: Session) -> None:
    sslobj = s.writer.get_extra_info("ssl_object")
    if sslobj is not None:
        s.tls_version = sslobj.version() or ""
        cipher = sslobj.cipher()
        s.tls_cipher = cipher[0] if cipher else ""


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
    await _starttls(s, domain, tls_ctx)
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


# --------------------------------------------------------------------------- SASL2 / Bind2 / inline resume


def attrs(text: str) -> dict[str, str]:
    """Attributes of a start tag's attribute text (no entity decoding: the bench's values need none)."""
    return {m.group(1): m.group(3) for m in _ATTR.finditer(text)}


async def login2(
    host: str,
    port: int,
    domain: str,
    user: str,
    password: str,
    *,
    tls_ctx: ssl.SSLContext,
    scram_cache: ScramCache,
    mechanism: str = "SCRAM-SHA-1",
    tag: str = "bench",
    enable_sm: bool = True,
    user_agent_id: str | None = None,
    direct_tls: bool = False,
    time_limit: float = 10.0,
    request_token: str | None = None,
    fast_token: str | None = None,
) -> Session:
    """Login with XEP-0388 SASL2 and XEP-0386 Bind2 (no stream restart, no bind round trip):
    connect, STARTTLS (or direct TLS), ``<authenticate/>`` carrying the initial response, a
    ``<user-agent/>`` and ``<bind><tag/>[<enable resume='true'/>]</bind>``, challenge/response,
    ``<success/>`` with ``<bound/>`` (and ``<enabled/>``), then the stream features that follow.

    ``user_agent_id``: the XEP-0388 user-agent id (a UUID; random when None).  The server derives
    the Bind2 resource from the tag and this id, so one id per installation means one resource.

    XEP-0484 FAST: ``request_token`` (an HT-* mechanism name) adds ``<request-token/>``; the token
    the server issues is left in ``session.fast_token`` / ``fast_expiry``.  ``fast_token`` logs in
    with that token instead of the password: ``mechanism`` must then be an HT-* name (only
    ``HT-SHA-256-NONE`` is implemented: no channel binding), ``<fast/>`` is added and the server's
    ``<additional-data/>`` is verified.  A token the server rotates in that ``<success/>`` also
    ends up in ``session.fast_token``."""
    t0 = time.perf_counter()
    s: Session | None = None
    ok = False
    try:
        async with asyncio.timeout(time_limit):
            s, features = await _open_secure(host, port, domain, tls_ctx, direct_tls, t0)
            s.user_agent_id = user_agent_id or str(uuid.uuid4())
            enable = f"<enable xmlns='{NS_SM}' resume='true'/>" if enable_sm else ""
            inline = f"<bind xmlns='{NS_BIND2}'><tag>{tag}</tag>{enable}</bind>"
            if request_token:
                inline += f"<request-token xmlns='{NS_FAST}' mechanism='{request_token}'/>"
            if fast_token is not None:
                inline += f"<fast xmlns='{NS_FAST}'/>"
            success = await _sasl2_authenticate(
                s, features, user, password, mechanism, scram_cache, inline, fast_token=fast_token
            )
            _adopt_token(s, success, required=bool(request_token))
            s.times.sasl = time.perf_counter() - t0
            _adopt_bound(s, success, enable_sm)
            await s.expect(_FEATURES_END, "stream features after the SASL2 <success/>")
            s.times.bind = time.perf_counter() - t0
            ok = True
            return s
    except TimeoutError:
        where = f"; buffer: {s.buf[-300:]!r}" if s is not None else " (connect)"
        raise TimeoutError(f"SASL2 login of {user} timed out after {time_limit}s{where}") from None
    finally:
        if s is not None and not ok:
            s.writer.transport.abort()


async def resume2(
    host: str,
    port: int,
    domain: str,
    user: str,
    password: str,
    sm: SmState,
    *,
    tls_ctx: ssl.SSLContext,
    scram_cache: ScramCache,
    mechanism: str = "SCRAM-SHA-1",
    user_agent_id: str = "",
    fallback_tag: str | None = "bench",
    direct_tls: bool = False,
    time_limit: float = 10.0,
) -> Session:
    """XEP-0198 §5 resume inline in XEP-0388 SASL2 on a new connection: ``<authenticate/>`` with
    ``<resume previd=… h=…/>`` (``sm.previd``, ``sm.h_in``) and, when ``fallback_tag`` is set, a
    Bind2 ``<bind/>`` the server uses only if the resume fails.

    Returns once ``<success/>`` has arrived; nothing else is awaited (after ``<resumed/>`` no stream
    features follow, the retransmitted stanzas do: read them with ``Session.sm_read``).
    ``session.resumed`` holds the ``<resumed/>`` attributes, or is None when the server bound a new
    session instead (then ``session.sm`` is that session's fresh state and its features were read)."""
    t0 = time.perf_counter()
    s: Session | None = None
    ok = False
    try:
        async with asyncio.timeout(time_limit):
            s, features = await _open_secure(host, port, domain, tls_ctx, direct_tls, t0)
            s.user_agent_id = user_agent_id or str(uuid.uuid4())
            inline = f"<resume xmlns='{NS_SM}' previd='{sm.previd}' h='{sm.h_in}'/>"
            if fallback_tag is not None:
                inline += (
                    f"<bind xmlns='{NS_BIND2}'><tag>{fallback_tag}</tag>"
                    f"<enable xmlns='{NS_SM}' resume='true'/></bind>"
                )
            success = await _sasl2_authenticate(s, features, user, password, mechanism, scram_cache, inline)
            s.times.sasl = s.times.bind = time.perf_counter() - t0
            r = _SM_RESUMED.search(success)
            if r is not None:
                s.resumed = attrs(r.group(1))
                jid = _AUTHZ_ID.search(success)
                s.jid = jid.group(1) if jid is not None else ""
                s.sm = sm
                if s.resumed.get("previd"):
                    sm.previd = s.resumed["previd"]
            else:  # resume failed: the server bound a new session (or answered without either)
                _adopt_bound(s, success, fallback_tag is not None)
                await s.expect(_FEATURES_END, "stream features after a SASL2 <success/> without <resumed/>")
            ok = True
            return s
    except TimeoutError:
        where = f"; buffer: {s.buf[-300:]!r}" if s is not None else " (connect)"
        raise TimeoutError(f"SASL2 resume of {user} timed out after {time_limit}s{where}") from None
    finally:
        if s is not None and not ok:
            s.writer.transport.abort()


async def _open_secure(
    host: str, port: int, domain: str, tls_ctx: ssl.SSLContext, direct_tls: bool, t0: float
) -> tuple[Session, str]:
    """TCP connect and TLS (STARTTLS, or XEP-0368 direct TLS), stream header; returns the
    session and the text of the post-TLS stream features."""
    if direct_tls:
        reader, writer = await asyncio.open_connection(host, port, ssl=tls_ctx, server_hostname=domain)
        s = Session(reader, writer)
        s.times.connect = s.times.tls = time.perf_counter() - t0
        _record_tls(s)
    else:
        reader, writer = await asyncio.open_connection(host, port)
        s = Session(reader, writer)
        s.times.connect = time.perf_counter() - t0
        await _starttls(s, domain, tls_ctx)
        s.times.tls = time.perf_counter() - t0
    s.open_stream(domain)
    m = await s.expect(_FEATURES_END, "post-TLS stream features")
    return s, s_prefix(m)


async def _sasl2_authenticate(
    s: Session,
    features: str,
    user: str,
    password: str,
    mechanism: str,
    scram_cache: ScramCache,
    inline: str,
    fast_token: str | None = None,
) -> str:
    """The XEP-0388 exchange; returns the ``<success/>`` element's text (server signature checked).
    ``fast_token``: authenticate with that XEP-0484 token (``mechanism`` is an HT-* name)."""
    f = _SASL2_FEATURE.search(features)
    if f is None:
        raise XmppError(f"server did not offer SASL2 (XEP-0388); features: {features[-500:]!r}")
    fast = _FAST_FEATURE.search(f.group(2))
    fast_offered = _MECHANISM.findall(fast.group(2)) if fast is not None else []
    if fast_token is not None:
        if mechanism != HT_NONE:
            raise XmppError(f"FAST: only {HT_NONE} is implemented here, not {mechanism}")
        if mechanism not in fast_offered:
            raise XmppError(f"FAST mechanism {mechanism} not offered (offered: {fast_offered})")
    else:
        offered = _MECHANISM.findall(f.group(2) if fast is None else f.group(2).replace(fast.group(0), ""))
        if mechanism not in offered:
            raise XmppError(f"mechanism {mechanism} not offered in SASL2 (offered: {offered})")
    s.mechanism = mechanism
    scram: ScramClient | None = None
    if fast_token is not None:
        initial = base64.b64encode(user.encode() + b"\0" + ht_mac(fast_token, b"Initiator")).decode()
    elif mechanism == "PLAIN":
        initial = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    else:
        scram = ScramClient(mechanism, user, password, scram_cache)
        initial = base64.b64encode(scram.first()).decode()
    s.send(
        f"<authenticate xmlns='{NS_SASL2}' mechanism='{mechanism}'>"
        f"<initial-response>{initial}</initial-response>"
        f"<user-agent id='{s.user_agent_id}'><software>bench</software></user-agent>"
        f"{inline}</authenticate>"
    )
    while True:
        m = await s.expect(_SASL2_REPLY, "SASL2 reply")
        kind, body = m.group(1), m.group(2) or ""
        if kind == "challenge" and scram is not None and scram.expected_server_sig is None:
            payload = base64.b64decode(body.strip()) if body.strip() not in ("", "=") else b""
            s.send(
                f"<response xmlns='{NS_SASL2}'>{base64.b64encode(scram.final(payload)).decode()}</response>"
            )
            continue
        if kind != "success":
            raise XmppError(f"SASL2: unexpected <{kind}/>: {m.group(0)[:500]!r}")
        if fast_token is not None:  # the server proves that it knows the token too
            ad = _ADDITIONAL_DATA.search(body)
            got = base64.b64decode(ad.group(1)) if ad is not None else b""
            if not hmac.compare_digest(got, ht_mac(fast_token, b"Responder")):
                raise XmppError(f"FAST: bad or missing server HMAC in <success/>: {m.group(0)[:500]!r}")
        if scram is not None:
            ad = _ADDITIONAL_DATA.search(body)
            if ad is None:
                raise XmppError(f"SASL2 <success/> without the SCRAM server-final: {m.group(0)[:500]!r}")
            scram.verify(base64.b64decode(ad.group(1)))
        s.success = m.group(0)
        return m.group(0)


HT_NONE = "HT-SHA-256-NONE"  # XEP-0484 without channel binding


def ht_mac(token: str, label: bytes) -> bytes:
    """HT-SHA-256-NONE: HMAC-SHA-256 keyed with the token's UTF-8 bytes over ``Initiator`` (the
    client's proof) or ``Responder`` (the server's); no channel-binding data."""
    return hmac.digest(token.encode(), label, "sha256")


def _adopt_token(s: Session, success: str, required: bool) -> None:
    """XEP-0484: take a ``<token token=… expiry=…/>`` out of ``<success/>`` (raise if ``required``)."""
    m = _FAST_TOKEN.search(success)
    if m is None:
        if required:
            raise XmppError(f"asked for a FAST token, <success/> has none: {success[:500]!r}")
        return
    a = attrs(m.group(1))
    if not a.get("token"):
        raise XmppError(f"FAST <token/> without a token attribute: {m.group(0)[:300]!r}")
    s.fast_token = html.unescape(a["token"])
    s.fast_expiry = a.get("expiry", "")


def _adopt_bound(s: Session, success: str, enable_sm: bool) -> None:
    """Read the full JID, ``<bound/>`` and the inline SM ``<enabled/>`` out of ``<success/>``."""
    jid = _AUTHZ_ID.search(success)
    if jid is None or "/" not in jid.group(1):
        raise XmppError(f"SASL2 <success/> without a full JID: {success[:500]!r}")
    if not _BOUND.search(success):
        raise XmppError(f"SASL2 <success/> without Bind2 <bound/>: {success[:500]!r}")
    if enable_sm:
        en = _SM_ENABLED.search(success)
        a = attrs(en.group(1)) if en is not None else {}
        if not a.get("id") or a.get("resume") not in ("true", "1"):
            raise XmppError(f"no resumable <enabled/> in the SASL2 <success/>: {success[:500]!r}")
        s.sm = SmState(previd=a["id"], max_seconds=int(a["max"]) if a.get("max", "").isdigit() else None)
    s.jid = jid.group(1)


# --------------------------------------------------------------------------- the end of a stream

NS_STREAM_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams"
_ERROR_CONDITION = re.compile(
    rf"<{_P}(?!text\b)([\w-]+)\b[^>]*?xmlns=(['\"]){re.escape(NS_STREAM_ERRORS)}\2", re.S
)
_ERROR_TEXT = re.compile(rf"<{_P}text\b[^>]*>(.*?)</{_P}text\s*>", re.S)
_STREAM_ERROR_START = re.compile(rf"<stream:error\b|<{_P}error\b[^>]*?xmlns=(['\"]){re.escape(NS_STREAMS)}\1")


@dataclass
class StreamEnd:
    """How the server ended a stream, as ``watch_close`` saw it (times are ``perf_counter``)."""

    seen: float  # when the read that brought the start of <stream:error> (or the EOF) returned
    eof: float | None = None  # when the connection was closed (None: not within the time limit)
    condition: str = ""  # the stream error's condition ("" when the stream ended without one)
    text: str = ""
    stream_closed: bool = False  # </stream:stream> arrived
    before: str = ""  # bytes that arrived before the stream error (should be none)
    note: str = ""  # how the connection ended, when not with a clean EOF


async def watch_close(s: Session, eof_limit: float = 10.0) -> StreamEnd:
    """Read ``s`` until the server ends the stream: returns when the connection is closed, or
    ``eof_limit`` s after a stream error that is not followed by a close.  Never times out before
    the stream error: cancel the task for that.  Whatever is already in ``s.buf`` counts too."""
    end: StreamEnd | None = None
    pending = s.buf
    s.buf = ""
    while True:
        try:
            if end is None:
                data = await s.reader.read(65536)
            else:
                async with asyncio.timeout(max(0.0, end.seen + eof_limit - time.perf_counter())):
                    data = await s.reader.read(65536)
        except TimeoutError:
            assert end is not None
            end.note = f"no close within {eof_limit:g}s of the stream error"
            break
        except (OSError, ConnectionError, ssl.SSLError) as e:
            now = time.perf_counter()
            end = end or StreamEnd(seen=now)
            end.eof, end.note = now, f"{type(e).__name__}: {e}"
            break
        now = time.perf_counter()
        if not data:
            end = end or StreamEnd(seen=now)
            end.eof = now
            break
        pending += s._decoder.decode(data)
        if end is None:
            m = _STREAM_ERROR_START.search(pending)
            if m is None:
                if _STREAM_END.search(pending):  # closed without an error
                    end = StreamEnd(seen=now, before=pending[:500])
                continue
            end = StreamEnd(seen=now, before=pending[: m.start()][:500])
        s.buf += pending
        pending = ""
    s.buf += pending
    err = _STREAM_ERROR.search(s.buf)
    if err is not None and end is not None:
        cond = _ERROR_CONDITION.search(err.group(1))
        end.condition = cond.group(1) if cond is not None else "?"
        t = _ERROR_TEXT.search(err.group(1))
        end.text = html.unescape(t.group(1)) if t is not None else ""
    assert end is not None
    end.stream_closed = bool(_STREAM_END.search(s.buf))
    return end
