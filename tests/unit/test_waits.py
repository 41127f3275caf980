"""The condition waits every test uses: `wait_for` and its async twin `until` take the same
arguments and fail the same way."""

from __future__ import annotations

import itertools

import pytest

from podkit_dev.servers import until, wait_for


def flaky(ready_after: int) -> object:
    """A condition that raises, then returns False, then a value."""
    calls = itertools.count()

    def condition() -> object:
        n = next(calls)
        if n == 0:
            raise ConnectionRefusedError("not listening yet")
        return "up" if n >= ready_after else False

    return condition


def test_wait_for_returns_the_value_after_errors_and_falsy_answers() -> None:
    assert wait_for(flaky(3), timeout=10, interval=0.001, what="the server") == "up"


async def test_until_takes_the_same_arguments_and_awaits_a_coroutine() -> None:
    condition = flaky(3)

    async def check() -> object:
        return condition()

    assert await until(check, timeout=10, interval=0.001, what="the server") == "up"


def test_wait_for_names_what_the_last_error_and_the_explanation() -> None:
    with pytest.raises(TimeoutError) as caught:
        wait_for(flaky(10**9), timeout=0.01, what="the server", explain=lambda: "its log")
    assert str(caught.value).startswith("timed out after 0.01s waiting for the server")
    assert "its log" in str(caught.value)


async def test_until_fails_as_wait_for_does() -> None:
    def never() -> object:
        raise ConnectionRefusedError("not listening yet")

    with pytest.raises(TimeoutError) as caught:
        await until(never, timeout=0.01, what="the server", explain=lambda: "its log")
    message = str(caught.value)
    assert message.startswith("timed out after 0.01s waiting for the server")
    assert "(last error: not listening yet)" in message
    assert message.endswith("\nits log")
