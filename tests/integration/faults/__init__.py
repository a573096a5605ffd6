"""Fault injection for the crash tests (tests/integration/test_crash.py): test-only, never installed in
production. The server is started with ``DJANGO_SETTINGS_MODULE=tests.integration.faults.settings``;
the app's ``ready()`` wraps the functions in :data:`apps.TARGETS`, and a wrapped function raises
:class:`apps.InjectedFault` once when the file ``$XMPP_DATA_DIR/fault`` names it (``NAME`` raises
before the real call, ``NAME after`` after it). Firing removes the file, so a test can tell that the
step it provoked was reached.
"""

from __future__ import annotations
