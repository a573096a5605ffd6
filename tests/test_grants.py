"""Grants at login, app passwords, FAST token storage and rotation, revocation records, password changes
(database level)."""

from __future__ import annotations

import hashlib
import hmac
from datetime import timedelta
from typing import Any, cast

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.utils import timezone
from lxml import etree

from accounts.models import PasswordLogin, User
from sessions_acl import (
    access,
    app_passwords,
    credentials,
    records,
    revocation,
    securitylog,
    tokens,
    xep0494,
)
from sessions_acl.access import SessionAccess
from sessions_acl.login import Authorization, Refusal, authorize
from sessions_acl.models import AppPassword, AuthEvent, Client, FastToken, Grant, Revocation, Session
from xmppauth import features
from xmppauth.features import xep0077_register
from xmppauth.proto.jid import JID
from xmppauth.proto.ns import CAM, GRANT
from xmppauth.proto.sasl import ScramClient
from xmppauth.proto.sasl.base import Challenge, ChannelBindingContext, Success
from xmppauth.proto.sasl.scram import ScramServer

pytestmark = pytest.mark.django_db

UA = "5b0f3c2e-1111-4c2e-9d3b-5f1e2a7c9b10"


def login(user: User, credential_id: str = "", **kwargs: object) -> Authorization:
    kwargs.setdefault("user_agent_id", UA)
    result = authorize(user.username, credential_id=credential_id, mechanism="SCRAM-SHA-256", **kwargs)  # type: ignore[arg-type]
    assert isinstance(result, Authorization), result
    return result


def ht_initiator(token: str) -> bytes:
    return hmac.new(token.encode(), b"Initiator", hashlib.sha256).digest()


# ---------------------------------------------------------------------- password logins and grants
def test_a_password_login_gets_its_clients_grant_with_the_full_role(alice: User) -> None:
    first = login(alice, software="Chat", device="phone")
    again = login(alice)
    assert first.grant_id == again.grant_id
    assert first.scopes == access.ROLES["full"]
    assert access.ADMIN not in first.scopes
    client = Client.objects.get(user=alice, user_agent_id=UA)
    assert (client.software, client.device, client.last_auth) == ("Chat", "phone", "password")
    assert client.grant_id == first.grant_id


def test_staff_password_logins_also_get_admin(alice: User) -> None:
    alice.is_staff = True
    alice.save()
    assert access.ADMIN in login(alice).scopes


def test_streams_without_a_user_agent_share_one_client_per_account(alice: User) -> None:
    a = login(alice, user_agent_id=None)
    b = login(alice, user_agent_id=None)
    assert a.client_id == b.client_id
    assert str(Client.objects.get(pk=cast(int, a.client_id))) == "clients without an id (RFC 6120 logins)"


def test_a_revoked_clients_next_password_login_gets_a_fresh_grant(alice: User) -> None:
    first = login(alice)
    revocation.revoke_client(first.client_id, actor="test")  # type: ignore[arg-type]
    second = login(alice)
    assert second.grant_id != first.grant_id
    assert Grant.objects.get(pk=first.grant_id).revoked is not None


@pytest.mark.parametrize(
    ("policy", "text"),
    [(PasswordLogin.OFF, "turned off"), (PasswordLogin.SECOND_FACTOR, "second factor")],
)
def test_the_account_policy_can_refuse_password_logins(alice: User, policy: str, text: str) -> None:
    alice.xmpp_password_login = policy
    alice.save()
    # over RFC 6120 SASL (no tasks): under SASL2 the second-factor policy sets one up (TOTP-INIT)
    result = authorize("alice", credential_id="", mechanism="PLAIN", user_agent_id=UA, tasks=False)
    assert isinstance(result, Refusal)
    assert result.condition == "not-authorized"
    assert text in result.text


