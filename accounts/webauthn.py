"""WebAuthn security keys and passkeys as second factors: the registration and authentication
ceremonies (W3C Web Authentication Level 3), verified by py_webauthn.

A ceremony has two halves. The server makes the options (:func:`registration_options`,
:func:`authentication_options`): JSON for ``navigator.credentials.create()`` / ``.get()`` (or any
other authenticator), and a :class:`Ceremony` the caller keeps (in the web session, or in the SASL2
task's state) until the answer comes. The answer, the credential as JSON (a browser's
``credential.toJSON()``), goes to :func:`register` or :func:`authenticate` together with the ceremony.

The rules, all enforced here:

- **A challenge is used once.** The caller removes the ceremony from where it keeps it before it
  hands it here (``Ceremony.take``); a ceremony is refused after ``XMPP_WEBAUTHN_TIMEOUT_SECONDS``.
- **Origin and relying party.** An answer must be signed for the RP id ``XMPP_WEBAUTHN_RP_ID`` and
  come from an origin in ``XMPP_WEBAUTHN_ORIGINS`` (with the RP id "localhost", also from
  ``http://localhost`` on any port: browsers treat it as a secure context).
- **User verification** as ``XMPP_WEBAUTHN_USER_VERIFICATION`` says for a second factor; always
  required for a passkey sign-in without a password (:func:`authenticate` with no account given).
- **The signature counter only rises.** An assertion whose counter is not above the stored one (when
  either is non-zero: authenticators without a counter send 0 for ever) may come from a cloned key: it
  is refused, the credential is flagged (``counter_regressed``) and the security log says so. The
  stored counter moves by a conditional ``UPDATE … WHERE sign_count < new``, so two processes never
  both accept one counter value.
- **The user handle is random** (32 bytes, the same on every credential of an account), never the
  username or the row's key.

Everything here is synchronous ORM code; the driver calls it off the event loop (xmppauth/services.py).
Registering, renaming and removing a credential, and a counter regression, are announced with
:data:`accounts.signals.factor_changed` (kind "webauthn").
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import secrets
import time
from dataclasses import asdict, dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.utils import timezone
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers.exceptions import InvalidAuthenticationResponse, InvalidRegistrationResponse
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from . import signals
from .models import User, WebAuthnCredential, reset_factor_throttles

log = logging.getLogger(__name__)

NAME_MAX = 64
_LOCALHOST_ORIGIN = re.compile(r"http://localhost(:[0-9]{1,5})?")

#: Texts for the person logging in, by short code.
MESSAGES = {
    "no_credential": "no security key or passkey is registered for this account",
    "unknown_credential": "this security key or passkey is not registered for this account",
    "expired": "the request to the security key has expired or was already answered: start again",
    "malformed": "the answer is not a WebAuthn credential in JSON",
    "origin": "the security key answered for another site",
    "invalid": "the security key's answer could not be verified",
    "user_verification": "the security key did not verify its user (PIN or biometrics)",
    "counter": "this security key's signature counter went backwards, so it may have been copied: it is "
    "refused until you remove it and register it again",
}


class WebAuthnError(Exception):
    """A registration that cannot be stored; ``reason`` is a key of :data:`MESSAGES` and the text is
    for the person registering."""

    def __init__(self, reason: str, text: str = "") -> None:
        super().__init__(text or MESSAGES[reason])
        self.reason = reason


@dataclass(frozen=True)
class Ceremony:
    """What the server keeps between options and answer: the challenge, for whom (``user_id``, None
    for a passkey sign-in that names no account), whether the options insisted on user verification,
    and when it expires (Unix time)."""

    challenge: str  # base64url
    user_id: int | None
    require_uv: bool
    expires: float
    user_handle: str = ""  # a registration's: the account's handle, given to the authenticator

    def to_dict(self) -> dict[str, Any]:
        """For the web session (JSON-serialisable)."""
        return asdict(self)

    @classmethod
    def take(cls, store: dict[str, Any], key: str) -> Ceremony | None:
        """Remove the ceremony kept under ``key`` in ``store`` (a session, a task's state) and return
        it, or None: whatever happens next, its challenge is never used again."""
        raw = store.pop(key, None)
        if isinstance(raw, Ceremony):
            return raw
        if not isinstance(raw, dict):
            return None
        try:
            return cls(
                challenge=str(raw["challenge"]),
                user_id=None if raw["user_id"] is None else int(raw["user_id"]),
                require_uv=bool(raw["require_uv"]),
                expires=float(raw["expires"]),
                user_handle=str(raw.get("user_handle", "")),
            )
        except (KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True)
class AssertionCheck:
    """The verdict on an assertion: ``ok``; the account and credential it proved; ``text`` for the
    person when not, ``reason`` its short code (a key of :data:`MESSAGES`)."""

    ok: bool
    text: str = ""
    reason: str = ""
    user_id: int | None = None
    credential: WebAuthnCredential | None = None


def rp_id() -> str:
    return str(settings.XMPP_WEBAUTHN_RP_ID)


def origin_allowed(origin: str) -> bool:
    """Whether an answer signed in a page of ``origin`` is accepted (module docstring)."""
    if origin in settings.XMPP_WEBAUTHN_ORIGINS:
        return True
    return rp_id() == "localhost" and _LOCALHOST_ORIGIN.fullmatch(origin) is not None


def _user_verification() -> UserVerificationRequirement:
    value = str(settings.XMPP_WEBAUTHN_USER_VERIFICATION)
    try:
        return UserVerificationRequirement(value)
    except ValueError:
        raise ImproperlyConfigured(
            f"XMPP_WEBAUTHN_USER_VERIFICATION is {value!r}: use required, preferred or discouraged"
        ) from None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _new_ceremony(challenge: bytes, user_id: int | None, require_uv: bool, handle: str = "") -> Ceremony:
    expires = time.time() + int(settings.XMPP_WEBAUTHN_TIMEOUT_SECONDS)
    return Ceremony(_b64(challenge), user_id, require_uv, expires, handle)


def _descriptors(user_id: int) -> list[PublicKeyCredentialDescriptor]:
    rows = WebAuthnCredential.objects.filter(user_id=user_id, confirmed=True).values_list(
        "credential_id", "transports"
    )
    known = {t.value for t in AuthenticatorTransport}
    return [
        PublicKeyCredentialDescriptor(
            id=_unb64(cred_id), transports=[AuthenticatorTransport(t) for t in transports if t in known]
        )
        for cred_id, transports in rows
    ]


def user_handle(user: User) -> str:
    """The account's user handle: the one on its credentials, else a new random one."""
    existing = WebAuthnCredential.objects.filter(user=user).values_list("user_handle", flat=True).first()
    return existing or _b64(secrets.token_bytes(32))


# -- registration ---------------------------------------------------------------------------------


def registration_options(user: User) -> tuple[str, Ceremony]:
    """Options for ``navigator.credentials.create()`` (JSON) and the ceremony to keep. Keys the account
    already has are excluded (an authenticator registers once); a discoverable credential (a passkey)
    is preferred, not demanded."""
    handle = user_handle(user)
    uv = _user_verification()
    options = generate_registration_options(
        rp_id=rp_id(),
        rp_name=str(settings.XMPP_WEBAUTHN_RP_NAME),
        user_name=f"{user.username}@{settings.XMPP_DOMAIN}",
        user_id=_unb64(handle),
        user_display_name=user.get_full_name() or user.username,
        timeout=int(settings.XMPP_WEBAUTHN_TIMEOUT_SECONDS) * 1000,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED, user_verification=uv
        ),
        exclude_credentials=_descriptors(user.pk),
    )
    ceremony = _new_ceremony(options.challenge, user.pk, uv == UserVerificationRequirement.REQUIRED, handle)
    return options_to_json(options), ceremony


