"""Config specialisation of the submission's modules: fold the baked config's values into the code.

A generated train_gpt.py runs one config. golf's core reads its options as `cfg.<field>` / `self.cfg.<field>` /
`cfg.<group>.<field>`; with the config baked in, those reads are constants, and every branch for an option the
config does not use is dead. This pass replaces such reads by their value and removes the dead branches, so the
tree shaker (golf.record.shake) can then drop the option classes and modules only those branches used.

A read is folded only when all of these hold (anything else stays a read of the config object at run time):
- the receiver is a name spelled with `cfg` (`cfg`, `run_cfg`, `eval_cfg`, ...) or `<x>.cfg`, and the attribute
  path after it (`a`, `a.b`, ...) names a scalar (bool, int, float, str, None) at exactly one place of the baked
  config tree (so `cfg.bits`, present in every quantization group, is never folded); or the receiver is a
  function parameter annotated with a config section class that sits at one place of the tree
  (`def f(quant: QuantConfig)`: `quant.codec` is config['quant']['codec']) and never rebound in that function;
- no code in the bundle can change that field at run time: it is not an official environment override
  (golf.submission.ENV_OVERRIDES), not a keyword of any `replace(...)` call (the run-only settings the submission
  and the budget fitter change), and never assigned as an attribute;
- the read is a load (not an assignment target).

Simplification after folding (Python semantics exactly): comparisons (and the leading constant pairs of a
chain), `not`, `is None`, `and`/`or` with constant operands (by value, and by truth where only truth is used:
golf.record.folds), `a if const else b`, and `if const:` / `elif` blocks replaced by the branch taken (`pass`
when empty); statements after a `return`/`raise`/`continue`/`break` in the same block are unreachable and
dropped; locals left holding a constant (`need_loss = False`) are propagated into their reads
(golf.record.constants) and the simplifier runs again.
Modules that change are re-emitted with `ast.unparse` (comments dropped, docstrings kept); others are untouched.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import math

from golf.record.constants import ReplaceNames, propagate_constants
from golf.record.derived import UNFOLDABLE, evaluate, member, section_at
from golf.record.folds import constant_prefix, fold_test, is_constant
from golf.record.trees import walk

_SCALARS = (bool, int, float, str, type(None))


def config_paths(config: dict) -> dict[tuple[str, ...], list[tuple[tuple[str, ...], object]]]:
    """Every attribute-path suffix of the config tree -> [(full path, scalar value)] of the places it names.

    ('model', 'vocab_size') and ('vocab_size',) both map to [(('model', 'vocab_size'), 1024)] when vocab_size is
    only under model. Lists and non-finite floats are recorded as _UNFOLDABLE (the path exists, never folded)."""
    out: dict[tuple[str, ...], list[tuple[tuple[str, ...], object]]] = {}

    def walk(node: dict, path: tuple[str, ...]) -> None:
        for key, value in node.items():
            full = (*path, key)
            if isinstance(value, dict):
                walk(value, full)
                continue
            if not isinstance(value, _SCALARS) or (isinstance(value, float) and not math.isfinite(value)):
                value = _UNFOLDABLE
            for i in range(len(full)):
                out.setdefault(full[i:], []).append((full, value))

    walk(config, ())
    return out


_UNFOLDABLE = object()


def _call_name(node: ast.Call) -> str:
    return node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")


def mutable_fields(sources: dict[str, str]) -> tuple[set[str], set[str]]:
    """(leaves, groups) code can change at run time: keywords of replace(...) calls and attribute assignments
    are leaves; a keyword whose value is not itself a replace(...) call (a fresh object, a variable) may change
    every field below it, so it is a group too."""
    leaves: set[str] = set()
    groups: set[str] = set()
    for src in sources.values():
        for node in walk(ast.parse(src)):
            if isinstance(node, ast.Call) and _call_name(node) == "replace":
                for k in node.keywords:
                    if k.arg:
                        leaves.add(k.arg)
                        if not (isinstance(k.value, ast.Call) and _call_name(k.value) == "replace"):
                            groups.add(k.arg)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and _is_config_read(node):
                leaves.add(node.attr)  # cfg.x = ... (never done today; an object's own self.x is not config)
    return leaves, groups


def _chain(node: ast.Attribute) -> tuple[ast.expr, list[str]]:
    parts: list[str] = []
    cur: ast.expr = node
    while isinstance(cur, ast.Attribute):
        parts.append(cur.attr)
        cur = cur.value
    parts.reverse()
    return cur, parts


def _config_path(node: ast.Attribute, typed: dict[str, tuple[str, ...]] | None = None) -> list[str] | None:
    """The attribute path read from a config receiver (`cfg.a.b` / `run_cfg.a` / `self.cfg.a`), else None.
    `typed`: parameters annotated with a config section class -> that section's path (`quant.codec` in
    `def f(quant: QuantConfig)` is ['quant', 'codec'])."""
    base, parts = _chain(node)
    if isinstance(base, ast.Name) and typed and base.id in typed:
        return [*typed[base.id], *parts]
    if isinstance(base, ast.Name) and "cfg" in base.id:
        return parts
    if isinstance(base, ast.Name) and base.id == "self" and parts[:1] == ["cfg"]:
        return parts[1:]
    return None


def _is_config_read(node: ast.Attribute) -> bool:
    return bool(_config_path(node))


def _annotation_name(node: ast.expr | None) -> str:
    return node.id if isinstance(node, ast.Name) else ""


class _Folder(ast.NodeTransformer):
    def __init__(self, paths: dict, leaves: set[str], groups: set[str], sections: dict[str, tuple[str, ...]],
                 derived: _Derived | None = None):
        self.paths, self.leaves, self.groups, self.changed = paths, leaves, groups, False
        self.sections = sections
        self.typed: dict[str, tuple[str, ...]] = {}
        self.derived = derived

    def _section(self, node: ast.expr):
        """(typed section object, its path) that the receiver expression `node` names, else None."""
        if self.derived is None or not isinstance(node, (ast.Name, ast.Attribute)):
            return None
        base, parts = _chain(node) if isinstance(node, ast.Attribute) else (node, [])
        if isinstance(base, ast.Name) and base.id in self.typed:
            path = (*self.typed[base.id], *parts)
        else:
            suffix = _config_path(node) if isinstance(node, ast.Attribute) else None
            found = self.derived.suffixes.get(tuple(suffix)) if suffix else None
            if not found or len(found) != 1:
                return None
            path = found[0]
        obj = section_at(self.derived.root, path)
        return None if obj is None else (obj, path)

    def _fold_derived(self, fn, sections: list, node: ast.AST):
        value = evaluate(fn, sections, self.leaves, self.groups)
        if value is UNFOLDABLE:
            return None
        self.changed = True
        return ast.copy_location(ast.Constant(value), node)

    def visit_Call(self, node: ast.Call):
        if self.derived is not None and not node.keywords:
            if isinstance(node.func, ast.Attribute) and not node.args:  # quant.uses_gptq()
                found = self._section(node.func.value)
                kind = found and member(found[0], node.func.attr)
                if kind and kind[0] == "method":
                    new = self._fold_derived(kind[1], [found], node)
                    if new is not None:
                        return new
            elif isinstance(node.func, ast.Name) and node.func.id in self.derived.functions:  # calibrates(q, b)
                found = [self._section(a) for a in node.args]
                if found and all(found):
                    new = self._fold_derived(self.derived.functions[node.func.id], found, node)
                    if new is not None:
                        return new
        self.generic_visit(node)
        return node

    def _value(self, node: ast.Attribute):
        path = _config_path(node, self.typed)
        found = self.paths.get(tuple(path)) if path else None
        if found is None or len(found) != 1:
            return _UNFOLDABLE
        full, value = found[0]
        if full[-1] in self.leaves or set(full[:-1]) & self.groups:
            return _UNFOLDABLE
        return value

    def visit_FunctionDef(self, node):
        # A parameter annotated with a config section class reads that section (the names of an enclosing
        # function stay visible in nested ones unless rebound as a parameter there).
        outer = self.typed
        args = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
        rebound = {n.id for n in walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        inner = {a.arg: self.sections[_annotation_name(a.annotation)] for a in args
                 if _annotation_name(a.annotation) in self.sections and a.arg not in rebound}
        self.typed = {**{k: v for k, v in outer.items() if k not in {a.arg for a in args}}, **inner}
        try:
            self.generic_visit(node)
        finally:
            self.typed = outer
        return node

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Attribute(self, node: ast.Attribute):
        if isinstance(node.ctx, ast.Load):
            value = self._value(node)
            if value is not _UNFOLDABLE:
                self.changed = True
                return ast.copy_location(ast.Constant(value), node)
            found = self._section(node.value)  # model.head_dim: a property of a config section
            kind = found and member(found[0], node.attr)
            if kind and kind[0] == "property":
                new = self._fold_derived(kind[1], [found], node)
                if new is not None:
                    return new
        self.generic_visit(node)
        return node


class _Derived:
    """What derived-value folding needs: the typed baked config, section path suffixes -> full paths
    (`section_suffixes`), and the config modules' functions visible in the module being folded."""

    def __init__(self, root: object, suffixes: dict[tuple[str, ...], list[tuple[str, ...]]], functions: dict):
        self.root, self.suffixes, self.functions = root, suffixes, functions


