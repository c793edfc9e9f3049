"""The retry loops (clients.retry) with operations made here: which errors are tried again,
how many times, and what timeout each try gets. No server; no sleeping longer than 0.2 s."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import pytest

from clients.core import RetryPolicy, translate
from clients.errors import (
    ClientError,
    ConnectError,
    DeadlineExceeded,
    ServerError,
    UnavailableError,
)
from clients.retry import call_async, call_sync

FAST = {"initial_backoff": 0.001, "max_backoff": 0.002, "jitter": 0.0}


class Flaky:
    """Fails with the given errors in turn, then returns "done"; records each try's timeout."""

    def __init__(self, *errors: ClientError) -> None:
        self.errors = list(errors)
        self.timeouts: list[float] = []

    def __call__(self, timeout: float) -> str:
        self.timeouts.append(timeout)
        if self.errors:
            raise self.errors.pop(0)
        return "done"

    async def coroutine(self, timeout: float) -> str:
        return self(timeout)


def both(op: Flaky, policy: RetryPolicy, timeout: float) -> list[object]:
    """The sync loop's and the async loop's outcome for two copies of the same failures."""
    copy = Flaky(*op.errors)
    outcomes: list[object] = []
    for run in (
        lambda: call_sync(op, policy, random.Random(0), timeout, translate),
        lambda: asyncio.run(
            call_async(copy.coroutine, policy, random.Random(0), timeout, translate)
        ),
    ):
        try:
            outcomes.append(run())
        except ClientError as error:
            outcomes.append(type(error))
    return outcomes


def test_connection_failures_outlast_attempts() -> None:
    op = Flaky(*[ConnectError("down")] * 20)
    assert both(op, RetryPolicy(attempts=2, **FAST), 5.0) == ["done", "done"]
    assert len(op.timeouts) == 21


def test_declined_requests_stop_at_attempts() -> None:
    op = Flaky(*[UnavailableError("busy")] * 3)
    assert both(op, RetryPolicy(attempts=3, **FAST), 5.0) == [UnavailableError, UnavailableError]
    assert len(op.timeouts) == 3


def test_declined_requests_within_attempts_succeed() -> None:
    op = Flaky(UnavailableError("busy"), ConnectError("down"), UnavailableError("busy"))
    assert both(op, RetryPolicy(attempts=3, **FAST), 5.0) == ["done", "done"]


def test_a_timeout_is_not_tried_again_by_default() -> None:
    op = Flaky(DeadlineExceeded("late"))
    assert both(op, RetryPolicy(**FAST), 5.0) == [DeadlineExceeded, DeadlineExceeded]
    assert op.timeouts == [5.0]


def test_a_timeout_is_tried_again_when_asked() -> None:
    op = Flaky(DeadlineExceeded("late"))
    assert both(op, RetryPolicy(retry_timeouts=True, **FAST), 5.0) == ["done", "done"]


def test_server_errors_are_not_retried() -> None:
    op = Flaky(ServerError("boom", "500"))
    assert both(op, RetryPolicy(**FAST), 5.0) == [ServerError, ServerError]
    assert len(op.timeouts) == 1


def test_the_first_try_gets_a_timeout_longer_than_the_deadline() -> None:
    op = Flaky()
    assert call_sync(op, RetryPolicy(deadline=30.0), random.Random(0), 120.0, translate) == "done"
    assert op.timeouts == [120.0]


def test_retries_stop_at_the_deadline() -> None:
    op = Flaky(*[ConnectError("down")] * 10_000)
    policy = RetryPolicy(deadline=0.2, initial_backoff=0.01, max_backoff=0.02, jitter=0.0)
    with pytest.raises(ConnectError):
        call_sync(op, policy, random.Random(0), 0.1, translate)
    assert 2 <= len(op.timeouts) < 10_000
    assert all(t <= 0.2 for t in op.timeouts)


def test_deadline_zero_never_retries() -> None:
    op = Flaky(ConnectError("down"))
    with pytest.raises(ConnectError):
        call_sync(op, RetryPolicy(deadline=0), random.Random(0), 5.0, translate)
    assert len(op.timeouts) == 1


def test_third_party_exceptions_are_translated_once() -> None:
    def broken(timeout: float) -> str:
        raise ConnectionRefusedError(111, "refused")

    translated: list[BaseException] = []

    def spy(exc: Exception) -> ClientError:
        translated.append(exc)
        return translate(exc)

    policy: RetryPolicy = RetryPolicy(deadline=0)
    call: Callable[[], str] = lambda: call_sync(broken, policy, random.Random(0), 1.0, spy)  # noqa: E731
    with pytest.raises(ConnectError) as info:
        call()
    assert isinstance(info.value.__cause__, ConnectionRefusedError)
    assert len(translated) == 1
