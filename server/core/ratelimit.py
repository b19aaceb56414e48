"""Small rate limiters (pure logic, the clock is passed in)."""

from __future__ import annotations

from collections import OrderedDict
from typing import Protocol


class Limiter(Protocol):
    """What link opening and login ask: may `key` (a client address) go on now? The local
    KeyedLimiter answers for this process; server.cluster.limits.SharedLimiter for every
    node, through Redis."""

    async def check(self, key: str, now: float) -> bool: ...


class TokenBucket:
    """`rate` tokens per second, at most `burst` saved up."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.tokens = float(burst)
        self.stamp = now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class KeyedLimiter:
    """One token bucket per key (e.g. client address), bounded so it cannot grow forever."""

    def __init__(self, per_minute: int, max_keys: int = 10_000) -> None:
        self.rate = per_minute / 60.0
        self.burst = max(per_minute, 1)
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def allow(self, key: str, now: float) -> bool:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = TokenBucket(self.rate, self.burst, now)
            self._buckets[key] = bucket
            if len(self._buckets) > self.max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket.take(now)

    async def check(self, key: str, now: float) -> bool:
        """Limiter: the same as allow() (nothing to wait for in this process)."""
        return self.allow(key, now)


class FailureBackoff:
    """Failed attempts per key (an account, an address) with exponential backoff.

    The first `free` failures cost nothing; after that the key must wait `base_s`, then
    twice that, … up to `max_s`, counted from its last failure. A success clears the key
    (for accounts: the right password proves the owner is there); a key with no failure
    for `forget_s` is forgotten. Bounded like KeyedLimiter: the oldest keys go first.
    """

    def __init__(
        self,
        free: int,
        base_s: float = 1.0,
        max_s: float = 900.0,
        forget_s: float = 3600.0,
        max_keys: int = 10_000,
    ) -> None:
        self.free = free
        self.base_s = base_s
        self.max_s = max_s
        self.forget_s = forget_s
        self.max_keys = max_keys
        self._keys: OrderedDict[str, tuple[int, float]] = OrderedDict()  # failures, last

    def _state(self, key: str, now: float) -> tuple[int, float]:
        state = self._keys.get(key)
        if state is None:
            return 0, 0.0
        if now - state[1] > max(self.forget_s, self.max_s):
            del self._keys[key]
            return 0, 0.0
        return state

    def wait_s(self, key: str, now: float) -> float:
        """Seconds before `key` may try again; 0 when it may now."""
        failures, last = self._state(key, now)
        if failures < self.free:
            return 0.0
        delay = min(self.max_s, self.base_s * 2.0 ** (failures - self.free))
        return max(0.0, last + delay - now)

    def failed(self, key: str, now: float) -> None:
        failures, _ = self._state(key, now)
        self._keys[key] = (failures + 1, now)
        self._keys.move_to_end(key)
        if len(self._keys) > self.max_keys:
            self._keys.popitem(last=False)

    def succeeded(self, key: str) -> None:
        self._keys.pop(key, None)

    def forgive(self, key: str) -> None:
        """Take back one failure counted up front (see web_auth.login) that was not one."""
        state = self._keys.get(key)
        if state is not None:
            if state[0] <= 1:
                del self._keys[key]
            else:
                self._keys[key] = (state[0] - 1, state[1])
