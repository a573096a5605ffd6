"""Django for a benchmark that reads and writes the database: settings, a data directory of its own (a new
SQLite database in a temporary directory, never the server's) and the migrations applied.

    import fresh_django
    fresh_django.start("bench-name-")   # before importing models
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path


def start(prefix: str) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "xmppauth.settings")
    os.environ["XMPP_DATA_DIR"] = tempfile.mkdtemp(prefix=prefix)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)
