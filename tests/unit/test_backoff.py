"""podkit.backoff: every delay within its bounds, growth, reset."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from podkit.backoff import Backoff, delay_for


@given(st.integers(1, 60), st.floats(0.001, 5), st.floats(0.01, 120))
def test_delay_stays_within_equal_jitter_bounds(
    attempt: int, initial: float, maximum: float
) -> None:
    delay = delay_for(attempt, initial, maximum, random.Random(attempt))
    ceiling = min(maximum, initial * 2 ** (attempt - 1))
    assert ceiling / 2 <= delay <= ceiling


def test_backoff_grows_to_its_ceiling_and_reset_starts_over() -> None:
    backoff = Backoff(0.5, 4.0, jitter=False)
    assert [backoff.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert backoff.attempt == 6
    backoff.reset()
    assert backoff.next() == 0.5


def test_backoff_rejects_nonsense_bounds() -> None:
    with pytest.raises(ValueError, match="initial <= maximum"):
        Backoff(5, 1)
