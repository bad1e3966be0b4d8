"""Slowing down password guessing, per client address (the web page and the OCPP port).

A few wrong passwords cost nothing; after that each further failure from the same address closes
that address for a while, doubling up to a ceiling. While closed, an attempt is answered at once
("try again in N s") without checking the password, so guessing costs the guesser time and us no
work. It never locks anyone out for good: the wait is bounded, one success clears it, and other
addresses (the rightful user's phone, every other station) are not affected at all.
"""
from __future__ import annotations

import time
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

FREE_FAILURES = 5        # typos: no wait at all
FIRST_WAIT_S = 1.0       # then 1, 2, 4, ... seconds
MAX_WAIT_S = 60.0
FORGET_S = 15 * 60       # an address quiet this long starts afresh
MAX_ADDRESSES = 4096     # memory bound: the least recently failing address is forgotten first


@dataclass
class _Record:
    failures: int = 0
    closed_until: float = 0.0
    last: float = 0.0


class FailureThrottle:
    """Failure counts per key (a client address). Not thread-safe: used from gevent greenlets."""

    def __init__(self, free: int = FREE_FAILURES, first_wait_s: float = FIRST_WAIT_S,
                 max_wait_s: float = MAX_WAIT_S, forget_s: float = FORGET_S, max_keys: int = MAX_ADDRESSES):
        self.free, self.first_wait_s, self.max_wait_s = free, first_wait_s, max_wait_s
        self.forget_s, self.max_keys = forget_s, max_keys
        self._records: OrderedDict[str, _Record] = OrderedDict()

    def wait_s(self, key: str) -> float:
        """Seconds until `key` may try again; 0 when it may try now."""
        rec = self._records.get(key)
        if rec is None:
            return 0.0
        now = time.monotonic()
        if now - rec.last > self.forget_s:
            del self._records[key]
            return 0.0
        return max(0.0, rec.closed_until - now)

    def failed(self, key: str) -> float:
        """Count a wrong password from `key`; returns the wait it now has before the next try."""
        now = time.monotonic()
        rec = self._records.pop(key, None)
        if rec is None or now - rec.last > self.forget_s:
            rec = _Record()
        rec.failures += 1
        rec.last = now
        over = rec.failures - self.free
        if over > 0:
            rec.closed_until = now + min(self.max_wait_s, self.first_wait_s * 2 ** (over - 1))
        self._records[key] = rec          # most recent last: eviction takes the oldest
        while len(self._records) > self.max_keys:
            self._records.popitem(last=False)
        return max(0.0, rec.closed_until - now)

    def succeeded(self, key: str) -> None:
        self._records.pop(key, None)

    def failures(self, key: str) -> int:
        rec = self._records.get(key)
        return rec.failures if rec else 0


class OneAtATime:
    """At most one check in flight per key: parallel guesses from one address queue behind each other
    (and then meet the wait) instead of all being checked before the first failure is counted."""

    def __init__(self) -> None:
        import gevent.lock

        self._new_lock = gevent.lock.Semaphore
        self._locks: dict[str, tuple[Any, int]] = {}

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        lock, users = self._locks.get(key) or (self._new_lock(), 0)
        self._locks[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)
