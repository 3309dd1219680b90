"""Validate config sections read back from files (checkpoints, artifact manifests) against their dataclass schema.

A file written by another golf version, a hand edit or a corrupt disk must give one line naming every fault,
never a ``TypeError: __init__() got an unexpected keyword argument`` traceback or a silently different model.
Faults reported: unknown key (e.g. from a newer golf), missing key, wrong type, nesting too deep, and the
schema's own ``__post_init__`` rule. Hydra-free (used by the core loaders).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

MAX_DEPTH = 32
"""Deepest nesting of dicts/lists accepted in a stored config or manifest (golf writes at most ~5)."""
MAX_FAULTS = 6
"""Faults listed in one error line (the rest are counted)."""


def depth_exceeds(obj: Any, max_depth: int = MAX_DEPTH) -> bool:
    """True when dicts/lists in ``obj`` nest deeper than ``max_depth`` (iterative: no recursion limit)."""
    stack = [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if isinstance(o, dict | list | tuple):
            if d > max_depth:
                return True
            stack.extend((v, d + 1) for v in (o.values() if isinstance(o, dict) else o))
    return False


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def type_matches(value: Any, tp: Any) -> bool:
    """Whether a JSON-like ``value`` fits the annotation ``tp`` (int is not bool; int is accepted as float)."""
    if tp is Any:
        return True
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        return any(type_matches(value, a) for a in get_args(tp))
    if tp is type(None) or tp is None:
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if origin is Literal:
        return value in get_args(tp)
    if dataclasses.is_dataclass(tp):
        return isinstance(value, dict)
    if origin in (list, tuple, typing.Sequence) or tp in (list, tuple):
        if not isinstance(value, list | tuple):
            return False
        args = [a for a in get_args(tp) if a is not Ellipsis]
        return not args or all(type_matches(v, args[0]) for v in value)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            return False
        args = get_args(tp)
        return not args or all(type_matches(k, args[0]) and type_matches(v, args[1]) for k, v in value.items())
    return True  # an annotation this checker does not model: the schema's __post_init__ decides


def section_faults(schema: type, values: Any, prefix: str, require_all: bool = True) -> list[str]:
    """Every fault of ``values`` against the dataclass ``schema`` (nested dataclasses included), one phrase each."""
    if values is None:
        return [f"missing section '{prefix.rstrip('.') or 'section'}'"]
    if not isinstance(values, dict):
        return [f"'{prefix.rstrip('.') or 'section'}' is {type(values).__name__}, not an object"]
    if depth_exceeds(values):
        return [f"'{prefix.rstrip('.')}' nests deeper than {MAX_DEPTH} levels"]
    hints = get_type_hints(schema)
    fields = {f.name: hints[f.name] for f in dataclasses.fields(schema)}
    faults = [f"unknown config key {prefix + str(k)!r}" for k in values if k not in fields]
    for name, tp in fields.items():
        if name not in values:
            if require_all:
                faults.append(f"missing key {prefix + name!r}")
            continue
        v = values[name]
        if dataclasses.is_dataclass(tp):
            faults += section_faults(tp, v, f"{prefix}{name}.", require_all)
        elif not type_matches(v, tp):
            faults.append(f"{prefix + name!r} is {type(v).__name__} {_short(v)}, expected {_type_name(tp)}")
    return faults


def _short(v: Any) -> str:
    text = repr(v).replace("\n", " ")
    return text if len(text) <= 40 else text[:37] + "..."
