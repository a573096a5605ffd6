"""The admin site's pages and actions (accounts/admin.py, sessions_acl/admin.py, xmppauth/admin.py;
docs/admin.md): every registered model is listed and shown, no secret is ever on a page, each action
goes through its door (sessions_acl.revocation, the factor functions of ``manage.py mfa reset``) with
the operator as its actor, nothing is deleted past the revocation door, the security log stays
read-only, and the live status costs no query per row."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import Group, Permission
from django.urls import reverse
from django.utils import timezone

from accounts import recovery, totp
from accounts.models import RecoveryCode, RecoveryCodes, TotpDevice, User, WebAuthnCredential
from accounts.secretbox import unseal
from sessions_acl import app_passwords, records, revocation
from sessions_acl.login import Authorization, authorize
from sessions_acl.models import AppPassword, AuthEvent, Client, FastToken, Grant, Revocation, Session
from tests.conftest import verified_client
from tests.web.conftest import app_of, key_of, text
from xmppauth.models import OfflineMessage, RosterItem

ACTOR = "admin (admin site)"  # the operator of pytest-django's admin_client
UA = "5b0f3c2e-1111-4c2e-9d3b-5f1e2a7c9b10"
MESSAGE_BODY = "the treasure is under the third oak"


@dataclass
class World:
    """alice with one of everything; the secrets a page must never show."""

    auth: Authorization
    client: int
    live: int
    ended: int
    app_password: AppPassword
    secrets: dict[str, str]


def _login(user: User, user_agent_id: str = UA, **kwargs: Any) -> Authorization:
    result = authorize(
        user.username, credential_id="", mechanism="SCRAM-SHA-256", user_agent_id=user_agent_id, **kwargs
    )
    assert isinstance(result, Authorization), result
    return result


def _session(auth: Authorization, resource: str = "phone") -> int:
    return records.open_session(
        auth,
        jid=f"{auth.username}@localhost/{resource}",
        transport="tcp-tls",
        address="192.0.2.7",
        mechanism="SCRAM-SHA-256",
        node="n1",
    )


def _forms(name: str, value: bytes | str) -> dict[str, str]:
    """How a secret could be written on a page: as stored, hex, base64, Python's repr of bytes."""
    if isinstance(value, str):
        return {name: value}
    raw = bytes(value)
    shown = repr(raw)[2:-1]
    return {
        f"{name} (hex)": raw.hex(),
        f"{name} (base64)": base64.b64encode(raw).decode().rstrip("="),
        f"{name} (base64url)": base64.urlsafe_b64encode(raw).decode().rstrip("="),
        f"{name} (repr)": shown,
        f"{name} (repr, escaped)": html.escape(shown),
    }


@pytest.fixture
def world(alice: User, bob: User) -> World:
    auth = _login(alice, software="Conversations", device="Pixel", fast_request="HT-SHA-256-NONE")
    assert auth.token is not None
    live = _session(auth)
    ended = _session(auth, "old")
    records.close_session(ended, "the client closed the stream")
    bot = app_passwords.create_app_password(alice, "backup bot", ["messages.send"], actor="alice")
    device = app_of(alice)  # after the logins: from now on a password login owes a factor
    codes = recovery.generate(alice)
    _key, credential = key_of(alice)
    OfflineMessage.objects.create(user=alice, stanza=f"<message><body>{MESSAGE_BODY}</body></message>")
    RosterItem.objects.create(user=alice, jid="bob@localhost", name="Bob")
    Group.objects.create(name="operators")
    revocation.revoke_session(_session(_login(bob), "laptop"), actor="bob")  # a Revocation row

    token = FastToken.objects.get()
    secrets = {"FAST token": auth.token.token, "app password": bot.secret, "recovery code": codes[0]}
    secrets |= _forms("FAST token key", token.key) | _forms("FAST token nonce", token.nonce)
    secrets |= _forms("TOTP sealed key", TotpDevice.objects.get(pk=device.pk).encrypted_key)
    secrets |= _forms("TOTP secret", unseal(TotpDevice.objects.get(pk=device.pk).encrypted_key))
    secrets["TOTP secret (base32)"] = base64.b32encode(unseal(device.encrypted_key)).decode().rstrip("=")
    secrets |= _forms("WebAuthn public key", WebAuthnCredential.objects.get(pk=credential.pk).public_key)
    for row in RecoveryCode.objects.all():
        secrets[f"recovery digest {row.pk}"] = row.digest
    alice.refresh_from_db()
    secrets["password hash"] = alice.password.rsplit("$", 1)[1]
    for owner, keys in (("account", alice.scram), ("app password", bot.app_password.scram)):
        for hash_name, entry in keys.items():
            for part in ("stored_key", "server_key"):
                secrets[f"{owner} {hash_name} {part}"] = entry[part]
    secrets["offline message"] = MESSAGE_BODY
    assert auth.client_id is not None
    return World(
        auth=auth,
        client=auth.client_id,
        live=live,
        ended=ended,
        app_password=bot.app_password,
        secrets=secrets,
    )


