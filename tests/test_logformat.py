"""XMPP_LOG_FORMAT=json (xmppauth/logformat.py): one JSON object a line, naming the process."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from xmppauth.logformat import JsonLines

ROOT = Path(__file__).resolve().parent.parent


def test_a_line_is_one_json_object_with_the_node_and_the_traceback() -> None:
    try:
        raise RuntimeError("the database went away")
    except RuntimeError:
        exc_info = sys.exc_info()
    record = logging.LogRecord(
        "xmppauth.c2s", logging.ERROR, __file__, 1, "%s failed", ("a login",), exc_info
    )
    line = JsonLines(node="b").format(record)
    assert "\n" not in line  # one line, the traceback inside the object
    parsed = json.loads(line)
    assert parsed["node"] == "b"
    assert parsed["level"] == "ERROR"
    assert parsed["logger"] == "xmppauth.c2s"
    assert parsed["message"] == "a login failed"
    assert parsed["time"].endswith("Z")
    assert "RuntimeError: the database went away" in parsed["exception"]


def test_an_unknown_format_stops_the_process_with_a_clear_error(tmp_path: Path) -> None:
    env = {**os.environ, "XMPP_LOG_FORMAT": "xml", "XMPP_DATA_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode != 0
    assert "XMPP_LOG_FORMAT='xml': expected plain or json" in done.stderr
