"""The project's settings plus the fault injector (tests only)."""

from __future__ import annotations

from xmppauth.settings import *  # noqa: F403
from xmppauth.settings import INSTALLED_APPS as _PROJECT_APPS

INSTALLED_APPS = [*_PROJECT_APPS, "tests.integration.faults.apps.FaultsConfig"]
