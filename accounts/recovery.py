"""Recovery codes: a set of single-use codes that stand in for the other second factors (a lost phone).

A code is 80 random bits (:mod:`secrets`) written as 16 characters of :data:`ALPHABET` in four groups
of four, e.g. ``k7m2-x9qp-4tzd-wb3c``. The alphabet is base32 without the characters people misread
for one another: the digits 2 to 9 and the letters a to z without ``l`` and ``o`` (with ``0``, ``1``,
``l`` and ``o`` gone, nothing in it looks like anything else in it, so nothing needs mapping the way
Crockford's base32 maps ``o`` to ``0``). 32 symbols: each character is exactly 5 bits, unbiased.

The rules, all enforced here:

- **Stored only hashed.** A code is kept as the SHA-256 (hex) of its normalised text and shown once,
  when generated; it is never logged. A plain hash is enough: a code is 80 random bits, so there is
  nothing to guess from a dictionary, and salting or stretching would only slow the lookup down. (A
  lookup by digest leaks nothing useful through its timing: the attacker would need a preimage.)
- **Normalised before checking:** whitespace and dashes are dropped and upper case is taken for lower
  case (ASCII only); anything else (a character outside the alphabet, a wrong length) matches nothing.
- **Each code at most once, on every process.** A code is used by the conditional ``UPDATE … SET
  used = now WHERE id = … AND used IS NULL``: of two processes using the same code at once, exactly
  one changes the row; the other gets "already used".
- **One set per account.** Generating a new set deletes the old codes in the same transaction: they
  stop working at once.
- **Wrong codes are throttled** with the set's device (:class:`~accounts.models.AtomicThrottlingMixin`,
  ``XMPP_TOTP_THROTTLE_FACTOR`` · 2^(n-1) seconds after n wrong codes in a row, stored in the database
  so that every process sees it). While the set waits, every code is refused unchecked; an accepted
  code clears the wait. A used code is not counted: it guesses nothing. Once every code is used, any
  code gets "no recovery codes" (nothing left to guess either).

Everything here is synchronous ORM code; the driver calls it off the event loop (xmppauth/services.py).
Generating and removing a set are announced with :data:`accounts.signals.factor_changed` (kind
"recovery", actions "generated" and "removed").
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from . import signals
from .models import RecoveryCode, RecoveryCodes, User, reset_factor_throttles

#: 32 symbols, 5 bits each; no 0, 1, l or o (see the module's docstring).
ALPHABET = "23456789abcdefghijkmnpqrstuvwxyz"
BITS = 80
LENGTH = BITS // 5  # characters
GROUP = 4  # characters between dashes, as shown

#: Texts for the client, by short code.
MESSAGES = {
    "incorrect_code": "wrong recovery code",
    "code_used": "this recovery code was already used",
    "throttled": "too many wrong codes: try again in {seconds} s",
    "no_codes": "no recovery codes",
}


@dataclass(frozen=True)
class CodeCheck:
    """The verdict on a recovery code: ``ok``; ``text`` for the client when not; ``remaining``, the
    account's unused codes after this check (0 once the last one is used: the login can say so);
    ``reason``, the short code of ``text`` (a key of :data:`MESSAGES`, "" when ok)."""

    ok: bool
    text: str
    remaining: int
    reason: str = ""


def _new_code() -> str:
    """80 random bits as 16 characters of :data:`ALPHABET` (the normalised form)."""
    value = secrets.randbits(BITS)
    return "".join(ALPHABET[(value >> (5 * i)) & 31] for i in range(LENGTH))


def shown(code: str) -> str:
    """A normalised code as shown: groups of four joined by dashes."""
    return "-".join(code[i : i + GROUP] for i in range(0, LENGTH, GROUP))


def normalise(code: str) -> str | None:
    """The code as stored (hashed): no whitespace or dashes, lower case; None if it cannot be one."""
    compact = "".join(code.split()).replace("-", "")
    if not compact.isascii():  # before lower(): "K" (Kelvin sign) lowers to "k"
        return None
    compact = compact.lower()
    if len(compact) != LENGTH or not set(compact) <= set(ALPHABET):
        return None
    return compact


def digest(code: str) -> str:
    """SHA-256 (hex) of a normalised code: all that is stored of it."""
    return hashlib.sha256(code.encode("ascii")).hexdigest()


def generate(user: User, *, count: int = 10, actor: str = "") -> list[str]:
    """A new set of ``count`` codes for the account, replacing its old set (whose codes stop working
    at once); the codes, to show once. Announced as "generated"."""
    if count < 1:
        raise ValueError("a set holds at least one recovery code")
    codes: set[str] = set()
    while len(codes) < count:  # 80 bits: a repeat is as good as impossible, but a set has none
        codes.add(_new_code())
    with transaction.atomic():
        device, _ = RecoveryCodes.objects.get_or_create(
            user=user, defaults={"name": "recovery codes", "confirmed": True}
        )
        # The UPDATE locks the device's row until the end of the transaction: two generations for
        # one account run one after the other, and the codes of only one of them remain.
        RecoveryCodes.objects.filter(pk=device.pk).update(generated=timezone.now())
        device.codes.all().delete()
        RecoveryCode.objects.bulk_create(RecoveryCode(device=device, digest=digest(code)) for code in codes)
        _announce(user, "generated", actor)
    return [shown(code) for code in codes]


def use_code(user_id: int, code: str, *, now: datetime | None = None, throttled: bool = True) -> CodeCheck:
    """Use up ``code``, a recovery code of the account ``user_id``: ok once, on every process. Not
    ``throttled``: for a client the account knows (as :func:`accounts.totp.verify_totp`)."""
    device = RecoveryCodes.objects.filter(user_id=user_id, confirmed=True).first()
    if device is None:
        return _refused("no_codes", 0)
    unused = device.codes.filter(used__isnull=True)
    # one turn for checks at the same time (AtomicThrottlingMixin)
    wait = device.throttle_claim() if throttled else 0
    if wait:
        return CodeCheck(False, MESSAGES["throttled"].format(seconds=wait), unused.count(), "throttled")
    normalised = normalise(code)
    row = device.codes.filter(digest=digest(normalised)).first() if normalised is not None else None
    if row is not None and row.used is None and _use(row, now or timezone.now()):
        reset_factor_throttles(user_id)
        return CodeCheck(True, "", unused.count())
    if row is not None:  # used, here or by another process meanwhile: it guesses nothing
        device.throttle_release()
        return _refused("code_used", unused.count())
    remaining = unused.count()
    if not remaining:  # nothing left to guess
        device.throttle_release()
        return _refused("no_codes", 0)
    return _refused("incorrect_code", remaining)  # counted when the turn was taken


def remaining_codes(user: User) -> int:
    """The account's unused recovery codes (0 without a set)."""
    return RecoveryCode.objects.filter(device__user=user, device__confirmed=True, used__isnull=True).count()


def remove(user: User, *, actor: str = "") -> int:
    """Remove the account's set; how many codes it held, used or not (0: it had none). Announced as
    "removed" when there was a set."""
    with transaction.atomic():
        _, removed = RecoveryCodes.objects.filter(user=user).delete()
        codes = removed.get(RecoveryCode._meta.label, 0)
        if removed.get(RecoveryCodes._meta.label, 0):
            _announce(user, "removed", actor)
    return codes


def _use(row: RecoveryCode, now: datetime) -> bool:
    """Claim the code; False if it was used meanwhile, on any process."""
    if RecoveryCode.objects.filter(pk=row.pk, used__isnull=True).update(used=now) != 1:
        return False
    row.used = now
    return True


def _refused(reason: str, remaining: int) -> CodeCheck:
    return CodeCheck(False, MESSAGES[reason], remaining, reason)


def _announce(user: User, action: str, actor: str) -> None:
    signals.factor_changed.send(sender=RecoveryCodes, user=user, kind="recovery", action=action, actor=actor)
