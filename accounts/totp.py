"""RFC 6238 TOTP second factors (XEP-0400): checking codes, setting up and removing authenticator apps.

The parameters are XEP-0400 §3's and fixed: HMAC-SHA-1, 30-second steps counted from the Unix epoch,
6 digits. A code is accepted for the current step and for one step either side (clocks drift).

The rules, all enforced here:

- **Each step at most once per device, on every process.** A step is accepted only by the
  conditional ``UPDATE … SET last_t = step WHERE id = … AND last_t < step``: of two processes
  checking the same code at once, exactly one changes the row; the other, like any later use of
  that step or an earlier one, gets "already used". No other code writes ``last_t`` (a plain
  ``TotpDevice.save()`` leaves it out).
- **Wrong codes are throttled per account**, with django-otp's ThrottlingMixin on each device
  (``XMPP_TOTP_THROTTLE_FACTOR`` · 2^(n-1) seconds after n wrong codes in a row, stored in the
  database so that every process sees it). While any device of the account waits, every code is
  refused unchecked; a wrong code (a malformed one too) counts on every device checked; an accepted
  code clears them. A code that was right but already used is not counted: it guesses nothing.
- **Secrets stay sealed** (:mod:`accounts.secretbox`): opened here only to compute codes or the
  URI, never logged. Without the right key every code is refused ("unavailable") and the error is
  logged for the operator; setting up raises :class:`~accounts.secretbox.SecretBoxError`.

Everything here is synchronous ORM code; the driver calls it off the event loop (xmppauth/services.py).
Factor changes are announced with :data:`accounts.signals.factor_changed`.
"""

from __future__ import annotations

import base64
import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from urllib.parse import quote, urlencode

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django_otp.oath import hotp

from . import signals
from .models import TotpDevice, User, reset_factor_throttles
from .secretbox import SecretBoxError, seal, unseal

log = logging.getLogger(__name__)

DIGITS = 6
PERIOD = 30
TOLERANCE = 1  # steps either side
SECRET_BYTES = 20  # RFC 4226 §4 R6: 160 bits, the HMAC-SHA-1 output length

#: Texts for the client, by short code.
MESSAGES = {
    "incorrect_code": "wrong code",
    "code_used": "this code was already used: wait for the next one",
    "throttled": "too many wrong codes: try again in {seconds} s",
    "no_device": "no confirmed authenticator app",
    "no_setup": "no authenticator app is being set up: start the set-up again",
    "unavailable": "the server cannot check codes now: tell its operator",
}


@dataclass(frozen=True)
class TotpCheck:
    """The verdict on a code: ``ok``; ``text`` for the client when not; the accepted ``step``;
    ``reason``, the short code of ``text`` (a key of :data:`MESSAGES`, "" when ok)."""

    ok: bool
    text: str
    step: int | None
    reason: str = ""


