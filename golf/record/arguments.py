"""Constant arguments of the flat program: a parameter every call passes the same constant becomes that constant.

After config folding (golf.record.specialize) and flattening (golf.record.flatten), the one config's program
calls many of golf's functions with the same literal everywhere: `build_train_loader('sequential', ...,
vocab_size=1024)`, `load_state_dict_from_artifact(path, False)`, `init_distributed(device, 120.0)`. Such a
parameter is a constant of the program. This pass removes it from the signature and from every call, binds it
as a local at the top of the body and lets golf.record.constants propagate it, so the simplifier decides the
branches it guarded (the other loader kinds, the structural artifact checks) and the shaker drops what only those
branches used. A function whose body is `return <constant>` (`calibrates_in_training` once its config folded) is
replaced by that constant at calls whose arguments cannot run code.

A function qualifies only when nothing else can call it, so every call is seen:
- it is a top-level `def` of the flat program, bound once at module level, undecorated or with pure decorators
  only (golf.record.shake's list), and no function, lambda, comprehension or class binds its name;
- its name is read only as the callee of calls (never passed, stored, tabled in a `sys.modules` namespace, or
  spelled as a string), and no call uses `*args` or `**kwargs`.
A parameter is folded when it is a plain positional or keyword-only one (not `*args`/`**kwargs`), every call
passes it (or leaves its default) as the same constant (same type and value), and the function never rebinds it
nor shadows it in a nested scope. Python's semantics are kept exactly.
"""

from __future__ import annotations

import ast
import re

from golf.record.constants import _bound_names, _own_nodes
from golf.record.shake import _removable_def

_MARK = re.compile(r"(?m)^(?=#@)")
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef, ast.ListComp, ast.SetComp,
           ast.DictComp, ast.GeneratorExp)


def _key(node: ast.expr | None):
    """A hashable identity of a constant argument (type included: 1, 1.0 and True differ), else None."""
    return (type(node.value), node.value) if isinstance(node, ast.Constant) else None


def _params(fn: ast.FunctionDef) -> list[tuple[str, int | None, ast.expr | None]]:
    """(name, positional index or None for keyword-only, default) of each plain parameter."""
    a = fn.args
    pos = [*a.posonlyargs, *a.args]
    defaults = [None] * (len(pos) - len(a.defaults)) + list(a.defaults)
    return ([(p.arg, i, d) for i, (p, d) in enumerate(zip(pos, defaults, strict=True))]
            + [(p.arg, None, d) for p, d in zip(a.kwonlyargs, a.kw_defaults, strict=True)])


def _passed(call: ast.Call, name: str, index: int | None, default: ast.expr | None) -> ast.expr | None:
    if index is not None and index < len(call.args):
        return call.args[index]
    return next((k.value for k in call.keywords if k.arg == name), default)


def _candidates(trees: list[ast.Module]) -> dict[str, tuple[ast.FunctionDef, list[ast.Call]]]:
    """Top-level functions that only direct calls reach -> (def, every call)."""
    defs: dict[str, ast.FunctionDef] = {}
    module_bound: dict[str, int] = {}
    locally_bound: set[str] = set()  # bound in some function, lambda or comprehension: a read there may be local
    for tree in trees:
        for node in tree.body:
            names = [node.name] if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) \
                else _bound_names(node)
            for name in names:
                module_bound[name] = module_bound.get(name, 0) + 1
            if isinstance(node, ast.FunctionDef) and _removable_def(node):
                defs[node.name] = node
        for node in ast.walk(tree):
            if isinstance(node, _SCOPES) and not isinstance(node, ast.ClassDef):
                locally_bound |= _bound_names(node) - {getattr(node, "name", None)}
    defs = {k: v for k, v in defs.items() if module_bound.get(k) == 1 and k not in locally_bound}
    calls: dict[str, list[ast.Call]] = {k: [] for k in defs}
    escaped: set[str] = set()
    for tree in trees:
        callees = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in defs:
                calls[node.func.id].append(node)
                if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
                    escaped.add(node.func.id)
            elif isinstance(node, ast.Name) and node.id in defs and id(node) not in callees:
                escaped.add(node.id)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in defs:
                escaped.add(node.value)
    return {k: (defs[k], calls[k]) for k in defs if k not in escaped and calls[k]}


