"""Accounts: the User model (its JID localpart, its SCRAM keys, its XMPP password-login policy) and its
second factors (TotpDevice; RecoveryCodes holding RecoveryCode rows; WebAuthnCredential)."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractUser, UserManager
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models.functions import Least
from django.utils import timezone
from django_otp.models import Device, DeviceManager, ThrottlingMixin

from xmppauth.proto.jid import InvalidJID, prep_localpart
from xmppauth.proto.sasl import ScramCredentials

from . import scram, signals
from .signals import PasswordChange


def validate_localpart(value: str) -> None:
    """An account name must be a valid, already prepared JID localpart (RFC 7622 §3.3)."""
    try:
        prepared = prep_localpart(value)
    except InvalidJID as exc:
        raise ValidationError(f"Not a valid XMPP username: {exc}.", code="invalid_localpart") from None
    if prepared != value:
        raise ValidationError(
            f"Not in canonical form; use {prepared!r} (lower case, NFKC).", code="not_canonical_localpart"
        )


class AccountManager(UserManager["User"]):
    pass


class PasswordLogin(models.TextChoices):
    """Account policy for logins over XMPP with the account password (app passwords and FAST
    tokens are not affected)."""

    ALLOWED = "allowed", "Allowed"
    SECOND_FACTOR = "second-factor", "Allowed only with a second factor"
    OFF = "off", "Off: app passwords and FAST tokens only"


# django-stubs cannot type the reverse manager (user.totpdevice_set) of a model on django-otp's untyped base
class User(AbstractUser):  # type: ignore[django-manager-missing]
    """An account; ``username`` is the localpart of the account's JID."""

    username = models.CharField(
        "username",
        max_length=150,
        unique=True,
        validators=[validate_localpart],
        help_text="The part before the @ of the XMPP address: lower case, no spaces or @ / : < > & ' \".",
        error_messages={"unique": "An account with that username already exists."},
    )
    # Hash name -> {salt, iterations, stored_key, server_key}, base64; see accounts/scram.py.
    scram = models.JSONField(default=dict, blank=True, editable=False)

    xmpp_password_login = models.CharField(
        "password logins over XMPP",
        max_length=20,
        choices=PasswordLogin.choices,
        default=PasswordLogin.ALLOWED,
    )

    password_changed = models.DateTimeField(null=True, blank=True, editable=False)

    objects = AccountManager()  # type: ignore[misc]

    @classmethod
    def normalize_username(cls, username: Any) -> Any:
        try:
            return prep_localpart(str(username))
        except InvalidJID:
            return username  # the field validator reports it

    # The change set_password() made, until save() has stored and announced it.
    _password_change: PasswordChange | None = None

    def set_password(
        self,
        raw_password: str | None,
        *,
        actor: str = "",
        except_session: int | None = None,
        keep_other_sessions: bool = False,
    ) -> None:
        """The one door for a new password: the admin's forms, ``manage.py adduser`` and
        ``changepassword``, XEP-0077 all come through here. Sets Django's hash and the SCRAM keys;
        :meth:`save` stores them and, when they replace an earlier password, announces the change
        once (:data:`accounts.signals.password_changed`) with who made it (``actor``, "" names
        nobody), the session that goes on (``except_session``) and ``keep_other_sessions``."""
        # A first password is not a change: nothing can have logged in with the account yet.
        replacing = raw_password is not None and self.pk is not None and bool(self.scram)
        change = PasswordChange(
            actor=actor, except_session=except_session, keep_other_sessions=keep_other_sessions
        )
        self._password_change = change if replacing else None
        super().set_password(raw_password)
        if raw_password is None:
            self.scram = {}
            return
        # App passwords are SCRAM keys derived with the account's salts (docs/access.md): while the
        # account has any, a new password keeps the salt and iteration count of each hash.
        keep = self.scram if self.pk is not None and self.app_passwords.exists() else None
        self.scram = scram.derive_all(raw_password, keep_salts=keep)

    def save(self, *args: Any, **kwargs: Any) -> None:
        change = self._password_change
        if self._password is not None:  # type: ignore[attr-defined]
            self.password_changed = timezone.now()
            if kwargs.get("update_fields") is not None:
                kwargs["update_fields"] = {*kwargs["update_fields"], "password_changed", "scram"}
        if change is None:
            super().save(*args, **kwargs)
            return
        with transaction.atomic():  # the new password and what the listeners do about it, or neither
            super().save(*args, **kwargs)  # clears the raw password (Django), so the change goes too
            self._password_change = None
            signals.password_changed.send(sender=User, user=self, change=change)

    def set_unusable_password(self) -> None:
        super().set_unusable_password()
        self.scram = {}

    def scram_credentials(self, hash_name: str) -> ScramCredentials | None:
        data = self.scram.get(hash_name)
        return scram.from_json(data) if data else None


class TotpDeviceManager(DeviceManager, models.Manager["TotpDevice"]):  # type: ignore[misc]
    """django-otp's manager (``devices_for_user``), typed."""


