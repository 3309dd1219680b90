"""What a generated train_gpt.py need not carry because golf checked it when the file was generated.

The baked config is built and validated by golf (every schema's `__post_init__` rule) before the file is
written, and at run time only the official environment variables (golf.submission.ENV_OVERRIDES) can change it.
So the submission ships:

- `config_delta`: the baked config as its difference from the schema defaults (the file rebuilds the rest from
  the shipped dataclass defaults; `TrainRunConfig.from_dict(delta).to_dict()` is the whole config again);
- without the `__post_init__` rules of the config sections no environment variable reaches
  (`prevalidated_classes`: model, optim, quant, budget, ...); the sections on an override's path (the root,
  data, schedule, trainer, eval) keep theirs, so a bad `ITERATIONS=-1` still stops with one line. The dropped
  rules' normalisations (lists copied, floats coerced) are idempotent on the baked, already-normalised values
  (tests/test_record_prevalidated.py checks every preset).
"""

from __future__ import annotations

import ast
import dataclasses
import json

from golf.schema import field_types
from golf.train.config import TrainRunConfig


def _same(a: object, b: object) -> bool:
    """Equal as JSON (so 1 and 1.0, or True and 1, differ: the delta must rebuild the exact types)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def config_delta(cls: type, config: dict) -> dict:
    """`config` (the plain form of dataclass `cls`) minus what building `cls` from it fills in by itself.

    A field equal to its default is left out. A nested section that differs is given relative to its own class's
    defaults, not the parent's default for it: golf.schema.build_dataclass builds a given section from its class
    (`quant.groups.embed` given -> GroupQuant's `patterns=[]`, not QuantGroups' `["tok_emb", ...]`), so such a
    section may be `{}` (present, all class defaults)."""
    defaults = dataclasses.asdict(cls())
    out: dict = {}
    for name, kind in field_types(cls).items():
        if _same(config[name], defaults[name]):
            continue
        out[name] = config_delta(kind, config[name]) if dataclasses.is_dataclass(kind) else config[name]
    return out


def baked_delta(config: dict) -> dict:
    """The plain run config as the generated file bakes it: its difference from TrainRunConfig's defaults."""
    return config_delta(TrainRunConfig, config)


def _section_classes(cls: type, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], type]:
    """Config path -> dataclass for every section below (and including) `cls`."""
    out = {path: cls}
    for name, kind in field_types(cls).items():
        if dataclasses.is_dataclass(kind):
            out.update(_section_classes(kind, (*path, name)))
    return out


def section_paths(root: type = TrainRunConfig) -> dict[str, tuple[str, ...]]:
    """Config section class name -> its path in `root`'s tree, for the classes at exactly one place (the typed
    receivers golf.record.specialize folds: `quant: QuantConfig` reads config['quant'])."""
    found: dict[str, list[tuple[str, ...]]] = {}
    for path, cls in _section_classes(root).items():
        found.setdefault(cls.__qualname__, []).append(path)
    return {name: paths[0] for name, paths in found.items() if len(paths) == 1}


def prevalidated_classes(override_keys: set[str], root: type = TrainRunConfig) -> set[tuple[str, str]]:
    """(module, class name) of the config sections whose `__post_init__` the generated file may drop: every
    section of `root`'s tree except those on the path of a dotted key in `override_keys` (root included)."""
    sections = _section_classes(root)
    live = {()} | {tuple(key.split("."))[:i] for key in override_keys for i in range(1, key.count(".") + 1)}
    live_classes = {sections[p] for p in live if p in sections}
    return {(c.__module__, c.__qualname__) for c in set(sections.values()) - live_classes
            if "__post_init__" in vars(c)}


def drop_post_init(sources: dict[str, str], classes: set[tuple[str, str]], package: str) -> dict[str, str]:
    """`sources` (golf modules spelled `package.x`) without the `__post_init__` methods of `classes` (module
    names spelled `golf.x`), removed by line span so the rest keeps its comments. The helpers only those methods
    used are left for golf.record.shake to drop."""
    out = dict(sources)
    by_module: dict[str, set[str]] = {}
    for module, name in classes:
        by_module.setdefault(package + module[len("golf"):], set()).add(name)
    for module, names in by_module.items():
        if module not in out:
            continue
        lines = out[module].splitlines(keepends=True)
        spans = []
        for node in ast.parse(out[module]).body:
            if isinstance(node, ast.ClassDef) and node.name in names:
                for item in node.body:
                    if isinstance(item, ast.FunctionDef) and item.name == "__post_init__":
                        first = min([item.lineno, *(d.lineno for d in item.decorator_list)])
                        spans.append((first, item.end_lineno or item.lineno, len(node.body) == 1, item.col_offset))
        for first, last, only, col in sorted(spans, reverse=True):
            lines[first - 1:last] = [" " * col + "pass\n"] if only else []
        out[module] = "".join(lines)
    return out
