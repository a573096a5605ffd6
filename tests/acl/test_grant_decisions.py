"""What a login is given, at the edges: expiry, staleness and rotation age to the microsecond,
every refusal with its text, and the permission a client list shows (docs/access.md)."""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from django.utils import timezone
from lxml import etree

from accounts import scram
from accounts.models import PasswordLogin, User
from sessions_acl import access, app_passwords, credentials, login, loginreads, revocation, tokens, xep0494
from sessions_acl.models import AuthEvent, Client, FastToken, Grant
from xmppauth.proto.ns import CAM, GRANT

pytestmark = pytest.mark.django_db

UA = "5b0f3c2e-1111-4c2e-9d3b-5f1e2a7c9b10"
NONE = "HT-SHA-256-NONE"
EXPR = "HT-SHA-256-EXPR"
# Half a second past the minute: no moment in these tests falls on a whole second.
T0 = datetime(2026, 6, 1, 12, 0, 0, 500000, tzinfo=UTC)
TICK = timedelta(microseconds=1)
MINUTE = timedelta(seconds=60)
DAY = timedelta(days=1)  # XMPP_FAST_ROTATE_SECONDS, by default
EXPIRED = "this token is not valid (expired, replaced or revoked); authenticate with your password"
APP_GONE = "this app password was revoked or has expired"
NS = {"c": CAM, "g": GRANT}


class Clock:
    """``timezone.now``, set by the test; with a ``step``, every reading moves it on by that much."""

    def __init__(self) -> None:
        self.now = T0
        self.step = timedelta(0)

    def read(self) -> datetime:
        moment = self.now
        self.now += self.step
        return moment


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(timezone, "now", c.read)
    return c


def authorize(credential_id: str = "", **kwargs: Any) -> login.Authorization | login.Refusal:
    kwargs.setdefault("user_agent_id", UA)
    localpart = kwargs.pop("localpart", "alice")
    return login.authorize(localpart, credential_id=credential_id, mechanism="SCRAM-SHA-256", **kwargs)


def ok(credential_id: str = "", **kwargs: Any) -> login.Authorization:
    result = authorize(credential_id, **kwargs)
    assert isinstance(result, login.Authorization), result
    return result


def refused(credential_id: str = "", **kwargs: Any) -> login.Refusal:
    result = authorize(credential_id, **kwargs)
    assert isinstance(result, login.Refusal), result
    return result


def fast(pk: int) -> str:
    return f"fast:{pk}"


def token_pk(auth: login.Authorization) -> int:
    assert auth.token is not None
    assert auth.client_id is not None
    return FastToken.objects.get(slot="new", client_id=auth.client_id).pk


def current_token(mechanism: str = NONE) -> int:
    """A client that logged in with its password, asked for a token and then used it (now)."""
    pk = token_pk(ok(fast_request=mechanism, software="Chat", device="phone"))
    ok(fast(pk))
    assert FastToken.objects.get(pk=pk).slot == "current"
    return pk


def client() -> Client:
    return Client.objects.get(user_agent_id=UA)


def fresh_records(now: datetime) -> None:
    """The client was seen and its grant used just now: a reconnect need write nothing."""
    Client.objects.update(last_seen=now, last_auth="fast")
    Grant.objects.update(last_used=now)


# ---------------------------------------------------------------------- FAST: rotation age
@pytest.mark.parametrize("records", ["fresh", "a day old"])
def test_a_token_exactly_as_old_as_the_rotation_age_brings_a_new_one_of_its_mechanism(
    alice: User, clock: Clock, records: str
) -> None:
    pk = current_token(EXPR)
    clock.now = T0 + DAY
    if records == "fresh":
        fresh_records(clock.now)
    auth = ok(fast(pk))
    assert auth.token is not None
    assert auth.token.mechanism == EXPR
    assert auth.credential == "fast"
    assert FastToken.objects.get(slot="new").mechanism == EXPR
    ok(fast(pk))  # the old one works until the new one is used


@pytest.mark.parametrize("records", ["fresh", "a minute old"])
def test_a_token_a_moment_younger_than_the_rotation_age_brings_none(
    alice: User, clock: Clock, records: str
) -> None:
    pk = current_token()
    clock.now = T0 + DAY - TICK
    if records == "fresh":
        fresh_records(clock.now)
    else:
        fresh_records(clock.now - MINUTE)
    auth = ok(fast(pk))
    assert auth.token is None
    assert list(FastToken.objects.values_list("pk", flat=True)) == [pk]


# ---------------------------------------------------------------------- FAST: last seen / last used
def test_a_fast_reconnect_within_the_minute_writes_nothing(
    alice: User, clock: Clock, django_assert_num_queries: Any
) -> None:
    pk = current_token()
    clock.now = T0 + MINUTE - TICK
    with django_assert_num_queries(1):
        auth = ok(fast(pk))
    assert (auth.credential, auth.token, auth.label) == ("fast", None, "Chat on phone")
    assert client().last_seen == T0
    assert Grant.objects.get().last_used == T0


def test_a_fast_login_a_minute_after_the_last_records_it(alice: User, clock: Clock) -> None:
    pk = current_token()
    clock.now = T0 + MINUTE
    ok(fast(pk))
    assert client().last_seen == T0 + MINUTE
    assert Grant.objects.get().last_used == T0 + MINUTE


