"""Short names for the flat program's own methods: what python-minifier leaves long.

python-minifier renames globals, locals and (golf.record.posonly) parameters, never attributes: it cannot know
the type behind `x.take(...)`. In the flat program golf ships, golf knows which method names are its own.
A method name `m` (a function, property, staticmethod or classmethod defined directly in a class of the
program) is renamed, at its definitions and at every `.m` of the program, when nothing outside the program can
mean it:
- `m` is no attribute of anything the program imports (every module it imports, the classes and submodules
  directly in them, the builtin types and the library bases golf subclasses: `step`, `forward`, `add`, `take`,
  `item` ... stay), and not a dunder;
- no string of the program spells `m` (`getattr(o, "m")`, `hasattr`, registry tables);
- no call passes a keyword `m`, no class body binds `m` other than as a method (a dataclass field, a class
  attribute: fields travel by name through `asdict`, JSON manifests and constructors) and no class body reads
  the name `m` in its own scope (`@m.setter`, `run = m`).
The renaming is consistent over the whole program, so any receiver (an instance, `super()`, the class, a
bound method stored in a variable) still finds it. New names are the shortest identifiers that no attribute
of the program, no imported name and no keyword spells, the most used method getting the shortest.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import itertools
import keyword
import string
import warnings
from functools import cache

from golf.record.posonly import _IDENTIFIER, CONTRACT_NAMES
from golf.record.trees import walk


@cache
def library_attributes(modules: frozenset[str]) -> frozenset[str]:
    """Every attribute name of the modules `modules`, of the classes and submodules directly in them, of the
    builtin types and of the library bases golf subclasses (posonly.CONTRACT_NAMES). A module that does not
    import here contributes nothing (the flat program imports only what golf itself imported)."""
    names = set(CONTRACT_NAMES) | set(dir(builtins))
    for value in vars(builtins).values():
        if isinstance(value, type):
            names.update(dir(value))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in sorted(modules):
            try:
                module = importlib.import_module(name)
            except Exception:  # an optional kernel package absent here: nothing of it can be a method of golf's
                continue
            names.update(dir(module))
            for attr in dir(module):
                try:
                    value = getattr(module, attr)
                except Exception:
                    continue
                if isinstance(value, type) or type(value).__name__ == "module":
                    names.update(dir(value))
    return frozenset(names)


def _imported_modules(tree: ast.Module) -> frozenset[str]:
    """Every module (and each parent package) an import statement of the program names."""
    out: set[str] = set()
    for node in walk(tree):
        if isinstance(node, ast.Import):
            full = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            full = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        else:
            continue
        for name in full:
            parts = name.split(".")
            out.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return frozenset(out)


def _short_names(taken: set[str]):
    """Identifiers by length then alphabet, skipping `taken` and keywords."""
    for length in itertools.count(1):
        for chars in itertools.product(string.ascii_letters, repeat=length):
            name = "".join(chars)
            if name not in taken and not keyword.iskeyword(name):
                yield name


def _class_scope_reads(cls: ast.ClassDef) -> set[str]:
    """Names read in the class body's own scope (`@width.setter`, `__call__ = run`): the function a method
    name is bound to there is looked up by that name."""
    out: set[str] = set()
    todo: list[ast.AST] = []
    for stmt in cls.body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
            todo.extend(stmt.decorator_list)
        elif not isinstance(stmt, ast.ClassDef):
            todo.append(stmt)
    for root in todo:
        out.update(n.id for n in walk(root) if isinstance(n, ast.Name))
    return out


def method_names(tree: ast.Module) -> dict[str, str]:
    """Old -> new name of every method of `tree` the module docstring's rules allow to rename."""
    methods: set[str] = set()
    class_bound: set[str] = set()
    for cls in (n for n in walk(tree) if isinstance(n, ast.ClassDef)):
        for stmt in cls.body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                methods.add(stmt.name)
            elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                class_bound.add(stmt.target.id)
            elif isinstance(stmt, ast.Assign):
                class_bound.update(t.id for t in stmt.targets if isinstance(t, ast.Name))
        class_bound |= _class_scope_reads(cls)
    spelled: set[str] = set()
    keywords: set[str] = set()
    attributes: set[str] = set()
    uses: dict[str, int] = {}
    for node in walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            spelled.update(_IDENTIFIER.findall(node.value))
        elif isinstance(node, ast.keyword) and node.arg:
            keywords.add(node.arg)
        elif isinstance(node, ast.Attribute):
            attributes.add(node.attr)
            uses[node.attr] = uses.get(node.attr, 0) + 1
    library = library_attributes(_imported_modules(tree))
    keep = library | spelled | keywords | class_bound
    renamed = sorted((m for m in methods if m not in keep and not (m.startswith("__") and m.endswith("__"))),
                     key=lambda m: (-uses.get(m, 0), m))
    fresh = _short_names(attributes | methods | library | keywords | class_bound | spelled)
    return {old: next(fresh) for old in renamed}


class _Rename(ast.NodeTransformer):
    def __init__(self, names: dict[str, str]):
        self.names = names

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        self.generic_visit(node)
        node.attr = self.names.get(node.attr, node.attr)
        return node


def rename_methods(source: str) -> str:
    """`source` (a whole flat program) with its own method names shortened (module docstring); behaviour is
    unchanged. Comments are dropped (`ast.unparse`)."""
    tree = ast.parse(source)
    shorten_methods(tree)
    return ast.unparse(tree)


def shorten_methods(tree: ast.Module) -> None:
    """`rename_methods` on a parsed program, in place."""
    names = method_names(tree)
    if not names:
        return
    for cls in (n for n in walk(tree) if isinstance(n, ast.ClassDef)):
        for stmt in cls.body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)) and stmt.name in names:
                stmt.name = names[stmt.name]
    _Rename(names).visit(tree)
