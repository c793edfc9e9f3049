"""The retry loops (sync and asyncio) every client call goes through.

``core.next_delay`` decides (pure); these two only wait and call again. A call gets
``min(per_call, time left before the deadline)`` seconds for each attempt.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from clients.core import RetryPolicy, next_delay
from clients.errors import ClientError

__all__ = ["call_async", "call_sync"]

T = TypeVar("T")
Translate = Callable[[Exception], ClientError]


def call_sync(
    op: Callable[[float], T],
    policy: RetryPolicy,
    rng: random.Random,
    per_call: float,
    translate: Translate,
) -> T:
    deadline = time.monotonic() + policy.deadline
    attempt = 0
    while True:
        try:
            return op(max(0.001, min(per_call, deadline - time.monotonic())))
        except Exception as exc:  # every failure is translated, in one place
            cause: Exception = exc
            error = translate(exc)
        delay = next_delay(policy, error, attempt, deadline - time.monotonic(), rng)
        if delay is None:
            raise error from cause
        time.sleep(delay)
        attempt += 1


async def call_async(
    op: Callable[[float], Awaitable[T]],
    policy: RetryPolicy,
    rng: random.Random,
    per_call: float,
    translate: Translate,
) -> T:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + policy.deadline
    attempt = 0
    while True:
        try:
            return await op(max(0.001, min(per_call, deadline - loop.time())))
        except Exception as exc:  # every failure is translated, in one place
            cause: Exception = exc
            error = translate(exc)
        delay = next_delay(policy, error, attempt, deadline - loop.time(), rng)
        if delay is None:
            raise error from cause
        await asyncio.sleep(delay)
        attempt += 1