def section_suffixes(config: dict) -> dict[tuple[str, ...], list[tuple[str, ...]]]:
    """Every attribute-path suffix of a config section (a dict node) -> the full paths of the sections it names
    (the sections' twin of `config_paths`)."""
    out: dict[tuple[str, ...], list[tuple[str, ...]]] = {}

    def walk(node: dict, path: tuple[str, ...]) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                full = (*path, key)
                for i in range(len(full)):
                    out.setdefault(full[i:], []).append(full)
                walk(value, full)

    walk(config, ())
    return out


class _Simplifier(ast.NodeTransformer):
    def __init__(self):
        self.changed = False

    def _done(self, new: ast.AST, old: ast.AST) -> ast.AST:
        self.changed = True
        return ast.copy_location(new, old)

    def visit_UnaryOp(self, node):
        self.generic_visit(node)
        if isinstance(node.op, ast.Not):
            node.operand = self._test(node.operand)
            if is_constant(node.operand):
                return self._done(ast.Constant(not node.operand.value), node)
        return node

    def _test(self, test: ast.expr) -> ast.expr:
        """`test`, an expression whose truth alone is used, folded (golf.record.folds.fold_test)."""
        folded = fold_test(test)
        self.changed |= folded is not test
        return folded

    def visit_While(self, node):
        self.generic_visit(node)
        node.test = self._test(node.test)
        return node

    def visit_Assert(self, node):
        self.generic_visit(node)
        node.test = self._test(node.test)
        return node

    def visit_comprehension(self, node):
        self.generic_visit(node)
        node.ifs = [self._test(test) for test in node.ifs]
        return node

    def visit_Compare(self, node):
        self.generic_visit(node)
        folded = constant_prefix(node)
        return node if folded is node else self._done(folded, node)

    def visit_BoolOp(self, node):
        self.generic_visit(node)
        values = list(node.values)
        is_and = isinstance(node.op, ast.And)
        kept: list[ast.expr] = []
        for i, v in enumerate(values):
            last = i == len(values) - 1
            if is_constant(v) and not last:
                if bool(v.value) != is_and:  # `x or True...`/`x and False...`: this operand is the result
                    kept.append(v)
                    break
                continue  # neutral operand: skipped (it is never the result when not last)
            kept.append(v)
        if len(kept) == len(values):
            return node
        self.changed = True
        if len(kept) == 1:
            return kept[0]
        return ast.copy_location(ast.BoolOp(op=node.op, values=kept), node)

    def visit_IfExp(self, node):
        self.generic_visit(node)
        node.test = self._test(node.test)
        if is_constant(node.test):
            return self._done(node.body if node.test.value else node.orelse, node)
        return node

    def generic_visit(self, node):
        super().generic_visit(node)
        for field in ("body", "orelse", "finalbody"):
            block = getattr(node, field, None)
            if isinstance(block, list):
                for i, stmt in enumerate(block[:-1]):
                    if isinstance(stmt, (ast.Return, ast.Raise, ast.Continue, ast.Break)):
                        del block[i + 1:]  # unreachable after the branch taken was folded in
                        self.changed = True
                        break
        return node

    def visit_If(self, node):
        self.generic_visit(node)
        node.test = self._test(node.test)
        if not is_constant(node.test):
            return node
        self.changed = True
        taken = node.body if node.test.value else node.orelse
        return taken or ast.copy_location(ast.Pass(), node)


