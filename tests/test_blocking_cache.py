"""The blocklists kept in memory (xmppauth/blocking.py): bounded, and never without the list of an
account bound in this process, which routing reads on every stanza."""

from __future__ import annotations

import pytest

from tests.test_router import FakeSession
from xmppauth import blocking
from xmppauth.proto.jid import JID
from xmppauth.router import ROUTER


@pytest.fixture
def small(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(blocking, "KEPT", 10)
    monkeypatch.setattr(blocking, "_LISTS", {})
    monkeypatch.setattr(blocking, "_LOADED", {})


def test_beyond_kept_the_least_recently_read_go_but_never_one_bound_here(small: None) -> None:
    bound = FakeSession("a0@localhost/phone")
    ROUTER.register(bound)
    try:
        for n in range(25):
            blocking._keep(JID(f"a{n}", "localhost"), frozenset({"spam.example"}))
        assert len(blocking._LISTS) <= 10
        assert blocking.items(JID("a0", "localhost")) == {"spam.example"}  # the oldest, but bound here
        assert blocking.fresh(JID("a0", "localhost"))
        assert blocking.items(JID("a1", "localhost")) == frozenset()  # forgotten: read again at its bind
        assert not blocking.fresh(JID("a1", "localhost"))
        assert blocking.fresh(JID("a24", "localhost"))
    finally:
        ROUTER.unbind(bound)


def test_a_list_kept_for_an_account_not_bound_here_is_read_again_once_old(
    small: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    monkeypatch.setattr("xmppauth.blocking.time.monotonic", lambda: clock[0])
    blocking._keep(JID("zed", "localhost"), frozenset())
    assert blocking.fresh(JID("zed", "localhost"))
    clock[0] += blocking.FRESH
    assert not blocking.fresh(JID("zed", "localhost"))
