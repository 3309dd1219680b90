"""Constant locals after specialisation: `need_loss = False` then `if not (need_loss or ...)`.

Folding the baked config (golf.record.specialize) leaves locals that hold a constant (`table, fit = None, None`
once the branch that reassigned `table` is gone). This pass replaces the reads of such a local by its value, so
the simplifier can decide the branches they guard, and drops the assignment. A local qualifies when, in its
function:

- it is bound exactly once, by a statement directly in the function body (not in a loop, branch, `with` or
  `try`): `name = <constant>` or `a, b = <constant>, <constant>` (the names of such a tuple that qualify are
  propagated, the others keep their binding);
- it is not a parameter, not declared `global` / `nonlocal` there or in a nested function, and no nested
  function, lambda or comprehension binds the same name;
- every read outside nested functions comes after that statement (so no read ever saw it unbound).

Python's semantics are kept: the value is immutable and never changes after the one binding.
"""

from __future__ import annotations

import ast

from golf.record.trees import walk

_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
SCOPES = _SCOPES + (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)
"""Every node that opens a scope of its own (comprehensions included)."""


def own_nodes(node: ast.AST):
    """The nodes of `node`'s body that belong to its own scope (nested functions/classes/lambdas excluded)."""
    todo = list(ast.iter_child_nodes(node))
    while todo:
        n = todo.pop()
        yield n
        if not isinstance(n, _SCOPES):
            todo.extend(ast.iter_child_nodes(n))


def _nested_scopes(node: ast.AST):
    for n in own_nodes(node):
        if isinstance(n, SCOPES):
            yield n


def _bound_by(n: ast.AST) -> list[str]:
    """The names one node binds or declares in its scope."""
    if isinstance(n, ast.arg):
        return [n.arg]
    if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load):
        return [n.id]
    if isinstance(n, (ast.Global, ast.Nonlocal)):
        return list(n.names)
    if isinstance(n, ast.alias):  # import a.b (binds a), import a as b, from m import a [as b]
        return [n.asname or n.name.split(".")[0]]
    if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [n.name]
    if isinstance(n, (ast.ExceptHandler, ast.MatchAs, ast.MatchStar)) and n.name:
        return [n.name]
    if isinstance(n, ast.MatchMapping) and n.rest:
        return [n.rest]
    return []


def bound_names(node: ast.AST) -> set[str]:
    """Names `node` and every scope nested in it bind or declare: parameters, stores, global/nonlocal, imports,
    defs, except/match captures."""
    return {name for n in walk(node) for name in _bound_by(n)}


def _constant_bindings(stmt: ast.stmt) -> dict[str, ast.Constant]:
    """name -> value for `name = C` / `a, b = C1, C2` statements, else {}."""
    if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1):
        return {}
    target, value = stmt.targets[0], stmt.value
    if isinstance(target, ast.Name) and isinstance(value, ast.Constant):
        return {target.id: value}
    if (isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple) and len(target.elts) == len(value.elts)
            and all(isinstance(t, ast.Name) for t in target.elts)
            and all(isinstance(v, ast.Constant) for v in value.elts)):
        names = [t.id for t in target.elts]
        if len(set(names)) == len(names):
            return dict(zip(names, value.elts, strict=True))
    return {}


def _binding_counts(func: ast.AST) -> dict[str, int]:
    """How many times each name is bound in `func`'s own scope (a global/nonlocal declaration counts 2: such a
    name is never a constant local)."""
    counts: dict[str, int] = {}
    for n in own_nodes(func):
        for name in _bound_by(n):
            counts[name] = counts.get(name, 0) + (2 if isinstance(n, (ast.Global, ast.Nonlocal)) else 1)
    return counts


def _propagate_in(func: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    params = {a.arg for a in walk(func.args) if isinstance(a, ast.arg)}
    counts = _binding_counts(func)
    shadowed = set().union(*(bound_names(s) for s in _nested_scopes(func)))
    # before Python 3.12 ast.unparse cannot write a backslash inside an f-string's braces (`f'{sep}'`, sep='\\n')
    in_fstrings = {n.id for f in own_nodes(func) if isinstance(f, ast.JoinedStr) for n in walk(f)
                   if isinstance(n, ast.Name)}
    changed = False
    for stmt in list(func.body):
        values = {name: value for name, value in _constant_bindings(stmt).items()
                  if counts.get(name) == 1 and name not in params and name not in shadowed}
        if not values:
            continue
        end = (stmt.end_lineno or stmt.lineno, stmt.end_col_offset or 0)
        loads = [n for n in own_nodes(func) if isinstance(n, ast.Name) and n.id in values
                 and isinstance(n.ctx, ast.Load)]
        early = {n.id for n in loads if (n.lineno, n.col_offset) < end}
        values = {k: v for k, v in values.items()
                  if k not in early and not (k in in_fstrings and "\\" in repr(v.value))}
        if not values:
            continue
        ReplaceNames(values).visit(func)
        rest = {k: v for k, v in _constant_bindings(stmt).items() if k not in values}
        if rest:  # `table, fit = None, None` with only `table` constant: `fit = None` stays
            target = ast.Name(next(iter(rest)), ast.Store()) if len(rest) == 1 else ast.Tuple(
                [ast.Name(k, ast.Store()) for k in rest], ast.Store())
            value = next(iter(rest.values())) if len(rest) == 1 else ast.Tuple(list(rest.values()), ast.Load())
            kept = ast.copy_location(ast.Assign([target], value), stmt)
            func.body[func.body.index(stmt)] = ast.fix_missing_locations(kept)
        else:
            func.body.remove(stmt)
        changed = True
    if not func.body:
        func.body.append(ast.Pass())
    return changed


class ReplaceNames(ast.NodeTransformer):
    """Loads of the given names become their constants (every scope: the caller checks shadowing)."""

    def __init__(self, values: dict[str, ast.Constant]):
        self.values = values

    def visit_Name(self, node: ast.Name):
        if isinstance(node.ctx, ast.Load) and node.id in self.values:
            return ast.copy_location(ast.Constant(self.values[node.id].value), node)
        return node


def propagate_constants(tree: ast.Module) -> bool:
    """Replace the reads of every constant local (module docstring) in `tree`, in place; True if any changed."""
    changed = False
    for func in [n for n in walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]:
        changed |= _propagate_in(func)
    return changed