def specialize(sources: dict[str, str], config: dict, frozen_keys: set[str],
               sections: dict[str, tuple[str, ...]] | None = None, root: object | None = None,
               package: str = "_pg") -> dict[str, str]:
    """`sources` (module name -> source) with the baked `config`'s foldable reads folded and dead branches
    removed (see the module docstring). `frozen_keys`: dotted config keys that change at run time (the
    environment overrides); their last component is never folded. `sections`: config section class name ->
    its one path in the config tree (golf.record.prevalidated.section_paths), for typed receivers. `root`: the
    typed baked config, for derived values (golf.record.derived): properties and zero-argument methods of its
    sections, and the functions of golf's `*.config` modules called with sections."""
    paths = config_paths(config)
    leaves, groups = mutable_fields(sources)
    leaves |= {k.rsplit(".", 1)[-1] for k in frozen_keys}
    suffixes = section_suffixes(config) if root is not None else {}
    out: dict[str, str] = {}
    for name, src in sources.items():
        tree = ast.parse(src)
        derived = None if root is None else _Derived(root, suffixes, config_functions(tree, name, package))
        changed = _fold_type_checking(tree)
        if changed:
            tree = simplify(tree)
        while True:  # a decided branch may drop the rebinding that kept a typed receiver from folding
            folder = _Folder(paths, leaves, groups, sections or {}, derived)
            tree = folder.visit(tree)
            if not folder.changed:
                break
            changed = True
            tree = simplify(tree)
        out[name] = ast.unparse(ast.fix_missing_locations(tree)) + "\n" if changed else src
    return out


