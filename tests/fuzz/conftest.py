"""Hypothesis profiles of the fuzz tests (issue 12, item 5), chosen with ``XMPP_FUZZ``.

Short run, the suite's (40 examples per property before weights; well under a minute)::

    .venv/bin/python -m pytest tests/fuzz

Long run (25 times the examples, no per-test timeout; about half an hour on two slow cores)::

    XMPP_FUZZ=long .venv/bin/python -m pytest tests/fuzz -q --hypothesis-show-statistics

``XMPP_FUZZ_EXAMPLES=N`` replaces the base number of examples of either profile (each test scales it
by its weight, see :func:`tests.fuzz.common.fuzz`), e.g. for a night-long run of one file. The
profiles are not loaded globally, so the other property tests of the suite keep Hypothesis'
defaults: every fuzz test takes its settings from :func:`tests.fuzz.common.fuzz`, which derives them
from the profile selected here. Examples that failed once are kept in ``var/hypothesis/`` (ignored
by git) and tried first on the next run; a failure prints the shrunk input (and a
``@reproduce_failure`` blob), which becomes a plain test in ``test_regressions.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

PROFILE = os.environ.get("XMPP_FUZZ") or "short"
if PROFILE not in ("short", "long"):
    raise pytest.UsageError(f"XMPP_FUZZ must be 'short' or 'long', not {PROFILE!r}")

BASE_EXAMPLES = int(os.environ.get("XMPP_FUZZ_EXAMPLES") or {"short": 40, "long": 1000}[PROFILE])

for _name in ("short", "long"):
    settings.register_profile(
        f"xmppauth-fuzz-{_name}",
        max_examples=BASE_EXAMPLES,
        deadline=None,  # a slow, shared machine: timing is not what these tests are about
        database=DirectoryBasedExampleDatabase(
            str(Path(__file__).resolve().parents[2] / "var" / "hypothesis")
        ),
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        print_blob=True,
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A long run may take its time: no pytest-timeout on the fuzz tests then."""
    if PROFILE != "long":
        return
    here = Path(__file__).resolve().parent
    for item in items:
        if here in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.timeout(0))


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> None:
    """Keep Hypothesis from writing a patch of the failing examples: its libcst codemod trips over
    zope.interface (which Twisted installs) and turns a plain test failure into a pytest INTERNALERROR.
    The failing example is still printed with the failure."""
    if hasattr(item, "_hypothesis_failing_examples"):
        del item._hypothesis_failing_examples
