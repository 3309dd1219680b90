"""Registry folds of the flat program: what one config's constant choice makes of golf's name -> module tables.

golf reaches option code through tables read with a configured name and imported on first use (eval
`MODE_MODULES`, quant `SCHEME_MODULES`, data `LOADER_MODULES`). Once golf.record.specialize has made the name a
constant, a generated train_gpt.py still carried the lookup: the membership check with its error message, the
table, `importlib.import_module` and the `_ns(...)` module object golf.record.flatten builds for it. Two folds,
run with golf.record.arguments' until nothing changes (golf.record.bundle.fold_program):

- `fold_members`: `'standard' not in MODE_MODULES` -> `False`: a constant's membership in a module-level table
  bound once by a literal (dict keys, or the items of a tuple, list or set of constants) and never bound
  locally. A dict, list or set (which could be changed in place) only while every other read of its name is a
  subscript read or another such test, so nothing can store into it. Then the check's branch is decided and
  golf.record.arguments.fold_tables reads the table's entry (`MODE_MODULES['standard']`).
- `fold_imports`: `importlib.import_module('_pg.eval.standard').score` -> `score` and a bare
  `importlib.import_module('_pg.quant.int8')` statement -> nothing, for a module the flat program holds (it has
  an `_ns('_pg.eval.standard', score=score, ...)` entry): the program already ran that module's code at its
  top level and the entry is that module's namespace, so the import returns it and does nothing else. An `_ns`
  entry whose module name no other string of the program spells any more goes, and golf.record.shake then
  drops what only it kept.
Only when `importlib` is the module (bound once at top level by an import, never locally) and the attribute's
flat name is bound once at top level and nowhere locally.
"""

from __future__ import annotations

import ast

from golf.record.arguments import _Program
from golf.record.constants import bound_names
from golf.record.trees import walk


def _members(node: ast.stmt) -> tuple[str, tuple, bool] | None:
    """(name, its members, mutable) of a module-level `NAME = <literal of constants>`: a dict's keys, or a tuple's,
    list's or set's items; None for anything else."""
    target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else (
        node.target if isinstance(node, ast.AnnAssign) else None)
    value = getattr(node, "value", None)
    if not isinstance(target, ast.Name):
        return None
    items = value.keys if isinstance(value, ast.Dict) else getattr(value, "elts", None) \
        if isinstance(value, (ast.Tuple, ast.List, ast.Set)) else None
    if items is None or not all(isinstance(k, ast.Constant) for k in items):
        return None
    return target.id, tuple(k.value for k in items), not isinstance(value, ast.Tuple)


def _membership(node: ast.AST) -> ast.Name | None:
    """The table of `<constant> in NAME` / `<constant> not in NAME`."""
    if (isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], (ast.In, ast.NotIn))
            and isinstance(node.left, ast.Constant) and isinstance(node.comparators[0], ast.Name)):
        return node.comparators[0]
    return None


class _Replace(ast.NodeTransformer):
    def __init__(self, values: dict[int, ast.AST | None]):
        self.values = values

    def visit(self, node: ast.AST):
        if id(node) in self.values:
            new = self.values[id(node)]
            return None if new is None else ast.copy_location(new, node)
        node = super().visit(node)
        if not isinstance(node, ast.Module) and getattr(node, "body", None) == []:
            node.body.append(ast.Pass())  # a block whose only statement was a removed import
        return node


def fold_members(trees: list[ast.Module], program: _Program | None = None) -> set[int]:
    """Constant membership tests of constant tables become True / False (module docstring). Returns the indexes
    of the trees that changed."""
    program = program or _Program(trees)
    tables = {found[0]: found for tree in trees for node in tree.body if (found := _members(node))}
    tests = [(program.owner[id(node)], node) for node in program.compares if _membership(node)]
    tested = {id(_membership(node)) for _, node in tests}
    written = {n.id for n in program.names if n.id in tables and isinstance(n.ctx, ast.Load)
               and id(n) not in program.subscripted and id(n) not in tested}
    values: dict[int, ast.AST | None] = {}
    changed: set[int] = set()
    for i, node in tests:
        name = _membership(node).id
        if name not in tables or program.module.get(name) != 1 or name in program.local | program.in_classes:
            continue
        _, members, mutable = tables[name]
        if mutable and name in written:
            continue
        found = node.left.value in members
        values[id(node)] = ast.Constant(found if isinstance(node.ops[0], ast.In) else not found)
        changed.add(i)
    for i in changed:
        _Replace(values).visit(trees[i])
    return changed


def _namespaces(trees: list[ast.Module]) -> dict[str, tuple[int, ast.stmt, dict[str, str]]]:
    """Module name -> (tree index, its `_ns(...)` statement, attribute -> flat name)."""
    out = {}
    for i, tree in enumerate(trees):
        for node in tree.body:
            call = node.value if isinstance(node, ast.Expr) else None
            if (isinstance(call, ast.Call) and getattr(call.func, "id", "") == "_ns" and call.args
                    and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str)
                    and all(isinstance(k.value, ast.Name) and k.arg for k in call.keywords)):
                out[call.args[0].value] = (i, node, {k.arg: k.value.id for k in call.keywords})
    return out


def _imported(node: ast.AST, modules: dict) -> str | None:
    """The module name of `importlib.import_module('<name>')` when the program holds that module."""
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "import_module"
            and isinstance(node.func.value, ast.Name) and node.func.value.id == "importlib"
            and len(node.args) == 1 and not node.keywords and isinstance(node.args[0], ast.Constant)
            and node.args[0].value in modules):
        return node.args[0].value
    return None


def fold_imports(trees: list[ast.Module], program: _Program | None = None) -> set[int]:
    """Imports of modules the flat program holds become their names, bare ones go, and `_ns` entries no string
    names any more go (module docstring). Returns the indexes of the trees that changed."""
    modules = _namespaces(trees)
    if not modules:
        return set()
    program = program or _Program(trees)
    if program.module.get("importlib") != 1 or "importlib" in program.local | program.in_classes:
        return set()
    values: dict[int, ast.AST | None] = {}
    changed: set[int] = set()
    for i, tree in enumerate(trees):
        for top in tree.body:
            bound: set[str] | None = None  # what `top` binds anywhere (parameters, locals, nested scopes)
            for node in walk(top):
                if isinstance(node, ast.Expr) and _imported(node.value, modules):
                    values[id(node)] = None
                    changed.add(i)
                    continue
                name = _imported(node.value, modules) if isinstance(node, ast.Attribute) \
                    and isinstance(node.ctx, ast.Load) else None
                flat = modules[name][2].get(node.attr) if name else None
                if flat is None or program.module.get(flat) != 1 or flat in program.in_classes:
                    continue
                bound = bound_names(top) if bound is None else bound
                if flat not in bound:
                    values[id(node)] = ast.Name(flat, ast.Load())
                    changed.add(i)
    for i in changed:
        _Replace(values).visit(trees[i])
    spelled = [n.value for tree in trees for n in walk(tree) if isinstance(n, ast.Constant)]
    for name, (i, statement, _) in modules.items():
        if spelled.count(name) == 1:  # only its own `_ns` entry still names it
            trees[i].body.remove(statement)
            changed.add(i)
    return changed


def fold_registries(trees: list[ast.Module], program: _Program | None = None) -> set[int]:
    """Both folds over one index of the program (`program`, built when not given: folds that ran since keep
    it conservative); the indexes of the trees that changed."""
    program = program or _Program(trees)
    return fold_members(trees, program) | fold_imports(trees, program)