def time_step(now: float) -> int:
    """RFC 6238 §4.2: T = floor((now - T0) / X), with T0 = 0 and X = 30 s."""
    return int(now // PERIOD)


def totp_code(key: bytes, step: int, digits: int = DIGITS) -> str:
    """RFC 6238 §4.2: HOTP (RFC 4226 §5.3, HMAC-SHA-1) of the step number, zero-padded."""
    return f"{hotp(key, step, digits):0{digits}d}"


def verify_totp(user_id: int, code: str, *, now: float | None = None, throttled: bool = True) -> TotpCheck:
    """Check ``code`` against every confirmed authenticator of the account ``user_id``. Not ``throttled``:
    for a client that logged in to the account before (the guessing limits' known client), which the
    devices' wait after wrong codes does not hold, so that someone who has the password and guesses codes
    cannot lock the owner out (its wrong codes are not counted either; the address's limit holds it)."""
    devices = list(TotpDevice.objects.filter(user_id=user_id, confirmed=True).order_by("pk"))
    if not devices:
        return _refused("no_device")
    return _verify(devices, code, now, throttled=throttled)


def verify_device(device: TotpDevice, code: str, *, now: float | None = None) -> TotpCheck:
    """Check ``code`` against one device (``TotpDevice.verify_token``, django-otp's contract)."""
    return _verify([device], code, now)


def start_setup(user: User, name: str = "authenticator") -> tuple[TotpDevice, str]:
    """A new, unconfirmed authenticator with a fresh secret, replacing one the account was setting
    up before; and its otpauth:// URI, which holds the secret: show it to the user once."""
    sealed = seal(secrets.token_bytes(SECRET_BYTES))
    with transaction.atomic():
        TotpDevice.objects.filter(user=user, confirmed=False).delete()
        device = TotpDevice.objects.create(user=user, name=name, confirmed=False, encrypted_key=sealed)
    return device, provisioning_uri(device)


def confirm_setup(user: User, code: str, *, actor: str = "", now: float | None = None) -> TotpCheck:
    """Confirm the authenticator being set up with a current code from it (accepted once, like any
    code); from then on it is a factor of the account (announced as "enrolled")."""
    device = TotpDevice.objects.filter(user=user, confirmed=False).order_by("-pk").first()
    if device is None:
        return _refused("no_setup")
    with transaction.atomic():
        check = _verify([device], code, now)
        if check.ok:
            TotpDevice.objects.filter(pk=device.pk).update(confirmed=True)
            device.confirmed = True
            _announce(user, "enrolled", actor)
    return check


def enrol(user: User, name: str = "authenticator", *, actor: str = "") -> tuple[TotpDevice, str]:
    """An authenticator confirmed at once, for an operator who hands its URI to the user
    (``manage.py totp add``); announced as "enrolled". Leaves a set-up in progress alone."""
    sealed = seal(secrets.token_bytes(SECRET_BYTES))
    with transaction.atomic():
        device = TotpDevice.objects.create(user=user, name=name, confirmed=True, encrypted_key=sealed)
        _announce(user, "enrolled", actor)
    return device, provisioning_uri(device)


def confirmed_devices(user: User) -> QuerySet[TotpDevice]:
    return TotpDevice.objects.filter(user=user, confirmed=True).order_by("pk")


def remove_all(user: User, *, actor: str = "") -> int:
    """Remove every authenticator of the account, set up or being set up; how many. Announced as
    "removed" when a confirmed one was among them."""
    with transaction.atomic():
        devices = TotpDevice.objects.filter(user=user)
        had_factor = devices.filter(confirmed=True).exists()
        _, removed = devices.delete()
        if had_factor:
            _announce(user, "removed", actor)
    return removed.get(TotpDevice._meta.label, 0)


def provisioning_uri(device: TotpDevice) -> str:
    """The Key Uri Format an authenticator app reads (as a QR code): label ``issuer:jid``,
    base32 secret without padding, the fixed parameters spelled out."""
    issuer: str = settings.XMPP_TOTP_ISSUER
    jid = f"{device.user.username}@{settings.XMPP_DOMAIN}"
    secret = base64.b32encode(unseal(device.encrypted_key)).decode("ascii").rstrip("=")
    label = f"{quote(issuer, safe='')}:{quote(jid, safe='')}"
    query = urlencode(
        {"secret": secret, "issuer": issuer, "algorithm": "SHA1", "digits": DIGITS, "period": PERIOD},
        quote_via=quote,
    )
    return f"otpauth://totp/{label}?{query}"


def _verify(devices: list[TotpDevice], code: str, now: float | None, *, throttled: bool = True) -> TotpCheck:
    # The first device keeps the account's turn (AtomicThrottlingMixin.throttle_claim): checks at the
    # same time get one turn between them, so parallel guesses are no faster than one after another.
    wait = (_throttle_wait(devices[1:]) or devices[0].throttle_claim()) if throttled else 0
    if wait:
        return TotpCheck(False, MESSAGES["throttled"].format(seconds=wait), None, "throttled")
    if len(code) == DIGITS and code.isascii() and code.isdigit():
        step = time_step(time.time() if now is None else now)
        used = False
        for device in devices:
            try:
                matching = _matching_steps(device, code, step)
            except SecretBoxError as exc:  # the key is lost or wrong: no code can pass, none counts
                log.error("cannot check TOTP codes of account %s: %s", device.user_id, exc)
                devices[0].throttle_release()
                return _refused("unavailable")
            for accepted in matching:
                if _accept(device, accepted):
                    reset_factor_throttles(device.user_id)
                    return TotpCheck(True, "", accepted)
            used = used or bool(matching)
        if used:  # right, but already used: it guessed nothing
            devices[0].throttle_release()
            return _refused("code_used")
    if throttled:
        for device in devices[1:]:  # the first counted it when it took the turn
            device.throttle_increment()
    return _refused("incorrect_code")


def _matching_steps(device: TotpDevice, code: str, step: int) -> list[int]:
    """The steps within tolerance whose code is ``code``, oldest first (all compared, in constant
    time, whatever matches)."""
    key = unseal(device.encrypted_key)
    steps = range(step - TOLERANCE, step + TOLERANCE + 1)
    return [each for each in steps if hmac.compare_digest(totp_code(key, each), code)]


def _accept(device: TotpDevice, step: int) -> bool:
    """Claim ``step`` for the device; False if it or a later step was claimed before, on any process."""
    if TotpDevice.objects.filter(pk=device.pk, last_t__lt=step).update(last_t=step) != 1:
        return False
    device.last_t = step
    return True


def _throttle_wait(devices: list[TotpDevice]) -> int:
    """Seconds until every device accepts a check again (AtomicThrottlingMixin), 0 if they all do."""
    return max((device.throttle_wait() for device in devices), default=0)


def _refused(reason: str) -> TotpCheck:
    return TotpCheck(False, MESSAGES[reason], None, reason)


def _announce(user: User, action: str, actor: str) -> None:
    signals.factor_changed.send(sender=TotpDevice, user=user, kind="totp", action=action, actor=actor)
