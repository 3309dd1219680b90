"""Typed configs from plain values: the Hydra-free half of config validation.

`build_dataclass(schema, values)` turns plain dicts (a checkpoint's stored config, an artifact manifest's run
section, a composed Hydra config after `OmegaConf.to_container`) into the dataclass tree, running every
`__post_init__` rule. Errors are one line naming the key (golf.errors.ConfigError).
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar, get_type_hints

from golf.errors import ConfigError

T = TypeVar("T")
MISSING_VALUE = "???"
"""OmegaConf's marker for a required value that was not set."""


def field_types(schema: Any) -> dict[str, Any]:
    """Resolved field types of a dataclass (annotations are strings under `from __future__ import annotations`)."""
    hints = get_type_hints(schema)
    return {f.name: hints[f.name] for f in dataclasses.fields(schema)}


def build_dataclass(schema: type[T], values: dict, prefix: str = "", strict: bool = True) -> T:
    """Typed dataclass (nested ones included) from plain values.

    Args:
        schema: the dataclass type; values: a dict of plain values (missing fields take their defaults).
        prefix: key prefix for error messages (e.g. "quant.").
        strict: reject keys the schema does not declare (e.g. written by a newer golf).
    Raises:
        ConfigError: one line naming the key — unknown key, missing required value, wrong shape, or the
        field rule (`__post_init__`) that failed.
    """
    try:
        return _build(schema, values, prefix, strict)
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:
        raise ConfigError(str(exc).splitlines()[0]) from None


def _build(schema: Any, values: Any, prefix: str, strict: bool) -> Any:
    if not dataclasses.is_dataclass(schema):
        return values
    if not isinstance(values, dict):
        raise ConfigError(f"config section '{prefix.rstrip('.') or '<root>'}' must be a mapping, "
                          f"got {type(values).__name__}")
    types = field_types(schema)
    if strict:
        unknown = sorted(set(values) - set(types))
        if unknown:
            raise ConfigError(f"unknown config key '{prefix}{unknown[0]}'; allowed here: {', '.join(sorted(types))}")
    kwargs = {}
    for name, ftype in types.items():
        if name not in values:
            continue
        value = values[name]
        if isinstance(value, str) and value == MISSING_VALUE:
            raise ConfigError(f"missing required config value '{prefix}{name}' (set it on the command line)")
        kwargs[name] = _build(ftype, value, f"{prefix}{name}.", strict) if dataclasses.is_dataclass(ftype) else value
    return schema(**kwargs)


def as_plain(obj: Any) -> Any:
    """Typed config -> plain dict (JSON-serializable); other values pass through."""
    return dataclasses.asdict(obj) if dataclasses.is_dataclass(obj) else obj
