"""The admin site behind the portal's sign-in (xmppauth/admin_site.py): its own password-only login
page is gone, and a staff session that did not pass its account's second factor is not let in (an
outside attack found the admin opened to a staff account's password alone)."""

from __future__ import annotations

from django.test import Client

from accounts import totp
from accounts.models import User
from tests.web.conftest import app_of, code_of, code_step, password_step, redirects_to_sign_in, signed_in_as

ADMIN = "/admin/"


def staff(user: User) -> User:
    User.objects.filter(pk=user.pk).update(is_staff=True, is_superuser=True)
    user.refresh_from_db()
    return user


def test_the_admin_login_page_is_the_portals_sign_in(alice: User) -> None:
    response = Client().get("/admin/login/?next=/admin/accounts/user/")
    assert redirects_to_sign_in(response)
    assert "next=%2Fadmin%2Faccounts%2Fuser%2F" in response["Location"]
    posted = Client().post("/admin/login/", {"username": "alice", "password": "wonderland"})
    assert redirects_to_sign_in(posted)  # the password is not checked there at all


def test_a_staff_password_alone_does_not_open_the_admin(alice: User) -> None:
    staff(alice)
    device = app_of(alice)
    client = Client()
    password_step(client, "alice", "wonderland")  # the password step: pending, no login
    assert client.get(ADMIN).status_code == 302
    client.force_login(alice)  # a session signed in without the factor (another door, an old session)
    assert client.get(ADMIN).status_code == 302
    verified = Client()
    password_step(verified, "alice", "wonderland")
    assert code_step(verified, "totp", code_of(device)).status_code == 302
    page = verified.get(ADMIN)
    assert page.status_code == 200  # control: password and factor through the portal
    assert "Site administration" in page.content.decode()


def test_staff_without_a_factor_are_sent_to_set_one_up_first(alice: User) -> None:
    """The admin asks every operator for a second factor (issue 11): without one, the portal's sign-in
    with the password alone leads to the security page, and the admin opens once a factor is set up."""
    staff(alice)
    client = signed_in_as(Client(), alice)
    response = client.get(ADMIN, follow=True)
    assert response.redirect_chain[-1][0] == "/account/security/", response.redirect_chain
    assert "The admin site needs a second factor" in response.content.decode()
    device, _uri = totp.start_setup(alice, "phone")
    confirmed = client.post("/account/security/totp/confirm/", {"code": code_of(device)})
    assert confirmed.status_code == 302
    page = client.get(ADMIN)
    assert page.status_code == 200  # set up in this session: passed
    assert "Site administration" in page.content.decode()


def test_a_signed_in_account_that_is_not_staff_is_not_let_in(bob: User) -> None:
    client = signed_in_as(Client(), bob)
    assert client.get(ADMIN).status_code == 302
