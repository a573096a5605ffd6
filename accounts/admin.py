"""The admin of accounts and their second factors (docs/admin.md).

Accounts: Django's user admin plus the XMPP fields, with how many second factors each account has.
Its password form calls ``User.set_password``, the one password door, so a password set here ends
the account's other sessions and FAST tokens like any other change.

Second factors are shown, never their secrets (no sealed TOTP key, no recovery code digest, no
WebAuthn public key or credential id), and never edited or deleted row by row here: the
"reset second factors" action on accounts removes them through the same functions as
``manage.py mfa reset`` (``accounts.totp.remove_all``, ``accounts.webauthn.remove``,
``accounts.recovery.remove``), which announce the change to the security log with the operator as
its actor. An account is not deleted here either: that would take its clients, grants and sessions
with it past the revocation door (deactivate it, and revoke its clients, instead).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar

from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin
from django.db import transaction
from django.db.models import (
    Case,
    Count,
    Exists,
    F,
    IntegerField,
    Max,
    Model,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.http import HttpRequest

from . import recovery, signals, totp, webauthn
from .models import RecoveryCode, RecoveryCodes, TotpDevice, User, WebAuthnCredential

M = TypeVar("M", bound=Model)


def admin_actor(request: HttpRequest) -> str:
    """Who did it, for the security log and the revocation texts: the operator, named as such."""
    return f"{getattr(request.user, 'username', request.user)} (admin site)"


def may_change(admin_model: admin.ModelAdmin[Any], request: HttpRequest) -> bool:
    """Whether the operator holds the model's change permission: what the actions that revoke or
    remove ask for, while the pages themselves are read-only (view permission)."""
    opts = admin_model.opts
    return bool(request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}"))


class ReadOnlyAdmin(admin.ModelAdmin[M]):
    """Rows that are shown, never added, edited or deleted here: what changes them goes through its
    own door (a flow that writes the security log), as an action where there is one."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def _count(model: type[Any], **conditions: Any) -> Coalesce:
    """How many rows of ``model`` belong to the outer account, as one subquery."""
    rows = (
        model.objects.filter(user=OuterRef("pk"), **conditions)
        .order_by()
        .values("user")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(rows, output_field=IntegerField()), Value(0))


class YesNoFilter(admin.SimpleListFilter):
    """A list filter with two answers, each a lookup (``yes``, ``no``: filter arguments) under a label."""

    labels: ClassVar[tuple[str, str]] = ("yes", "no")
    yes: ClassVar[dict[str, Any]] = {}
    no: ClassVar[dict[str, Any]] = {}

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]) -> list[tuple[str, str]]:
        return [("yes", self.labels[0]), ("no", self.labels[1])]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "yes":
            return queryset.filter(**self.yes)
        if self.value() == "no":
            return queryset.filter(**self.no)
        return queryset


class HasFactorFilter(YesNoFilter):
    title = "second factor"
    parameter_name = "factor"
    labels = ("has one", "password only")
    yes: ClassVar[dict[str, Any]] = {"factor_count__gt": 0}
    no: ClassVar[dict[str, Any]] = {"factor_count": 0}


#: What an operator may change about an account that the security log must say (accounts.signals).
ACCOUNT_FIELDS = ("username", "is_active", "is_staff", "is_superuser")