def _changelist(model: type[Any]) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")


def _page(model: type[Any], view: str, pk: int) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=[pk])


def _act(client: Any, model: type[Any], action: str, pks: list[int]) -> Any:
    response = client.post(
        _changelist(model), {"action": action, "_selected_action": [str(pk) for pk in pks]}, follow=True
    )
    assert response.status_code == 200
    return response


def _actions(page: Any) -> list[str]:
    """The actions a changelist offers."""
    form = page.context["action_form"]
    return [] if form is None else [name for name, _label in form.fields["action"].choices if name]


def _admin_pages() -> list[str]:
    """Every changelist (also searched) and the change page of each model's rows."""
    pages = [reverse("admin:index")]
    for model in admin.site._registry:
        pages += [_changelist(model), f"{_changelist(model)}?q=alice"]
        pages += [_page(model, "change", pk) for pk in model._default_manager.values_list("pk", flat=True)]
    return pages


# -- the pages ------------------------------------------------------------------------------------


def test_it_registers_every_model_of_the_project() -> None:
    registered = {model._meta.label for model in admin.site._registry}
    for label in (
        "accounts.User",
        "accounts.TotpDevice",
        "accounts.RecoveryCodes",
        "accounts.WebAuthnCredential",
        "sessions_acl.Client",
        "sessions_acl.Grant",
        "sessions_acl.Session",
        "sessions_acl.AppPassword",
        "sessions_acl.FastToken",
        "sessions_acl.AuthEvent",
        "sessions_acl.Revocation",
        "xmppauth.OfflineMessage",
        "xmppauth.RosterItem",
    ):
        assert label in registered


def test_every_changelist_and_change_page_loads(world: World, admin_client: Any) -> None:
    for model in admin.site._registry:
        assert model._default_manager.exists(), f"no {model._meta.label} to show"
    for page in _admin_pages():
        response = admin_client.get(page)
        assert response.status_code == 200, page


def test_no_page_shows_a_secret(world: World, admin_client: Any) -> None:
    pages = [*_admin_pages(), reverse("admin:auth_user_password_change", args=[world.auth.user_id])]
    for page in pages:
        body = admin_client.get(page).content.decode()
        for what, secret in world.secrets.items():
            assert secret not in body, f"{what} on {page}"


def test_the_pages_show_what_an_operator_needs(world: World, admin_client: Any) -> None:
    users = text(admin_client.get(_changelist(User)))
    assert "3: 1 authenticator app(s), 1 security key(s), recovery codes" in users  # alice
    assert "Allowed" in users
    clients = text(admin_client.get(f"{_changelist(Client)}?online=yes"))
    assert "Conversations" in clients
    assert "Pixel" in clients
    live = admin_client.get(f"{_changelist(Session)}?live=yes&q=alice").context["cl"].result_list
    assert [session.pk for session in live] == [world.live]
    ended = admin_client.get(f"{_changelist(Session)}?live=no").context["cl"].result_list
    assert world.ended in [session.pk for session in ended]
    app = text(admin_client.get(_changelist(AppPassword)))
    assert "backup bot" in app
    assert "messages.send" in app
    codes = text(admin_client.get(_page(RecoveryCodes, "change", RecoveryCodes.objects.get().pk)))
    assert "10" in codes  # unused, of ten
    tokens = text(admin_client.get(_changelist(FastToken)))
    assert "HT-SHA-256-NONE" in tokens


