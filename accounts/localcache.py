"""The cache of a single process (the embedded default): Django's cache API over a plain dictionary.

Django's ``LocMemCache`` pickles every value and validates every key for memcached's sake; the guessing
limits (accounts/guessing.py) make a handful of cache calls on every login, where that cost about 340,000
instructions per login (callgrind, issue 12). This backend keeps values as they are (callers store
numbers and short tuples, and never mutate what they get back) and checks nothing but the expiry; every
operation takes one lock, so ``add`` and ``incr`` are atomic between threads, as the limits need.

One dictionary per cache name for the whole process, whichever thread asks. Bounded like
``LocMemCache``: past ``MAX_ENTRIES`` (``OPTIONS``) the expired entries go, then the oldest
third if that was not enough.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from django.core.cache.backends.base import DEFAULT_TIMEOUT, BaseCache

#: The data of each cache by name, shared by the instances Django makes (one per thread, as for every
#: backend: ``django.core.cache.caches`` is thread-local), as ``LocMemCache`` shares its own.
_STORES: dict[str, tuple[dict[str, tuple[Any, float | None]], threading.Lock]] = {}
_STORES_LOCK = threading.Lock()


class LocalCache(BaseCache):
    def __init__(self, name: str, params: dict[str, Any]) -> None:
        super().__init__(params)
        with _STORES_LOCK:
            self._data, self._lock = _STORES.setdefault(name, ({}, threading.Lock()))

    # --- helpers (called with the lock held) ----------------------------------------------------------
    def _expiry(self, timeout: Any) -> float | None:
        if timeout is DEFAULT_TIMEOUT:
            timeout = self.default_timeout
        return None if timeout is None else time.monotonic() + float(timeout)

    def _live(self, key: str) -> tuple[Any, float | None] | None:
        item = self._data.get(key)
        if item is not None and item[1] is not None and item[1] <= time.monotonic():
            del self._data[key]
            return None
        return item

    def _store(self, key: str, value: Any, timeout: Any) -> None:
        if key not in self._data and len(self._data) >= self._max_entries:
            self._cull()
        self._data[key] = (value, self._expiry(timeout))

    def _cull(self) -> None:
        now = time.monotonic()
        for key in [k for k, (_, expires) in self._data.items() if expires is not None and expires <= now]:
            del self._data[key]
        if len(self._data) >= self._max_entries:
            for key in list(self._data)[: max(1, len(self._data) // 3)]:
                del self._data[key]

    # --- the cache API --------------------------------------------------------------------------------
    def get(self, key: str, default: Any = None, version: int | None = None) -> Any:
        key = self.make_key(key, version)
        with self._lock:
            item = self._live(key)
        return default if item is None else item[0]

    def set(self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> None:
        key = self.make_key(key, version)
        with self._lock:
            self._store(key, value, timeout)

    def add(self, key: str, value: Any, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        key = self.make_key(key, version)
        with self._lock:
            if self._live(key) is not None:
                return False
            self._store(key, value, timeout)
            return True

    def incr(self, key: str, delta: int = 1, version: int | None = None) -> Any:
        key = self.make_key(key, version)
        with self._lock:
            item = self._live(key)
            if item is None:
                raise ValueError(f"Key '{key}' not found")
            value = item[0] + delta
            self._data[key] = (value, item[1])
            return value

    def touch(self, key: str, timeout: Any = DEFAULT_TIMEOUT, version: int | None = None) -> bool:
        key = self.make_key(key, version)
        with self._lock:
            item = self._live(key)
            if item is None:
                return False
            self._data[key] = (item[0], self._expiry(timeout))
            return True

    def delete(self, key: str, version: int | None = None) -> bool:
        key = self.make_key(key, version)
        with self._lock:
            return self._data.pop(key, None) is not None

    def has_key(self, key: str, version: int | None = None) -> bool:
        key = self.make_key(key, version)
        with self._lock:
            return self._live(key) is not None

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
