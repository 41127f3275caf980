"""podkit's development kit: real-server launchers, follower test helpers and demo scaffolding.

Shared by `tests/`, `bench/` and `podkit demo`; installed with the `test` and `demo` extras
and never in an image (no helper imports it).
"""
