"""The bundled modules as one flat module: how a record's train_gpt.py ships them.

A record script is one namespace; golf's submission is ~50 small modules. Packaging them behind an importer
costs every `from golf.x import ...` line, and python-minifier cannot shorten a global name another module imports.
Flattened, each module's top-level code runs once, in dependency order, in one namespace, with no golf imports
left, and the minifier may rename globals too (golf.record.bundle). Measured on `baseline`: 40,515 -> 36,741 code
bytes as shipped (`python -m golf.bench.record`).

Rules (all checked; anything else raises FlattenError and the bundle keeps the packaged form):
- Order: a module after the modules its top-level code imports.
- Names: a top-level name bound in two modules (`log`, `HEADER_BYTES`) keeps its name in the first module and is
  renamed `<name>_<module>` in the others, everywhere in that module and in the modules importing it. A renamed
  name may not also be a function parameter there (a keyword call site would break).
- Imports of golf modules: top-level ones are dropped (an alias `import x as y` becomes `y = x`); ones inside a
  function become local assignments, or stay imports when their module is not bundled (that code is never run
  by this config: it fails as it would in the packaged form).
- Modules the code reaches by name (`importlib.import_module(MODE_MODULES[mode]).score`) are registered in
  `sys.modules` as namespaces holding the names the program reads from them as attributes.
"""

from __future__ import annotations

import ast
import builtins
import re

from golf.errors import GolfError
from golf.record.trees import walk

_IDENT = re.compile(r"[A-Za-z_]\w*")


class FlattenError(GolfError):
    """The modules cannot share one namespace under the rules above (the message names the obstacle)."""


def golf_import(node: ast.stmt, package: str) -> bool:
    """`node` imports a module of the bundled package `package` (`from package.x import y`, `import package.x`)."""
    if isinstance(node, ast.ImportFrom):
        return node.level == 0 and (node.module or "").split(".")[0] == package
    return isinstance(node, ast.Import) and any(a.name.split(".")[0] == package for a in node.names)


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _module_level(tree: ast.Module):
    """Statements that run at module scope: the body, and the blocks of top-level if/try/with/for/while."""
    todo = list(tree.body)
    while todo:
        node = todo.pop(0)
        yield node
        if isinstance(node, (ast.If, ast.Try, ast.For, ast.While, ast.With)):
            for field in ("body", "orelse", "finalbody"):
                todo.extend(getattr(node, field, []))
            for handler in getattr(node, "handlers", []):
                todo.extend(handler.body)


def _stores(nodes) -> set[str]:
    return {n.id for node in nodes for n in walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}


_IMPORT_ERRORS = frozenset({"ImportError", "ModuleNotFoundError"})


def _import_fallbacks(tree: ast.Module) -> dict[int, set[str]]:
    """id of each statement in a module-level `except ImportError:` handler -> the names it rebinds that its
    `try:` imports (`try: import triton` / `except ImportError: triton = None`): the import's own variable."""
    out: dict[int, set[str]] = {}
    for node in _module_level(tree):
        if not isinstance(node, ast.Try):
            continue
        imported = {a.asname or a.name.split(".")[0] for s in node.body if isinstance(s, (ast.Import, ast.ImportFrom))
                    for a in s.names}
        for handler in node.handlers:
            caught = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
            if caught and all(isinstance(c, ast.Name) and c.id in _IMPORT_ERRORS for c in caught):
                out.update({id(stmt): _stores([stmt]) & imported for stmt in handler.body})
    return out


def _top_level_bindings(tree: ast.Module, package: str) -> tuple[set[str], dict[str, str]]:
    """(names the module's own code binds at top level, external import name -> what it imports).

    A name rebound only as an import's fallback (`except ImportError: triton = None`) is the import's variable,
    not an own binding. Raises FlattenError for a name the module both imports and binds otherwise: renaming the
    binding would split one variable in two (the import statement keeps its name)."""
    own: set[str] = set()
    external: dict[str, str] = {}
    fallbacks = _import_fallbacks(tree)
    for node in _module_level(tree):
        if id(node) in fallbacks:
            own |= _stores([node]) - fallbacks[id(node)]
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            own.add(node.name)
        elif isinstance(node, ast.Import) and not golf_import(node, package):
            for a in node.names:
                external[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and not golf_import(node, package):
            if node.module != "__future__":
                for a in node.names:
                    external[a.asname or a.name] = f"{node.module}.{a.name}"
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        elif isinstance(node, (ast.If, ast.Try, ast.For, ast.While, ast.With)):  # their blocks come on their own
            own |= _stores([getattr(node, f) for f in ("test", "target", "iter") if hasattr(node, f)]
                           + list(getattr(node, "items", [])))
            own.update(h.name for h in getattr(node, "handlers", []) if h.name)
        else:
            own |= _stores([node])
    if own & set(external):
        raise FlattenError(f"{sorted(own & set(external))[0]!r} is both imported and bound at module level")
    return own, external


def _order(trees: dict[str, ast.Module], package: str) -> list[str]:
    """Modules in an order where each comes after the golf modules its top level imports (a package's
    `__init__` that imports its children runs after them, as Python runs it; a child that needs a name from its
    package imports it, which is an edge too)."""
    deps: dict[str, set[str]] = {}
    for name, tree in trees.items():
        found: set[str] = set()
        for node in _module_level(tree):
            if isinstance(node, ast.ImportFrom) and golf_import(node, package):
                found.add(node.module)
                found.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import) and golf_import(node, package):
                found.update(a.name for a in node.names)
        deps[name] = {d for d in found if d in trees and d != name}
    out: list[str] = []
    state: dict[str, int] = {}

    def visit(name: str) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            raise FlattenError(f"import cycle through {name}")
        state[name] = 1
        for d in sorted(deps[name]):
            visit(d)
        state[name] = 2
        out.append(name)

    for name in sorted(trees):
        visit(name)
    return out