def test_password_login_off_still_admits_app_passwords(alice: User) -> None:
    created = app_passwords.create_app_password(alice, "bot", ["messages.send"])
    alice.xmpp_password_login = PasswordLogin.OFF
    alice.save()
    auth = login(alice, f"app:{created.app_password.pk}")
    assert auth.scopes == {"messages.send"}


def test_an_inactive_account_is_refused_even_after_the_mechanism(alice: User) -> None:
    alice.is_active = False
    alice.save()
    result = authorize("alice", credential_id="", mechanism="PLAIN", user_agent_id=UA)
    assert isinstance(result, Refusal)
    assert result.condition == "account-disabled"


# ---------------------------------------------------------------------- app passwords
def test_an_app_password_is_shown_once_and_stored_only_as_scram_keys(alice: User) -> None:
    created = app_passwords.create_app_password(alice, "backup bot", ["messages.send", "presence"])
    app = AppPassword.objects.get(pk=created.app_password.pk)
    stored = repr(app.scram) + repr(app.__dict__)
    assert created.secret not in stored
    assert len(created.secret) == 27  # 4 groups of 6 characters and 3 dashes
    assert set(app.scram) == {"SHA-1", "SHA-256", "SHA-512"}
    assert AuthEvent.objects.filter(user=alice, kind="app-password-created").exists()


@pytest.mark.parametrize("scopes", [["admin"], ["clients.manage"], ["messages.send", "admin"]])
def test_an_app_password_never_carries_admin_or_clients_manage(alice: User, scopes: list[str]) -> None:
    with pytest.raises(ValueError, match="can never carry"):
        app_passwords.create_app_password(alice, "bot", scopes)


