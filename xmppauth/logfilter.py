"""Log records anyone on the network can cause, held to one a minute per kind (``LOGGING`` in settings).

Django logs every request with a bad ``Host`` (``django.security.DisallowedHost``), every static path that
leaves its directory (``django.security.SuspiciousFileOperation``), each with a traceback, and every 4xx
response (``django.request``). Pipelined on keep-alive connections, one address made the log grow by
2 MB a second (a black-box attack, 2026-12-07). These records say something about the client, not about
a fault of ours: the first of each kind in a minute is written without its traceback, with how many of
its kind were left out since the last one written; the others are dropped. As our own limits log
(xmppauth/transport/limits.py): once a minute per kind.
"""

from __future__ import annotations

import logging
import time

EVERY = 60.0  # seconds between two records of one kind
NOISY = ("django.security", "django.request")  # loggers the network can make speak


class OncePerMinute(logging.Filter):
    def __init__(self, name: str = "") -> None:
        super().__init__(name)
        self._said: dict[str, float] = {}
        self._left_out: dict[str, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(NOISY) or (
            record.levelno >= logging.ERROR and record.name == "django.request"
        ):
            return True  # a 5xx is ours to debug: every one, with its traceback
        now = time.monotonic()
        said = self._said.get(record.name)
        if said is not None and now - said < EVERY:
            self._left_out[record.name] = self._left_out.get(record.name, 0) + 1
            return False
        self._said[record.name] = now
        left_out = self._left_out.pop(record.name, 0)
        record.exc_info = record.exc_text = None  # the client's doing, not a fault to debug
        if left_out:
            record.msg = f"{record.getMessage()} ({left_out} more like it in the last minute, not logged)"
            record.args = None
        return True
