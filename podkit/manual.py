"""`podkit ROLE --man`: the full manual of a helper's settings, as plain text on stdout.

git-sync v4 has `--man`; every helper gets it here, rendered from the same declarations
as `--help` (podkit.config): each setting with all its spellings (flag, PODKIT_* env, the
replaced image's names, deprecated ones), its default and its description.
"""

from __future__ import annotations

import inspect
import sys
import textwrap
import typing
from typing import Literal

from pydantic.fields import FieldInfo

from podkit.config import (
    COMMON_FIELDS,
    EPILOG,
    HelperSettings,
    field_extra,
    field_kind,
    help_default,
    strip_optional,
    value_kind,
)
from podkit.naming import ENV_PREFIX, aliases, env_name, flag_name

INDENT = " " * 4
BODY = " " * 12
WIDTH = 80


def _wrap(text: str, indent: str) -> list[str]:
    lines: list[str] = []
    for paragraph in text.strip().split("\n\n"):
        if lines:
            lines.append("")
        lines += textwrap.wrap(
            " ".join(paragraph.split()),
            WIDTH,
            initial_indent=indent,
            subsequent_indent=indent,
            break_on_hyphens=False,
        )
    return lines


def _value_word(info: FieldInfo) -> str:
    kind = field_kind(info)
    if kind == "bool":
        return ""
    metavar = field_extra(info).get("metavar")
    if metavar:
        return f" <{metavar}>"
    kind_of_value = value_kind(info)
    if kind_of_value != "other":
        return f" <{kind_of_value}>"
    annotation = strip_optional(info.annotation)
    if typing.get_origin(annotation) is Literal:
        return " {" + "|".join(map(str, typing.get_args(annotation))) + "}"
    if kind == "structured":
        return " <json>"
    if kind == "list":
        (item,) = typing.get_args(annotation)[:1] or (str,)
        annotation = strip_optional(item)
    names = {int: "int", float: "number", str: "string"}
    return f" <{names.get(annotation, 'string')}>"


def _entry(name: str, info: FieldInfo, admin_default: str) -> list[str]:
    alias = aliases(info)
    value = _value_word(info)
    spellings = [f"{flag_name(name)}{value}"]
    spellings += [f"{flag}{value}" for flag in alias.flags]
    spellings += [f"${env_name(name)}"] + [f"${env}" for env in alias.env]
    lines = _wrap(", ".join(spellings), INDENT)
    text = (info.description or "").strip()
    if text and not text.endswith("."):
        text += "."
    default = help_default(name, info, admin_default)  # as --help shows it
    if info.is_required():
        text += " Required."
    elif default:
        text += f' Default: "{default}".'
    if field_kind(info) == "bool":
        flag = flag_name(name)
        text += f" A switch: {flag}, {flag}=true|false, --no-{flag[2:]}."
    elif field_kind(info) == "list":
        text += " Repeatable; comma-separated in the environment."
    old = [*alias.deprecated_flags, *(f"${env}" for env in alias.deprecated_env)]
    if old:
        text += f" Deprecated spellings, still accepted with a warning: {', '.join(old)}."
    return lines + _wrap(text, BODY) + [""]


def render(
    prog: str,
    settings_cls: type[HelperSettings],
    *,
    description: str = "",
    admin_default: str = "",
) -> str:
    module = sys.modules.get(settings_cls.__module__)
    # The settings class's own docstring, else its module's.
    about = settings_cls.__dict__.get("__doc__") or (module and module.__doc__) or ""
    about = inspect.cleandoc(about)
    lines = ["NAME", *_wrap(f"{prog} - {description}".rstrip(" -"), INDENT), "", "SYNOPSIS"]
    lines += [f"{INDENT}{prog} [settings...]", f"{INDENT}{prog} --help | --man", ""]
    if about:
        lines += ["DESCRIPTION", *_wrap(about, INDENT), ""]
    lines += ["OPTIONS", *_wrap(EPILOG, INDENT), ""]
    own = {n: i for n, i in settings_cls.model_fields.items() if n not in COMMON_FIELDS}
    for name, info in own.items():
        lines += _entry(name, info, admin_default)
    lines += ["COMMON OPTIONS"]
    lines += _wrap(f"--config <file>, ${ENV_PREFIX}CONFIG", INDENT)
    lines += _wrap("YAML file of settings (keys are the setting names: some_flag:).", BODY)
    lines += [""]
    for name, info in settings_cls.model_fields.items():
        if name in COMMON_FIELDS:
            lines += _entry(name, info, admin_default)
    lines += [
        "    -h, --help",
        f"{BODY}Print the short usage and exit.",
        "",
        "    --man",
        f"{BODY}Print this manual and exit.",
        "",
    ]
    return "\n".join(lines)