@pytest.mark.parametrize("old", ["client", "grant"])
def test_a_fast_login_records_whichever_record_is_a_minute_old(alice: User, clock: Clock, old: str) -> None:
    pk = current_token()
    clock.now = T0 + 2 * MINUTE
    fresh_records(clock.now - MINUTE + TICK)
    if old == "client":
        Client.objects.update(last_seen=clock.now - MINUTE)
    else:
        Grant.objects.update(last_used=clock.now - MINUTE)
    ok(fast(pk))
    assert (client().last_seen == clock.now) == (old == "client")
    assert (Grant.objects.get().last_used == clock.now) == (old == "grant")


def test_the_first_fast_login_after_a_password_login_is_recorded_as_fast(alice: User, clock: Clock) -> None:
    pk = current_token()
    Client.objects.update(last_auth="password")
    clock.now = T0 + TICK
    auth = ok(fast(pk))
    assert auth.credential == "fast"
    assert client().last_auth == "fast"


def test_a_staff_fast_reconnect_keeps_admin(
    alice: User, clock: Clock, django_assert_num_queries: Any
) -> None:
    alice.is_staff = True
    alice.save()
    pk = current_token()
    clock.now = T0 + TICK
    with django_assert_num_queries(1):
        auth = ok(fast(pk))
    assert auth.scopes == access.ROLES["admin"]
    assert (auth.user_id, auth.username, auth.staff) == (alice.pk, "alice", True)
    assert auth.client_id == client().pk
    assert auth.grant_id == client().grant_id
    assert auth.grant_expires is None


def test_a_fast_login_carries_the_grants_expiry(alice: User, clock: Clock) -> None:
    pk = current_token()
    Grant.objects.update(expires=T0 + DAY)
    clock.now = T0 + TICK
    quick = ok(fast(pk))
    assert quick.grant_expires == T0 + DAY
    long = ok(fast(pk), fast_count=1)
    assert long.grant_expires == T0 + DAY
    assert (long.user_id, long.username, long.staff, long.label) == (
        alice.pk,
        "alice",
        False,
        "Chat on phone",
    )


# ---------------------------------------------------------------------- FAST: refusals
@pytest.mark.parametrize("slot", ["new", "current"])
def test_a_token_is_refused_at_its_expiry_and_accepted_a_moment_before(
    alice: User, clock: Clock, slot: str
) -> None:
    pk = current_token() if slot == "current" else token_pk(ok(fast_request=NONE))
    FastToken.objects.update(expires=T0 + MINUTE)
    clock.now = T0 + MINUTE
    result = refused(fast(pk))
    assert (result.condition, result.text) == ("credentials-expired", EXPIRED)
    clock.now = T0 + MINUTE - TICK
    ok(fast(pk))


@pytest.mark.parametrize("slot", ["new", "current"])
def test_a_token_presented_by_another_user_agent_is_refused(alice: User, clock: Clock, slot: str) -> None:
    pk = current_token() if slot == "current" else token_pk(ok(fast_request=NONE))
    clock.now = T0 + TICK
    result = refused(fast(pk), user_agent_id="another-client")
    assert (result.condition, result.text) == ("credentials-expired", EXPIRED)
    assert refused(fast(pk), user_agent_id=None).condition == "credentials-expired"


def test_a_token_of_another_account_is_refused(alice: User, bob: User, clock: Clock) -> None:
    pk = current_token()
    result = refused(fast(pk), localpart="bob")
    assert (result.condition, result.text) == ("credentials-expired", EXPIRED)


@pytest.mark.parametrize("what", ["client revoked", "no grant", "grant revoked", "grant expired"])
def test_a_token_of_a_client_without_a_live_grant_is_refused(alice: User, clock: Clock, what: str) -> None:
    pk = token_pk(ok(fast_request=NONE))
    if what == "client revoked":
        Client.objects.update(revoked=T0)
    elif what == "no grant":
        Client.objects.update(grant=None)
    elif what == "grant revoked":
        Grant.objects.update(revoked=T0)
    else:
        Grant.objects.update(expires=T0 + MINUTE)
    clock.now = T0 + MINUTE
    result = refused(fast(pk))
    assert (result.condition, result.text) == ("credentials-expired", EXPIRED)


def test_an_unexpired_grant_lets_the_token_in(alice: User, clock: Clock) -> None:
    pk = token_pk(ok(fast_request=NONE))
    Grant.objects.update(expires=T0 + MINUTE)
    clock.now = T0 + MINUTE - TICK
    assert ok(fast(pk)).grant_expires == T0 + MINUTE


def test_a_count_must_grow_also_on_a_quick_reconnect(alice: User, clock: Clock) -> None:
    pk = current_token()
    clock.now = T0 + TICK
    ok(fast(pk), fast_count=0)
    result = refused(fast(pk), fast_count=0)
    assert (result.condition, result.text) == ("not-authorized", "this token count was already used")
    ok(fast(pk), fast_count=1)
    assert refused(fast(pk), fast_count=1).condition == "not-authorized"
    # a token that has been counted must go on being counted: a recorded login with its count left out
    result = refused(fast(pk))
    assert (result.condition, result.text) == (
        "not-authorized",
        "this token is used with a count: send the next one",
    )
    ok(fast(pk), fast_count=2)


def test_a_token_never_counted_needs_no_count(alice: User, clock: Clock) -> None:
    pk = current_token()
    clock.now = T0 + TICK
    ok(fast(pk))
    ok(fast(pk))  # nothing to compare (XEP-0484: count is optional)


def test_an_unknown_account_is_disabled_for_every_credential(alice: User, clock: Clock) -> None:
    for credential in ("", "app:1", "fast:1"):
        result = refused(credential, localpart="mallory")
        assert (result.condition, result.text) == ("account-disabled", "this account is disabled")


