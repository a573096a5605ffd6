"""Fixtures shared by the integration tests (each module brings its own ``server``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.rawclient import Session, available
from tests.integration.server import Server


@pytest.fixture
def bob(server: Server) -> Iterator[Session]:
    """bob, logged in with his password (SASL2 + Bind2) and available: he receives messages and presence."""
    session = available(server)
    yield session
    session.close()
