"""podkit's development kit: real-server launchers, follower test helpers and demo scaffolding.

Shared by `tests/`, `bench/` and `podkit demo`. A distribution of its own (`podkit-dev`,
devkit/pyproject.toml) that `./dev setup` installs beside podkit; it registers `podkit demo`
and each helper's demo as entry points. Never in the podkit wheel nor in an image.
"""
