"""A software WebAuthn authenticator (ES256, "none" attestation) for the reference client and the tests:
it answers ``navigator.credentials.create()`` and ``.get()`` options given as JSON, with the JSON a
browser's ``credential.toJSON()`` gives, as if it ran in a page of ``origin``.

It keeps one credential (its id, private key, RP id, user handle and signature counter) in a JSON file
the caller chooses, written with mode 0600. It is for checking a deployment and for tests: a key in a
file is only as safe as that file. Nothing here touches the network or the server's code.

The formats (W3C Web Authentication Level 3): authenticator data = SHA-256(RP id) ‖ flags ‖ counter
(4 bytes, big-endian) [‖ AAGUID ‖ credential id length (2 bytes) ‖ credential id ‖ COSE key]; an
assertion's signature is ECDSA-SHA-256 over authenticator data ‖ SHA-256(clientDataJSON); the
attestation object is the CBOR map {"fmt": "none", "attStmt": {}, "authData": …}.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import struct
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

FLAG_UP, FLAG_UV, FLAG_AT = 0x01, 0x04, 0x40
AAGUID = bytes(16)  # "none" attestation: no model to name


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _cbor(value: object) -> bytes:
    """The CBOR (RFC 8949) of the few types an attestation object holds: int, bytes, str, dict."""

    def head(major: int, n: int) -> bytes:
        if n < 24:
            return bytes([major << 5 | n])
        for extra, fmt in ((24, ">B"), (25, ">H"), (26, ">I"), (27, ">Q")):
            if n < 1 << (8 * struct.calcsize(fmt)):
                return bytes([major << 5 | extra]) + struct.pack(fmt, n)
        raise ValueError("integer too large for CBOR")

    if isinstance(value, bool):
        raise TypeError("no booleans here")
    if isinstance(value, int):
        return head(0, value) if value >= 0 else head(1, -1 - value)
    if isinstance(value, bytes):
        return head(2, len(value)) + value
    if isinstance(value, str):
        raw = value.encode()
        return head(3, len(raw)) + raw
    if isinstance(value, dict):
        return head(5, len(value)) + b"".join(_cbor(k) + _cbor(v) for k, v in value.items())
    raise TypeError(f"cannot encode {type(value).__name__} as CBOR")


@dataclass
class SoftKey:
    """One credential: what the file holds."""

    credential_id: str  # base64url
    private_key: str  # PKCS#8 PEM
    rp_id: str
    user_handle: str  # base64url
    sign_count: int = 0
    user_verified: bool = True  # whether it claims to have verified its user (flag UV)

    # -- storage ----------------------------------------------------------------------------------

    @classmethod
    def load(cls, path: Path) -> SoftKey:
        data = json.loads(path.read_text())
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})

    def save(self, path: Path) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(asdict(self), out)

    # -- ceremonies -------------------------------------------------------------------------------

    @classmethod
    def create(cls, options_json: str, origin: str, *, user_verified: bool = True) -> tuple[SoftKey, str]:
        """A new credential for ``navigator.credentials.create()`` options; the key and the JSON of the
        credential to send to the server."""
        options = json.loads(options_json)
        rp_id = options["rp"].get("id") or _host(origin)
        if not any(p.get("alg") == -7 for p in options.get("pubKeyCredParams", [])):
            raise ValueError("the server does not accept ES256 keys")
        private = ec.generate_private_key(ec.SECP256R1())
        numbers = private.public_key().public_numbers()
        cose = _cbor(
            {1: 2, 3: -7, -1: 1, -2: numbers.x.to_bytes(32, "big"), -3: numbers.y.to_bytes(32, "big")}
        )
        credential_id = secrets.token_bytes(32)
        key = cls(
            credential_id=b64url(credential_id),
            private_key=private.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            ).decode(),
            rp_id=rp_id,
            user_handle=options["user"]["id"],
            user_verified=user_verified,
        )
        attested = AAGUID + struct.pack(">H", len(credential_id)) + credential_id + cose
        auth_data = key._auth_data(FLAG_AT, attested)
        client_data = _client_data("webauthn.create", options["challenge"], origin)
        attestation = _cbor({"fmt": "none", "attStmt": {}, "authData": auth_data})
        answer = {
            "id": key.credential_id,
            "rawId": key.credential_id,
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "attestationObject": b64url(attestation),
                "transports": ["internal"],
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        }
        return key, json.dumps(answer)

    def get(self, options_json: str, origin: str) -> str:
        """The JSON of an assertion for ``navigator.credentials.get()`` options (the counter moves on:
        save the key afterwards)."""
        options = json.loads(options_json)
        allowed = [c["id"] for c in options.get("allowCredentials", [])]
        if allowed and self.credential_id not in allowed:
            raise ValueError("the server asks for another security key")
        if options.get("rpId", self.rp_id) != self.rp_id:
            raise ValueError(f"this key is for {self.rp_id}, not {options.get('rpId')}")
        self.sign_count += 1
        auth_data = self._auth_data(0, b"")
        client_data = _client_data("webauthn.get", options["challenge"], origin)
        private = serialization.load_pem_private_key(self.private_key.encode(), password=None)
        assert isinstance(private, ec.EllipticCurvePrivateKey)
        signature = private.sign(auth_data + hashlib.sha256(client_data).digest(), ec.ECDSA(hashes.SHA256()))
        answer: dict[str, Any] = {
            "id": self.credential_id,
            "rawId": self.credential_id,
            "type": "public-key",
            "response": {
                "clientDataJSON": b64url(client_data),
                "authenticatorData": b64url(auth_data),
                "signature": b64url(signature),
                "userHandle": self.user_handle,
            },
            "clientExtensionResults": {},
            "authenticatorAttachment": "platform",
        }
        return json.dumps(answer)

    def _auth_data(self, flags: int, attested: bytes) -> bytes:
        flags |= FLAG_UP | (FLAG_UV if self.user_verified else 0)
        rp_hash = hashlib.sha256(self.rp_id.encode()).digest()
        return rp_hash + bytes([flags]) + struct.pack(">I", self.sign_count) + attested


def _client_data(kind: str, challenge: str, origin: str) -> bytes:
    return json.dumps({"type": kind, "challenge": challenge, "origin": origin, "crossOrigin": False}).encode()


def _host(origin: str) -> str:
    return origin.split("://", 1)[-1].split(":", 1)[0].split("/", 1)[0]