def test_the_online_column_follows_the_live_sessions(world: World, admin_client: Any) -> None:
    def online() -> list[int]:
        page = admin_client.get(f"{_changelist(Client)}?online=yes&q=alice")
        return [client.pk for client in page.context["cl"].result_list]

    assert online() == [world.client]
    records.close_session(world.live, "gone")
    assert online() == []
    offline = admin_client.get(f"{_changelist(Client)}?online=no").context["cl"].result_list
    assert world.client in [c.pk for c in offline]


# -- query counts ---------------------------------------------------------------------------------


def _hundred_clients(user: User) -> None:
    now = timezone.now()
    clients = Client.objects.bulk_create(
        Client(user=user, user_agent_id=f"ua-{n}", software="Dino", device=f"desk {n}", last_seen=now)
        for n in range(100)
    )
    Session.objects.bulk_create(
        Session(
            user=user,
            client=client,
            jid=f"alice@localhost/r{n}",
            transport="websocket",
            mechanism="PLAIN",
            credential="password",
            node="n1",
            ended=None if n % 2 else now,
        )
        for n, client in enumerate(clients)
    )


@pytest.mark.parametrize("model", [Session, Client, Grant, AppPassword, FastToken, User])
def test_a_changelist_of_a_hundred_rows_costs_a_bounded_number_of_queries(
    alice: User, admin_client: Any, django_assert_max_num_queries: Any, model: type[Any]
) -> None:
    _hundred_clients(alice)
    for n in range(100):
        app_passwords.create_app_password(alice, f"bot {n}", ["messages.send"])
        User.objects.create(username=f"user{n}")
    for client in Client.objects.all()[:50]:
        grant = Grant.objects.create(user=alice, origin=Grant.Origin.PASSWORD, scopes=["presence"])
        client.grant = grant
        client.save(update_fields=["grant"])
        for slot in ("current", "new"):
            FastToken.objects.create(
                client=client,
                slot=slot,
                mechanism="HT-SHA-256-NONE",
                key=b"k" * 32,
                nonce=b"n" * 16,
                expires=timezone.now() + timedelta(days=1),
            )
    admin_client.get(reverse("admin:index"))  # the session and the user, read once
    # About 14: the session, the operator, the admin's second-factor check (twice), two counts, the
    # rows, a filter's values; 100 rows with a query each would be over 100.
    with django_assert_max_num_queries(16):
        response = admin_client.get(f"{_changelist(model)}?all=")
    assert response.status_code == 200
    assert len(response.context["cl"].result_list) >= 100


# -- actions --------------------------------------------------------------------------------------


def test_it_disconnects_the_selected_sessions(world: World, admin_client: Any) -> None:
    before = Revocation.objects.count()
    response = _act(admin_client, Session, "disconnect_sessions", [world.live, world.ended])
    assert "Disconnected 1 session(s) (1 already ended, left alone)" in text(response)
    outbox = Revocation.objects.order_by("-pk")[0]
    assert Revocation.objects.count() == before + 1
    assert outbox.session_ids == [world.live]
    assert outbox.text == f"this session was ended by {ACTOR}"
    event = AuthEvent.objects.filter(kind="revoked", actor=ACTOR).get()
    assert event.detail == "session alice@localhost/phone"
    assert Grant.objects.get(pk=world.auth.grant_id).revoked is None  # the client can log in again


def test_it_revokes_the_selected_clients(world: World, admin_client: Any) -> None:
    response = _act(admin_client, Client, "revoke_clients", [world.client])
    assert "Revoked 1 client(s); their streams close within a second" in text(response)
    client = Client.objects.get(pk=world.client)
    assert client.revoked is not None
    assert not FastToken.objects.filter(client=client).exists()
    grant = Grant.objects.get(pk=world.auth.grant_id)
    assert (grant.revoked is not None, grant.revoked_by) == (True, ACTOR)
    outbox = Revocation.objects.order_by("-pk")[0]
    assert (outbox.session_ids, outbox.grant_ids) == ([world.live], [world.auth.grant_id])
    assert AuthEvent.objects.filter(kind="revoked", actor=ACTOR, detail__startswith="client ").exists()
    again = _act(admin_client, Client, "revoke_clients", [world.client])
    assert "Nothing done: the selected client(s) were already revoked" in text(again)
    assert Client.objects.get(pk=client.pk).revoked == client.revoked


