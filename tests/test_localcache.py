"""The embedded default's cache (accounts/localcache.py): Django's cache API, one store per name for the
whole process (Django makes a backend instance per thread), atomic add and incr between threads, expiry,
and a bound."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from accounts.localcache import LocalCache


def fresh(**options: int) -> LocalCache:
    return LocalCache(f"test-{uuid.uuid4().hex}", {"OPTIONS": options})


def test_instances_of_one_name_share_their_data_across_threads() -> None:
    name = f"test-{uuid.uuid4().hex}"
    seen: list[object] = []
    LocalCache(name, {}).set("k", 41)

    def other_thread() -> None:
        cache = LocalCache(name, {})  # what django.core.cache.caches makes in another thread
        cache.incr("k")
        seen.append(cache.get("k"))

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join()
    assert seen == [42]
    assert LocalCache(name, {}).get("k") == 42
    assert fresh().get("k") is None  # another name, another store


def test_add_and_incr_are_atomic_between_threads() -> None:
    cache = fresh()
    cache.set("n", 0)
    barrier = threading.Barrier(8)
    won: list[bool] = []

    def work() -> None:
        barrier.wait()
        won.append(cache.add("turn", 1, 10))
        for _ in range(1000):
            cache.incr("n")

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert won.count(True) == 1
    assert cache.get("n") == 8000


def test_values_expire_and_touch_extends_them() -> None:
    cache = fresh()
    cache.set("short", "v", 0.2)
    cache.set("kept", "v", 0.2)
    assert cache.touch("kept", 10)
    time.sleep(0.3)
    assert cache.get("short") is None
    assert cache.get("kept") == "v"
    assert cache.add("short", "again", 1)  # an expired key is free again
    with pytest.raises(ValueError):
        cache.incr("missing")
    assert cache.delete("kept")
    assert not cache.has_key("kept")


def test_it_stays_within_its_bound() -> None:
    cache = fresh(MAX_ENTRIES=100)
    for i in range(1000):
        cache.set(f"k{i}", i)
    assert len(cache._data) <= 100
    assert cache.get("k999") == 999  # the newest stay
