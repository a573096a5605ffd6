"""The reads every login makes, written in SQL.

Building a query with the ORM costs more CPU here than running it: 0.55 ms for the account
lookup, 1.3 ms for the live app passwords, 1.0 ms for the client with its grant, against about
0.04 ms for the same SQL through the cursor (measured on the reference machine; see
docs/performance.md). A login makes these reads every time, so they are SQL; everything that
writes, and everything rare, stays with the ORM.

The SQL is portable between SQLite and PostgreSQL: ``%s`` parameters, table and column names
from the models' metadata, datetimes adapted by the backend, and results normalised (SQLite
gives JSON as text and naive UTC datetimes; comparisons come back as 0/1).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any

from django.db import connection

from accounts.models import RecoveryCode, RecoveryCodes, TotpDevice, User, WebAuthnCredential

from .models import LIVE_GRANT_SQL, AppPassword, Client, FastToken, Grant


def _tables() -> tuple[str, str, str, str]:
    return User._meta.db_table, Client._meta.db_table, Grant._meta.db_table, FastToken._meta.db_table


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str | bytes) else value


def _aware(value: Any) -> datetime | None:
    if value is None:
        return None
    moment: datetime = value
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _at(moment: datetime) -> Any:
    return connection.ops.adapt_datetimefield_value(moment)


@cache
def _credentials_sql() -> str:
    user, _, grant, _ = _tables()
    app = AppPassword._meta.db_table
    # The app passwords are joined only when live, so an account with none (or only dead ones)
    # still comes back, once, with NULLs.
    return (
        f"SELECT u.id, u.scram, a.id, a.scram FROM {user} u "
        f"LEFT JOIN ({app} a JOIN {grant} g ON g.id = a.grant_id AND {LIVE_GRANT_SQL}) ON a.user_id = u.id "
        "WHERE u.username = %s AND u.is_active = %s"
    )


@dataclass(frozen=True, slots=True)
class Credentials:
    user_id: int
    scram: dict[str, Any]  # the account's entries, hash name -> salt, iterations, keys
    app_passwords: list[tuple[int, dict[str, Any]]]  # live app passwords: id, their entries


def credentials(localpart: str, now: datetime) -> Credentials | None:
    """The account's SCRAM entries and its live app passwords', in one query; None if no such
    active account."""
    with connection.cursor() as cursor:
        cursor.execute(_credentials_sql(), [_at(now), localpart, True])
        rows = cursor.fetchall()
    if not rows:
        return None
    apps = [(int(app_id), _json(app_scram)) for _, _, app_id, app_scram in rows if app_id is not None]
    return Credentials(user_id=int(rows[0][0]), scram=_json(rows[0][1]) or {}, app_passwords=apps)


@cache
def _password_login_sql() -> str:
    user, client, grant, _ = _tables()
    return (
        "SELECT u.id, u.is_active, u.is_staff, u.xmpp_password_login, "
        "c.id, c.software, c.device, c.revoked IS NULL, c.password_seen, "
        f"g.id, g.scopes, g.expires, g.last_used, {LIVE_GRANT_SQL}, "
        # the second factors the login must pass one of as a task: a confirmed authenticator app
        # (accounts.TotpDevice), unused recovery codes (accounts.RecoveryCodes), a security key or
        # passkey (accounts.WebAuthnCredential)
        f"EXISTS (SELECT 1 FROM {TotpDevice._meta.db_table} d WHERE d.user_id = u.id AND d.confirmed), "
        f"EXISTS (SELECT 1 FROM {RecoveryCode._meta.db_table} r JOIN {RecoveryCodes._meta.db_table} s "
        "ON s.id = r.device_id WHERE s.user_id = u.id AND s.confirmed AND r.used IS NULL), "
        f"EXISTS (SELECT 1 FROM {WebAuthnCredential._meta.db_table} w "
        "WHERE w.user_id = u.id AND w.confirmed) "
        f"FROM {user} u LEFT JOIN {client} c ON c.user_id = u.id AND c.user_agent_id = %s "
        f"LEFT JOIN {grant} g ON g.id = c.grant_id "
        "WHERE u.username = %s"
    )


@dataclass(frozen=True, slots=True)
class PasswordLogin:
    """The account, and the client (by user-agent id) with its grant if it has logged in before."""

    user_id: int
    active: bool
    staff: bool
    policy: str
    client_id: int | None
    software: str
    device: str
    client_live: bool
    password_seen: datetime | None
    grant_id: int | None
    grant_scopes: list[str]
    grant_expires: datetime | None
    grant_last_used: datetime | None
    grant_live: bool
    has_totp: bool
    has_recovery_codes: bool
    has_webauthn: bool


def password_login(localpart: str, user_agent_id: str, now: datetime) -> PasswordLogin | None:
    with connection.cursor() as cursor:
        cursor.execute(_password_login_sql(), [_at(now), user_agent_id, localpart])
        row = cursor.fetchone()
    if row is None:
        return None
    return PasswordLogin(
        user_id=int(row[0]),
        active=bool(row[1]),
        staff=bool(row[2]),
        policy=str(row[3]),
        client_id=None if row[4] is None else int(row[4]),
        software=row[5] or "",
        device=row[6] or "",
        client_live=bool(row[7]),
        password_seen=_aware(row[8]),
        grant_id=None if row[9] is None else int(row[9]),
        grant_scopes=list(_json(row[10]) or []),
        grant_expires=_aware(row[11]),
        grant_last_used=_aware(row[12]),
        grant_live=bool(row[13]),
        has_totp=bool(row[14]),
        has_recovery_codes=bool(row[15]),
        has_webauthn=bool(row[16]),
    )


@cache
def _fast_tokens_sql() -> str:
    user, client, grant, token = _tables()
    return (
        f"SELECT t.id, t.key, t.nonce, t.mechanism FROM {token} t "
        f"JOIN {client} c ON c.id = t.client_id JOIN {user} u ON u.id = c.user_id "
        f"JOIN {grant} g ON g.id = c.grant_id "
        "WHERE u.username = %s AND u.is_active = %s AND c.user_agent_id = %s AND c.revoked IS NULL "
        f"AND {LIVE_GRANT_SQL} AND t.expires > %s"
    )


def fast_tokens(localpart: str, user_agent_id: str, now: datetime) -> list[tuple[int, bytes, bytes, str]]:
    """The live tokens (id, masked key, nonce, mechanism) of that client of that account."""
    at = _at(now)
    with connection.cursor() as cursor:
        cursor.execute(_fast_tokens_sql(), [localpart, True, user_agent_id, at, at])
        return [(int(pk), bytes(key), bytes(nonce), str(mech)) for pk, key, nonce, mech in cursor.fetchall()]


@cache
def _fast_login_sql() -> str:
    user, client, grant, token = _tables()
    return (
        "SELECT u.id, u.is_staff, t.slot, t.issued, c.id, c.user_agent_id, c.last_seen, c.last_auth, "
        "c.software, c.device, g.id, g.scopes, g.expires, g.last_used "
        f"FROM {token} t JOIN {client} c ON c.id = t.client_id JOIN {user} u ON u.id = c.user_id "
        f"JOIN {grant} g ON g.id = c.grant_id "
        "WHERE t.id = %s AND u.username = %s AND u.is_active = %s AND c.revoked IS NULL "
        # a token used with a count takes the long way when it comes without one: refused there
        f"AND {LIVE_GRANT_SQL} AND t.expires > %s AND t.last_count IS NULL"
    )


@dataclass(frozen=True, slots=True)
class FastLogin:
    """A live token with its live client and grant (the checks are in the query)."""

    user_id: int
    staff: bool
    slot: str
    issued: datetime
    client_id: int
    user_agent_id: str
    last_seen: datetime | None
    last_auth: str
    software: str
    device: str
    grant_id: int
    grant_scopes: list[str]
    grant_expires: datetime | None
    grant_last_used: datetime | None


def fast_login(localpart: str, token_id: int, now: datetime) -> FastLogin | None:
    at = _at(now)
    with connection.cursor() as cursor:
        cursor.execute(_fast_login_sql(), [token_id, localpart, True, at, at])
        row = cursor.fetchone()
    if row is None:
        return None
    issued = _aware(row[3])
    assert issued is not None
    return FastLogin(
        user_id=int(row[0]),
        staff=bool(row[1]),
        slot=str(row[2]),
        issued=issued,
        client_id=int(row[4]),
        user_agent_id=str(row[5]),
        last_seen=_aware(row[6]),
        last_auth=str(row[7]),
        software=row[8] or "",
        device=row[9] or "",
        grant_id=int(row[10]),
        grant_scopes=list(_json(row[11]) or []),
        grant_expires=_aware(row[12]),
        grant_last_used=_aware(row[13]),
    )