class AtomicThrottlingMixin(ThrottlingMixin):  # type: ignore[misc]  # django-otp ships no type hints
    """django-otp's persisted back-off after wrong codes (``XMPP_TOTP_THROTTLE_FACTOR`` · 2^(n-1) s
    after n in a row), written safely from several processes.

    ThrottlingMixin saves the whole row, which would write back stale columns (a TOTP step or a name
    another process has changed meanwhile): these write their own two fields, the count atomically,
    so that two processes counting a wrong code each count two."""

    #: The count and time before this object took its turn (throttle_claim), to give it back.
    _taken: tuple[int, datetime | None] | None = None

    class Meta:
        abstract = True

    def get_throttle_factor(self) -> int:
        return int(settings.XMPP_TOTP_THROTTLE_FACTOR)

    def throttle_wait(self) -> int:
        """Whole seconds until this device checks a code again (at least 1 while it waits); 0 if now."""
        allowed, info = self.verify_is_allowed()
        if allowed:
            return 0
        locked_until: datetime = info["locked_until"]
        return max(1, math.ceil((locked_until - timezone.now()).total_seconds()))

    def throttle_increment(self, commit: bool = True) -> None:
        super().throttle_increment(commit=False)
        if commit:
            # The wait doubles up to XMPP_TOTP_THROTTLE_MAX_SECONDS and no further: someone who knows
            # the password could otherwise keep the owner's codes failing for ever longer.
            type(self)._default_manager.filter(pk=self.pk).update(
                throttling_failure_count=Least(
                    models.F("throttling_failure_count") + 1, self._max_failures()
                ),
                throttling_failure_timestamp=self.throttling_failure_timestamp,
            )
            self.refresh_from_db(fields=["throttling_failure_count"])

    def throttle_claim(self) -> int:
        """Take this device's turn to check one code: 0 when taken, else the seconds to wait.

        A taken turn counts as a wrong code at once (and restarts the wait), so that checks running at
        the same time, in threads or processes, get one turn between them, not one each: the count
        moves by compare-and-set on the count and time read. The check then either passes (and the
        wait ends: :func:`reset_factor_throttles`), stays counted (a wrong code), or guessed nothing
        (a right code already used) and gives the turn back (:meth:`throttle_release`)."""
        wait = self.throttle_wait()
        if wait:
            return wait
        count: int = int(self.throttling_failure_count)  # type: ignore[has-type]  # django-otp's field
        at: datetime | None = self.throttling_failure_timestamp  # type: ignore[has-type]
        now = timezone.now()
        claimed = min(count + 1, self._max_failures())
        rows = type(self)._default_manager.filter(pk=self.pk, throttling_failure_count=count)
        rows = (
            rows.filter(throttling_failure_timestamp=at)
            if at
            else rows.filter(throttling_failure_timestamp=None)
        )
        if rows.update(throttling_failure_count=claimed, throttling_failure_timestamp=now) != 1:
            self.refresh_from_db(fields=["throttling_failure_count", "throttling_failure_timestamp"])
            return max(1, self.throttle_wait())  # another check took the turn: this one waits
        self._taken = (count, at)
        self.throttling_failure_count, self.throttling_failure_timestamp = claimed, now
        return 0

    def throttle_release(self) -> None:
        """Give back a turn that guessed nothing: the count and wait are as before it was taken."""
        if self._taken is None:
            return
        count, at = self._taken
        type(self)._default_manager.filter(
            pk=self.pk,
            throttling_failure_count=self.throttling_failure_count,
            throttling_failure_timestamp=self.throttling_failure_timestamp,
        ).update(throttling_failure_count=count, throttling_failure_timestamp=at)
        self.throttling_failure_count, self.throttling_failure_timestamp = count, at  # type: ignore[assignment]  # the field is nullable
        self._taken = None

    def _max_failures(self) -> int:
        """The failure count whose wait (factor · 2^(n-1)) is the largest not above the maximum."""
        factor = self.get_throttle_factor()
        ceiling = int(settings.XMPP_TOTP_THROTTLE_MAX_SECONDS)
        if factor <= 0 or ceiling < factor:
            return 1
        return 1 + int(math.log2(ceiling / factor))

    def throttle_reset(self, commit: bool = True) -> None:
        super().throttle_reset(commit=False)
        if commit:
            type(self)._default_manager.filter(pk=self.pk).update(
                throttling_failure_count=0, throttling_failure_timestamp=None
            )


def reset_factor_throttles(user_id: int) -> None:
    """A second factor of the account was passed: every factor's wait ends (a recovery code used while
    the authenticator app is throttled lets the app work again at once)."""
    cleared = {"throttling_failure_count": 0, "throttling_failure_timestamp": None}
    TotpDevice.objects.filter(user_id=user_id).update(**cleared)
    RecoveryCodes.objects.filter(user_id=user_id).update(**cleared)


