"""`import_attr("package.module:attr")`: how settings, helpers and plugins name code."""

from __future__ import annotations

import importlib
from typing import Any


def import_attr(ref: str) -> Any:
    """Import "package.module:attr" and return the attribute."""
    module_name, _, attr = ref.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split(".") if attr else []:
        obj = getattr(obj, part)
    return obj