@admin.register(User)
class AccountAdmin(UserAdmin[User]):
    list_display = (
        "username",
        "is_staff",
        "is_active",
        "xmpp_password_login",
        "factors",
        "last_login",
    )
    list_filter = ("is_staff", "is_superuser", "is_active", "xmpp_password_login", HasFactorFilter)
    readonly_fields = ("scram_hashes", "factors", "last_login", "date_joined", "password_changed")
    fieldsets = (
        *UserAdmin.fieldsets,  # type: ignore[misc]
        ("XMPP", {"fields": ("xmpp_password_login", "scram_hashes", "password_changed")}),
        ("Second factors", {"fields": ("factors",)}),
    )
    actions = ("reset_second_factors",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[User]:
        unused_codes = RecoveryCode.objects.filter(
            device__user=OuterRef("pk"), device__confirmed=True, used__isnull=True
        )
        return (
            super()
            .get_queryset(request)
            .annotate(
                totp_count=_count(TotpDevice, confirmed=True),
                key_count=_count(WebAuthnCredential, confirmed=True),
                has_codes=Exists(unused_codes),
            )
            .annotate(
                factor_count=F("totp_count")
                + F("key_count")
                + Case(When(has_codes=True, then=Value(1)), default=Value(0))
            )
        )

    def save_model(self, request: HttpRequest, obj: User, form: Any, change: bool) -> None:
        """Saved as Django's admin does; a new policy for XMPP password logins is announced as the
        portal announces it (:data:`accounts.signals.policy_changed`), and a change of name, of active or
        staff status, or a new account (:data:`accounts.signals.account_changed`), with the operator as
        actor."""
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            watched = [name for name in ACCOUNT_FIELDS if not change or name in form.changed_data]
            if watched:
                signals.account_changed.send(
                    sender=User,
                    user=obj,
                    changes={
                        name: (form.initial.get(name) if change else None, getattr(obj, name))
                        for name in watched
                    },
                    created=not change,
                    actor=admin_actor(request),
                )
            if change and "xmpp_password_login" in form.changed_data:
                signals.policy_changed.send(
                    sender=User,
                    user=obj,
                    old=form.initial.get("xmpp_password_login", ""),
                    new=obj.xmpp_password_login,
                    actor=admin_actor(request),
                )

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # deleting an account would take its clients and sessions past the revocation door

    @admin.display(description="SCRAM credentials")
    def scram_hashes(self, obj: User) -> str:
        return ", ".join(sorted(obj.scram)) or "none (no password set)"

    @admin.display(description="second factors", ordering="factor_count")
    def factors(self, obj: User) -> str:
        """Authenticator apps and security keys one each, a set of recovery codes with unused codes as one."""
        count = getattr(obj, "factor_count", None)
        if count is None:  # a page without the annotation (the add form)
            return "-"
        parts = [
            f"{obj.totp_count} authenticator app(s)" if obj.totp_count else "",  # type: ignore[attr-defined]
            f"{obj.key_count} security key(s)" if obj.key_count else "",  # type: ignore[attr-defined]
            "recovery codes" if obj.has_codes else "",  # type: ignore[attr-defined]
        ]
        listed = ", ".join(part for part in parts if part)
        return f"{count}: {listed}" if listed else "0"

    @admin.action(
        description="Reset second factors (remove every authenticator app, security key and recovery code)",
        permissions=["reset"],
    )
    def reset_second_factors(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        actor = admin_actor(request)
        done = []
        for user in queryset:
            with transaction.atomic():  # as `manage.py mfa reset`: every factor, or none
                removed = totp.remove_all(user, actor=actor)
                removed += webauthn.remove(user, actor=actor)
                removed += 1 if recovery.remove(user, actor=actor) else 0
            done.append(f"{user.username}: {removed}")
        self.message_user(
            request,
            f"Removed the second factors of {len(done)} account(s) ({'; '.join(done)}); "
            "they sign in with the password alone until they set up new ones",
            messages.SUCCESS,
        )

    def has_reset_permission(self, request: HttpRequest) -> bool:
        return may_change(self, request)


# -- second factors: shown, never their secrets ---------------------------------------------------


@admin.register(TotpDevice)
class TotpDeviceAdmin(ReadOnlyAdmin[TotpDevice]):
    list_display = ("name", "user", "confirmed", "created", "last_code_accepted", "throttling_failure_count")
    list_filter = ("confirmed",)
    list_select_related = ("user",)
    search_fields = ("user__username", "name")
    fields = (
        "name",
        "user",
        "confirmed",
        "created",
        "last_code_accepted",
        "throttling_failure_count",
        "throttling_failure_timestamp",
    )
    readonly_fields = fields

    @admin.display(description="last code accepted", ordering="last_t")
    def last_code_accepted(self, obj: TotpDevice) -> datetime | None:
        """The start of the last time step a code was accepted for (none yet: never used)."""
        if obj.last_t < 0:
            return None
        return datetime.fromtimestamp(obj.last_t * totp.PERIOD, tz=UTC)


@admin.register(RecoveryCodes)
class RecoveryCodesAdmin(ReadOnlyAdmin[RecoveryCodes]):
    list_display = ("name", "user", "generated", "unused", "total", "last_used", "throttling_failure_count")
    list_select_related = ("user",)
    search_fields = ("user__username",)
    fields = (
        "name",
        "user",
        "confirmed",
        "generated",
        "unused",
        "total",
        "last_used",
        "throttling_failure_count",
        "throttling_failure_timestamp",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[RecoveryCodes]:
        sets: QuerySet[RecoveryCodes] = (
            super()
            .get_queryset(request)
            .annotate(
                code_count=Count("codes"),
                unused_count=Count("codes", filter=Q(codes__used__isnull=True)),
                code_last_used=Max("codes__used"),
            )
        )
        return sets

    @admin.display(description="unused codes", ordering="unused_count")
    def unused(self, obj: RecoveryCodes) -> int:
        return int(obj.unused_count)

    @admin.display(description="codes in the set", ordering="code_count")
    def total(self, obj: RecoveryCodes) -> int:
        return int(obj.code_count)

    @admin.display(description="last code used", ordering="code_last_used")
    def last_used(self, obj: RecoveryCodes) -> datetime | None:
        return obj.code_last_used  # type: ignore[no-any-return]


class CounterFilter(admin.SimpleListFilter):
    title = "signature counter"
    parameter_name = "counter"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]) -> list[tuple[str, str]]:
        return [("regressed", "went backwards (copied?)")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "regressed":
            return queryset.filter(counter_regressed__isnull=False)
        return queryset


@admin.register(WebAuthnCredential)
class WebAuthnCredentialAdmin(ReadOnlyAdmin[WebAuthnCredential]):
    list_display = ("name", "user", "kind", "created", "last_used", "counter_went_backwards")
    list_filter = ("device_type", "backed_up", CounterFilter)
    list_select_related = ("user",)
    search_fields = ("user__username", "name")
    fields = (
        "name",
        "user",
        "kind",
        "backed_up",
        "transports",
        "aaguid",
        "created",
        "last_used",
        "sign_count",
        "counter_regressed",
    )
    readonly_fields = (*fields, "counter_went_backwards")
    actions = ("remove_keys",)

    @admin.display(description="kind", ordering="device_type")
    def kind(self, obj: WebAuthnCredential) -> str:
        return "passkey (synced)" if obj.device_type == "multi_device" else "security key"

    @admin.display(description="counter went backwards", boolean=True, ordering="counter_regressed")
    def counter_went_backwards(self, obj: WebAuthnCredential) -> bool:
        return obj.counter_regressed is not None

    @admin.action(description="Remove the selected security keys and passkeys", permissions=["remove"])
    def remove_keys(self, request: HttpRequest, queryset: QuerySet[WebAuthnCredential]) -> None:
        actor = admin_actor(request)
        removed = 0
        for credential in queryset.select_related("user"):
            removed += webauthn.remove(credential.user, credential.pk, actor=actor)
        self.message_user(request, f"Removed {removed} security key(s) or passkey(s)", messages.SUCCESS)

    def has_remove_permission(self, request: HttpRequest) -> bool:
        return bool(request.user.has_perm("accounts.change_user"))