def register(
    user: User, ceremony: Ceremony | None, answer: str, name: str, *, actor: str = ""
) -> WebAuthnCredential:
    """Verify the answer to :func:`registration_options` and store the credential under ``name``;
    raises :class:`WebAuthnError` with a text for the person. Announced as "enrolled"."""
    if ceremony is None or ceremony.user_id != user.pk or ceremony.expires < time.time():
        raise WebAuthnError("expired")
    name = clean_name(name)
    origin = _origin_of(answer)
    if not origin:
        raise WebAuthnError("malformed")
    if not origin_allowed(origin):
        raise WebAuthnError("origin")
    try:
        verified = verify_registration_response(
            credential=answer,
            expected_challenge=_unb64(ceremony.challenge),
            expected_rp_id=rp_id(),
            expected_origin=origin,
            require_user_verification=ceremony.require_uv,
        )
        transports = _transports(answer)
    except InvalidRegistrationResponse as exc:
        log.info("WebAuthn registration for %s refused: %s", user.username, exc)
        raise WebAuthnError("invalid") from None
    credential_id = _b64(verified.credential_id)
    with transaction.atomic():
        if WebAuthnCredential.objects.filter(credential_id=credential_id).exists():
            raise WebAuthnError("invalid", "this security key or passkey is already registered")
        credential = WebAuthnCredential.objects.create(
            user=user,
            name=name,
            confirmed=True,
            credential_id=credential_id,
            public_key=verified.credential_public_key,
            user_handle=ceremony.user_handle if _valid_handle(ceremony.user_handle) else user_handle(user),
            sign_count=verified.sign_count,
            transports=transports,
            aaguid=str(verified.aaguid),
            device_type=str(
                getattr(verified.credential_device_type, "value", verified.credential_device_type)
            ),
            backed_up=verified.credential_backed_up,
        )
        _announce(user, "enrolled", actor, name)
    return credential