def test_it_revokes_the_selected_grants_and_leaves_revoked_ones(world: World, admin_client: Any) -> None:
    app_grant = world.app_password.grant_id
    revocation.revoke_grant(app_grant, actor="alice (portal)")
    response = _act(admin_client, Grant, "revoke_grants", [world.auth.grant_id, app_grant])
    assert "Revoked 1 grant(s) (1 already revoked, left alone)" in text(response)
    assert Grant.objects.get(pk=world.auth.grant_id).revoked_by == ACTOR
    assert Grant.objects.get(pk=app_grant).revoked_by == "alice (portal)"  # not overwritten
    assert Revocation.objects.order_by("-pk")[0].grant_ids == [world.auth.grant_id]
    assert not FastToken.objects.exists()


def test_it_revokes_the_selected_app_passwords(world: World, admin_client: Any) -> None:
    response = _act(admin_client, AppPassword, "revoke_app_passwords", [world.app_password.pk])
    assert "Revoked 1 app password(s)" in text(response)
    grant = Grant.objects.get(pk=world.app_password.grant_id)
    assert (grant.revoked is not None, grant.revoked_by) == (True, ACTOR)
    assert Revocation.objects.order_by("-pk")[0].grant_ids == [grant.pk]
    event = AuthEvent.objects.filter(kind="revoked", actor=ACTOR).get()
    assert event.detail == "app password 'backup bot'"
    revoked = admin_client.get(f"{_changelist(AppPassword)}?state=revoked").context["cl"].result_list
    assert [row.pk for row in revoked] == [world.app_password.pk]


def test_it_resets_the_second_factors_of_the_selected_accounts(
    world: World, bob: User, admin_client: Any
) -> None:
    bobs = app_of(bob)
    alice = User.objects.get(username="alice")
    response = _act(admin_client, User, "reset_second_factors", [alice.pk])
    assert "Removed the second factors of 1 account(s) (alice: 3)" in text(response)
    assert not TotpDevice.objects.filter(user=alice).exists()
    assert not WebAuthnCredential.objects.filter(user=alice).exists()
    assert not RecoveryCodes.objects.filter(user=alice).exists()
    assert not RecoveryCode.objects.exists()
    assert TotpDevice.objects.filter(pk=bobs.pk).exists()  # only the selected accounts
    logged = set(
        AuthEvent.objects.filter(user=alice, kind="factor-changed", actor=ACTOR).values_list(
            "detail", flat=True
        )
    )
    assert logged == {"totp removed", "webauthn removed: blue key", "recovery removed"}
    assert totp.verify_totp(alice.pk, "000000").reason == "no_device"


def test_it_removes_a_security_key_through_its_door(world: World, admin_client: Any) -> None:
    key = WebAuthnCredential.objects.get()
    response = _act(admin_client, WebAuthnCredential, "remove_keys", [key.pk])
    assert "Removed 1 security key(s) or passkey(s)" in text(response)
    assert not WebAuthnCredential.objects.exists()
    event = AuthEvent.objects.filter(kind="factor-changed", actor=ACTOR).get()
    assert event.detail == "webauthn removed: blue key"
    assert TotpDevice.objects.filter(user=key.user).exists()  # the other factors stay


def test_a_policy_changed_in_the_admin_is_in_the_security_log(world: World, admin_client: Any) -> None:
    alice = User.objects.get(username="alice")
    page = admin_client.get(_page(User, "change", alice.pk))
    form = page.context["adminform"].form
    data = {name: value for name, value in form.initial.items() if value is not None and name != "password"}
    data |= {"xmpp_password_login": "off", "groups": [], "user_permissions": []}
    data |= {"date_joined_0": "2026-01-01", "date_joined_1": "00:00:00"}
    response = admin_client.post(_page(User, "change", alice.pk), data)
    assert response.status_code == 302, text(response)
    assert User.objects.get(pk=alice.pk).xmpp_password_login == "off"
    event = AuthEvent.objects.filter(kind="policy-changed").get()
    assert (event.actor, event.detail) == (ACTOR, "XMPP password logins: allowed → off")


