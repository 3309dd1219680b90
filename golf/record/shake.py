"""Tree shaking of the submission's golf modules: drop the definitions a config's program never refers to.

The import closure (golf.record.bundle) selects whole modules; a module the run needs still carries functions for
golf's other callers (resume policy checks, report helpers, CLI validation, other schemes' tables). This pass
removes, across all bundled modules at once:

- top-level functions and classes whose name is referred to nowhere in the kept program;
- methods whose name is referred to nowhere (dunder methods and the names of methods that torch, logging or the
  built-in base classes call implicitly — `forward`, `step`, `emit`, ... — always stay);
- top-level assignments to one name, with no call in the value but of the container builtins (tables,
  constants, `frozenset({...})`), when that name is unused;
- `from _pg.x import name` aliases whose definition was removed, and `__all__` (golf never star-imports);
- top-level imports of other packages that bind a name nothing refers to (`from collections.abc import Callable`
  kept only for annotations), when importing the package has no effect the program misses: a standard-library
  module, or a package another kept import loads anyway; and a top-level import that repeats, with the same
  target, one earlier in the same module (the flattened program's `from pathlib import Path` per module).

A name counts as referred to when it appears anywhere in kept code as a variable, an attribute (`obj.name`), a
keyword argument or a string literal that spells it (getattr tables, lazy-import tables `'golf.eval.sliding'`; not
a string only compared with, `name != 'wsd_s'`, nor text with whitespace such as an error message, neither of
which can fetch anything; `'a b'.split()` still names a and b), so matching is by name across modules:
conservative. One exception narrows it by class: `self.name` read in a method of class C
(through the method's own receiver, never rebound there) can only reach a method of C's family (C's subclasses
and the ancestors of C and of its subclasses), so it keeps `name` only there: the Trainer's `self.validate()`
no longer keeps the config's `GroupQuant.validate`. Decorated definitions stay unless every decorator is a known
pure one (dataclass, property, staticmethod, classmethod, torch.no_grad, functools caches, contextmanager): a
registering decorator (`@register_scheme`) runs at import and is kept with its function. Module-level statements
that are not definitions (imports, calls, `if` blocks) always run and are roots of the reachability.

The shaking works on source lines (the removed definitions' line ranges, decorators included), so the readable
file keeps golf's comments and layout for what remains. Deterministic: same sources, same output.
"""

from __future__ import annotations

import ast
import logging
import re
import sys

import torch

from golf.record.constants import bound_names
from golf.record.flatten import golf_import
from golf.record.trees import walk

_PURE_DECORATORS = {"dataclass", "property", "staticmethod", "classmethod", "no_grad", "lru_cache", "cache",
                    "contextmanager", "disable"}
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _implicit_method_names() -> frozenset[str]:
    """Method names a base class calls on its own (nn.Module.__call__ -> forward, Optimizer -> step, ...)."""
    bases = (torch.nn.Module, torch.optim.Optimizer, torch.autograd.Function, logging.Handler, logging.Filter,
             Exception, dict, list, object)
    return frozenset(name for base in bases for name in dir(base))


_IMPLICIT = _implicit_method_names()


def decorator_name(node: ast.expr) -> str:
    """`@torch.no_grad()` -> 'no_grad', `@register_scheme('int8')` -> 'register_scheme'."""
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""


def removable_def(node: ast.stmt) -> bool:
    """A def or class whose decorators are all pure (dropping it drops nothing that runs at import)."""
    return (isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and all(decorator_name(d) in _PURE_DECORATORS for d in node.decorator_list))


_PURE_BUILTINS = {"frozenset", "tuple", "set", "list", "dict"}
"""Builtins whose call only builds a container of its arguments: a table `NAMES = frozenset({...})` is still a
constant table."""


def _assigned_name(node: ast.stmt, bound: set[str]) -> str | None:
    """The one name a top-level assignment binds when its value calls nothing but the container builtins
    (`_PURE_BUILTINS`, when the module does not bind their names: `bound`); None for any other statement."""
    if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
        target, value = node.targets[0].id, node.value
    elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
        target, value = node.target.id, node.value
    else:
        return None
    pure = _PURE_BUILTINS - bound
    if target == "__all__" or any(isinstance(n, ast.Call) and not (isinstance(n.func, ast.Name) and n.func.id in pure)
                                  for n in walk(value)):
        return None
    return target


