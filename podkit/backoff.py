"""Retry delays: exponential growth, "equal jitter", a ceiling. One shape for every retry loop.

Equal jitter (half of each delay fixed, half random) keeps a herd of pods that failed
together from retrying together, while still guaranteeing that a delay grows.
"""

from __future__ import annotations

import random


def delay_for(attempt: int, initial: float, maximum: float, rng: random.Random | None) -> float:
    """The delay before retry number `attempt` (1 is the first retry)."""
    ceiling: float = min(maximum, initial * (2 ** max(attempt - 1, 0)))
    if rng is None:
        return ceiling
    return ceiling / 2 + float(rng.uniform(0, ceiling / 2))


class Backoff:
    """`next()` gives the next delay in seconds and counts the attempt; `reset()` on success."""

    def __init__(
        self,
        initial: float,
        maximum: float,
        *,
        jitter: bool = True,
        rng: random.Random | None = None,
    ) -> None:
        if initial <= 0 or maximum < initial:
            raise ValueError(f"backoff needs 0 < initial <= maximum, got {initial}, {maximum}")
        self.initial = initial
        self.maximum = maximum
        self.rng = (rng or random.Random()) if jitter else None
        self.attempt = 0

    def next(self) -> float:
        self.attempt += 1
        return delay_for(self.attempt, self.initial, self.maximum, self.rng)

    def reset(self) -> None:
        self.attempt = 0
