"""`python -m xmppauth.client`: the reference client's command line (see :mod:`.cli`)."""

from __future__ import annotations

import sys

from xmppauth.client.cli import main

sys.exit(main())