def method_receiver(fn: ast.AST) -> str | None:
    """The name of a method's receiver (`self`, a classmethod's `cls`) when every `<name>.x` in it reads the
    instance or its class: not a staticmethod, and no assignment, nested parameter or other binding reuses the
    name. None otherwise (then every attribute it reads is a plain reference)."""
    if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return None
    first = [*fn.args.posonlyargs, *fn.args.args][:1]
    if not first or any(decorator_name(d) == "staticmethod" for d in fn.decorator_list):
        return None
    name = first[0].arg
    # the body and the scopes nested in it (their parameters, stores, imports, except and match captures)
    return None if any(name in bound_names(stmt) for stmt in fn.body) else name


def _names_in(node: ast.AST, receiver: str | None = None) -> tuple[set[str], set[str]]:
    """(every name `node` refers to: variables, attributes, keywords, identifier-like strings (see module doc);
    the attributes read as `<receiver>.x`, which are not in the first set). Docstrings (string expression
    statements) are text, not references, and so are function annotations: every golf module has `from
    __future__ import annotations` (checked by shake), so they are never evaluated."""
    out: set[str] = set()
    own: set[str] = set()
    todo = [node]
    while todo:
        n = todo.pop()
        if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str):
            continue
        if isinstance(n, ast.arg):  # annotations of arguments are never evaluated (future annotations)
            continue
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)):
            todo.extend([*n.decorator_list, *n.args.defaults, *(d for d in n.args.kw_defaults if d), *n.body])
            continue  # the return annotation is never evaluated either
        if isinstance(n, ast.Compare):  # a string only compared with fetches nothing: `name != 'wsd_s'`
            todo.extend(o for o in (n.left, *n.comparators) if not _compared_text(o))
            continue
        if isinstance(n, ast.Name):
            out.add(n.id)
        elif isinstance(n, ast.Attribute):
            on_receiver = receiver is not None and isinstance(n.value, ast.Name) and n.value.id == receiver
            (own if on_receiver else out).add(n.attr)
            if isinstance(n.value, ast.Constant) and isinstance(n.value.value, str):  # 'a b'.split(): names
                out.update(_IDENTIFIER.findall(n.value.value))
        elif isinstance(n, ast.keyword) and n.arg:
            out.add(n.arg)
        elif (isinstance(n, ast.Constant) and isinstance(n.value, str) and len(n.value) < 200
              and not any(c.isspace() for c in n.value)):  # prose (messages) names nothing it could fetch
            out.update(_IDENTIFIER.findall(n.value))
        todo.extend(ast.iter_child_nodes(n))
    return out, own


def _compared_text(node: ast.expr) -> bool:
    """A string constant, or a tuple/list/set display of constants holding one, as a comparison operand."""
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return all(isinstance(e, ast.Constant) for e in node.elts) and any(isinstance(e.value, str) for e in node.elts)
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


class _Module:
    def __init__(self, source: str):
        self.source = source
        self.tree = ast.parse(source)
        self.units: list[tuple[str, ast.AST]] = []  # (name, node) removable top-level defs / assignments
        self.methods: list[tuple[str, ast.AST, ast.ClassDef]] = []  # (name, node, owning class) removable methods
        self.roots: list[ast.AST] = []  # always-kept statements (their names are references)
        bound = {name for node in self.tree.body for name in bound_names(node)}
        for node in self.tree.body:
            name = _assigned_name(node, bound)
            if removable_def(node):
                self.units.append((node.name, node))
            elif name is not None:
                self.units.append((name, node))
            elif isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__"
                                                       for t in node.targets):
                continue  # __all__ names are exports, not uses; removed below
            elif not isinstance(node, (ast.Import, ast.ImportFrom)):
                self.roots.append(node)  # imports bind names; what uses them is what counts
        for _, node in self.units:
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if (removable_def(item) and not isinstance(item, ast.ClassDef)
                            and item.name not in _IMPLICIT and not item.name.startswith("__")):
                        self.methods.append((item.name, item, node))