def clean_name(name: str) -> str:
    """The owner's label for a credential: trimmed, not empty, at most :data:`NAME_MAX` characters."""
    name = " ".join(name.split())
    if not name:
        raise WebAuthnError("invalid", "give the security key or passkey a name")
    if len(name) > NAME_MAX:
        raise WebAuthnError("invalid", f"a name has at most {NAME_MAX} characters")
    return name


# -- authentication -------------------------------------------------------------------------------


def authentication_options(user_id: int | None) -> tuple[str, Ceremony] | None:
    """Options for ``navigator.credentials.get()`` (JSON) and the ceremony to keep; None if the
    account has no credential. With ``user_id`` None: a passkey sign-in, any discoverable credential
    of any account, user verification required."""
    if user_id is None:
        uv = UserVerificationRequirement.REQUIRED
        allowed: list[PublicKeyCredentialDescriptor] = []
    else:
        uv = _user_verification()
        allowed = _descriptors(user_id)
        if not allowed:
            return None
    options = generate_authentication_options(
        rp_id=rp_id(),
        timeout=int(settings.XMPP_WEBAUTHN_TIMEOUT_SECONDS) * 1000,
        allow_credentials=allowed,
        user_verification=uv,
    )
    ceremony = _new_ceremony(options.challenge, user_id, uv == UserVerificationRequirement.REQUIRED)
    return options_to_json(options), ceremony


def authenticate(ceremony: Ceremony | None, answer: str) -> AssertionCheck:
    """Verify an assertion against the ceremony it answers (already taken from its store: module
    docstring); ok for a registered, unflagged credential of the ceremony's account (or, for a passkey
    sign-in, of the account its user handle names)."""
    if ceremony is None or ceremony.expires < time.time():
        return _refused("expired")
    try:
        data = json.loads(answer)
        credential_id = str(data["rawId"] if "rawId" in data else data["id"])
        _unb64(credential_id)
    except (ValueError, TypeError, KeyError, binascii.Error, RecursionError):  # RecursionError: too deep
        return _refused("malformed")
    credential = WebAuthnCredential.objects.filter(credential_id=credential_id, confirmed=True).first()
    if credential is None or (ceremony.user_id is not None and credential.user_id != ceremony.user_id):
        return _refused("unknown_credential")
    if ceremony.user_id is None and not _handle_matches(data, credential):
        return _refused("unknown_credential")
    if credential.counter_regressed is not None:
        return _refused("counter", credential.user_id)
    origin = _origin_of(answer)
    if not origin_allowed(origin):
        return _refused("origin", credential.user_id)
    try:
        verified = verify_authentication_response(
            credential=answer,
            expected_challenge=_unb64(ceremony.challenge),
            expected_rp_id=rp_id(),
            expected_origin=origin,
            credential_public_key=bytes(credential.public_key),
            credential_current_sign_count=0,  # the counter is checked below, to flag a regression
            require_user_verification=ceremony.require_uv,
        )
    except InvalidAuthenticationResponse as exc:
        reason = "user_verification" if "verif" in str(exc) and "signature" not in str(exc) else "invalid"
        log.info("WebAuthn assertion for account %s refused: %s", credential.user_id, exc)
        return _refused(reason, credential.user_id)
    if not _advance_counter(credential, verified.new_sign_count):
        return _refused("counter", credential.user_id)
    reset_factor_throttles(credential.user_id)
    return AssertionCheck(True, user_id=credential.user_id, credential=credential)


