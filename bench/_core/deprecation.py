"""Deprecated import paths: the flat modules of survbench 0.1 as thin aliases of their new homes.

Each old module (``bench/registry.py``, ``bench/batches.py``, ...) is one call of :func:`alias`: importing
it warns once (DeprecationWarning, pointing at the importing line) and every attribute is looked up
in the new modules, so ``from bench.registry import MethodInfo`` keeps working for one release.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Callable
from typing import Any


def alias(name: str, *targets: str, use: str | None = None, renamed: dict[str, str] | None = None) -> None:
    """Make module ``name`` (being imported) forward every attribute to ``targets``, in order.

    ``use`` is the import path the warning recommends (default: the first target); ``renamed`` maps old
    attribute names to their new ones.
    """
    module = sys.modules[name]
    warnings.warn(f"{name} is deprecated and will be removed in the next release; import from {use or targets[0]}",
                  DeprecationWarning, stacklevel=3)

    def __getattr__(attr: str) -> Any:
        attr = (renamed or {}).get(attr, attr)
        for target in targets:
            mod = importlib.import_module(target)
            if hasattr(mod, attr):
                return getattr(mod, attr)
        raise AttributeError(f"module {name!r} (deprecated alias of {', '.join(targets)}) has no attribute {attr!r}")

    def __dir__() -> list[str]:
        names: set[str] = set()
        for target in targets:
            names.update(n for n in dir(importlib.import_module(target)) if not n.startswith("__"))
        return sorted(names)

    getattr_fn: Callable[[str], Any] = __getattr__
    module.__getattr__ = getattr_fn  # type: ignore[method-assign]
    module.__dir__ = __dir__  # type: ignore[method-assign]
    module.__deprecated_alias_of__ = targets  # type: ignore[attr-defined]