def _class_body_minus_methods(node: ast.ClassDef, methods: list[tuple[str, ast.AST, ast.ClassDef]]
                              ) -> list[tuple[ast.AST, str | None]]:
    """What keeping class `node` keeps: its bases, keywords, decorators and the body items that are not removable
    methods, each with the class whose receiver it may read (its own methods: `node`)."""
    removable = {id(m) for _, m, _ in methods}
    return [*((n, None) for n in (*node.bases, *node.keywords, *node.decorator_list)),
            *((item, node.name) for item in node.body if id(item) not in removable)]


def _base_name(node: ast.expr) -> str:
    return node.attr if isinstance(node, ast.Attribute) else getattr(node, "id", "")


def _families(mods: dict[str, _Module]) -> dict[str, set[str]]:
    """Class name -> the classes a method read on its receiver may resolve to: its descendants and the ancestors
    of each of them (mixins of a subclass included), by name over every module."""
    bases: dict[str, set[str]] = {}
    for m in mods.values():
        for n in walk(m.tree):
            if isinstance(n, ast.ClassDef):
                bases.setdefault(n.name, set()).update(_base_name(b) for b in n.bases)

    def ancestors(name: str) -> set[str]:
        seen, todo = set(), [name]
        while todo:
            for b in bases.get(todo.pop(), ()):
                if b not in seen:
                    seen.add(b)
                    todo.append(b)
        return seen

    up = {name: ancestors(name) | {name} for name in bases}
    return {name: set().union(*(up[d] for d in up if name in up[d])) for name in bases}


def shake(sources: dict[str, str], package: str, entry_names: set[str]) -> dict[str, str]:
    """The same modules (name -> source, imports of golf modules spelled `package.x`) with unreferenced
    definitions removed (see the module docstring). `entry_names`: what code outside the modules calls (the
    generated file's `main`). Raises SyntaxError only if a source does not parse."""
    mods = {name: _Module(src) for name, src in sources.items()}
    for name, m in mods.items():
        if m.tree.body and not any(isinstance(n, ast.ImportFrom) and n.module == "__future__"
                                   and any(a.name == "annotations" for a in n.names) for n in m.tree.body):
            if any(isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) for n in walk(m.tree)):
                raise ValueError(f"{name}: shaking needs `from __future__ import annotations` (annotations unused)")
    referenced: set[str] = set(entry_names)
    on_receiver: dict[str, set[str]] = {}  # attribute -> the classes whose methods read it on their receiver
    families = _families(mods)
    pending: list[tuple[ast.AST, str | None]] = [(r, None) for m in mods.values() for r in m.roots]
    kept_units: set[int] = set()
    kept_methods: set[int] = set()
    aliases = {(a.name, a.asname) for m in mods.values() for n in walk(m.tree)
               if isinstance(n, ast.ImportFrom) for a in n.names if a.asname}

    def reached(name: str, owner: ast.ClassDef) -> bool:
        return name in referenced or any(owner.name in families.get(c, {c}) for c in on_receiver.get(name, ()))

    while True:
        while pending:
            node, cls = pending.pop()
            names, own = _names_in(node, method_receiver(node) if cls else None)
            referenced |= names
            for attr in own:
                on_receiver.setdefault(attr, set()).add(cls)
        referenced |= {name for name, asname in aliases if asname in referenced}  # `import f as g`: g used
        grew = False
        for m in mods.values():
            for name, node in m.units:
                if id(node) not in kept_units and name in referenced:
                    kept_units.add(id(node))
                    pending.extend(_class_body_minus_methods(node, m.methods) if isinstance(node, ast.ClassDef)
                                   else [(node, None)])
                    grew = True
            for name, node, owner in m.methods:
                if id(node) not in kept_methods and id(owner) in kept_units and reached(name, owner):
                    kept_methods.add(id(node))
                    pending.append((node, owner.name))
                    grew = True
        if not grew and not pending:
            break
    removed_names = {name for m in mods.values() for name, node in m.units if id(node) not in kept_units}
    removed_names -= {name for m in mods.values() for name, node in m.units if id(node) in kept_units}
    imports = _external_import_edits(mods, referenced, package)
    return {name: _rewrite(m, kept_units, kept_methods, removed_names, package, imports[name])
            for name, m in mods.items()}