def _foldable(fn: ast.FunctionDef, name: str) -> bool:
    """`name` is never rebound in `fn`, no nested scope binds it and no default or decorator reads a global of that
    name (so a binding at the top of the body reaches every read, and only those)."""
    stores = [n for n in _own_nodes(fn) if isinstance(n, ast.Name) and n.id == name and not isinstance(n.ctx, ast.Load)]
    nested = [n for n in _own_nodes(fn) if isinstance(n, _SCOPES)]
    outer = [*fn.decorator_list, *fn.args.defaults, *(d for d in fn.args.kw_defaults if d)]  # read outside fn
    return (not stores and not any(name in _bound_names(s) for s in nested)
            and not any(isinstance(n, ast.Name) and n.id == name for o in outer for n in ast.walk(o)))


def _fold_parameter(fn: ast.FunctionDef, calls: list[ast.Call], name: str, index: int | None,
                    value: ast.Constant) -> None:
    for call in calls:
        if index is not None and index < len(call.args):
            del call.args[index]
        else:
            call.keywords = [k for k in call.keywords if k.arg != name]
    a = fn.args
    if index is None:
        i = [p.arg for p in a.kwonlyargs].index(name)
        del a.kwonlyargs[i], a.kw_defaults[i]
    else:
        n_pos = len(a.posonlyargs) + len(a.args)
        first_default = n_pos - len(a.defaults)
        if index >= first_default:
            del a.defaults[index - first_default]
        if index < len(a.posonlyargs):
            del a.posonlyargs[index]
        else:
            del a.args[index - len(a.posonlyargs)]
    docstring = isinstance(fn.body[0], ast.Expr) and isinstance(fn.body[0].value, ast.Constant)
    start = 1 if docstring and len(fn.body) > 1 else 0
    # placed at column 0 of the first statement's line: before every read in the body (golf.record.constants
    # propagates only a binding that precedes all reads)
    line = fn.body[start].lineno
    binding = ast.Assign(targets=[ast.Name(name, ast.Store())], value=ast.Constant(value.value), lineno=line,
                         col_offset=0, end_lineno=line, end_col_offset=0)
    fn.body.insert(start, binding)


def _returned_constant(fn: ast.FunctionDef) -> ast.Constant | None:
    body = [s for s in fn.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
    if len(body) == 1 and isinstance(body[0], ast.Return) and isinstance(body[0].value, ast.Constant):
        return body[0].value
    return None


def _inert(node: ast.expr) -> bool:
    """An argument whose evaluation runs no code of ours: a constant, a name, or attributes of a name."""
    while isinstance(node, ast.Attribute):
        node = node.value
    return isinstance(node, (ast.Constant, ast.Name))


class _ReplaceCalls(ast.NodeTransformer):
    def __init__(self, values: dict[int, ast.Constant]):
        self.values = values

    def visit_Call(self, node: ast.Call):
        self.generic_visit(node)
        value = self.values.get(id(node))
        return node if value is None else ast.copy_location(ast.Constant(value.value), node)


def fold_arguments(trees: list[ast.Module]) -> set[int]:
    """Fold the constant parameters and constant-returning calls of the flat program's modules (`trees`, edited
    in place; the module docstring says which). Returns the indexes of the trees that changed."""
    changed: set[int] = set()
    owner = {id(node): i for i, tree in enumerate(trees) for node in ast.walk(tree)}
    for fn, calls in _candidates(trees).values():
        folded = False
        for name, index, default in reversed(_params(fn)):  # from the last, so earlier indexes stay valid
            keys = {_key(_passed(call, name, index, default)) for call in calls}
            if len(keys) != 1 or None in keys or not _foldable(fn, name):
                continue
            _fold_parameter(fn, calls, name, index, _passed(calls[0], name, index, default))
            folded = True
        if folded:
            changed |= {owner[id(fn)]} | {owner[id(c)] for c in calls}
        value = _returned_constant(fn)
        if value is not None:
            inert = {id(c): value for c in calls if all(_inert(a) for a in c.args)
                     and all(_inert(k.value) for k in c.keywords)}
            for i in {owner[k] for k in inert}:
                _ReplaceCalls(inert).visit(trees[i])
                changed.add(i)
    return changed


def split_sections(source: str) -> list[str]:
    """The flat program cut before each `#@<module>` marker line (the first part is the program's head)."""
    return _MARK.split(source)
