"""What a helper declares about itself.

A helper package exposes one `Helper` object through the `podkit.helpers` entry-point
group. It names its settings class and its `run` coroutine as "module:attr" strings, so
`podkit --help` can list every helper without importing redis, asyncpg or aiohttp.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from podkit.importing import import_attr

if TYPE_CHECKING:
    from podkit.config import HelperSettings


@dataclass(frozen=True)
class Helper:
    name: str
    """The role name on the command line: `podkit NAME`."""
    summary: str
    """One line for `podkit --help`."""
    settings: str
    """"module:Class" of the helper's settings, a subclass of `HelperSettings`."""
    run: str
    """"module:function" of `async def run(settings, runtime)`."""
    admin_port: int
    """Default port of the admin server (/livez, /readyz, /startupz, /metrics)."""
    oneshot: str | None = None
    """"module:function" of `def oneshot(settings) -> int | None`: a command-line mode
    (`log-adapter --check`) run instead of the runtime when it returns an exit status."""
    image_packages: tuple[str, ...] = ()
    """Debian packages the helper runs (git-sync: git, openssh-client); its image installs
    them (images/render.py) unless the base image already has them."""
    image_files: tuple[str, ...] = ()
    """The files of `image_packages` the helper runs (paths, or globs for an
    architecture's directory): its image keeps only these, what their links point at and
    the shared libraries they load, not the packages whole. Empty: the packages whole."""
    image_build: str = ""
    """A module the image's builder stage runs (`python -m MODULE`) once the helper is
    installed, with `image_build_requires` and a C compiler at hand (the builder image), to
    compile what the helper runs; `python -m MODULE --check` must then pass in the base
    image, which has no compiler. Empty: nothing is built (pg-ambassador's hot path is)."""
    image_build_requires: tuple[str, ...] = ()
    """What `image_build` needs to run (Cython, ...): installed for it beside the venv, and
    not in the image."""

    def load_settings_class(self) -> type[HelperSettings]:
        settings_class: type[HelperSettings] = import_attr(self.settings)
        return settings_class

    def run_oneshot(self, settings: HelperSettings) -> int | None:
        """The exit status of the helper's one-shot mode, or None to run as a service."""
        return None if self.oneshot is None else import_attr(self.oneshot)(settings)