def test_an_inactive_account_cannot_use_its_app_password_or_token(alice: User, clock: Clock) -> None:
    pk = current_token()
    app = app_passwords.create_app_password(alice, "bot", ["presence"]).app_password
    User.objects.filter(pk=alice.pk).update(is_active=False)
    clock.now = T0 + TICK
    for credential in (f"app:{app.pk}", fast(pk)):
        result = refused(credential)
        assert (result.condition, result.text) == ("account-disabled", "this account is disabled")


# ---------------------------------------------------------------------- FAST: invalidate, request, rotate
def test_invalidating_a_token_on_a_quick_reconnect_kills_it(alice: User, clock: Clock) -> None:
    pk = current_token()
    clock.now = T0 + TICK
    auth = ok(fast(pk), fast_invalidate=True)
    assert auth.token is None
    assert refused(fast(pk)).condition == "credentials-expired"
    assert credentials.fast_candidates("alice", UA) == []
    event = AuthEvent.objects.get(kind="token-invalidated")
    assert (event.user_id, event.detail) == (alice.pk, "by Chat on phone")


def test_invalidate_with_a_token_request_swaps_the_token(alice: User, clock: Clock) -> None:
    pk = current_token()
    clock.now = T0 + TICK
    auth = ok(fast(pk), fast_invalidate=True, fast_request=EXPR)
    assert auth.token is not None
    assert auth.token.mechanism == EXPR
    assert refused(fast(pk)).condition == "credentials-expired"
    ok(fast(token_pk(auth)))


def test_a_fast_login_asking_for_a_token_gets_one_and_keeps_the_old(alice: User, clock: Clock) -> None:
    pk = current_token()
    clock.now = T0 + TICK
    auth = ok(fast(pk), fast_request=EXPR)
    assert auth.token is not None
    assert auth.token.mechanism == EXPR
    new = token_pk(auth)
    ok(fast(pk))
    ok(fast(new))
    assert list(FastToken.objects.values_list("pk", "slot")) == [(new, "current")]
    assert refused(fast(pk)).condition == "credentials-expired"


@pytest.mark.parametrize(("age", "replaced"), [(DAY, True), (DAY - TICK, False)])
def test_rotation_replaces_an_unused_new_token_only_once_it_is_due_itself(
    alice: User, clock: Clock, age: timedelta, replaced: bool
) -> None:
    pk = current_token()
    waiting = token_pk(ok(fast(pk), fast_request=NONE))
    clock.now = T0 + 2 * DAY
    FastToken.objects.filter(pk=pk).update(issued=T0)
    FastToken.objects.filter(pk=waiting).update(issued=clock.now - age)
    auth = ok(fast(pk))
    assert (auth.token is not None) == replaced
    assert FastToken.objects.filter(pk=waiting).exists() == (not replaced)


@pytest.mark.parametrize(("age", "replaced"), [(MINUTE, True), (MINUTE - TICK, False)])
def test_with_rotation_at_every_login_a_token_handed_out_within_the_minute_is_kept(
    alice: User, clock: Clock, settings: Any, age: timedelta, replaced: bool
) -> None:
    settings.XMPP_FAST_ROTATE_SECONDS = 0
    pk = current_token()
    waiting = token_pk(ok(fast(pk), fast_request=NONE))
    clock.now = T0 + DAY
    FastToken.objects.filter(pk=waiting).update(issued=clock.now - age)
    auth = ok(fast(pk))
    assert (auth.token is not None) == replaced
    assert FastToken.objects.filter(pk=waiting).exists() == (not replaced)


def test_a_new_token_lives_thirty_days_from_now(alice: User, clock: Clock) -> None:
    auth = ok(fast_request=NONE, software="Chat", device="phone")
    assert auth.token is not None
    assert auth.token.expiry == "2026-07-01T12:00:00Z"
    assert auth.token.mechanism == NONE
    row = FastToken.objects.get()
    assert (row.issued, row.expires, row.slot, row.mechanism) == (T0, T0 + timedelta(days=30), "new", NONE)
    event = AuthEvent.objects.get(kind="token-issued")
    assert (event.user_id, event.detail) == (alice.pk, "HT-SHA-256-NONE token for Chat on phone")


def test_a_second_request_replaces_the_unused_new_token(alice: User, clock: Clock) -> None:
    first = token_pk(ok(fast_request=NONE))
    second = token_pk(ok(fast_request=NONE))
    assert first != second
    assert refused(fast(first)).condition == "credentials-expired"
    ok(fast(second))


# ---------------------------------------------------------------------- password logins
@pytest.mark.parametrize(
    ("policy", "text"),
    [
        (
            PasswordLogin.OFF,
            "password logins over XMPP are turned off for this account: "
            "use an app password, or a client that already holds a FAST token",
        ),
        (
            PasswordLogin.SECOND_FACTOR,
            "this account allows password logins only with a second factor, and it has none yet: "
            "enrol one with a client that speaks SASL2 tasks (XEP-0400 TOTP-INIT), or use an app password",
        ),
    ],
)
def test_the_password_login_policy_refuses_with_its_reason(
    alice: User, clock: Clock, policy: str, text: str
) -> None:
    pk = current_token()
    alice.xmpp_password_login = policy
    alice.save(update_fields=["xmpp_password_login"])
    result = refused(tasks=False)  # RFC 6120 SASL: no task can help
    assert (result.condition, result.text) == ("not-authorized", text)
    clock.now = T0 + TICK
    ok(fast(pk))