def _fold_type_checking(tree: ast.Module) -> bool:
    """`typing.TYPE_CHECKING` is False at run time: its reads become False (so `if TYPE_CHECKING:` blocks, the
    annotation-only imports of option modules, are dropped) when the module imports it from typing under its own
    name and binds it nowhere else. Returns whether anything changed."""
    imported = any(isinstance(n, ast.ImportFrom) and n.module == "typing" and n.level == 0
                   and any(a.name == "TYPE_CHECKING" and a.asname is None for a in n.names) for n in tree.body)
    names = [n for n in walk(tree) if isinstance(n, ast.Name) and n.id == "TYPE_CHECKING"]
    if not imported or not names or any(not isinstance(n.ctx, ast.Load) for n in names):
        return False
    ReplaceNames({"TYPE_CHECKING": ast.Constant(False)}).visit(tree)
    return True


def simplify(tree: ast.Module) -> ast.Module:
    """Constant expressions and dead branches folded, constant locals propagated, until nothing changes."""
    while True:
        simplifier = _Simplifier()
        tree = simplifier.visit(tree)
        if not simplifier.changed and not propagate_constants(tree):
            return tree


def config_functions(tree: ast.Module, module: str, package: str) -> dict:
    """Functions of golf's `*.config` modules that `module` can call by name (imported anywhere in it, or its
    own when it is a config module) -> the real golf function."""
    wanted: dict[str, tuple[str, str]] = {}
    if module.endswith(".config"):
        wanted.update({n.name: (module, n.name) for n in tree.body if isinstance(n, ast.FunctionDef)})
    for node in walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(package + ".") \
                and node.module.endswith(".config"):
            wanted.update({a.asname or a.name: (node.module, a.name) for a in node.names})
    out = {}
    for local, (mod, attr) in wanted.items():
        fn = getattr(importlib.import_module("golf" + mod[len(package):]), attr, None)
        if inspect.isfunction(fn):
            out[local] = fn
    return out
