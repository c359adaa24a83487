"""Lazy public names of a package (PEP 562), so that importing a light subpackage does not
import torch or PyAV through its parent's ``__init__``."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str | tuple[str, str]]) -> Callable:
    """A module ``__getattr__`` that imports ``exports[name]`` (a module, whose attribute of the
    same name is returned, or ``(module, attribute)``) on first use."""

    def module_getattr(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        target = exports[name]
        module, attr = (target, name) if isinstance(target, str) else target
        return getattr(importlib.import_module(module), attr)

    return module_getattr
