"""Fixtures shared by every test tier.

Named accounts, as healthchecks names its fixture users: ``alice`` owns what a test is about and
``bob`` is the other account (a peer, a contact, someone else's objects). Their passwords are the
integration server's (tests/integration/server.py ``ACCOUNTS``); ``tests.helpers.account()`` makes
any other. Integration modules that need a live bob instead get one from tests/integration/conftest.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.helpers import account

if TYPE_CHECKING:
    from accounts.models import User


@pytest.fixture
def alice(db: None) -> User:
    """The account ``alice``, password "wonderland"."""
    return account("alice")


@pytest.fixture
def bob(db: None) -> User:
    """The account ``bob``, password "builder"."""
    return account("bob")
