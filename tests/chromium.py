"""Chromium for the browser tests: Debian's /usr/bin/chromium (never ``playwright install``), the arguments
that keep it quiet offline, and a WebAuthn virtual authenticator over the DevTools Protocol that can hold a
software key of xmppauth.client.softkey (../shared/spec/BROWSER-AND-WEBAUTHN.md)."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from playwright.sync_api import BrowserContext, Page

from xmppauth.client.softkey import SoftKey, unb64url

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def cdp_credential(key: SoftKey) -> dict[str, Any]:
    """The software key as CDP's WebAuthn.Credential: standard base64, the private key as PKCS#8 DER."""
    private = serialization.load_pem_private_key(key.private_key.encode(), password=None)
    der = private.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return {
        "credentialId": b64(unb64url(key.credential_id)),
        "isResidentCredential": True,
        "rpId": key.rp_id,
        "privateKey": b64(der),
        "userHandle": b64(unb64url(key.user_handle)),
        "signCount": key.sign_count,
    }


class Authenticator:
    """A virtual CTAP2 platform authenticator on one page, holding ``key`` if one is given."""

    def __init__(self, context: BrowserContext, page: Page, key: SoftKey | None) -> None:
        self.cdp = context.new_cdp_session(page)
        self.cdp.send("WebAuthn.enable", {"enableUI": False})
        options = {
            "protocol": "ctap2",
            "transport": "internal",
            "hasResidentKey": True,
            "hasUserVerification": True,
            "isUserVerified": True,
            "automaticPresenceSimulation": True,
        }
        self.id = str(
            self.cdp.send("WebAuthn.addVirtualAuthenticator", {"options": options})["authenticatorId"]
        )
        if key is not None:
            self.cdp.send(
                "WebAuthn.addCredential", {"authenticatorId": self.id, "credential": cdp_credential(key)}
            )

    def credentials(self) -> list[dict[str, Any]]:
        found = self.cdp.send("WebAuthn.getCredentials", {"authenticatorId": self.id})
        return list(found["credentials"])