class _Renamer(ast.NodeTransformer):
    """Rename the names of one module (`mapping`) and drop its golf imports (see the module docstring)."""

    def __init__(self, module: str, mapping: dict[str, str], resolve, package: str):
        self.module, self.mapping, self.resolve, self.package = module, mapping, resolve, package
        self.scopes: list[str] = []  # enclosing "def" / "class" scopes; [] = module level

    def visit_Name(self, node: ast.Name):
        node.id = self.mapping.get(node.id, node.id)
        return node

    def visit_arg(self, node: ast.arg):
        if node.arg in self.mapping:
            raise FlattenError(f"{self.module}: parameter {node.arg!r} shadows a renamed global")
        self.generic_visit(node)
        return node

    def visit_Global(self, node: ast.Global):
        node.names = [self.mapping.get(n, n) for n in node.names]
        return node

    def _scope(self, node, kind: str):
        if not self.scopes and hasattr(node, "name"):
            node.name = self.mapping.get(node.name, node.name)
        elif getattr(node, "name", None) in self.mapping:
            raise FlattenError(f"{self.module}: a nested definition named like a renamed global")
        self.scopes.append(kind)
        if kind == "class":  # class-level assignments bind attributes (dataclass fields), never globals
            for item in node.body:
                targets = item.targets if isinstance(item, ast.Assign) else [getattr(item, "target", None)]
                if isinstance(item, (ast.Assign, ast.AnnAssign)) and any(
                        isinstance(t, ast.Name) and t.id in self.mapping for t in targets):
                    raise FlattenError(f"{self.module}: class attribute named like a renamed global")
        self.generic_visit(node)
        self.scopes.pop()
        return node

    def visit_FunctionDef(self, node):
        return self._scope(node, "def")

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Lambda(self, node):
        return self._scope(node, "def")

    def visit_ClassDef(self, node):
        return self._scope(node, "class")

    def visit_ExceptHandler(self, node: ast.ExceptHandler):
        if node.name in self.mapping:
            raise FlattenError(f"{self.module}: `except ... as {node.name}` binds a renamed global")
        self.generic_visit(node)
        return node

    def _external(self, node: ast.Import | ast.ImportFrom):
        if self.scopes and any((a.asname or a.name.split(".")[0]) in self.mapping for a in node.names):
            raise FlattenError(f"{self.module}: a local import binds a renamed global")
        return node

    def visit_ImportFrom(self, node: ast.ImportFrom):
        if not golf_import(node, self.package):
            return self._external(node)
        if not self.scopes:
            return None  # module level: the names are bound in the flat namespace (renamed through `mapping`)
        pairs = []
        for a in node.names:
            target = self.resolve(node.module, a.name)
            if target is None:
                return node  # a module this config never runs: the import fails as it would when packaged
            local = a.asname or a.name
            if local in self.mapping:  # its uses are renamed already: fine when it is that same global
                if self.mapping[local] != target:
                    raise FlattenError(f"{self.module}: a local import binds {local!r}, a renamed global")
                continue
            if local != target:
                pairs.append((local, target))
        return [ast.copy_location(ast.Assign(targets=[ast.Name(b, ast.Store())], value=ast.Name(t, ast.Load())),
                                  node) for b, t in pairs] or None

    def visit_Import(self, node: ast.Import):
        if not golf_import(node, self.package):
            return self._external(node)
        if not self.scopes:
            return None  # `import pkg.mod` at module level: the module's code runs in place
        raise FlattenError(f"{self.module}: a function imports a golf module as a module object")


