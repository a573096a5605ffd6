"""Instructions per call of pieces of the synchronous login path, counted by callgrind.

    XMPP_DATA_DIR=/tmp/m/data .venv/bin/python manage.py adduser benchuser bench-Passw0rd   # from TREE
    cd TREE && XMPP_DATA_DIR=/tmp/m/data XMPP_LOG_LEVEL=WARNING UNDER_CG=1 valgrind --tool=callgrind \\
        --callgrind-out-file=/tmp/m/cg.out /path/to/.venv/bin/python /path/to/bench/login_micro.py TREE 2000
    for f in /tmp/m/cg.out.*; do
        echo "$(grep -m1 '^desc: Trigger' $f) $(( $(grep '^totals:' $f | cut -d' ' -f2) / 2000 ))"; done

Each piece is called K times between ``callgrind_control -z`` and ``-d NAME``, so each dump holds one piece;
subtract the ``noop`` dump (the zero/dump round trip spread over K calls). Pieces: Django's SQLite
``convert_query`` of the login read, ``loginreads.password_login``, ``login.authorize`` (an RFC 6120 password
login of a client seen within the minute: the read-only path), and ``dataclasses.replace`` of an
``Authorization`` when the tree has ``second_factors``. Without UNDER_CG it only runs them (a check).
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import fields, replace
from typing import Any

tree = os.path.abspath(sys.argv[1])
K = int(sys.argv[2])
os.chdir(tree)
sys.path.insert(0, tree)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "xmppauth.settings")
import django  # noqa: E402

django.setup()
import xmppauth  # noqa: E402

assert xmppauth.__file__.startswith(tree), xmppauth.__file__
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from sessions_acl import login, loginreads  # noqa: E402

pid = os.getpid()
UNDER = bool(os.environ.get("UNDER_CG"))


def seg(name: str, fn: Callable[[], object]) -> None:
    for _ in range(3):
        fn()
    if UNDER:
        subprocess.run(["callgrind_control", "-z", str(pid)], check=True, capture_output=True)
    for _ in range(K):
        fn()
    if UNDER:
        subprocess.run(["callgrind_control", "-d", name, str(pid)], check=True, capture_output=True)
    print("segment", name, flush=True)


kw: dict[str, Any] = {
    "credential_id": "",
    "mechanism": "SCRAM-SHA-1",
    "user_agent_id": None,
    "address": "127.0.0.1",
}
if "tasks" in inspect.signature(login.authorize).parameters:
    kw["tasks"] = False
res = login.authorize("benchuser", **kw)  # the first login makes the client row
print(type(res).__name__, res)
sql = loginreads._password_login_sql()
print("login SQL length", len(sql))
cur = connection.cursor().cursor  # Django's SQLiteCursorWrapper
now = timezone.now()
seg("noop", lambda: None)
seg("convert_query", lambda: cur.convert_query(sql))
seg("password_login", lambda: loginreads.password_login("benchuser", "", now))
seg("authorize", lambda: login.authorize("benchuser", **kw))
if isinstance(res, login.Authorization) and "second_factors" in {f.name for f in fields(res)}:
    authorization = res
    seg("replace", lambda: replace(authorization, second_factors=(), token_request=None))
