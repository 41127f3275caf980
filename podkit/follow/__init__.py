"""The file follower shared by log-shipper and log-adapter.

    follower = Follower(FollowConfig.from_settings(settings), registry=runtime.registry)
    async with follower:
        async for batch in follower:          # batches, never one callback per line
            deliver(batch.lines)
            follower.ack(batch)               # the checkpoint moves only past acked batches

`follower.drain()` (on SIGTERM) reads every file to its end, flushes partial lines, and
ends the iteration once everything read has been yielded; acks still count after it.
"""

from podkit.follow.api import (
    CUT_MARKER,
    EVENT_KINDS,
    LOSS_REASONS,
    Batch,
    FileEvent,
    FileId,
    FollowConfig,
    MultilineConfig,
)
from podkit.follow.follower import Follower
from podkit.follow.ledger import FileStats, Ledger

__all__ = [
    "CUT_MARKER",
    "EVENT_KINDS",
    "LOSS_REASONS",
    "Batch",
    "FileEvent",
    "FileId",
    "FileStats",
    "FollowConfig",
    "FollowSettings",
    "Follower",
    "Ledger",
    "MultilineConfig",
]


def __getattr__(name: str) -> object:
    # FollowSettings pulls in pydantic; a process that only follows files need not load it.
    if name == "FollowSettings":
        from podkit.follow.settings import FollowSettings

        return FollowSettings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