@pytest.mark.parametrize(
    ("label", "scopes", "message"),
    [
        ("", ["presence"], "needs a label"),
        ("bot", [], "at least one scope"),
        ("bot", ["mail"], "unknown scope mail"),
    ],
)
def test_bad_app_password_input_gets_a_clear_error(
    alice: User, label: str, scopes: list[str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        app_passwords.create_app_password(alice, label, scopes)


def test_plain_tells_the_account_password_from_each_app_password(alice: User) -> None:
    bot = app_passwords.create_app_password(alice, "bot", ["messages.send"])
    feed = app_passwords.create_app_password(alice, "feed", ["messages.receive"])
    assert credentials.check_plain("alice", "alice", "wonderland") == ""
    assert credentials.check_plain("alice", "alice", bot.secret) == f"app:{bot.app_password.pk}"
    assert credentials.check_plain("alice", "alice", feed.secret) == f"app:{feed.app_password.pk}"
    assert credentials.check_plain("alice", "alice", "nope") is None
    assert credentials.check_plain("mallory", "mallory", "wonderland") is None
    revocation.revoke_app_password(bot.app_password.pk, actor="test")
    assert credentials.check_plain("alice", "alice", bot.secret) is None


def test_a_scram_exchange_finds_which_credential_the_client_used(alice: User) -> None:
    bot = app_passwords.create_app_password(alice, "bot", ["messages.send"])
    creds, alternatives = credentials.scram_lookup("alice", "alice", "SHA-256")
    assert creds == alice.scram_credentials("SHA-256")
    assert [a.credential_id for a in alternatives] == [f"app:{bot.app_password.pk}"]
    for secret, expected in (("wonderland", ""), (bot.secret, f"app:{bot.app_password.pk}")):
        server = ScramServer("SHA-256", plus=False, cb=ChannelBindingContext())
        client = ScramClient("SHA-256", "alice", secret)
        server.start(client.first())
        first = server.provide_credentials(creds, alternatives)
        assert isinstance(first, Challenge)
        done = server.step(client.final(first.data))
        assert isinstance(done, Success)
        assert done.credential_id == expected
        assert client.verify_server_final(done.additional_data or b"")


def test_app_passwords_survive_a_password_change(alice: User) -> None:
    bot = app_passwords.create_app_password(alice, "bot", ["messages.send"])
    alice.set_password("looking-glass", actor="test")
    alice.save()
    alice.refresh_from_db()
    assert credentials.check_plain("alice", "alice", "looking-glass") == ""
    assert credentials.check_plain("alice", "alice", bot.secret) == f"app:{bot.app_password.pk}"
    assert len(credentials.scram_lookup("alice", "alice", "SHA-1")[1]) == 1


def test_an_expired_app_password_no_longer_authenticates(alice: User) -> None:
    bot = app_passwords.create_app_password(
        alice, "bot", ["messages.send"], expires=timezone.now() + timedelta(days=1)
    )
    assert credentials.check_plain("alice", "alice", bot.secret) == f"app:{bot.app_password.pk}"  # control
    Grant.objects.filter(pk=bot.app_password.grant_id).update(expires=timezone.now() - timedelta(seconds=1))
    assert credentials.check_plain("alice", "alice", bot.secret) is None
    result = authorize(
        "alice", credential_id=f"app:{bot.app_password.pk}", mechanism="PLAIN", user_agent_id=None
    )
    assert isinstance(result, Refusal)


def test_an_app_password_session_never_gets_a_fast_token(alice: User) -> None:
    bot = app_passwords.create_app_password(alice, "bot", ["messages.send"])
    auth = login(alice, f"app:{bot.app_password.pk}", fast_request="HT-SHA-256-NONE")
    assert auth.token is None
    assert not FastToken.objects.exists()
    # control: the account password's login asks the same way and gets one
    assert login(alice, fast_request="HT-SHA-256-NONE").token is not None


# ---------------------------------------------------------------------- FAST tokens
def test_tokens_are_stored_masked_and_match_the_hmac_of_the_token(alice: User) -> None:
    auth = login(alice, fast_request="HT-SHA-256-NONE")
    assert auth.token is not None
    token = auth.token.token
    assert token.startswith("secret-token:")
    assert len(token) > 64
    row = FastToken.objects.get()
    assert row.slot == "new"
    assert row.mechanism == "HT-SHA-256-NONE"
    assert bytes(row.key) != hashlib.sha256(token.encode()).digest()  # masked at rest
    [candidate] = credentials.fast_candidates("alice", UA)
    # HMAC hashes a key longer than its block: the stored key gives the same HMAC as the token.
    assert hmac.new(candidate.key, b"Initiator", hashlib.sha256).digest() == ht_initiator(token)
    assert credentials.fast_candidates("alice", "another-client") == []
    assert credentials.fast_candidates("bob", UA) == []


def test_rotation_keeps_the_old_token_until_the_new_one_is_used(alice: User) -> None:
    first = login(alice, fast_request="HT-SHA-256-NONE")
    first_id = FastToken.objects.get().pk
    login(alice, f"fast:{first_id}")  # used: it becomes current
    assert FastToken.objects.get().slot == "current"
    FastToken.objects.update(issued=timezone.now() - timedelta(days=2))  # due for rotation
    rotated = login(alice, f"fast:{first_id}")
    assert rotated.token is not None
    assert rotated.token.token != (first.token.token if first.token else "")
    assert FastToken.objects.count() == 2  # the old one still works until the new one is used
    login(alice, f"fast:{first_id}")
    new_id = FastToken.objects.get(slot="new").pk
    login(alice, f"fast:{new_id}")
    assert list(FastToken.objects.values_list("pk", "slot")) == [(new_id, "current")]


def test_invalidate_kills_the_token_and_issues_none_unless_asked(alice: User) -> None:
    login(alice, fast_request="HT-SHA-256-NONE")
    token_id = FastToken.objects.get().pk
    auth = login(alice, f"fast:{token_id}", fast_invalidate=True)
    assert auth.token is None
    assert not FastToken.objects.exists()
    assert AuthEvent.objects.filter(kind="token-invalidated").exists()


def test_a_replayed_count_is_refused(alice: User) -> None:
    login(alice, fast_request="HT-SHA-256-NONE")
    token_id = FastToken.objects.get().pk
    login(alice, f"fast:{token_id}", fast_count=1)
    login(alice, f"fast:{token_id}", fast_count=5)
    for stale in (5, 3):
        result = authorize(
            "alice",
            credential_id=f"fast:{token_id}",
            mechanism="HT-SHA-256-NONE",
            user_agent_id=UA,
            fast_count=stale,
        )
        assert isinstance(result, Refusal)
        assert result.condition == "not-authorized"


def test_expired_tokens_are_not_candidates_and_fail_as_expired(alice: User) -> None:
    login(alice, fast_request="HT-SHA-256-NONE")
    token = FastToken.objects.get()
    FastToken.objects.update(expires=timezone.now() - timedelta(seconds=1))
    assert credentials.fast_candidates("alice", UA) == []
    result = authorize(
        "alice", credential_id=f"fast:{token.pk}", mechanism="HT-SHA-256-NONE", user_agent_id=UA
    )
    assert isinstance(result, Refusal)
    assert result.condition == "credentials-expired"


def test_a_fast_login_gets_the_clients_grant(alice: User) -> None:
    password = login(alice, fast_request="HT-SHA-256-NONE")
    fast = login(alice, f"fast:{FastToken.objects.get().pk}")
    assert (fast.grant_id, fast.scopes, fast.credential) == (password.grant_id, password.scopes, "fast")


# ---------------------------------------------------------------------- revocation records
def open_session(auth: Authorization) -> int:
    return records.open_session(
        auth, jid="alice@localhost/x", transport="tcp-tls", address="127.0.0.1", mechanism="PLAIN", node="n1"
    )


def test_revoking_a_grant_kills_its_tokens_logs_who_and_queues_a_revocation(alice: User) -> None:
    auth = login(alice, fast_request="HT-SHA-256-NONE")
    revocation.revoke_grant(auth.grant_id, actor="alice (portal)", reason="lost phone")
    assert not FastToken.objects.exists()
    grant = Grant.objects.get(pk=auth.grant_id)
    assert grant.revoked is not None
    assert grant.revoked_by == "alice (portal)"
    event = AuthEvent.objects.filter(kind="revoked").get()
    assert event.actor == "alice (portal)"
    assert "lost phone" in event.detail
    message = Revocation.objects.get().message()
    assert message["grant_ids"] == [auth.grant_id]
    assert message["username"] == "alice"
    assert "revoked by alice (portal): lost phone" in str(message["text"])


def test_revoking_a_client_names_its_live_sessions(alice: User) -> None:
    auth = login(alice)
    session_id = open_session(auth)
    revocation.revoke_client(auth.client_id, actor="test")  # type: ignore[arg-type]
    message = Revocation.objects.get().message()
    assert message["session_ids"] == [session_id]
    assert message["grant_ids"] == [auth.grant_id]


def test_revocation_of_another_accounts_object_is_not_found(alice: User, bob: User) -> None:
    auth = login(alice)
    with pytest.raises(revocation.NotFound):
        revocation.revoke_client(auth.client_id, actor="bob", user=bob)  # type: ignore[arg-type]
    with pytest.raises(revocation.NotFound):
        revocation.revoke_grant(auth.grant_id, actor="bob", user=bob)
    assert not Revocation.objects.exists()


def test_any_password_change_ends_other_sessions_and_tokens(alice: User) -> None:
    login(alice, fast_request="HT-SHA-256-NONE")
    alice.set_password("new one")  # e.g. the admin's form or `manage.py changepassword`
    alice.save()
    assert not FastToken.objects.exists()
    assert Revocation.objects.get().all_sessions


def test_a_password_change_can_keep_the_sessions(alice: User) -> None:
    login(alice, fast_request="HT-SHA-256-NONE")
    alice.set_password("new one", actor="alice", keep_other_sessions=True)
    alice.save()
    assert FastToken.objects.exists()
    assert not Revocation.objects.exists()
    assert AuthEvent.objects.filter(kind="password-changed", detail="sessions kept").exists()


# ---------------------------------------------------------------------- the one password door, by every path
def changed_password(user: User, old: str, new: str, *, actor: str, except_session: int | None) -> None:
    """What ``User.set_password`` does on a change: new SCRAM keys, no FAST token, the other
    sessions ended (all but ``except_session``), and the security log says who."""
    assert credentials.check_plain(user.username, user.username, new) == ""
    assert credentials.check_plain(user.username, user.username, old) is None
    assert not FastToken.objects.exists()
    ended = Revocation.objects.get()
    assert (ended.username, ended.all_sessions, ended.except_session) == (user.username, True, except_session)
    assert ended.text == "the account password was changed" + (f" by {actor}" if actor else "")
    event = AuthEvent.objects.get(kind=AuthEvent.Kind.PASSWORD_CHANGED)
    assert (event.user_id, event.actor, event.detail) == (user.pk, actor, "other sessions ended")


def test_a_password_set_in_the_admin_ends_the_other_sessions(alice: User, admin_client: Any) -> None:
    open_session(login(alice, fast_request="HT-SHA-256-NONE"))
    keys = dict(alice.scram)
    answer = admin_client.post(
        f"/admin/accounts/user/{alice.pk}/password/",
        {"password1": "looking-glass", "password2": "looking-glass", "usable_password": "true"},
    )
    assert answer.status_code == 302, answer.content
    alice.refresh_from_db()
    assert all(alice.scram[name] != keys[name] for name in keys)
    changed_password(alice, "wonderland", "looking-glass", actor="", except_session=None)


def test_adduser_on_an_existing_account_ends_its_other_sessions(alice: User) -> None:
    open_session(login(alice, fast_request="HT-SHA-256-NONE"))
    call_command("adduser", "alice", "looking-glass")
    changed_password(alice, "wonderland", "looking-glass", actor="", except_session=None)


def test_adduser_gives_a_new_account_its_first_password_which_is_no_change() -> None:
    call_command("adduser", "bob", "builder")
    assert credentials.check_plain("bob", "bob", "builder") == ""
    assert not Revocation.objects.exists()
    assert not AuthEvent.objects.exists()


def _register_context(user: User, session_id: int | None, credential: str, ago: float) -> features.IqContext:
    async def answer(reply: etree._Element) -> None:
        raise AssertionError("handle() returns its reply")

    return features.IqContext(
        user_id=user.pk,
        jid=JID.parse("alice@localhost/x"),
        session_id=session_id,
        access=SessionAccess(frozenset({"clients.manage"})),
        state={},
        answer=answer,
        account_sessions=list,
        credential=credential,
        authenticated_ago=lambda: ago,
    )


_NEW_PASSWORD = etree.fromstring(
    "<iq xmlns='jabber:client' type='set' id='pw1' from='alice@localhost/x'>"
    "<query xmlns='jabber:iq:register'><username>alice</username><password>looking-glass</password>"
    "</query></iq>"
)


@pytest.mark.django_db(transaction=True)  # the XEP-0077 door runs the ORM in a worker thread
async def test_an_in_band_password_change_keeps_its_own_session(alice: User) -> None:
    session_id = await sync_to_async(open_session)(await sync_to_async(login)(alice))
    context = _register_context(alice, session_id, "password", 5.0)
    reply = await xep0077_register.handle(context, _NEW_PASSWORD, _NEW_PASSWORD[0])
    assert reply.get("type") == "result", etree.tostring(reply)
    await sync_to_async(changed_password)(
        alice, "wonderland", "looking-glass", actor="alice@localhost/x (XEP-0077)", except_session=session_id
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("credential", "ago"), [("fast", 5.0), ("app-password", 5.0), ("password", 3600.0)])
async def test_a_password_change_needs_a_fresh_password_login(
    alice: User, credential: str, ago: float
) -> None:
    """A stolen FAST token or app password, or a session left open for an hour, cannot lock the owner
    out of their own password (found by an outside attack: a FAST session changed it)."""
    context = _register_context(alice, None, credential, ago)
    reply = await xep0077_register.handle(context, _NEW_PASSWORD, _NEW_PASSWORD[0])
    assert reply.get("type") == "error", etree.tostring(reply)
    assert b"not-authorized" in etree.tostring(reply)
    assert b"fresh login with the account password" in etree.tostring(reply)
    assert await sync_to_async(credentials.check_plain)("alice", "alice", "wonderland") == ""  # unchanged


def test_sessions_left_open_by_a_stopped_node_are_closed_at_start(alice: User) -> None:
    session_id = open_session(login(alice))
    assert records.close_node_sessions("other-node") == 0
    assert records.close_node_sessions("n1") == 1
    assert Session.objects.get(pk=session_id).end_reason == "the server stopped"


# ---------------------------------------------------------------------- XEP-0494 listing
def test_the_client_list_shows_clients_and_app_passwords_with_their_permissions(alice: User) -> None:
    auth = login(alice, software="Chat", device="phone", fast_request="HT-SHA-256-NONE")
    open_session(auth)
    app_passwords.create_app_password(alice, "feed", ["messages.send"])
    clients = xep0494.client_list(alice)
    ns = {"c": CAM, "g": GRANT}
    [phone] = cast(list[Any], clients.xpath("c:client[starts-with(@id, 'c')]", namespaces=ns))
    assert (phone.get("type"), phone.get("connected")) == ("session", "true")
    assert phone.xpath("c:auth/c:password", namespaces=ns)
    assert phone.xpath("c:auth/c:fast", namespaces=ns)
    assert phone.xpath("string(c:user-agent/c:software)", namespaces=ns) == "Chat"
    assert phone.xpath("string(c:permission/@status)", namespaces=ns) == "unrestricted"
    [feed] = cast(list[Any], clients.xpath("c:client[starts-with(@id, 'a')]", namespaces=ns))
    assert (feed.get("type"), feed.get("connected")) == ("access", "false")
    assert feed.xpath("string(c:permission/@status)", namespaces=ns) == "restricted"
    assert feed.xpath("c:permission/g:scopes/g:scope/text()", namespaces=ns) == ["messages.send"]


def test_revoking_a_password_client_over_xep0494_says_a_password_reset_is_required(alice: User) -> None:
    auth = login(alice)
    outcome = xep0494.revoke(alice, f"c{auth.client_id}", actor="alice")
    assert outcome.found
    assert outcome.password_reset_required
    assert Client.objects.get(pk=cast(int, auth.client_id)).revoked is not None
    assert not xep0494.revoke(alice, "c999", actor="alice").found
    assert not xep0494.revoke(alice, "x1", actor="alice").found
    bot = app_passwords.create_app_password(alice, "bot", ["presence"])
    assert xep0494.revoke(alice, f"a{bot.app_password.pk}", actor="alice") == xep0494.RevokeOutcome(
        found=True
    )


def test_token_helpers_round_trip() -> None:
    key = tokens.hmac_key(tokens.new_token())
    masked, nonce = tokens.seal(key)
    assert masked != key
    assert tokens.unseal(masked, nonce) == key


# ---------------------------------------------------------------------- the admin site
def test_an_operator_revokes_grants_from_the_admin_site(alice: User, admin_client: Any) -> None:
    auth = login(alice)
    page = admin_client.get("/admin/sessions_acl/grant/")
    assert page.status_code == 200
    assert b"Revoke the selected grants" in page.content
    response = admin_client.post(
        "/admin/sessions_acl/grant/",
        {"action": "revoke_grants", "_selected_action": [str(auth.grant_id)]},
        follow=True,
    )
    assert b"Revoked 1 grant(s)" in response.content
    assert Grant.objects.get(pk=auth.grant_id).revoked_by == "admin (admin site)"
    assert Revocation.objects.get().grant_ids == [auth.grant_id]
    assert AuthEvent.objects.filter(kind="revoked", actor="admin (admin site)").exists()


def test_the_security_log_cannot_be_edited_from_the_admin_site(alice: User, admin_client: Any) -> None:
    login(alice, fast_request="HT-SHA-256-NONE")
    event = AuthEvent.objects.get(kind="token-issued")
    assert admin_client.get(f"/admin/sessions_acl/authevent/{event.pk}/change/").status_code == 200
    response = admin_client.post(f"/admin/sessions_acl/authevent/{event.pk}/change/", {"detail": "forged"})
    assert response.status_code == 403
    event.refresh_from_db()
    assert event.detail != "forged"


def test_changing_scopes_is_logged_published_and_validated(alice: User) -> None:
    bot = app_passwords.create_app_password(alice, "bot", ["messages.send", "presence"])
    grant_id = bot.app_password.grant_id
    revocation.change_grant_scopes(grant_id, ["messages.send"], actor="alice (portal)")
    assert Grant.objects.get(pk=grant_id).scopes == ["messages.send"]
    message = Revocation.objects.get().message()
    assert message["scopes"] == ["messages.send"]
    assert message["grant_ids"] == [grant_id]
    assert AuthEvent.objects.get(kind="grant-changed").detail.endswith("removed presence")
    with pytest.raises(ValueError, match=r"can never carry clients\.manage"):
        revocation.change_grant_scopes(grant_id, ["clients.manage"], actor="alice")
    with pytest.raises(ValueError, match="unknown scope"):
        revocation.change_grant_scopes(grant_id, ["fly"], actor="alice")
    revocation.revoke_grant(grant_id, actor="alice")
    with pytest.raises(ValueError, match="revoked"):
        revocation.change_grant_scopes(grant_id, ["presence"], actor="alice")


def test_a_reconnect_that_changes_nothing_reads_once_and_writes_nothing(
    alice: User, django_assert_num_queries: Any
) -> None:
    login(alice, fast_request="HT-SHA-256-NONE")
    token_id = FastToken.objects.get().pk
    login(alice, f"fast:{token_id}")  # first use: the token moves from 'new' to 'current'
    with django_assert_num_queries(1):
        again = login(alice)  # password, same client, within the minute
    assert again.scopes == access.ROLES["full"]
    with django_assert_num_queries(1):
        fast = login(alice, f"fast:{token_id}")
    assert (fast.credential, fast.grant_id) == ("fast", again.grant_id)


def test_old_records_are_forgotten_after_the_configured_days(alice: User, settings: Any) -> None:
    settings.XMPP_SESSION_RECORD_DAYS = 90
    settings.XMPP_SECURITY_LOG_DAYS = 365
    old, recent, live = (open_session(login(alice)) for _ in range(3))
    long_ago = timezone.now() - timedelta(days=91)
    Session.objects.filter(pk=old).update(ended=long_ago)
    Session.objects.filter(pk=recent).update(ended=timezone.now())
    securitylog.log_event(alice, AuthEvent.Kind.LOGIN_FAILED, "old")
    AuthEvent.objects.filter(detail="old").update(created=timezone.now() - timedelta(days=366))
    securitylog.log_event(alice, AuthEvent.Kind.LOGIN_FAILED, "new")
    assert records.forget_old_records() == (1, 1)
    assert set(Session.objects.values_list("pk", flat=True)) == {recent, live}  # a live one is never pruned
    assert list(AuthEvent.objects.filter(kind="login-failed").values_list("detail", flat=True)) == ["new"]
    settings.XMPP_SESSION_RECORD_DAYS = 0
    Session.objects.filter(pk=recent).update(ended=long_ago)
    assert records.forget_old_records() == (0, 0)
