"""API keys and the per-key rate limit (pure logic: no I/O, an injectable clock).

Keys are Bearer tokens (``Authorization: Bearer KEY``), compared in constant time. The rate
limit is a token bucket per key (per client address when no keys are configured): ``N/s``
or ``N/min`` holds N tokens, refills N per second or minute, and each request takes one. A request
that finds the bucket empty is told how long until a token is back (``Retry-After``).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Keys", "Rate", "RateLimiter", "TokenBucket", "parse_rate", "read_keys"]


@dataclass(frozen=True)
class Rate:
    """``count`` requests per ``seconds``: the bucket holds ``count`` (at least 1) and refills
    at ``count / seconds`` a second, so ``3/min`` allows a burst of 3, then one per 20 s."""

    count: float
    seconds: float

    @property
    def per_second(self) -> float:
        return self.count / self.seconds

    @property
    def burst(self) -> float:
        return max(1.0, self.count)

    def __str__(self) -> str:
        return f"{self.count:g}/{'s' if self.seconds == 1.0 else 'min'}"


def parse_rate(value: str) -> Rate:
    """``"20/s"``, ``"20"`` or ``"1200/min"``."""
    text = value.strip().lower()
    per = 1.0
    for suffix, seconds in (("/s", 1.0), ("/sec", 1.0), ("/min", 60.0), ("/m", 60.0)):
        if text.endswith(suffix):
            text, per = text[: -len(suffix)], seconds
            break
    try:
        count = float(text)
    except ValueError:
        raise ValueError(f"rate limit {value!r}: expected N/s or N/min, e.g. 20/s") from None
    if not count > 0 or count == float("inf"):
        raise ValueError(f"rate limit {value!r}: must be a positive number of requests")
    return Rate(count, per)


def read_keys(path: Path) -> list[str]:
    """One key a line; blank lines and ``#`` comments are skipped."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{path}: cannot read API keys: {exc.strerror}") from None
    keys = [line.strip() for line in text.splitlines()]
    keys = [key for key in keys if key and not key.startswith("#")]
    if not keys:
        raise ValueError(f"{path}: no API keys in the file (one key a line)")
    return keys


@dataclass(frozen=True)
class Keys:
    keys: tuple[str, ...] = ()

    @classmethod
    def of(cls, keys: Iterable[str]) -> Keys:
        return cls(tuple(dict.fromkeys(k for k in keys if k)))

    @property
    def required(self) -> bool:
        return bool(self.keys)

    def match(self, authorization: str | None) -> str | None:
        """The key this ``Authorization`` header carries, if it is one of ours."""
        if not authorization:
            return None
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        given = token.strip().encode("utf-8")
        found = None
        for key in self.keys:  # no early exit: the time does not say which key was close
            if hmac.compare_digest(given, key.encode("utf-8")):
                found = key
        return found


@dataclass
class TokenBucket:
    rate: float  # tokens per second
    capacity: float  # the burst: max(rate, 1)
    tokens: float
    stamp: float

    def take(self, now: float) -> float:
        """0.0 if a token was taken, else the seconds until one is back."""
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate


@dataclass
class RateLimiter:
    rate: Rate | None  # per key; None: no limit
    clock: Callable[[], float] = time.monotonic
    max_buckets: int = 10_000  # client addresses are unbounded: forget the oldest
    _buckets: dict[str, TokenBucket] = field(default_factory=dict)

    def wait(self, who: str) -> float:
        """0.0 if ``who`` may go on now, else the seconds to wait."""
        if self.rate is None:
            return 0.0
        now = self.clock()
        bucket = self._buckets.get(who)
        if bucket is None:
            if len(self._buckets) >= self.max_buckets:
                self._buckets.pop(next(iter(self._buckets)))
            burst = self.rate.burst
            bucket = self._buckets[who] = TokenBucket(self.rate.per_second, burst, burst, now)
        return bucket.take(now)
