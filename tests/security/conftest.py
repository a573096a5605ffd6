"""One server for the whole security catalogue (docs/security.md): ``manage.py serve`` on free loopback
ports, with the named accounts of tests/integration and a few more that tests may change for good
(a password changed, a factor removed), so that no test changes what another one relies on.

The server runs with the embedded defaults, so every limit the tests probe is the shipped one, but for
the guessing limits and the connection limits per address (rows 6, 10 and 11, tested on servers of their
own in tests/integration/test_guessing.py and test_connection_limits.py): the attacks here open hundreds
of connections and fail many logins from 127.0.0.1 on purpose, and a limit that tripped halfway would turn
the later refusals into ``temporary-auth-failure`` or a refused connection, and make them prove nothing.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.rawclient import Session, available
from tests.integration.server import ACCOUNTS, Server, running_server

#: Accounts made once for this package, beyond alice, bob and carol: name → password.
EXTRA_ACCOUNTS = {
    "dave": "dave-pw-1",  # FAST: his password is changed
    "erin": "erin-pw-1",  # FAST: her second factor is removed
    "frank": "frank-pw-1",  # FAST: replayed counts and initiator values
    "grace": "grace-pw-1",  # from spoofing: she is the sender
    "heidi": "heidi-pw-1",  # resources: conflicts and bad resources
    "pat": "pat-pw-1",  # the portal: an account with an authenticator app
}

_CREATE = """
from accounts.models import User
for name, password in {accounts!r}.items():
    user, _ = User.objects.get_or_create(username=name)
    user.set_password(password)
    user.save()
"""


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    unlimited = {
        "XMPP_GUESS_FREE_PER_ADDRESS": "1000000",
        "XMPP_GUESS_FREE_PER_ACCOUNT": "1000000",
        "XMPP_CONNECT_BURST": "1000000",
        "XMPP_MAX_CONNECTIONS_PER_ADDRESS": "1000000",
    }
    with running_server(tmp_path_factory.mktemp("security"), accounts={}, **unlimited) as srv:
        # one process for every account (each adduser would start Django again)
        done = srv.manage("shell", "-c", _CREATE.format(accounts={**ACCOUNTS, **EXTRA_ACCOUNTS}))
        assert done.returncode == 0, done.stderr
        yield srv


@pytest.fixture
def bob(server: Server) -> Iterator[Session]:
    """bob, logged in (SASL2 + Bind2) and available: he receives messages and presence."""
    session = available(server)
    yield session
    session.close()
