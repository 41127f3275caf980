"""How a setting is spelled: `--some-flag`, `PODKIT_SOME_FLAG`, `some_flag:` and its aliases.

A leaf module: the settings loader (podkit.config), the manual (podkit.manual) and the
runtime's error messages all name settings the same way, and none imports another for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic.fields import FieldInfo

ENV_PREFIX = "PODKIT_"


@dataclass(frozen=True)
class Alias:
    """Other spellings of one setting, as `Annotated` metadata on its field.

    Flags may be GNU (`--repo`), pflag (`--repo=V`) or Go single-dash long flags
    (`-nginx.scrape-uri=V`, `-web.listen-address V`). Env names are read as they are, not
    under PODKIT_. Deprecated spellings work and log a `deprecated_setting` warning.
    """

    flags: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    deprecated_flags: tuple[str, ...] = ()
    deprecated_env: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for flag in self.flags + self.deprecated_flags:
            if not flag.startswith("-") or flag.startswith("---"):
                raise ValueError(f"alias flag {flag!r} must start with - or --")


def flag_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def aliases(info: FieldInfo) -> Alias:
    """The field's other spellings (none: an empty Alias)."""
    return next((meta for meta in info.metadata if isinstance(meta, Alias)), Alias())
