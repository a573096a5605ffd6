"""RFC 5802 SCRAM (with RFC 7677 SCRAM-SHA-256 and RFC 5929 / RFC 9266 channel bindings).

Server side: :class:`ScramServer`, a sans-IO :class:`~xmppauth.proto.sasl.base.Mechanism`.
Client side: :class:`ScramClient`, used by our tests, benchmarks and reference client.

Message grammar (RFC 5802 §7), as enforced here::

    client-first-message = gs2-header client-first-message-bare
    gs2-header           = gs2-cbind-flag "," [ authzid ] ","
    gs2-cbind-flag       = ("p=" cb-name) / "n" / "y"
    client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions]
    server-first-message = [reserved-mext ","] nonce "," salt "," iteration-count ["," extensions]
    client-final-message = channel-binding "," nonce ["," extensions] "," proof
    server-final-message = (server-error / verifier) ["," extensions]
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import re
import secrets
import types
from collections.abc import Callable, Mapping, Sequence

from xmppauth.proto.errors import LocalProtocolError, SaslCondition
from xmppauth.proto.numbers import parse_uint
from xmppauth.proto.sasl.base import (
    Challenge,
    ChannelBindingContext,
    Failure,
    Mechanism,
    NeedCredentials,
    Result,
    ScramCredentials,
    Success,
    TokenCandidate,
)
from xmppauth.proto.sasl.saslprep import saslprep

__all__ = [
    "HASHES",
    "MIN_ITERATIONS",
    "ScramClient",
    "ScramServer",
    "credentials_from_salted_password",
    "derive_credentials",
    "fake_credentials",
    "mechanism_names",
]

#: SCRAM hash names (as they appear in mechanism names), strongest last, mapped to hashlib names.
HASHES: Mapping[str, str] = types.MappingProxyType(
    {"SHA-1": "sha1", "SHA-256": "sha256", "SHA-512": "sha512"}
)

#: RFC 5802 §5.1: "servers SHOULD announce a hash iteration-count of at least 4096"; RFC 7677 §4
#: repeats it for SHA-256. We make it a hard floor on both sides.
MIN_ITERATIONS = 4096

_CLIENT_KEY = b"Client Key"
_SERVER_KEY = b"Server Key"

# printable = %x21-2B / %x2D-7E  ;; Printable ASCII except ",".
_NONCE_RE = re.compile(r"[\x21-\x2b\x2d-\x7e]+")
# cb-name = 1*(ALPHA / DIGIT / "." / "-")
_CB_NAME_RE = re.compile(r"[A-Za-z0-9.\-]+")
# saslname = 1*(value-safe-char / "=2C" / "=3D"); value-safe-char is any UTF-8 char but NUL, "=", ",".
_SASLNAME_RE = re.compile(r"(?:[^\x00=,]|=2C|=3D)+")
_SASLNAME_ESCAPE_RE = re.compile(r"=2C|=3D")
# attr-val = ALPHA "=" value; value = 1*value-char (any UTF-8 char but NUL and ",").
_ATTR_VAL_RE = re.compile(r"([A-Za-z])=([^\x00,]+)")

_FAKE_SALT_LABEL = b"xmppauth-scram-salt\0"
_FAKE_STORED_KEY_LABEL = b"xmppauth-scram-stored-key\0"
_FAKE_SERVER_KEY_LABEL = b"xmppauth-scram-server-key\0"


# --------------------------------------------------------------------------------------------
# Primitives (RFC 5802 §2.2)


def _hashlib_name(hash_name: str) -> str:
    try:
        return HASHES[hash_name]
    except KeyError:
        raise ValueError(f"unsupported SCRAM hash {hash_name!r}") from None


def _hmac(digest: str, key: bytes, msg: bytes) -> bytes:
    return hmac.new(key, msg, digest).digest()


def _h(digest: str, data: bytes) -> bytes:
    return hashlib.new(digest, data).digest()


def _xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64decode(value: str) -> bytes:
    """Strict RFC 4648 base64 (the ``base64`` production of RFC 5802 §7); ValueError otherwise."""
    try:
        return binascii.a2b_base64(value.encode("ascii"), strict_mode=True)
    except (UnicodeEncodeError, binascii.Error):
        raise ValueError("invalid base64") from None


def _escape_saslname(value: str) -> str:
    # RFC 5802 §5.1: "The characters ',' or '=' in usernames are sent as '=2C' and '=3D'
    # respectively."  "=" first, so the "=" of "=2C" is not escaped again.
    return value.replace("=", "=3D").replace(",", "=2C")


def _unescape_saslname(value: str) -> str:
    """Decode a saslname; ValueError if it is empty or has an ``=`` not starting ``=2C``/``=3D``."""
    # RFC 5802 §5.1: "If the server receives a username that contains '=' not followed by
    # either '2C' or '3D', then the server MUST fail the authentication."
    if not _SASLNAME_RE.fullmatch(value):
        raise ValueError("malformed saslname")
    return _SASLNAME_ESCAPE_RE.sub(lambda m: "," if m.group() == "=2C" else "=", value)


def _split_attributes(message: str) -> list[tuple[str, str]]:
    """Split ``a=1,b=2`` into ``[("a", "1"), ("b", "2")]``; ValueError if any part is no attr-val."""
    attrs: list[tuple[str, str]] = []
    for part in message.split(","):
        m = _ATTR_VAL_RE.fullmatch(part)
        if m is None:
            raise ValueError("malformed attribute")
        attrs.append((m.group(1), m.group(2)))
    return attrs


# --------------------------------------------------------------------------------------------
# Stored credentials


def credentials_from_salted_password(
    salted: bytes, hash_name: str, *, salt: bytes, iterations: int
) -> ScramCredentials:
    """StoredKey and ServerKey from an already computed SaltedPassword (RFC 5802 §3)."""
    digest = _hashlib_name(hash_name)
    if len(salted) != hashlib.new(digest).digest_size:
        raise ValueError("salted password length does not match the hash")
    # ClientKey := HMAC(SaltedPassword, "Client Key"); StoredKey := H(ClientKey)
    # ServerKey := HMAC(SaltedPassword, "Server Key")
    client_key = _hmac(digest, salted, _CLIENT_KEY)
    return ScramCredentials(
        salt=salt,
        iterations=iterations,
        stored_key=_h(digest, client_key),
        server_key=_hmac(digest, salted, _SERVER_KEY),
    )


def _salted_password(digest: str, password: str, salt: bytes, iterations: int) -> bytes:
    # SaltedPassword := Hi(Normalize(password), salt, i); Hi is PBKDF2 with HMAC as the PRF and
    # dkLen the hash output length (RFC 5802 §2.2).
    return hashlib.pbkdf2_hmac(digest, password.encode("utf-8"), salt, iterations)


def _check_iterations_and_salt(salt: bytes, iterations: int) -> None:
    if iterations < MIN_ITERATIONS:
        raise ValueError(f"iteration count must be at least {MIN_ITERATIONS}")
    if not salt:
        raise ValueError("salt must not be empty")


def derive_credentials(password: str, hash_name: str, *, salt: bytes, iterations: int) -> ScramCredentials:
    """Credentials to store for ``password``: SASLprep-ed as a stored string, then RFC 5802 §3."""
    digest = _hashlib_name(hash_name)
    _check_iterations_and_salt(salt, iterations)
    prepared = saslprep(password, allow_unassigned=False)
    salted = _salted_password(digest, prepared, salt, iterations)
    return credentials_from_salted_password(salted, hash_name, salt=salt, iterations=iterations)


def fake_credentials(secret: bytes, username: str, hash_name: str, *, iterations: int) -> ScramCredentials:
    """Plausible, stable credentials for a user that does not exist.

    Deterministic in (``secret``, ``username``, ``hash_name``, ``iterations``), so a client asking
    twice sees the same salt, as it would for a real account; a real account's salt changes with its
    iteration count (new keys, new salt), and so does a fake one's (a count that changed under the same
    salt marked a name as unknown: found by a black-box attack). The keys are keyed hashes of the same
    context under other labels: no password can match them short of inverting the hash.
    """
    if not secret:
        raise ValueError("secret must not be empty")
    digest = _hashlib_name(hash_name)
    context = hash_name.encode("ascii") + b"\0" + username.encode("utf-8")
    salt = _hmac("sha256", secret, _FAKE_SALT_LABEL + context + b"\0" + str(iterations).encode())[:16]
    return ScramCredentials(
        salt=salt,
        iterations=iterations,
        stored_key=_hmac(digest, secret, _FAKE_STORED_KEY_LABEL + context),
        server_key=_hmac(digest, secret, _FAKE_SERVER_KEY_LABEL + context),
    )


def mechanism_names(*, plus: bool) -> list[str]:
    """SCRAM mechanism names to advertise, strongest first; the ``-PLUS`` ones first if ``plus``."""
    strongest_first = [f"SCRAM-{h}" for h in reversed(list(HASHES))]
    if not plus:
        return strongest_first
    return [f"{name}-PLUS" for name in strongest_first] + strongest_first


def _default_nonce() -> str:
    # 24 random bytes; base64 of a multiple of 3 bytes has no padding, and the alphabet is
    # printable ASCII without ",".
    return _b64encode(secrets.token_bytes(24))


# --------------------------------------------------------------------------------------------
# Server


class _ServerState(enum.Enum):
    INITIAL = enum.auto()
    AWAIT_CLIENT_FIRST = enum.auto()
    AWAIT_CREDENTIALS = enum.auto()
    AWAIT_CLIENT_FINAL = enum.auto()
    DONE = enum.auto()


class ScramServer(Mechanism):
    """Server side of one SCRAM exchange (RFC 5802 §5), for one hash, with or without -PLUS.

    1. :meth:`start` (then :meth:`step` if there was no initial response) parses the
       client-first-message and returns :class:`NeedCredentials`.
    2. :meth:`provide_credentials` returns the server-first-message as a :class:`Challenge`.
    3. :meth:`step` checks the client-final-message and returns :class:`Success` (carrying the
       server-final-message) or :class:`Failure`.

    Besides the account's credentials, :meth:`provide_credentials` takes alternatives (app
    passwords) stored with the same salt and iteration count: the client cannot know which of
    them it is using, so one server-first-message serves them all and the proof is checked
    against each. The ServerSignature then comes from the one that matched.
    """

    def __init__(
        self,
        hash_name: str,
        *,
        plus: bool,
        cb: ChannelBindingContext,
        nonce_factory: Callable[[], str] | None = None,
        server_first_extensions: str = "",
    ) -> None:
        self._digest = _hashlib_name(hash_name)
        self._digest_size = hashlib.new(self._digest).digest_size
        self.name = f"SCRAM-{hash_name}" + ("-PLUS" if plus else "")
        self._plus = plus
        self._cb = cb
        self._nonce_factory = nonce_factory if nonce_factory is not None else _default_nonce
        if server_first_extensions:
            try:
                keys = [k for k, _ in _split_attributes(server_first_extensions)]
            except ValueError:
                raise ValueError("server_first_extensions must be attr=value pairs") from None
            if any(k in "mrsi" for k in keys):
                raise ValueError("server_first_extensions must not use m, r, s or i")
        self._extensions = server_first_extensions

        self._state = _ServerState.INITIAL
        self._gs2_header = b""
        self._cb_data = b""
        self._username = ""
        self._authzid: str | None = None
        self._client_first_bare = ""
        self._client_nonce = ""
        self._nonce = ""
        self._server_first = ""
        self._candidates: tuple[ScramCredentials, ...] = ()

    def __repr__(self) -> str:
        return f"<ScramServer {self.name} {self._state.name}>"

    # -- helpers ---------------------------------------------------------------------------

    def _expect(self, *states: _ServerState) -> None:
        if self._state not in states:
            raise LocalProtocolError(f"{self.name}: call not allowed in state {self._state.name}")

    def _fail(self, condition: SaslCondition, text: str) -> Failure:
        self._state = _ServerState.DONE
        self._candidates = ()
        return Failure(condition=condition, text=text)

    def _malformed(self, text: str) -> Failure:
        return self._fail(SaslCondition.MALFORMED_REQUEST, text)

    # -- Mechanism API ---------------------------------------------------------------------

    def start(self, initial_response: bytes | None) -> Result:
        self._expect(_ServerState.INITIAL)
        if not initial_response:
            # No (or an empty) initial response: ask for the client-first-message.
            self._state = _ServerState.AWAIT_CLIENT_FIRST
            return Challenge(data=b"")
        return self._client_first(initial_response)

    def step(self, response: bytes) -> Result:
        self._expect(_ServerState.AWAIT_CLIENT_FIRST, _ServerState.AWAIT_CLIENT_FINAL)
        if self._state is _ServerState.AWAIT_CLIENT_FIRST:
            return self._client_first(response)
        return self._client_final(response)

    def provide_credentials(
        self, creds: ScramCredentials | None, alternatives: Sequence[ScramCredentials] = ()
    ) -> Result:
        """Send the server-first-message for ``creds`` (salt, iterations).

        ``alternatives`` (e.g. app passwords) are checked too at the client-final-message, but
        only those whose salt and iteration count equal ``creds``': the client derived its proof
        from the salt and count we sent, so no other credential can match.
        """
        self._expect(_ServerState.AWAIT_CREDENTIALS)
        if creds is None:
            # Unknown users must get fake_credentials(): a visible branch here would tell the
            # client whether the account exists.
            raise LocalProtocolError("SCRAM needs credentials; pass fake_credentials() for unknown users")
        if creds.iterations < MIN_ITERATIONS:
            raise LocalProtocolError(f"stored SCRAM iteration count is below {MIN_ITERATIONS}")
        if not creds.salt:
            raise LocalProtocolError("stored SCRAM salt is empty")
        usable = [creds]
        usable.extend(
            alt for alt in alternatives if alt.salt == creds.salt and alt.iterations == creds.iterations
        )
        for candidate in usable:
            if (
                len(candidate.stored_key) != self._digest_size
                or len(candidate.server_key) != self._digest_size
            ):
                raise LocalProtocolError(f"stored SCRAM keys do not belong to {self.name}")

        server_nonce = self._nonce_factory()
        if not _NONCE_RE.fullmatch(server_nonce):
            raise LocalProtocolError("nonce_factory must return printable ASCII without ','")
        self._candidates = tuple(usable)
        self._nonce = self._client_nonce + server_nonce
        self._server_first = f"r={self._nonce},s={_b64encode(creds.salt)},i={creds.iterations}"
        if self._extensions:
            self._server_first += "," + self._extensions
        self._state = _ServerState.AWAIT_CLIENT_FINAL
        return Challenge(data=self._server_first.encode("ascii"))

    def password_checked(self, ok: bool, credential_id: str = "") -> Result:
        raise LocalProtocolError(f"{self.name} does not check passwords")

    def provide_tokens(self, candidates: Sequence[TokenCandidate]) -> Result:
        raise LocalProtocolError(f"{self.name} does not use FAST tokens")

    # -- client-first-message --------------------------------------------------------------

    def _client_first(self, data: bytes) -> Result:
        try:
            message = data.decode("utf-8")
        except UnicodeDecodeError:
            return self._malformed("client-first-message is not UTF-8")

        flag, sep1, rest = message.partition(",")
        authz_part, sep2, bare = rest.partition(",")
        if not (sep1 and sep2):
            return self._malformed("client-first-message lacks a gs2-header")

        # gs2-cbind-flag
        cb_type: str | None = None
        if flag.startswith("p="):
            cb_type = flag[2:]
            if not _CB_NAME_RE.fullmatch(cb_type):
                return self._malformed("malformed channel binding type")
        elif flag not in ("n", "y"):
            return self._malformed("invalid gs2-cbind-flag")

        # [ authzid ]
        authzid: str | None = None
        if authz_part:
            if not authz_part.startswith("a="):
                return self._malformed("malformed authzid in gs2-header")
            try:
                authzid = _unescape_saslname(authz_part[2:])
            except ValueError:
                return self._malformed("malformed authzid in gs2-header")

        try:
            attrs = _split_attributes(bare)
        except ValueError:
            return self._malformed("malformed client-first-message")
        if any(key == "m" for key, _ in attrs):
            # RFC 5802 §5.1 (m): "In this version of SCRAM, its presence in a client or a server
            # message MUST cause authentication failure when the attribute is parsed by the
            # other end."  (server-error-value "extensions-not-supported")
            return self._malformed("extensions-not-supported: reserved attribute m")
        if len(attrs) < 2 or attrs[0][0] != "n" or attrs[1][0] != "r":
            return self._malformed("client-first-message must start with n= and r=")

        try:
            username = _unescape_saslname(attrs[0][1])
        except ValueError:
            return self._malformed("malformed username encoding")
        try:
            # Normalize() treats what the client sends as a query string (unassigned allowed).
            username = saslprep(username, allow_unassigned=True)
        except ValueError:
            return self._malformed("username fails SASLprep")
        if not username:
            return self._malformed("empty username")

        client_nonce = attrs[1][1]
        if not _NONCE_RE.fullmatch(client_nonce):
            return self._malformed("client nonce must be printable ASCII without ','")

        failure = self._check_channel_binding_flag(flag, cb_type)
        if failure is not None:
            return failure

        self._gs2_header = f"{flag},{authz_part},".encode()
        self._cb_data = self._cb.bindings[cb_type] if cb_type is not None else b""
        self._authzid = authzid
        self._username = username
        self._client_first_bare = bare
        self._client_nonce = client_nonce
        self._state = _ServerState.AWAIT_CREDENTIALS
        return NeedCredentials(username=username)

    def _check_channel_binding_flag(self, flag: str, cb_type: str | None) -> Failure | None:
        if self._plus:
            # The -PLUS variant is the one that binds: "p=<type>" is the only acceptable flag.
            if cb_type is None:
                return self._malformed("-PLUS mechanism requires the client to use channel binding")
            if cb_type not in self._cb.bindings:
                return self._malformed("channel binding type not supported")
            return None
        if flag == "y" and self._cb.plus_advertised:
            # RFC 5802 §6: "If the flag is set to "y" and the server supports channel binding,
            # the server MUST fail authentication."  The client saw no -PLUS mechanism although
            # we offered one: somebody removed it on the way.
            return self._fail(
                SaslCondition.NOT_AUTHORIZED,
                "client thinks the server lacks channel binding: possible downgrade",
            )
        if cb_type is not None:
            return self._malformed("channel binding requires a -PLUS mechanism")
        return None

    # -- client-final-message --------------------------------------------------------------

    def _client_final(self, data: bytes) -> Result:
        assert self._candidates  # set by provide_credentials, which led to this state
        try:
            message = data.decode("utf-8")
        except UnicodeDecodeError:
            return self._malformed("client-final-message is not UTF-8")
        try:
            attrs = _split_attributes(message)
        except ValueError:
            return self._malformed("malformed client-final-message")
        if any(key == "m" for key, _ in attrs):
            return self._malformed("extensions-not-supported: reserved attribute m")
        if not attrs or attrs[0][0] != "c":
            return self._malformed("client-final-message must start with c=")
        if len(attrs) < 2 or attrs[1][0] != "r":
            return self._malformed("client-final-message lacks r= after c=")
        if len(attrs) < 3 or attrs[-1][0] != "p":
            return self._malformed("client-final-message must end with p=")
        if any(key in "crp" for key, _ in attrs[2:-1]):
            return self._malformed("duplicate attribute in client-final-message")

        try:
            cbind_input = _b64decode(attrs[0][1])
            proof = _b64decode(attrs[-1][1])
        except ValueError:
            return self._fail(SaslCondition.INCORRECT_ENCODING, "invalid base64 in client-final-message")

        # RFC 5802 §5.1 (r): "The server MUST verify that the nonce sent by the client in the
        # second message is the same as the one sent by the server in its first message."
        if attrs[1][1] != self._nonce:
            return self._malformed("nonce mismatch")

        # cbind-input = gs2-header [ cbind-data ]; cbind-data "MUST be present for
        # gs2-cbind-flag of "p" and MUST be absent for "y" or "n"" (RFC 5802 §7).
        expected = self._gs2_header + self._cb_data
        if not hmac.compare_digest(cbind_input, expected):
            if not cbind_input.startswith(self._gs2_header):
                # The header is covered by the proof precisely to detect tampering with it.
                return self._fail(
                    SaslCondition.NOT_AUTHORIZED, "gs2-header in c= differs from client-first-message"
                )
            return self._fail(SaslCondition.NOT_AUTHORIZED, "channel binding mismatch")

        # AuthMessage := client-first-message-bare + "," + server-first-message + ","
        #                + client-final-message-without-proof
        without_proof = message[: message.rindex(",p=")]
        auth_message = f"{self._client_first_bare},{self._server_first},{without_proof}".encode()

        # RFC 5802 §3: ClientSignature := HMAC(StoredKey, AuthMessage); the server recovers
        # ClientKey := ClientProof XOR ClientSignature and checks H(ClientKey) == StoredKey.
        if len(proof) != self._digest_size:
            return self._fail(SaslCondition.NOT_AUTHORIZED, "invalid credentials")
        # Every candidate is checked, with no early exit, so the time taken does not tell which
        # one (or whether any) matched.
        matched: ScramCredentials | None = None
        for candidate in self._candidates:
            client_signature = _hmac(self._digest, candidate.stored_key, auth_message)
            client_key = _xor(proof, client_signature)
            ok = hmac.compare_digest(_h(self._digest, client_key), candidate.stored_key)
            if ok and matched is None:
                matched = candidate
        if matched is None:
            return self._fail(SaslCondition.NOT_AUTHORIZED, "invalid credentials")

        # ServerSignature := HMAC(ServerKey, AuthMessage); server-final-message = "v=" base64
        server_signature = _hmac(self._digest, matched.server_key, auth_message)
        self._state = _ServerState.DONE
        self._candidates = ()
        return Success(
            username=self._username,
            additional_data=b"v=" + base64.b64encode(server_signature),
            authzid=self._authzid,
            credential_id=matched.credential_id,
        )


# --------------------------------------------------------------------------------------------
# Client


class _ClientState(enum.Enum):
    INITIAL = enum.auto()
    SENT_FIRST = enum.auto()
    SENT_FINAL = enum.auto()
    DONE = enum.auto()


class ScramClient:
    """Client side of one SCRAM exchange: :meth:`first`, :meth:`final`, :meth:`verify_server_final`.

    Server misbehaviour (bad nonce, too few iterations, malformed messages) raises
    :class:`ValueError`; calls out of order raise :class:`LocalProtocolError`.

    ``cb_type``/``cb_data`` select channel binding (flag ``p=<cb_type>``). ``gs2_flag`` overrides
    the flag (``"n"``, ``"y"`` or ``"p=<name>"``) for tests that need a client that lies;
    the channel-binding data goes into ``c=`` whenever the flag is ``p=``.
    """

    def __init__(
        self,
        hash_name: str,
        username: str,
        password: str,
        *,
        cb_type: str | None = None,
        cb_data: bytes = b"",
        gs2_flag: str | None = None,
        authzid: str | None = None,
        nonce: str | None = None,
    ) -> None:
        self._digest = _hashlib_name(hash_name)
        self.hash_name = hash_name
        self.username = saslprep(username, allow_unassigned=True)
        if not self.username:
            raise ValueError("username is empty after SASLprep")
        self._password = saslprep(password, allow_unassigned=True)
        if cb_type is not None and not _CB_NAME_RE.fullmatch(cb_type):
            raise ValueError("malformed channel binding type")
        if gs2_flag is None:
            gs2_flag = "n" if cb_type is None else f"p={cb_type}"
        elif gs2_flag not in ("n", "y") and not (
            gs2_flag.startswith("p=") and _CB_NAME_RE.fullmatch(gs2_flag[2:])
        ):
            raise ValueError("gs2_flag must be 'n', 'y' or 'p=<cb-name>'")
        self._nonce = nonce if nonce is not None else _default_nonce()
        if not _NONCE_RE.fullmatch(self._nonce):
            raise ValueError("nonce must be printable ASCII without ','")

        authz_part = f"a={_escape_saslname(authzid)}" if authzid else ""
        self._gs2_header = f"{gs2_flag},{authz_part},"
        self._cbind_input = self._gs2_header.encode() + (cb_data if gs2_flag.startswith("p=") else b"")
        self._client_first_bare = f"n={_escape_saslname(self.username)},r={self._nonce}"

        self._state = _ClientState.INITIAL
        self._salted_password: bytes | None = None
        self._server_signature = b""
        #: Every attribute of the server-first-message, e.g. ``r``, ``s``, ``i`` and extensions
        #: such as XEP-0474's ``h``. Filled in by :meth:`final`.
        self.server_first_attributes: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"<ScramClient SCRAM-{self.hash_name} {self.username!r} {self._state.name}>"

    def _expect(self, state: _ClientState) -> None:
        if self._state is not state:
            raise LocalProtocolError(f"ScramClient: call not allowed in state {self._state.name}")

    @property
    def salted_password(self) -> bytes:
        """SaltedPassword, known once :meth:`final` has run (for caching, XEP-0480 upgrades)."""
        if self._salted_password is None:
            raise LocalProtocolError("salted_password is known only after final()")
        return self._salted_password

    def first(self) -> bytes:
        """The client-first-message."""
        self._expect(_ClientState.INITIAL)
        self._state = _ClientState.SENT_FIRST
        return (self._gs2_header + self._client_first_bare).encode()

    def final(self, server_first: bytes) -> bytes:
        """Check the server-first-message and return the client-final-message."""
        self._expect(_ClientState.SENT_FIRST)
        self._state = _ClientState.DONE  # any error below ends the exchange
        try:
            message = server_first.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError("server-first-message is not UTF-8") from None
        attrs = _split_attributes(message)
        if any(key == "m" for key, _ in attrs):
            raise ValueError("server-first-message uses the reserved attribute m")
        if [key for key, _ in attrs[:3]] != ["r", "s", "i"]:
            raise ValueError("server-first-message must start with r=, s=, i=")
        attributes: dict[str, str] = {}
        for key, value in attrs:
            if key in attributes:
                raise ValueError(f"duplicate attribute {key} in server-first-message")
            attributes[key] = value

        nonce, salt_b64, iterations_text = attrs[0][1], attrs[1][1], attrs[2][1]
        if not (
            _NONCE_RE.fullmatch(nonce) and nonce.startswith(self._nonce) and len(nonce) > len(self._nonce)
        ):
            raise ValueError("server nonce does not extend the client nonce")
        salt = _b64decode(salt_b64)
        if not salt:
            raise ValueError("empty salt")
        iterations = parse_uint(iterations_text, positive=True)  # RFC 5802 §7: i=posit-number
        if iterations is None:
            raise ValueError("malformed iteration count")
        if iterations < MIN_ITERATIONS:
            raise ValueError(f"iteration count {iterations} is below {MIN_ITERATIONS}")

        salted = _salted_password(self._digest, self._password, salt, iterations)
        client_key = _hmac(self._digest, salted, _CLIENT_KEY)
        stored_key = _h(self._digest, client_key)
        server_key = _hmac(self._digest, salted, _SERVER_KEY)

        without_proof = f"c={_b64encode(self._cbind_input)},r={nonce}"
        auth_message = f"{self._client_first_bare},{message},{without_proof}".encode()
        proof = _xor(client_key, _hmac(self._digest, stored_key, auth_message))

        self.server_first_attributes = attributes
        self._salted_password = salted
        self._server_signature = _hmac(self._digest, server_key, auth_message)
        self._state = _ClientState.SENT_FINAL
        return f"{without_proof},p={_b64encode(proof)}".encode("ascii")

    def verify_server_final(self, data: bytes) -> bool:
        """Whether the server-final-message proves the server knew ServerKey (constant time)."""
        self._expect(_ClientState.SENT_FINAL)
        self._state = _ClientState.DONE
        try:
            attrs = _split_attributes(data.decode("utf-8"))
            if attrs[0][0] != "v":  # "e=..." is a server-error
                return False
            signature = _b64decode(attrs[0][1])
        except ValueError:  # UnicodeDecodeError is a ValueError
            return False
        return hmac.compare_digest(signature, self._server_signature)
