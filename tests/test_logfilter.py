"""xmppauth/logfilter.py: what the network can make Django log is held to one record a minute per kind."""

from __future__ import annotations

import logging
import sys

import pytest

from xmppauth import logfilter


def record(name: str, level: int, msg: str) -> logging.LogRecord:
    try:
        raise ValueError("the client's doing")
    except ValueError:
        exc_info = sys.exc_info()
    return logging.LogRecord(name, level, __file__, 1, msg, None, exc_info)


def test_one_record_a_minute_per_kind_without_its_traceback_then_how_many_were_left_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    monkeypatch.setattr("xmppauth.logfilter.time.monotonic", lambda: now[0])
    once = logfilter.OncePerMinute()
    first = record("django.security.DisallowedHost", logging.ERROR, "Invalid HTTP_HOST header: 'evil'")
    assert once.filter(first)
    assert first.exc_info is None  # no traceback for a bad Host
    other_kind = record("django.request", logging.WARNING, "Not Found: /x")
    assert once.filter(other_kind)  # a kind of its own
    assert not any(
        once.filter(record("django.security.DisallowedHost", logging.ERROR, "again")) for _ in range(5)
    )
    now[0] += logfilter.EVERY
    later = record("django.security.DisallowedHost", logging.ERROR, "Invalid HTTP_HOST header: 'evil2'")
    assert once.filter(later)
    assert (
        later.getMessage()
        == "Invalid HTTP_HOST header: 'evil2' (5 more like it in the last minute, not logged)"
    )


def test_our_own_errors_and_other_loggers_pass_every_time_with_their_traceback() -> None:
    once = logfilter.OncePerMinute()
    for _ in range(3):
        server_error = record("django.request", logging.ERROR, "Internal Server Error: /portal/")
        assert once.filter(server_error)
        assert server_error.exc_info is not None
        ours = record("xmppauth.c2s", logging.WARNING, "something")
        assert once.filter(ours)
