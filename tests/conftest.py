"""Fixtures shared by every test tier.

Named accounts, as healthchecks names its fixture users: ``alice`` owns what a test is about and
``bob`` is the other account (a peer, a contact, someone else's objects). Their passwords are the
integration server's (tests/integration/server.py ``ACCOUNTS``); ``tests.helpers.account()`` makes
any other. Integration modules that need a live bob instead get one from tests/integration/conftest.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.helpers import account

if TYPE_CHECKING:
    from django.test import Client

    from accounts.models import User


@pytest.fixture
def alice(db: None) -> User:
    """The account ``alice``, password "wonderland"."""
    return account("alice")


@pytest.fixture
def bob(db: None) -> User:
    """The account ``bob``, password "builder"."""
    return account("bob")


def verified_client(user: User, settings: Any, key_file: Path) -> Client:
    """A test client signed in as ``user`` with an authenticator app it passed in this session (set up
    now): what the admin site lets in (xmppauth/admin_site.py)."""
    from django.test import Client
    from django_otp import DEVICE_ID_SESSION_KEY

    from accounts import totp

    settings.XMPP_FACTOR_KEY = ""
    settings.XMPP_FACTOR_KEY_FILE = key_file
    device, _uri = totp.enrol(user, "operator's phone")
    client = Client()
    client.force_login(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return client


@pytest.fixture
def admin_client(db: None, admin_user: User, settings: Any, tmp_path: Path) -> Client:
    """pytest-django's ``admin_client`` as the admin site wants it: the operator passed a second factor."""
    return verified_client(admin_user, settings, tmp_path / "admin-factor.key")