class TotpDevice(AtomicThrottlingMixin, Device):  # type: ignore[misc]  # django-otp ships no type hints
    """An authenticator app (RFC 6238 TOTP, XEP-0400): a django-otp device. The logic, and the only
    code that reads the secret or moves ``last_t``, is in :mod:`accounts.totp`.

    Device gives ``user``, ``name`` and ``confirmed`` (False while it is being set up);
    AtomicThrottlingMixin gives the persisted back-off after wrong codes."""

    # The 20-byte secret, sealed with the factor key (accounts/secretbox.py): never in clear here.
    encrypted_key = models.BinaryField(editable=False)
    # The last time step accepted (-1: none yet). Only ever raised, by a conditional UPDATE.
    last_t = models.BigIntegerField(default=-1, editable=False)
    created = models.DateTimeField(auto_now_add=True)

    objects = TotpDeviceManager()

    class Meta:
        verbose_name = "TOTP authenticator"

    def verify_token(self, token: object) -> bool:
        """django-otp's contract: True once per accepted time step (replays fail), False otherwise."""
        from .totp import verify_device  # accounts.totp imports this module

        return verify_device(self, str(token)).ok

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding and kwargs.get("update_fields") is None:
            # last_t moves only forward, only through accounts.totp's conditional UPDATE
            kwargs["update_fields"] = [
                f.name for f in self._meta.concrete_fields if not f.primary_key and f.name != "last_t"
            ]
        super().save(*args, **kwargs)


class RecoveryCodesManager(DeviceManager, models.Manager["RecoveryCodes"]):  # type: ignore[misc]
    """django-otp's manager (``devices_for_user``), typed."""


class RecoveryCodes(AtomicThrottlingMixin, Device):  # type: ignore[misc]  # django-otp ships no type hints
    """An account's set of single-use recovery codes: one django-otp device per account, confirmed
    from the start, holding the codes (:class:`RecoveryCode`) of the last set generated. The logic is
    in :mod:`accounts.recovery`; the device's throttling counts wrong codes for the whole set."""

    # When the current set was generated (a new set keeps the device and its throttling).
    generated = models.DateTimeField(default=timezone.now)

    objects = RecoveryCodesManager()

    class Meta:
        verbose_name = "recovery codes"
        verbose_name_plural = "recovery codes"
        constraints = [models.UniqueConstraint(fields=["user"], name="one_recovery_code_set_per_account")]

    def verify_token(self, token: object) -> bool:
        """django-otp's contract: True for an unused code of the set, which is used up by it."""
        from .recovery import use_code  # accounts.recovery imports this module

        return use_code(self.user_id, str(token)).ok


class RecoveryCode(models.Model):
    """One code of a set, stored only as the SHA-256 (hex) of its normalised text; ``used`` is set
    once, by :mod:`accounts.recovery`'s conditional UPDATE."""

    device = models.ForeignKey(RecoveryCodes, on_delete=models.CASCADE, related_name="codes")
    digest = models.CharField(max_length=64, editable=False)
    used = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["device", "digest"], name="unique_recovery_code")]

    def __str__(self) -> str:
        return f"recovery code {self.pk} ({'used' if self.used else 'unused'})"


class WebAuthnCredentialManager(DeviceManager, models.Manager["WebAuthnCredential"]):  # type: ignore[misc]
    """django-otp's manager (``devices_for_user``), typed."""


class WebAuthnCredential(Device):  # type: ignore[misc]  # django-otp ships no type hints
    """A security key or passkey (W3C WebAuthn public key credential) registered for an account: a
    django-otp device, so that a web sign-in that passed it is "verified" like one that passed a code.
    The ceremonies, and the only code that moves ``sign_count``, are in :mod:`accounts.webauthn`.

    Device gives ``user``, ``name`` (the owner's label) and ``confirmed`` (always True: a credential is
    stored only once its registration has been verified)."""

    # base64url (no padding) of the credential id the authenticator chose: at most 1023 bytes (WebAuthn
    # Level 3 §5.8.3), 1364 characters
    credential_id = models.CharField(max_length=1400, unique=True, editable=False)
    # The COSE public key, as registered
    public_key = models.BinaryField(editable=False)
    # The account's WebAuthn user handle (base64url of 32 random bytes, never the username): the same
    # on every credential of one account; a passkey returns it as userHandle
    user_handle = models.CharField(max_length=64, editable=False, db_index=True)
    # The authenticator's signature counter as last seen (0: it keeps none). Only ever raised.
    sign_count = models.BigIntegerField(default=0, editable=False)
    transports = models.JSONField(default=list, blank=True, editable=False)
    aaguid = models.CharField(max_length=36, blank=True, editable=False)
    # A passkey that syncs between devices ("multi_device") or a key bound to one ("single_device")
    device_type = models.CharField(max_length=16, blank=True, editable=False)
    backed_up = models.BooleanField(default=False, editable=False)
    created = models.DateTimeField(default=timezone.now, editable=False)
    last_used = models.DateTimeField(null=True, blank=True, editable=False)
    # When an assertion came with a counter not above the stored one: the key may have been cloned.
    # Such an assertion is refused; the owner sees the flag on their security page.
    counter_regressed = models.DateTimeField(null=True, blank=True, editable=False)

    objects = WebAuthnCredentialManager()

    class Meta:
        verbose_name = "security key or passkey"
        verbose_name_plural = "security keys and passkeys"

    def verify_token(self, token: object) -> bool:
        """django-otp's contract for codes: a WebAuthn credential takes an assertion, never a code."""
        return False