def _advance_counter(credential: WebAuthnCredential, new: int) -> bool:
    """Store the counter (and the time of use); False, with the credential flagged, if it did not rise."""
    now = timezone.now()
    rows = WebAuthnCredential.objects.filter(pk=credential.pk)
    if new == 0 and credential.sign_count == 0:  # an authenticator without a counter
        rows.update(last_used=now)
        return True
    if rows.filter(sign_count__lt=new).update(sign_count=new, last_used=now) == 1:
        credential.sign_count, credential.last_used = new, now
        return True
    with transaction.atomic():
        flagged = rows.filter(counter_regressed__isnull=True).update(counter_regressed=now)
        if flagged:
            log.warning(
                "WebAuthn credential %s of account %s: counter %d not above %d; refused and flagged",
                credential.pk,
                credential.user_id,
                new,
                credential.sign_count,
            )
            _announce(
                credential.user, "flagged", "", f"{credential.name}: its signature counter went backwards"
            )
    return False


def _handle_matches(data: dict[str, Any], credential: WebAuthnCredential) -> bool:
    response = data.get("response")
    handle = response.get("userHandle") if isinstance(response, dict) else None
    return isinstance(handle, str) and secrets.compare_digest(
        handle.rstrip("=").encode(), credential.user_handle.encode()
    )


# -- managing credentials -------------------------------------------------------------------------


def credentials_of(user: User) -> list[WebAuthnCredential]:
    return list(WebAuthnCredential.objects.filter(user=user, confirmed=True).order_by("created", "pk"))


def rename(user: User, credential_pk: int, name: str, *, actor: str = "") -> WebAuthnCredential:
    """Give one of the account's credentials a new name; raises WebAuthnCredential.DoesNotExist or
    :class:`WebAuthnError` (a bad name). Announced as "renamed"."""
    name = clean_name(name)
    with transaction.atomic():
        credential = WebAuthnCredential.objects.select_for_update().get(pk=credential_pk, user=user)
        old, credential.name = credential.name, name
        credential.save(update_fields=["name"])
        _announce(user, "renamed", actor, f"{old} → {name}")
    return credential


def remove(user: User, credential_pk: int | None = None, *, actor: str = "") -> int:
    """Remove one of the account's credentials (or, with None, all of them); how many were removed.
    Announced as "removed"."""
    with transaction.atomic():
        rows = WebAuthnCredential.objects.filter(user=user)
        if credential_pk is not None:
            rows = rows.filter(pk=credential_pk)
        names = list(rows.values_list("name", flat=True))
        rows.delete()
        if names:
            _announce(user, "removed", actor, ", ".join(names))
    return len(names)


# -- helpers --------------------------------------------------------------------------------------


def _origin_of(answer: str) -> str:
    """The origin the browser wrote in the answer's clientDataJSON ("" if there is none to read);
    py_webauthn checks the rest of it."""
    try:
        data = json.loads(answer)
        client_data = json.loads(_unb64(str(data["response"]["clientDataJSON"])))
        return str(client_data.get("origin", ""))
    except (
        ValueError,
        TypeError,
        KeyError,
        binascii.Error,
        UnicodeDecodeError,
        AttributeError,
        RecursionError,
    ):
        return ""


def _transports(answer: str) -> list[str]:
    try:
        transports = json.loads(answer)["response"].get("transports", [])
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError):
        return []
    known = {t.value for t in AuthenticatorTransport}
    return (
        [t for t in transports if isinstance(t, str) and t in known] if isinstance(transports, list) else []
    )


def _valid_handle(handle: str) -> bool:
    try:
        return len(_unb64(handle)) == 32
    except (ValueError, binascii.Error):
        return False


def _refused(reason: str, user_id: int | None = None) -> AssertionCheck:
    return AssertionCheck(False, MESSAGES[reason], reason, user_id)


def _announce(user: User, action: str, actor: str, detail: str) -> None:
    signals.factor_changed.send(
        sender=WebAuthnCredential, user=user, kind="webauthn", action=action, actor=actor, detail=detail
    )