def _change_account(admin_client: Any, user: User, **changes: Any) -> Any:
    page = admin_client.get(_page(User, "change", user.pk))
    form = page.context["adminform"].form
    data = {name: value for name, value in form.initial.items() if value is not None and name != "password"}
    data |= {"groups": [], "user_permissions": [], "date_joined_0": "2026-01-01", "date_joined_1": "00:00:00"}
    for name, value in changes.items():
        if value is False:
            data.pop(name, None)  # an unticked box is absent from the form
        else:
            data[name] = value
    return admin_client.post(_page(User, "change", user.pk), data)


@pytest.mark.parametrize(
    ("changes", "detail", "ends"),
    [
        ({"is_active": False}, "is_active: True → False", "the account was disabled"),
        ({"username": "alice2"}, "username: alice → alice2", "the account was renamed"),
        ({"is_staff": True}, "is_staff: False → True", ""),
    ],
)
def test_an_account_changed_in_the_admin_is_logged_and_its_sessions_end_when_it_must(
    world: World, admin_client: Any, changes: dict[str, Any], detail: str, ends: str
) -> None:
    """Found by an outside attack: making an account staff, renaming or disabling it in the admin left no
    line in its security log, and a disabled account's open streams went on."""
    alice = User.objects.get(username="alice")
    before = Revocation.objects.count()
    response = _change_account(admin_client, alice, **changes)
    assert response.status_code == 302, text(response)
    event = AuthEvent.objects.filter(kind="account-changed").get()
    assert event.actor == ACTOR
    assert event.user_id == alice.pk
    assert event.detail == detail
    ended = Revocation.objects.filter(all_sessions=True, username="alice")
    if ends:
        assert ended.count() == 1  # the streams of alice@… (her old name, when renamed) end
        assert ends in ended.get().text
    else:
        assert Revocation.objects.count() == before


# -- nothing past the doors -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "model", [User, Client, Grant, Session, AppPassword, FastToken, AuthEvent, TotpDevice, WebAuthnCredential]
)
def test_the_admin_deletes_nothing_that_has_a_door(world: World, admin_client: Any, model: type[Any]) -> None:
    row = model._default_manager.first()
    assert admin_client.get(_page(model, "delete", row.pk)).status_code == 403
    assert admin_client.post(_page(model, "delete", row.pk), {"post": "yes"}).status_code == 403
    assert model._default_manager.filter(pk=row.pk).exists()
    page = admin_client.get(_changelist(model))
    assert "delete_selected" not in _actions(page)
    _act(admin_client, model, "delete_selected", [row.pk])  # an action that is not offered does nothing
    assert model._default_manager.filter(pk=row.pk).exists()


def test_the_security_log_is_read_only_for_superusers_too(world: World, admin_client: Any) -> None:
    event = AuthEvent.objects.first()
    assert event is not None
    assert admin_client.get(reverse("admin:sessions_acl_authevent_add")).status_code == 403
    assert admin_client.post(_page(AuthEvent, "change", event.pk), {"detail": "forged"}).status_code == 403
    assert admin_client.post(_page(AuthEvent, "delete", event.pk), {"post": "yes"}).status_code == 403
    event.refresh_from_db()
    assert event.detail != "forged"


def test_an_operator_who_may_only_view_cannot_revoke(world: World, settings: Any, tmp_path: Path) -> None:
    viewer = User.objects.create(username="viewer", is_staff=True)
    viewer.user_permissions.set(Permission.objects.filter(codename__startswith="view_"))
    client = verified_client(viewer, settings, tmp_path / "viewer.key")
    page = client.get(_changelist(Session))
    assert page.status_code == 200
    assert _actions(page) == []
    client.post(_changelist(Session), {"action": "disconnect_sessions", "_selected_action": [world.live]})
    assert not AuthEvent.objects.filter(actor="viewer (admin site)").exists()
    client.post(
        _changelist(User), {"action": "reset_second_factors", "_selected_action": [world.auth.user_id]}
    )
    assert TotpDevice.objects.filter(user_id=world.auth.user_id).exists()
