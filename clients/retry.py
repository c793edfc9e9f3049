"""The retry loops (sync and asyncio) every client call goes through.

``core.next_delay`` decides (pure); these two only wait and call again. The first try gets
the call's whole ``timeout``; a retry gets ``min(timeout, time left)``, where the time left
runs to ``max(policy.deadline, timeout)`` after the call started (``core.call_limit``), so an
explicit timeout is never cut short by the default deadline.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from clients.core import RetryPolicy, call_limit, counts_as_attempt, next_delay
from clients.errors import ClientError

__all__ = ["call_async", "call_sync"]

T = TypeVar("T")
Translate = Callable[[Exception], ClientError]


class _Tries:
    """The bookkeeping both loops share: tries made, how many count, time left."""

    def __init__(self, policy: RetryPolicy, timeout: float, now: float) -> None:
        self.policy = policy
        self.timeout = timeout
        self.end = now + call_limit(policy, timeout)
        self.tries = 0
        self.counted = 0

    def seconds(self, now: float) -> float:
        """The timeout for the next try."""
        return self.timeout if self.tries == 0 else min(self.timeout, self.end - now)

    def failed(self, error: ClientError, now: float, rng: random.Random) -> float | None:
        self.tries += 1
        if counts_as_attempt(self.policy, error):
            self.counted += 1
        return next_delay(self.policy, error, self.tries, self.counted, self.end - now, rng)


def call_sync(
    op: Callable[[float], T],
    policy: RetryPolicy,
    rng: random.Random,
    timeout: float,
    translate: Translate,
) -> T:
    tries = _Tries(policy, timeout, time.monotonic())
    while True:
        try:
            return op(tries.seconds(time.monotonic()))
        except Exception as exc:  # every failure is translated, in one place
            cause: Exception = exc
            error = translate(exc)
        delay = tries.failed(error, time.monotonic(), rng)
        if delay is None:
            raise error from cause
        time.sleep(delay)


async def call_async(
    op: Callable[[float], Awaitable[T]],
    policy: RetryPolicy,
    rng: random.Random,
    timeout: float,
    translate: Translate,
) -> T:
    loop = asyncio.get_running_loop()
    tries = _Tries(policy, timeout, loop.time())
    while True:
        try:
            return await op(tries.seconds(loop.time()))
        except Exception as exc:  # every failure is translated, in one place
            cause: Exception = exc
            error = translate(exc)
        delay = tries.failed(error, loop.time(), rng)
        if delay is None:
            raise error from cause
        await asyncio.sleep(delay)