def test_a_first_password_login_makes_a_client_with_a_full_grant(alice: User, clock: Clock) -> None:
    auth = ok(software="Chat", device="phone")
    grant = Grant.objects.get()
    assert (grant.role, grant.origin, grant.scopes) == ("full", "password", sorted(access.ROLES["full"]))
    c = client()
    assert (c.first_seen, c.last_seen, c.password_seen, c.last_auth) == (T0, T0, T0, "password")
    assert grant.last_used == T0
    assert (auth.credential, auth.label, auth.token, auth.grant_id) == (
        "password",
        "Chat on phone",
        None,
        grant.pk,
    )
    assert (auth.user_id, auth.username, auth.staff, auth.client_id) == (alice.pk, "alice", False, c.pk)


def test_a_staff_accounts_first_password_login_gets_the_admin_role(alice: User, clock: Clock) -> None:
    alice.is_staff = True
    alice.save()
    auth = ok()
    grant = Grant.objects.get()
    assert (grant.role, grant.scopes) == ("admin", sorted(access.ROLES["admin"]))
    assert auth.scopes == access.ROLES["admin"]
    assert auth.staff


def test_a_password_reconnect_within_the_minute_writes_nothing(
    alice: User, clock: Clock, django_assert_num_queries: Any
) -> None:
    ok(software="Chat", device="phone")
    clock.now = T0 + MINUTE - TICK
    with django_assert_num_queries(1):
        auth = ok(software="Chat", device="phone")
    assert (auth.label, auth.credential, auth.token) == ("Chat on phone", "password", None)
    assert (auth.user_id, auth.username, auth.staff, auth.client_id) == (
        alice.pk,
        "alice",
        False,
        client().pk,
    )
    assert (auth.grant_id, auth.grant_expires, auth.scopes) == (client().grant_id, None, access.ROLES["full"])
    with django_assert_num_queries(1):
        ok()
    assert (client().password_seen, client().last_seen) == (T0, T0)


def test_a_password_login_a_minute_later_is_recorded(alice: User, clock: Clock) -> None:
    first = ok()
    Client.objects.update(last_auth="fast")
    clock.now = T0 + MINUTE
    again = ok()
    assert again.grant_id == first.grant_id
    c = client()
    assert (c.password_seen, c.last_seen, c.last_auth) == (T0 + MINUTE, T0 + MINUTE, "password")
    assert Grant.objects.get().last_used == T0 + MINUTE


@pytest.mark.parametrize("field", ["software", "device"])
def test_a_client_that_names_itself_anew_is_renamed_and_keeps_its_name_otherwise(
    alice: User, clock: Clock, field: str
) -> None:
    ok(software="Chat", device="phone")
    clock.now = T0 + TICK
    renamed = ok(**{field: "Other"})
    assert renamed.label == ("Other on phone" if field == "software" else "Chat on Other")
    clock.now = T0 + 2 * TICK
    assert ok().label == renamed.label
    assert ok(software=None, device=None).label == renamed.label


def test_long_names_are_cut_to_256_characters(alice: User, clock: Clock) -> None:
    auth = ok(software="s" * 300, device="d" * 300)
    assert auth.label == "s" * 256 + " on " + "d" * 256
    clock.now = T0 + TICK
    assert ok(software="s" * 300, device="d" * 300).label == auth.label


def test_a_password_reconnect_asking_for_a_token_gets_one(alice: User, clock: Clock) -> None:
    ok()
    clock.now = T0 + TICK
    auth = ok(fast_request=EXPR)
    assert auth.token is not None
    assert auth.token.mechanism == EXPR
    assert (client().password_seen, client().last_seen) == (T0, T0)  # kept to the minute
    ok(fast(token_pk(auth)))


def test_a_login_without_a_user_agent_gets_no_token(alice: User, clock: Clock) -> None:
    auth = ok(user_agent_id=None, fast_request=NONE)
    assert auth.token is None
    assert not FastToken.objects.exists()
    assert credentials.fast_candidates("alice", "") == []
    assert ok(fast_request=NONE).token is not None  # control: with a user agent, the same login gets one


@pytest.mark.parametrize(("expires", "renewed"), [(T0 + MINUTE, True), (T0 + MINUTE + TICK, False)])
def test_a_client_whose_grant_expired_gets_a_fresh_one(
    alice: User, clock: Clock, expires: datetime, renewed: bool
) -> None:
    first = ok()
    Grant.objects.update(expires=expires)
    clock.now = T0 + MINUTE
    again = ok()
    assert (again.grant_id != first.grant_id) == renewed
    assert again.grant_expires == (None if renewed else expires)
    assert again.scopes == access.ROLES["full"]
    assert client().grant_id == again.grant_id


def test_a_client_whose_grant_is_gone_gets_a_fresh_one(alice: User, clock: Clock) -> None:
    first = ok()
    Grant.objects.all().delete()
    clock.now = T0 + TICK
    again = ok()
    assert again.grant_id != first.grant_id
    assert Grant.objects.get().pk == again.grant_id
    assert again.scopes == access.ROLES["full"]


def test_a_revoked_client_comes_back_with_its_password(alice: User, clock: Clock) -> None:
    first = ok(software="Chat", device="phone")
    revocation.revoke_client(cast(int, first.client_id), actor="test")
    clock.now = T0 + TICK
    again = ok()
    assert again.grant_id != first.grant_id
    assert again.client_id == first.client_id
    assert client().revoked is None
    assert client().password_seen == T0 + TICK
    listed = cast(list[Any], xep0494.client_list(alice).xpath("c:client/@id", namespaces=NS))
    assert listed == [f"c{first.client_id}"]


