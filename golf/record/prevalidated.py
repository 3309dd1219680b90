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
  (tests/test_record_prevalidated.py checks every preset);
- in those kept rules, without the checks that read only fields no variable reaches (`drop_settled_checks`:
  `trainer.device`, `data.text_transform`; `trainer.train_seq_len < 1` stays for TRAIN_SEQ_LEN): an
  `if <test>: raise`, a call of a pure checker (`_allowed(...)`) or a `for` over baked items made of those,
  whose test reads baked fields, literals and locals copied from them, module tables and builtins, never a
  receiver method nor a field the rule sets from a live one.
"""

from __future__ import annotations

import ast
import dataclasses
import json

from golf.record.trees import walk
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


def live_fields(override_keys: set[str], root: type = TrainRunConfig) -> dict[tuple[str, str], set[str]]:
    """(module, class name) -> the fields an environment variable can change, for every section on the path of
    a key in `override_keys` (the root included): `schedule.iterations` gives the root `schedule` and
    ScheduleConfig `iterations`."""
    sections = _section_classes(root)
    out: dict[tuple[str, str], set[str]] = {}
    for key in override_keys:
        parts = tuple(key.split("."))
        for i in range(len(parts)):
            cls = sections.get(parts[:i])
            if cls is not None:
                out.setdefault((cls.__module__, cls.__qualname__), set()).add(parts[i])
    return out


def prevalidated_classes(override_keys: set[str], root: type = TrainRunConfig) -> set[tuple[str, str]]:
    """(module, class name) of the config sections whose `__post_init__` the generated file may drop: every
    section of `root`'s tree except those on the path of a dotted key in `override_keys` (root included)."""
    live = {(root.__module__, root.__qualname__), *live_fields(override_keys, root)}
    return {key for c in _section_classes(root).values()
            if (key := (c.__module__, c.__qualname__)) not in live and "__post_init__" in vars(c)}


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


def _reads_only_settled(test: ast.expr, receiver: str, live: set[str], settled_locals: set[str],
                        local_names: set[str]) -> bool:
    """True when `test` depends only on baked state: fields of `receiver` no variable can change, locals
    copied from such fields, and module names (tables, builtins); no method of the receiver is called."""
    nodes = list(walk(test))
    field_reads = {id(n.value) for n in nodes if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
                   and n.value.id == receiver}
    for n in nodes:
        if isinstance(n, ast.Attribute) and id(n.value) in field_reads:
            if n.attr in live:
                return False
        elif isinstance(n, ast.Name) and n.id == receiver and id(n) not in field_reads:
            return False  # the receiver itself handed on (f(self), f(x=self), [self]): may reach a live field
        elif isinstance(n, ast.Name) and n.id != receiver and n.id in local_names and n.id not in settled_locals:
            return False
        elif isinstance(n, ast.Call) and any(isinstance(a, ast.Name) and a.id == receiver for a in walk(n.func)):
            return False  # self.run_modes(): the method may read a live field
        elif isinstance(n, (ast.Lambda, ast.NamedExpr, ast.Await, ast.Yield, ast.YieldFrom)):
            return False
    return True


def _raise_if(stmt: ast.stmt) -> bool:
    """`stmt` is `if <test>: raise ...` (no else, nothing but raises)."""
    return isinstance(stmt, ast.If) and not stmt.orelse and all(isinstance(s, ast.Raise) for s in stmt.body)


def _only_raises(fn: ast.FunctionDef) -> bool:
    """`fn`'s body is checks only: its docstring and `_raise_if` statements."""
    body = fn.body[1:] if ast.get_docstring(fn) is not None else fn.body
    return bool(body) and all(_raise_if(s) for s in body)


def pure_checkers(sources: dict[str, str]) -> set[str]:
    """Names of the top-level functions that only check (`_only_raises`) in every module defining that name
    (`_allowed`, `_check_int_at_least`): a call of one on baked state cannot fire either."""
    found: dict[str, bool] = {}
    for src in sources.values():
        for node in ast.parse(src).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                ok = isinstance(node, ast.FunctionDef) and not node.decorator_list and _only_raises(node)
                found[node.name] = found.get(node.name, True) and ok
    return {name for name, ok in found.items() if ok}


def _is_check(stmt: ast.stmt, checkers: set[str]) -> ast.expr | None:
    """The expression a check statement decides on: the test of `if <test>: raise ...`, or the call of a pure
    checker as a statement (`_allowed('eval.mode', self.mode, EVAL_MODES)`); None for anything else."""
    if _raise_if(stmt):
        return stmt.test
    if (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call) and isinstance(stmt.value.func, ast.Name)
            and stmt.value.func.id in checkers):
        return stmt.value
    return None


