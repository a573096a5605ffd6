"""The in-process throttle in front of the client record write."""

from __future__ import annotations

import pytest

from xmppauth import services


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    services._clients_seen.clear()


def test_a_client_is_written_once_a_minute_unless_its_details_change(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    now = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    assert services.client_needs_recording("alice", "ua", "App 1", "phone")
    assert not services.client_needs_recording("alice", "ua", "App 1", "phone")
    assert services.client_needs_recording("alice", "ua", "App 2", "phone")  # upgraded software
    assert services.client_needs_recording("bob", "ua", "App 2", "phone")  # another account
    now[0] += services.CLIENT_SEEN_GRANULARITY
    assert services.client_needs_recording("alice", "ua", "App 2", "phone")