def test_a_client_marked_revoked_under_a_live_grant_is_brought_back(alice: User, clock: Clock) -> None:
    first = ok()
    Client.objects.update(revoked=T0)
    clock.now = T0 + TICK
    again = ok()
    assert again.grant_id == first.grant_id
    assert client().revoked is None


# ---------------------------------------------------------------------- app passwords
def test_an_app_password_login_holds_its_own_grant_and_marks_it_used(alice: User, clock: Clock) -> None:
    alice.is_staff = True
    alice.save()
    app = app_passwords.create_app_password(alice, "backup bot", ["messages.send", "presence"]).app_password
    Grant.objects.filter(pk=app.grant_id).update(expires=T0 + DAY)
    clock.now = T0 + MINUTE
    auth = ok(f"app:{app.pk}", fast_request=NONE)
    assert (auth.credential, auth.label, auth.client_id, auth.token) == (
        "app-password",
        "backup bot",
        None,
        None,
    )
    assert (auth.user_id, auth.username, auth.staff) == (alice.pk, "alice", True)
    assert (auth.grant_id, auth.grant_expires) == (app.grant_id, T0 + DAY)
    assert auth.scopes == {"messages.send", "presence"}
    assert Grant.objects.get(pk=app.grant_id).last_used == T0 + MINUTE


def test_an_app_password_without_expiry_works(alice: User, clock: Clock) -> None:
    app = app_passwords.create_app_password(alice, "bot", ["presence"]).app_password
    assert ok(f"app:{app.pk}").grant_expires is None


@pytest.mark.parametrize(("expires", "works"), [(T0 + MINUTE, False), (T0 + MINUTE + TICK, True)])
def test_an_app_password_stops_at_its_expiry(
    alice: User, clock: Clock, expires: datetime, works: bool
) -> None:
    app = app_passwords.create_app_password(alice, "bot", ["presence"]).app_password
    Grant.objects.filter(pk=app.grant_id).update(expires=expires)
    clock.now = T0 + MINUTE
    result = authorize(f"app:{app.pk}")
    if works:
        assert isinstance(result, login.Authorization)
    else:
        assert result == login.Refusal(condition="credentials-expired", text=APP_GONE)


def test_another_accounts_app_password_is_refused(alice: User, bob: User, clock: Clock) -> None:
    app = app_passwords.create_app_password(bob, "bot", ["presence"]).app_password
    result = refused(f"app:{app.pk}")
    assert (result.condition, result.text) == ("credentials-expired", APP_GONE)


