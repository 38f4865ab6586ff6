"""Architecture families for neurosearch: one module per family.

Every module of this package that defines ``FAMILY = SomeFamily()`` (a ``Family``
instance) is registered under ``FAMILY.name``; adding a family is adding one module.

    FAMILIES                 name -> Family, sorted by name
    get_family(name)         the Family, or KeyError naming the known families
    InputMeta, Family, n_params
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

from .base import Family, InputMeta, n_params

__all__ = ["FAMILIES", "Family", "InputMeta", "discover_families", "get_family", "n_params"]


def discover_families(package: str | ModuleType) -> dict[str, Family]:
    """Import every module of ``package`` (names starting with "_" skipped) and collect
    the ``FAMILY`` each defines. A ``FAMILY`` that is not a ``Family`` instance, or two
    families with one name, are errors; an import error propagates."""
    pkg = importlib.import_module(package) if isinstance(package, str) else package
    found: dict[str, Family] = {}
    for info in pkgutil.iter_modules(pkg.__path__, pkg.__name__ + "."):
        if info.name.rsplit(".", 1)[-1].startswith("_"):
            continue
        module = importlib.import_module(info.name)
        family = getattr(module, "FAMILY", None)
        if family is None:
            continue
        if not isinstance(family, Family):
            raise TypeError(f"{info.name}.FAMILY is a {type(family).__name__}, not a Family instance")
        if family.name in found:
            raise ValueError(f"two families are named {family.name!r} (the second in {info.name})")
        found[family.name] = family
    return dict(sorted(found.items()))


FAMILIES: dict[str, Family] = discover_families(__name__)


def get_family(name: str) -> Family:
    """The registered family called ``name``; KeyError listing the known names otherwise."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise KeyError(f"unknown architecture family {name!r}; known families: {', '.join(FAMILIES)}") from None