def _import_targets(node: ast.Import | ast.ImportFrom) -> list[tuple[ast.alias, str, str]]:
    """(alias, the name it binds, what it binds: the dotted module or `module.attr`) for each alias."""
    if isinstance(node, ast.Import):
        return [(a, a.asname or a.name.split(".")[0], a.name) for a in node.names]
    return [(a, a.asname or a.name, f"{node.module}.{a.name}") for a in node.names]


def _external_import_edits(mods: dict[str, _Module], referenced: set[str], package: str
                           ) -> dict[str, list[tuple[int, int, str]]]:
    """Per module, the line edits that drop unreferenced or repeated top-level imports of other packages (see the
    module docstring); an import keeping some of its names is rewritten with those."""
    external = {name: [n for n in m.tree.body if isinstance(n, (ast.Import, ast.ImportFrom))
                       and not golf_import(n, package) and getattr(n, "module", None) != "__future__"
                       and getattr(n, "level", 0) == 0]
                for name, m in mods.items()}
    used_packages = {target.split(".")[0] for nodes in external.values() for n in nodes
                     for _, bound, target in _import_targets(n) if bound in referenced}
    edits: dict[str, list[tuple[int, int, str]]] = {}
    for name, nodes in external.items():
        edits[name] = []
        seen: set[tuple[str, str]] = set()
        for node in nodes:
            alive = []
            for alias, bound, target in _import_targets(node):
                top = target.split(".")[0]
                unused = bound not in referenced and (top in sys.stdlib_module_names or top in used_packages)
                if (bound, target) not in seen and not unused:
                    seen.add((bound, target))
                    alive.append(alias)
            if len(alive) < len(node.names):
                kept = (ast.Import(names=alive) if isinstance(node, ast.Import)
                        else ast.ImportFrom(module=node.module, names=alive, level=0))
                text = ast.unparse(kept) + "\n" if alive else ""
                edits[name].append((node.lineno, node.end_lineno or node.lineno, text))
    return edits


def _span(node: ast.AST) -> tuple[int, int]:
    start = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
    return start, node.end_lineno or node.lineno


def _rewrite(m: _Module, kept_units: set[int], kept_methods: set[int], removed: set[str], package: str,
             import_edits: list[tuple[int, int, str]]) -> str:
    lines = m.source.splitlines(keepends=True)
    edits: list[tuple[int, int, str]] = list(import_edits)  # (first line, last line, replacement), 1-based
    removable_methods = {id(item) for _, item, _ in m.methods}
    for _, node in m.units:
        if id(node) not in kept_units:
            edits.append((*_span(node), ""))
        elif isinstance(node, ast.ClassDef):
            gone = [item for item in node.body if id(item) in removable_methods and id(item) not in kept_methods]
            edits.extend((*_span(item), "") for item in gone)
            if gone and len(gone) == len(node.body):  # a class body cannot be empty
                edits[-len(gone)] = (*_span(gone[0]), " " * gone[0].col_offset + "pass\n")
    dead = [(a, b) for a, b, text in edits if not text]
    for node in walk(m.tree):
        line = getattr(node, "lineno", None)
        if line is not None and any(a <= line <= b for a, b in dead):
            continue
        if isinstance(node, ast.ImportFrom) and golf_import(node, package) and any(a.name in removed for a in node.names):
            alive = [a for a in node.names if a.name not in removed]
            indent = " " * node.col_offset
            text = (indent + ast.unparse(ast.ImportFrom(module=node.module, names=alive, level=0)) + "\n"
                    if alive else (indent + "pass\n" if node.col_offset else ""))
            edits.append((node.lineno, node.end_lineno or node.lineno, text))
        elif (isinstance(node, ast.Assign) and node.col_offset == 0
              and any(isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets)):
            edits.append((node.lineno, node.end_lineno or node.lineno, ""))  # no star imports in a bundle
    for first, last, text in sorted(edits, reverse=True):
        lines[first - 1:last] = [text] if text else []
    return "".join(lines)
