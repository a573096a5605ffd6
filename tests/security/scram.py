"""A SCRAM client written for the attacks (RFC 5802 §3, §5.1), apart from the project's ScramClient: every
message can be bent, and the proof is still computed over what is actually sent, so that only the
server's checks of the grammar, the nonce and the channel binding can refuse it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field

from tests.integration.rawclient import RawClient

SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
SASL2 = "urn:xmpp:sasl:2"
_HASHES = {"SHA-1": "sha1", "SHA-256": "sha256", "SHA-512": "sha512"}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def attributes(message: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in message.split(","))


@dataclass
class Scram:
    mechanism: str  # SCRAM-SHA-256, SCRAM-SHA-1-PLUS, ...
    user: str
    password: str
    nonce: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    gs2: str = "n,,"
    extra_first: str = ""  # appended to client-first-message-bare

    @property
    def digest(self) -> str:
        return _HASHES[self.mechanism.removeprefix("SCRAM-").removesuffix("-PLUS")]

    @property
    def first_bare(self) -> str:
        return f"n={self.user},r={self.nonce}{self.extra_first}"

    def client_first(self) -> bytes:
        return (self.gs2 + self.first_bare).encode()

    def final(
        self,
        server_first: str,
        *,
        nonce: str | None = None,
        channel_binding: str | None = None,
        cb_data: bytes = b"",
        extra: str = "",
        after_proof: str = "",
    ) -> tuple[bytes, bytes]:
        """client-final-message and the server signature it must answer with. ``nonce`` replaces the
        combined nonce, ``channel_binding`` the c= value (default: the gs2 header and ``cb_data``),
        ``extra`` goes before the proof (signed), ``after_proof`` after it (not signed)."""
        server = attributes(server_first)
        c = channel_binding if channel_binding is not None else b64(self.gs2.encode() + cb_data)
        without_proof = f"c={c},r={nonce if nonce is not None else server['r']}{extra}"
        auth_message = f"{self.first_bare},{server_first},{without_proof}".encode()
        salted = hashlib.pbkdf2_hmac(
            self.digest, self.password.encode(), base64.b64decode(server["s"]), int(server["i"])
        )
        client_key = hmac.new(salted, b"Client Key", self.digest).digest()
        stored_key = hashlib.new(self.digest, client_key).digest()
        signature = hmac.new(stored_key, auth_message, self.digest).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
        server_key = hmac.new(salted, b"Server Key", self.digest).digest()
        expected = hmac.new(server_key, auth_message, self.digest).digest()
        return f"{without_proof},p={b64(proof)}{after_proof}".encode(), expected


def _payload(element: bytes) -> str:
    match = re.search(rb">([^<]*)</", element)
    text = match.group(1).decode() if match else ""
    return base64.b64decode(text).decode() if text and text != "=" else ""


def start(client: RawClient, scram: Scram, *, sasl2: bool = False, inline: str = "") -> str:
    """Send the client-first-message (RFC 6120 ``<auth/>`` or XEP-0388 ``<authenticate/>``); the
    server-first-message, or raise with the failure."""
    first = b64(scram.client_first())
    if sasl2:
        client.send(
            f"<authenticate xmlns='{SASL2}' mechanism='{scram.mechanism}'><initial-response>{first}"
            f"</initial-response>{inline}</authenticate>"
        )
    else:
        client.send(f"<auth xmlns='{SASL}' mechanism='{scram.mechanism}'>{first}</auth>")
    reply = client.read_until(rb"</challenge>|</failure>|<failure[^>]*/>")
    assert b"<challenge" in reply, reply
    return _payload(reply)


def finish(client: RawClient, final: bytes, *, sasl2: bool = False) -> bytes:
    """Send the client-final-message; the server's ``<success/>`` or ``<failure/>``."""
    namespace = SASL2 if sasl2 else SASL
    client.send(f"<response xmlns='{namespace}'>{b64(final)}</response>")
    return client.read_until(rb"</success>|<success[^>]*/>|</failure>|<failure[^>]*/>")


def server_signature(success: bytes, *, sasl2: bool = False) -> bytes:
    """The v= of a ``<success/>`` (RFC 6120: its content; SASL2: its ``<additional-data/>``)."""
    pattern = rb"<additional-data>([^<]*)</additional-data>" if sasl2 else rb"<success[^>]*>([^<]*)</success>"
    match = re.search(pattern, success)
    assert match, success
    return base64.b64decode(attributes(base64.b64decode(match.group(1)).decode())["v"])