def test_an_app_password_that_expires_after_the_login_read_it_is_refused(
    alice: User, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = app_passwords.create_app_password(alice, "bot", ["presence"]).app_password
    is_live = Grant.is_live

    def expired_meanwhile(grant: Grant, now: Any = None) -> bool:
        live = is_live(grant, now)
        Grant.objects.filter(pk=grant.pk).update(expires=T0)
        return live

    monkeypatch.setattr(Grant, "is_live", expired_meanwhile)
    result = refused(f"app:{app.pk}")
    assert (result.condition, result.text) == ("credentials-expired", APP_GONE)
    assert Grant.objects.get(pk=app.grant_id).last_used is None


# ---------------------------------------------------------------------- PLAIN and FAST candidates
def test_plain_refuses_a_password_that_is_not_a_valid_string(alice: User) -> None:
    assert credentials.check_plain("alice", "alice", "wonder\u0007land") is None
    assert credentials.check_plain(None, "alice", "wonderland") is None
    assert credentials.check_plain("alice", "alice", "wonderland") == ""  # control: the valid one matches


def test_plain_names_the_app_password_that_matched(alice: User) -> None:
    first = app_passwords.create_app_password(alice, "one", ["presence"])
    second = app_passwords.create_app_password(alice, "two", ["presence"])
    assert credentials.check_plain("alice", "alice", second.secret) == f"app:{second.app_password.pk}"
    assert credentials.check_plain("alice", "alice", first.secret) == f"app:{first.app_password.pk}"


def test_fast_candidates_need_an_account_and_a_user_agent(alice: User, clock: Clock) -> None:
    ok(user_agent_id=None)
    nameless = Client.objects.get(user_agent_id="")
    login._issue_token(nameless, NONE, T0)  # a token no login could have asked for
    assert credentials.fast_candidates("alice", "") == []
    assert credentials.fast_candidates("alice", None) == []
    pk = current_token(EXPR)
    assert credentials.fast_candidates(None, UA) == []
    [candidate] = credentials.fast_candidates("alice", UA)
    assert (candidate.credential_id, candidate.mechanism) == (fast(pk), EXPR)


# ---------------------------------------------------------------------- XEP-0494 permission
def permission(alice: User, scopes: list[str]) -> tuple[str, list[str]]:
    ok()
    Grant.objects.update(scopes=scopes)
    [entry] = cast(list[Any], xep0494.client_list(alice).xpath("c:client", namespaces=NS))
    status = cast(str, entry.xpath("string(c:permission/@status)", namespaces=NS))
    listed = cast(list[str], entry.xpath("c:permission/g:scopes/g:scope/text()", namespaces=NS))
    assert bool(entry.xpath("c:permission/*", namespaces=NS)) == (status == "restricted")
    return status, listed


FULL = sorted(access.ROLES["full"])
NORMAL = sorted(access.ROLES["full"] - {access.CLIENTS_MANAGE})


@pytest.mark.parametrize(
    ("staff", "scopes", "expected"),
    [
        (False, FULL, ("unrestricted", [])),
        (False, sorted(access.ROLES["admin"]), ("unrestricted", [])),
        (False, NORMAL, ("normal", [])),
        (True, sorted(access.ROLES["admin"]), ("unrestricted", [])),
        (True, FULL, ("normal", [])),
        (True, NORMAL, ("normal", [])),
        (False, ["presence", "messages.send"], ("restricted", ["messages.send", "presence"])),
        (
            True,
            sorted(set(NORMAL) - {access.ROSTER_WRITE}),
            ("restricted", sorted(set(NORMAL) - {"roster.write"})),
        ),
    ],
)
def test_the_client_list_calls_a_grant_unrestricted_normal_or_restricted(
    alice: User, clock: Clock, staff: bool, scopes: list[str], expected: tuple[str, list[str]]
) -> None:
    alice.is_staff = staff
    alice.save()
    assert permission(alice, scopes) == expected


# ---------------------------------------------------------------------- tokens.py
def test_a_token_is_a_secret_token_uri_of_64_url_safe_characters() -> None:
    made = {tokens.new_token() for _ in range(20)}
    assert len(made) == 20
    for token in made:
        assert re.fullmatch(r"secret-token:[A-Za-z0-9_-]{64}", token), token
        assert tokens.hmac_key(token) == hashlib.sha256(token.encode()).digest()


def test_a_sealed_key_is_masked_with_the_secret_key_and_its_nonce(settings: Any) -> None:
    key = bytes(range(32))
    masked, nonce = tokens.seal(key)
    assert len(nonce) == 16
    mask = hmac.new(
        settings.SECRET_KEY.encode(), b"xmppauth fast-token mask\0" + nonce, hashlib.sha256
    ).digest()
    assert masked == bytes(a ^ b for a, b in zip(key, mask, strict=True))
    assert tokens.unseal(memoryview(masked), memoryview(nonce)) == key  # type: ignore[arg-type]
    again, other_nonce = tokens.seal(key)
    assert other_nonce != nonce
    assert again != masked
    settings.SECRET_KEY = settings.SECRET_KEY + "-rotated"
    assert tokens.unseal(masked, nonce) != key


def test_xep0082_times_are_utc_whole_seconds(settings: Any) -> None:
    settings.TIME_ZONE = "America/New_York"  # the process's local time is not UTC
    moment = datetime(2026, 6, 1, 14, 0, 5, 999999, tzinfo=timezone.get_fixed_timezone(120))
    assert tokens.xep0082(moment) == "2026-06-01T12:00:05Z"


def test_token_lifetime_and_rotation_age_follow_the_settings(settings: Any) -> None:
    settings.XMPP_FAST_TOKEN_SECONDS = 3600
    settings.XMPP_FAST_ROTATE_SECONDS = 120
    assert tokens.token_lifetime() == timedelta(hours=1)
    assert tokens.rotate_after() == timedelta(minutes=2)


def test_an_app_password_is_four_groups_of_six_without_look_alikes() -> None:
    made = [tokens.new_app_password() for _ in range(200)]
    assert len(set(made)) == 200
    for secret in made:
        assert re.fullmatch(r"[a-hjkmnp-z2-9]{6}(-[a-hjkmnp-z2-9]{6}){3}", secret), secret
    assert set("".join(made).replace("-", "")) == set("abcdefghjkmnpqrstuvwxyz23456789")


def test_a_key_or_mask_of_the_wrong_length_is_refused_not_truncated() -> None:
    masked, nonce = tokens.seal(bytes(32))
    with pytest.raises(ValueError):
        tokens.seal(bytes(31))
    with pytest.raises(ValueError):
        tokens.seal(bytes(33))
    with pytest.raises(ValueError):
        tokens.unseal(masked[:31], nonce)
    with pytest.raises(ValueError):
        tokens.unseal(masked + b"\0", nonce)


# ---------------------------------------------------------------------- more edges
@pytest.mark.parametrize("credential", ["app password", "new token", "password"])
def test_a_login_is_judged_at_the_moment_it_started(alice: User, clock: Clock, credential: str) -> None:
    """A grant that expires a microsecond after the login started is still live for that login,
    however long the login takes (here every reading of the clock moves it on)."""
    if credential == "app password":
        app = app_passwords.create_app_password(alice, "bot", ["presence"]).app_password
        grant_id, credential_id = app.grant_id, f"app:{app.pk}"
    else:
        first = ok(fast_request=NONE)
        grant_id = first.grant_id
        credential_id = fast(token_pk(first)) if credential == "new token" else ""
    Grant.objects.filter(pk=grant_id).update(expires=T0 + MINUTE + TICK)
    clock.now = T0 + MINUTE
    clock.step = TICK
    auth = ok(credential_id)
    assert auth.grant_id == grant_id


def test_the_app_password_used_is_the_one_that_matched(alice: User, clock: Clock) -> None:
    older = app_passwords.create_app_password(alice, "older", ["presence"]).app_password
    clock.now = T0 + MINUTE
    newer = app_passwords.create_app_password(alice, "newer", ["messages.send"]).app_password
    auth = ok(f"app:{older.pk}")
    assert (auth.label, auth.grant_id, auth.scopes) == ("older", older.grant_id, {"presence"})
    assert ok(f"app:{newer.pk}").label == "newer"


def test_an_app_password_never_gets_admin_or_clients_manage_even_if_its_grant_says_so(
    alice: User, clock: Clock
) -> None:
    alice.is_staff = True
    alice.save()
    app = app_passwords.create_app_password(alice, "bot", ["presence"]).app_password
    Grant.objects.filter(pk=app.grant_id).update(scopes=["presence", "admin", "clients.manage"])
    assert ok(f"app:{app.pk}").scopes == {"presence"}


def test_an_app_password_login_asking_for_a_token_is_logged_without_one(
    alice: User, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    app = app_passwords.create_app_password(alice, "backup bot", ["presence"]).app_password
    with caplog.at_level("INFO", logger="xmppauth.grants"):
        assert ok(f"app:{app.pk}", fast_request=NONE).token is None
    assert [r.getMessage() for r in caplog.records if r.name == "xmppauth.grants"] == [
        "alice: no FAST token for an app-password session (backup bot)"
    ]


def test_another_clients_unused_token_does_not_hold_back_rotation(alice: User, clock: Clock) -> None:
    pk = current_token()
    other = token_pk(ok(fast_request=NONE, user_agent_id="other-client"))
    clock.now = T0 + DAY
    FastToken.objects.filter(pk=other).update(issued=clock.now)
    assert ok(fast(pk)).token is not None


@pytest.mark.parametrize("age", [MINUTE - TICK, TICK])
def test_with_rotation_at_every_login_even_a_young_token_is_rotated(
    alice: User, clock: Clock, settings: Any, age: timedelta
) -> None:
    settings.XMPP_FAST_ROTATE_SECONDS = 0
    pk = current_token()
    clock.now = T0 + DAY
    FastToken.objects.filter(pk=pk).update(issued=clock.now - age)
    assert ok(fast(pk)).token is not None


def test_restricted_scopes_are_listed_in_the_grant_namespace_as_its_default(
    alice: User, clock: Clock
) -> None:
    ok()
    Grant.objects.update(scopes=["presence"])
    [entry] = cast(list[Any], xep0494.client_list(alice).xpath("c:client", namespaces=NS))
    [scopes] = cast(list[Any], entry.xpath("c:permission/g:scopes", namespaces=NS))
    assert etree.tostring(scopes).decode() == (
        '<scopes xmlns="urn:xmppauth:grant:0"><scope>presence</scope></scopes>'
    )


def test_an_unknown_account_never_matches_even_if_its_stand_in_keys_did(
    alice: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = alice.scram_credentials("SHA-256")
    monkeypatch.setattr(scram, "fake_for", lambda username, hash_name: real)
    assert credentials.check_plain("mallory", "mallory", "wonderland") is None
    assert credentials.check_plain(None, "alice", "wonderland") is None
    assert credentials.check_plain("alice", "alice", "wonderland") == ""


def test_first_use_of_a_new_token_leaves_other_clients_tokens_alone(alice: User, clock: Clock) -> None:
    other = "other-client"
    other_current = token_pk(ok(fast_request=NONE, user_agent_id=other))
    ok(fast(other_current), user_agent_id=other)
    other_new = token_pk(ok(fast(other_current), fast_request=NONE, user_agent_id=other))
    mine = token_pk(ok(fast_request=NONE))
    clock.now = T0 + TICK
    ok(fast(mine))
    slots = dict(FastToken.objects.values_list("pk", "slot"))
    assert slots == {other_current: "current", other_new: "new", mine: "current"}
    ok(fast(other_current), user_agent_id=other)


def test_a_password_reconnect_under_a_grant_with_an_expiry_writes_nothing(
    alice: User, clock: Clock, django_assert_num_queries: Any
) -> None:
    first = ok()
    Grant.objects.update(expires=T0 + DAY)
    clock.now = T0 + TICK
    with django_assert_num_queries(1):
        again = ok()
    assert (again.grant_id, again.grant_expires) == (first.grant_id, T0 + DAY)


def test_a_grant_revoked_while_a_password_login_runs_is_replaced_for_good(
    alice: User, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The login read the client's grant as live, then a revocation committed: the client gets a
    fresh grant that it keeps, and the token it asked for works."""
    first = ok()
    read = loginreads.password_login

    def revoked_meanwhile(*args: Any) -> loginreads.PasswordLogin | None:
        row = read(*args)
        monkeypatch.setattr(loginreads, "password_login", read)
        revocation.revoke_grant(first.grant_id, actor="operator")
        return row

    monkeypatch.setattr(loginreads, "password_login", revoked_meanwhile)
    clock.now = T0 + TICK
    auth = ok(fast_request=NONE)
    assert auth.grant_id != first.grant_id
    assert client().grant_id == auth.grant_id
    assert ok(fast(token_pk(auth))).grant_id == auth.grant_id


@pytest.mark.parametrize("slot", ["new", "current"])
def test_a_token_presented_without_a_user_agent_is_refused_whatever_its_clients_id(
    alice: User, clock: Clock, slot: str
) -> None:
    agent = "XXXX"  # any id: a login that names none is not that client
    pk = token_pk(ok(fast_request=NONE, user_agent_id=agent))
    if slot == "current":
        ok(fast(pk), user_agent_id=agent)
    clock.now = T0 + TICK
    result = refused(fast(pk), user_agent_id=None)
    assert (result.condition, result.text) == ("credentials-expired", EXPIRED)


def test_a_token_of_the_clients_without_an_id_is_refused_without_a_user_agent(
    alice: User, clock: Clock
) -> None:
    """No login path gives the shared client without an id a token; if one ever had one, a login
    that names no user agent must still not use it (a token belongs to one installation)."""
    ok(user_agent_id=None)  # the account's client without an id
    nameless = Client.objects.get(user=alice, user_agent_id="")
    issued = login._issue_token(nameless, NONE, T0)
    pk = FastToken.objects.get(client=nameless).pk
    assert issued.token
    clock.now = T0 + TICK
    result = refused(fast(pk), user_agent_id=None)
    assert (result.condition, result.text) == ("credentials-expired", EXPIRED)
    result = refused(fast(pk), user_agent_id="")
    assert (result.condition, result.text) == ("credentials-expired", EXPIRED)


# ---------------------------------------------------------------------- second factors (issue 10)
def _with_totp(user: User) -> None:
    from accounts import totp

    totp.enrol(user)


@pytest.mark.parametrize("policy", [PasswordLogin.ALLOWED, PasswordLogin.SECOND_FACTOR])
def test_a_password_login_of_an_account_with_a_factor_must_pass_it(
    alice: User, clock: Clock, policy: str
) -> None:
    alice.xmpp_password_login = policy
    alice.save(update_fields=["xmpp_password_login"])
    if policy == PasswordLogin.ALLOWED:
        assert ok().second_factors == ()  # control: without a factor the password is enough
    else:
        assert ok().second_factors == ("totp-init",)  # control: this policy wants a factor set up first
    _with_totp(alice)
    first = ok()
    assert first.second_factors == ("totp",)
    assert ok().second_factors == ("totp",)  # the read-only reconnect path says so too


def test_a_factor_is_never_asked_of_an_app_password_or_a_fast_token(alice: User, clock: Clock) -> None:
    pk = current_token()
    _with_totp(alice)
    assert ok(fast(pk)).second_factors == ()
    created = app_passwords.create_app_password(alice, "bot", ["messages.send"])
    assert ok(f"app:{created.app_password.pk}").second_factors == ()


def test_rfc6120_sasl_cannot_ask_for_the_factor_and_is_refused_with_what_to_do(
    alice: User, clock: Clock
) -> None:
    assert isinstance(authorize(tasks=False), login.Authorization)  # control: no factor, no refusal
    _with_totp(alice)
    result = refused(tasks=False)
    assert result.condition == "not-authorized"
    assert "second factor" in result.text
    assert "app password" in result.text


def test_a_token_asked_for_with_a_factor_waits_for_the_task(alice: User, clock: Clock) -> None:
    _with_totp(alice)
    result = ok(fast_request=NONE)
    assert result.token is None  # nothing is handed out before the second factor
    assert result.token_request == NONE
    assert not FastToken.objects.filter(client__user=alice).exists()
    finished = login.finish_after_tasks("alice", user_agent_id=UA, fast_request=NONE)
    assert isinstance(finished, login.Authorization)
    assert finished.token is not None
    assert not finished.pending
    assert finished.client_id is not None
    assert FastToken.objects.get(client_id=finished.client_id, slot="new").mechanism == NONE
    User.objects.filter(pk=alice.pk).update(is_active=False)
    gone = login.finish_after_tasks("alice", user_agent_id=UA, fast_request=NONE)
    assert isinstance(gone, login.Refusal)  # disabled while the task ran: no grant, no token
    assert gone.condition == "account-disabled"


def test_a_login_that_owes_a_factor_writes_nothing_until_it_is_passed(alice: User, clock: Clock) -> None:
    ok(software="Chat", device="phone")  # a client that logged in before the factor was added
    revocation.revoke_client(client().pk, actor="test")
    revoked = client()
    _with_totp(alice)
    clock.now += 2 * MINUTE
    pending = ok(software="Evil", device="laptop", fast_request=NONE)
    assert pending.pending
    assert pending.grant_id == 0
    assert pending.scopes == frozenset()
    assert pending.client_id is None
    unchanged = client()  # someone with only the password brought nothing back and wrote nothing
    assert unchanged.revoked == revoked.revoked is not None
    assert (unchanged.software, unchanged.device) == ("Chat", "phone")
    assert unchanged.password_seen == revoked.password_seen
    assert unchanged.grant_id == revoked.grant_id
    assert not Client.objects.filter(user=alice).exclude(pk=revoked.pk).exists()
    other = ok(user_agent_id="a-new-one")  # a new client: no row made before the factor
    assert other.pending
    assert not Client.objects.filter(user=alice, user_agent_id="a-new-one").exists()
    finished = login.finish_after_tasks("alice", user_agent_id=UA, software="Chat 2", fast_request=None)
    assert isinstance(finished, login.Authorization)
    back = client()  # passed: the owner's login brings the client back, with a grant
    assert back.revoked is None
    assert back.software == "Chat 2"
    assert finished.client_id == back.pk
    assert finished.grant_id == back.grant_id
    assert finished.scopes


def test_unused_recovery_codes_are_a_factor_and_used_up_ones_are_not(alice: User, clock: Clock) -> None:
    from accounts import recovery

    codes = recovery.generate(alice, count=1)
    assert ok().second_factors == ("recovery",)
    _with_totp(alice)
    assert ok().second_factors == ("totp", "recovery")
    assert recovery.use_code(alice.pk, codes[0]).ok
    assert ok().second_factors == ("totp",)  # the last code is used: only the app remains


def test_the_second_factor_policy_sets_up_an_app_during_the_login(alice: User, clock: Clock) -> None:
    """XEP-0400 TOTP-INIT: an account whose policy demands a factor it lacks sets one up in SASL2."""
    alice.xmpp_password_login = PasswordLogin.SECOND_FACTOR
    alice.save(update_fields=["xmpp_password_login"])
    result = ok(fast_request=NONE)
    assert result.second_factors == ("totp-init",)
    assert result.token is None  # the token waits for the task here too
    alice.xmpp_password_login = PasswordLogin.OFF
    alice.save(update_fields=["xmpp_password_login"])
    assert "turned off" in refused().text  # OFF never sets anything up
