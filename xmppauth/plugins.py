"""Packages whose modules register themselves (xmppauth.features, xmppauth.sasl2_tasks).

Each module of such a package calls its package's ``register()`` at import; the package imports
them all, once, with :func:`import_submodules` before it first looks something up. Adding a module
is then all it takes to add a feature: no list to keep in step.
"""

from __future__ import annotations

import functools
import importlib
import pkgutil


@functools.cache
def import_submodules(package: str) -> None:
    """Import every module of ``package`` (once), in the order of their names."""
    path = importlib.import_module(package).__path__
    for name in sorted(info.name for info in pkgutil.iter_modules(path)):
        importlib.import_module(f"{package}.{name}")
