"""``XMPP_LOG_FORMAT=json``: one JSON object a line, for a log collector gathering many processes.

Each line has ``time`` (UTC, ISO 8601 with milliseconds), ``level``, ``logger``, ``node`` (``XMPP_NODE``:
which process said it), ``message``, and ``exception`` (the traceback, as one string) when there is one.
"""

from __future__ import annotations

import datetime
import json
import logging


class JsonLines(logging.Formatter):
    def __init__(self, node: str = "") -> None:
        super().__init__()
        self.node = node

    def format(self, record: logging.LogRecord) -> str:
        moment = datetime.datetime.fromtimestamp(record.created, tz=datetime.UTC)
        line = {
            "time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "node": self.node,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)
