"""Second-factor secrets sealed at rest, with a key that is not in the database (XEP-0400 §8; RFC 6238
§5.1: "We also RECOMMEND storing the keys securely in the validation system, and, more specifically,
encrypting them [...] and exposing them only when required").

``seal()`` encrypts with Fernet (AES-128-CBC with HMAC-SHA256: authenticated, so a secret altered in
the database or sealed with another key is refused, never used garbled). The key comes from the
setting ``XMPP_FACTOR_KEY`` (environment variable of the same name) when it is set, else from the
file ``XMPP_FACTOR_KEY_FILE`` (default ``$XMPP_DATA_DIR/factor.key``). The file is made by the first
``seal()`` when it is missing: written under a temporary name (mode 0600, ``O_EXCL``) and linked into
place, which never replaces a file that exists (two processes racing both end up with the winner's
key). ``unseal()`` never makes a key: without one, what was sealed is lost, and it says so.

Neither the key nor a secret is ever logged or put into an error message.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings

log = logging.getLogger(__name__)

_KEY_FORMAT = "a Fernet key: 32 bytes in urlsafe base64, 44 characters"


class SecretBoxError(Exception):
    """Sealing or unsealing a factor secret failed; the message is for the operator."""


class FactorKeyError(SecretBoxError):
    """There is no usable key: the setting is invalid, or the key file is missing, unreadable or
    invalid."""


class UnsealError(SecretBoxError):
    """A sealed secret does not open with the key: another key sealed it, or it was altered."""


def seal(plaintext: bytes) -> bytes:
    """``plaintext`` encrypted and authenticated with the factor key (made first if there is none)."""
    return _box(create=True).encrypt(plaintext)


def unseal(token: bytes | memoryview) -> bytes:
    """What :func:`seal` sealed; :class:`UnsealError` if the key is not the one that sealed it."""
    box = _box(create=False)
    try:
        return box.decrypt(bytes(token))  # a BinaryField reads as memoryview on PostgreSQL
    except InvalidToken:
        raise UnsealError(
            f"cannot decrypt a second-factor secret with the key from {_key_source()}: it was sealed "
            "with another key, or altered in the database. Restore the key it was sealed with, or "
            "enrol the account's factors again (manage.py mfa reset NAME)"
        ) from None


def _key_source() -> str:
    if settings.XMPP_FACTOR_KEY:
        return "XMPP_FACTOR_KEY"
    return f"{settings.XMPP_FACTOR_KEY_FILE} (XMPP_FACTOR_KEY_FILE)"


def _box(*, create: bool) -> Fernet:
    configured: str = settings.XMPP_FACTOR_KEY
    if configured:
        try:
            return Fernet(configured)
        except ValueError:
            raise FactorKeyError(f"XMPP_FACTOR_KEY is not {_KEY_FORMAT}") from None
    return _box_from_file(Path(settings.XMPP_FACTOR_KEY_FILE), create=create)


def _box_from_file(path: Path, *, create: bool) -> Fernet:
    where = f"{path} (XMPP_FACTOR_KEY_FILE; XMPP_FACTOR_KEY is not set)"
    try:
        if create and not path.exists():
            _create_key_file(path)
        raw = path.read_bytes()
    except FileNotFoundError:
        raise FactorKeyError(
            f"no key for second-factor secrets: {where} does not exist. Restore it from its backup; "
            "if it is lost, every TOTP factor must be enrolled again (manage.py mfa reset NAME)"
        ) from None
    except OSError as exc:
        raise FactorKeyError(f"cannot read or create the key {where}: {exc.strerror or exc}") from None
    try:
        return Fernet(raw.strip())
    except ValueError:
        raise FactorKeyError(f"{where} does not hold {_KEY_FORMAT}") from None


def _create_key_file(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".factor-key-")  # O_EXCL, mode 0600
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(Fernet.generate_key() + b"\n")
            out.flush()
            os.fsync(out.fileno())
        os.link(temporary, path)  # atomic, and never over an existing file
    except FileExistsError:
        return  # another process made it first: its key is the key
    finally:
        os.unlink(temporary)
    log.warning("made a new key for second-factor secrets in %s: back it up apart from the database", path)