def flatten(sources: dict[str, str], package: str) -> tuple[str, dict[str, dict[str, str]]]:
    """(one module's source, module -> {top-level name it binds or imports -> its name in the flat source})
    from `sources` (module name -> source, golf modules spelled `package.x`, each with
    `from __future__ import annotations`). Raises FlattenError."""
    trees = {name: ast.parse(src) for name, src in sources.items()}
    order = _order(trees, package)
    bindings = {name: _top_level_bindings(trees[name], package) for name in order}
    externals: dict[str, str] = {}
    for name in order:
        for local, target in bindings[name][1].items():
            if externals.setdefault(local, target) != target:
                raise FlattenError(f"{name}: {local!r} imports {target}, elsewhere {externals[local]}")
    taken = set(externals) | set(dir(builtins))  # a global may not shadow a builtin another module uses
    flat: dict[str, dict[str, str]] = {}
    for name in order:
        flat[name] = {}
        suffix = name.removeprefix(package + ".").replace(".", "_") or "pkg"
        for local in sorted(bindings[name][0]):
            new = local if local not in taken else f"{local}_{suffix}"
            if new in taken:
                raise FlattenError(f"{name}: cannot give {local!r} a unique name")
            taken.add(new)
            flat[name][local] = new

    imports: dict[str, dict[str, tuple[str, str]]] = {  # module -> local name -> (module, name) it imports
        name: {a.asname or a.name: (node.module, a.name) for node in _module_level(trees[name])
               if isinstance(node, ast.ImportFrom) and golf_import(node, package) for a in node.names}
        for name in order}

    def resolve(module: str, attr: str, seen: tuple = ()) -> str | None:
        """The flat name of `module.attr` (following re-exports), or None when it is not bundled."""
        if f"{module}.{attr}" in trees:
            raise FlattenError(f"`from {module} import {attr}` imports a module; import its names instead")
        if module not in trees or (module, attr) in seen:
            return None
        if attr in flat[module]:
            return flat[module][attr]
        if attr in imports[module]:
            return resolve(*imports[module][attr], (*seen, (module, attr)))
        return None

    parts = []
    visible: dict[str, dict[str, str]] = {}
    packages = {p for m in trees for p in _parents(m)}
    for name in order:
        resolved = {local: resolve(*src) for local, src in imports[name].items()}
        visible[name] = {**flat[name], **resolved}
        mapping = {k: v for k, v in flat[name].items() if k != v}
        for local, target in resolved.items():  # the local name becomes the source's flat name
            if target is None:
                raise FlattenError(f"{name}: imports {'.'.join(imports[name][local])}, which is not bundled")
            if local != target:
                mapping[local] = target
        tree = _fill_empty_blocks(_Renamer(name, mapping, resolve, package).visit(trees[name]))
        tree.body = [n for n in tree.body if not (isinstance(n, ast.ImportFrom) and n.module == "__future__")]
        parts.append(f"#@{name} {int(name in packages)}\n" + ast.unparse(ast.fix_missing_locations(tree)))
    strings, imported, attrs, loggers = set(), set(), set(), set()
    for tree in trees.values():  # one walk of the renamed trees (no re-parse of the joined source)
        for n in walk(tree):  # breadth first: a getLogger call is seen before its argument
            if isinstance(n, ast.Call) and getattr(n.func, "attr", "") == "getLogger":
                loggers.update(id(a) for a in n.args)
            elif isinstance(n, ast.Constant) and isinstance(n.value, str):
                strings.add(n.value)
                if id(n) not in loggers:  # logger names spell module names too, but never import them
                    imported.add(n.value)
            elif isinstance(n, ast.Attribute):
                attrs.add(n.attr)
    for name in order:
        for local, new in flat[name].items():
            if local != new and local in strings:
                raise FlattenError(f"{name}: {local!r} is renamed but also spelled as a string")
    named = sorted(m for m in trees if m in imported)
    body = "\n".join(parts)
    return "from __future__ import annotations\n" + body + "\n" + _namespaces(named, flat, attrs), visible


def _fill_empty_blocks(tree: ast.Module) -> ast.Module:
    """`pass` in every block the removed imports left empty (`if TYPE_CHECKING:` / a function that only imported)."""
    for node in walk(tree):
        if not isinstance(node, ast.Module) and isinstance(getattr(node, "body", None), list) and not node.body:
            node.body.append(ast.Pass())
    return tree


def _namespaces(named: list[str], flat: dict[str, dict[str, str]], attrs: set[str]) -> str:
    """sys.modules entries for the modules the program names in strings (importlib.import_module tables),
    holding the attributes read from them anywhere (`<module>.score`, `.train_loader`)."""
    lines = []
    for name in named:
        fields = ", ".join(f"{k}={v}" for k, v in sorted(flat[name].items()) if k in attrs)
        lines.append(f"_ns({name!r}{', ' + fields if fields else ''})")
    if not lines:
        return ""
    return ("import sys as _sys, types as _types\n\ndef _ns(name, **attrs):\n"
            "    module = _types.ModuleType(name)\n    module.__dict__.update(attrs)\n"
            "    _sys.modules[name] = module\n" + "\n".join(lines) + "\n")