def _settled_spans(fn: ast.FunctionDef, live: set[str], checkers: set[str]) -> list[tuple[int, int]]:
    """Line spans of `fn`'s (a live section's __post_init__) top-level checks that cannot fire (`_is_check`, on
    baked state only: `_reads_only_settled`, where a local assigned once from a settled field or a literal is
    settled), and then of the locals only they read."""
    if not fn.args.args:
        return []
    receiver = fn.args.args[0].arg
    stores = [n.id for n in walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)]
    local_names = set(stores)
    # a field set here is live unless set from baked state (`self.modes = list(self.modes)`); a store nested in
    # a block or a tuple target counts as live
    for n in walk(fn):
        if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store) and getattr(n.value, "id", "") == receiver:
            plain = [s for s in fn.body if isinstance(s, ast.Assign) and s.targets == [n]]
            if not (plain and _reads_only_settled(plain[0].value, receiver, live, set(), local_names)):
                live = live | {n.attr}
    copies: dict[str, ast.Assign] = {}  # local -> its one `local = receiver.field` (field not live) or literal
    for stmt in fn.body:
        if (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)
                and (isinstance(stmt.value, ast.Constant)  # `owner = "schedule"`
                     or isinstance(stmt.value, ast.Attribute) and isinstance(stmt.value.value, ast.Name)
                     and stmt.value.value.id == receiver and stmt.value.attr not in live)):
            copies[stmt.targets[0].id] = stmt
    settled_locals = {name for name in copies if stores.count(name) == 1}

    def settled(stmt: ast.stmt) -> bool:
        test = _is_check(stmt, checkers)
        if test is not None:
            return _reads_only_settled(test, receiver, live, settled_locals, local_names)
        if not (isinstance(stmt, ast.For) and not stmt.orelse
                and _reads_only_settled(stmt.iter, receiver, live, settled_locals, local_names)):
            return False
        # `for i, m in enumerate(self.modes): _allowed(...)`: checks over baked items; its targets are bound by
        # it alone and read nowhere else, so dropping it changes no later value
        targets = {n.id for n in walk(stmt.target) if isinstance(n, ast.Name)}
        outside = [n for s in fn.body if s is not stmt for n in walk(s) if isinstance(n, ast.Name)]
        if any(stores.count(t) != 1 for t in targets) or any(n.id in targets for n in outside):
            return False
        inner = settled_locals | targets
        return all((test := _is_check(s, checkers)) is not None
                   and _reads_only_settled(test, receiver, live, inner, local_names) for s in stmt.body)

    dropped = [stmt for stmt in fn.body if settled(stmt)]
    kept = [stmt for stmt in fn.body if stmt not in dropped]
    still_read = {n.id for stmt in kept for n in walk(stmt) if isinstance(n, ast.Name)
                  and isinstance(n.ctx, ast.Load)}
    dropped += [copies[name] for name in settled_locals if name not in still_read]
    return [(stmt.lineno, stmt.end_lineno or stmt.lineno) for stmt in dropped]


def drop_settled_checks(sources: dict[str, str], live: dict[tuple[str, str], set[str]], package: str
                        ) -> dict[str, str]:
    """`sources` without the checks of the live sections' `__post_init__` that only read fields no environment
    variable reaches (checked by golf on the baked values, so they cannot fire): `trainer.device`, `eval.stride`,
    while `trainer.train_seq_len` (TRAIN_SEQ_LEN) keeps its check. A `__post_init__` left empty gets `pass`."""
    out = dict(sources)
    checkers = pure_checkers(sources)
    for (module, name), fields in live.items():
        key = package + module[len("golf"):]
        if key not in out:
            continue
        lines = out[key].splitlines(keepends=True)
        edits: list[tuple[int, int, list[str]]] = []
        for node in ast.parse(out[key]).body:
            if isinstance(node, ast.ClassDef) and node.name == name:
                for item in node.body:
                    if isinstance(item, ast.FunctionDef) and item.name == "__post_init__":
                        found = _settled_spans(item, fields, checkers)
                        if len(found) < len(item.body):
                            edits += [(a, b, []) for a, b in found]
                        else:  # nothing left to check: the method goes (a class body keeps `pass`)
                            only = [" " * item.col_offset + "pass\n"] if len(node.body) == 1 else []
                            edits.append((item.lineno, item.end_lineno or item.lineno, only))
        for first, last, text in sorted(edits, reverse=True):
            lines[first - 1:last] = text
        out[key] = "".join(lines)
    return out
