"""Derived config values, evaluated at generation: `model.head_dim`, `quant.uses_gptq()`, `calibrates(quant,
budget)` are functions of the baked config, so golf.record.specialize may fold them like a field read.

A derived value is computed on the typed baked config through a recording proxy: every field the property,
method or function reads is logged by its path in the config tree. The value is folded only when
- it is a scalar (bool, int, float, str, None; finite);
- the code ran without writing to the config and without raising;
- none of the fields it read can change at run time (an environment override, a `replace(...)` keyword or an
  assigned attribute: the same rule as a plain field read).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math

_SCALARS = (bool, int, float, str, type(None))
UNFOLDABLE = object()


class _Write(Exception):
    pass


class _Reads:
    """A config section that logs the paths of the fields read through it (nested sections proxied too);
    properties and methods run with the proxy as `self`."""

    def __init__(self, obj: object, path: tuple[str, ...], log: list[tuple[str, ...]]):
        object.__setattr__(self, "_obj", obj)
        object.__setattr__(self, "_path", path)
        object.__setattr__(self, "_log", log)

    def __getattr__(self, name: str):
        obj, path = object.__getattribute__(self, "_obj"), object.__getattribute__(self, "_path")
        log = object.__getattribute__(self, "_log")
        kind = member(obj, name)
        if kind is not None:
            return kind[1](self) if kind[0] == "property" else functools.partial(kind[1], self)
        value = getattr(obj, name)
        if dataclasses.is_dataclass(value):
            return _Reads(value, (*path, name), log)
        log.append((*path, name))
        return value

    def __setattr__(self, name: str, value: object) -> None:
        raise _Write(name)


def evaluate(fn, sections: list[tuple[object, tuple[str, ...]]], leaves: set[str], groups: set[str]):
    """fn(*proxies of `sections` ((object, path) pairs)) when foldable (module docstring), else UNFOLDABLE."""
    log: list[tuple[str, ...]] = []
    try:
        value = fn(*(_Reads(obj, path, log) for obj, path in sections))
    except Exception:  # a write, a type check the proxy fails, anything: leave the call to run time
        return UNFOLDABLE
    if not isinstance(value, _SCALARS) or (isinstance(value, float) and not math.isfinite(value)):
        return UNFOLDABLE
    if any(p[-1] in leaves or set(p[:-1]) & groups for p in log):
        return UNFOLDABLE
    return value


def section_at(root: object, path: tuple[str, ...]) -> object | None:
    """The dataclass section of the typed config at `path`, or None."""
    obj = root
    for part in path:
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj if dataclasses.is_dataclass(obj) else None


def member(section: object, name: str):
    """(kind, function) of `name` on the section's class: ('property', fget) or ('method', function), or None."""
    static = inspect.getattr_static(type(section), name, None)
    if isinstance(static, property):
        return "property", static.fget
    if inspect.isfunction(static):
        return "method", static
    return None
