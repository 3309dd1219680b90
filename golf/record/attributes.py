"""Constant instance attributes of the flat program: `self.gate = None` is a constant of every method of its class.

After config folding (golf.record.specialize) the one config's constructors set many option slots to the same
literal whatever happens: `self.gate = None`, `self.smear = None`, `self.activation = 'relu2'` once the branches
that built the option are gone. Their reads (`if self.gate is not None: ...`) still decide at run time, keeping
the option's call sites and the code only they reach. This pass replaces such a read by the literal, so the
simplifier (golf.record.specialize.simplify) decides the branch and the shaker drops what it guarded.

An attribute `a` of a top-level class K is folded when all of these hold, so Python's semantics are kept exactly:
- K's own `__init__` (its receiver never rebound) sets `self.a = <constant>` (None, bool, int, float, str) in a
  statement directly in its body (not in a branch, loop, `with` or `try`) and has no `return`, so every instance
  made by K's constructor has it;
- every store of an attribute named `a` anywhere in the program (any receiver, `del` included) is a plain
  `x.a = <the same constant>`: nothing can ever change it, on any object;
- no class body in the program binds `a` (no field, class attribute or method of that name), no string in the
  program spells `a` (getattr, setattr, register_buffer, module tables), no call passes a keyword `a` (an
  external constructor could set it from keywords), and `a` is no attribute of the external base classes golf's
  classes extend (torch.nn.Module, torch.optim.Optimizer, Exception, object), which might set it themselves;
- K's bases are `object`, `nn.Module` / `torch.nn.Module` or `torch.optim.Optimizer`, and no class in the program
  subclasses K (a subclass instance might skip K's `__init__`);
- the program never calls `setattr` with a computed name;
- the read is `self.a` in a method defined in K's body, `self` being the method's first parameter, never rebound
  in the method and no nested scope's parameter or target; and it is not called, subscripted or read an
  attribute of (`None(...)` compiles with a SyntaxWarning).
"""

from __future__ import annotations

import ast
from functools import cache

from golf.record.constants import SCOPES, bound_names
from golf.record.shake import decorator_name, method_receiver
from golf.record.trees import walk

_CONSTANTS = (type(None), bool, int, float, str)
_BASES = frozenset({"nn.Module", "torch.nn.Module", "torch.optim.Optimizer"})


@cache
def _external_attributes() -> frozenset[str]:
    """Attributes the external bases define on their classes or set on their instances."""
    import torch

    module = torch.nn.Module()
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    names = set(dir(module)) | set(vars(module)) | set(dir(optimizer)) | set(vars(optimizer))
    return frozenset(names | set(dir(Exception())) | set(dir(object())))


def _key(node: ast.expr | None):
    if isinstance(node, ast.Constant) and isinstance(node.value, _CONSTANTS):
        return (type(node.value), node.value)
    return None


def _self_store(stmt: ast.stmt, receiver: str) -> tuple[str, object] | None:
    """(attribute, constant key) of a statement `receiver.a = <constant>`, else None."""
    if (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(t := stmt.targets[0], ast.Attribute)
            and isinstance(t.value, ast.Name) and t.value.id == receiver and (key := _key(stmt.value)) is not None):
        return t.attr, key
    return None


def _targets(node: ast.AST) -> list[ast.expr]:
    """The expressions a statement (or comprehension) stores to or deletes."""
    if isinstance(node, ast.Assign):
        return node.targets
    if isinstance(node, (ast.AugAssign, ast.AnnAssign, ast.For, ast.AsyncFor, ast.comprehension)):
        return [node.target]
    if isinstance(node, ast.Delete):
        return node.targets
    if isinstance(node, (ast.With, ast.AsyncWith)):
        return [i.optional_vars for i in node.items if i.optional_vars is not None]
    return []


def _instance_receiver(fn: ast.AST) -> str | None:
    """golf.record.shake.method_receiver (the first parameter, never rebound), but not a classmethod's `cls`:
    only an instance carries the slot."""
    if isinstance(fn, ast.FunctionDef) and any(decorator_name(d) == "classmethod" for d in fn.decorator_list):
        return None
    return method_receiver(fn)


class _Index:
    """One walk of the program: every attribute store (name -> constant keys, None for a non-constant store),
    names bound in class bodies, strings, keyword names and the classes named as bases."""

    def __init__(self, trees: list[ast.Module]):
        self.stores: dict[str, set] = {}
        self.blocked: set[str] = set()
        self.bases: set[str] = set()
        self.dynamic = False
        """The program calls setattr with a computed name: any attribute may be set anywhere."""
        for tree in trees:
            for node in walk(tree):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    self.blocked.add(node.value)
                elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setattr":
                    self.dynamic |= not (len(node.args) > 1 and isinstance(node.args[1], ast.Constant))
                elif isinstance(node, ast.keyword) and node.arg:
                    self.blocked.add(node.arg)
                elif isinstance(node, ast.ClassDef):
                    self.bases |= {b.id for b in node.bases if isinstance(b, ast.Name)}
                    for item in node.body:
                        self.blocked |= {item.name} if isinstance(item, SCOPES) else bound_names(item)
                elif isinstance(node, ast.Attribute) and not isinstance(node.ctx, ast.Load):
                    self.stores.setdefault(node.attr, set())  # filled by _record; empty: a store it missed
                if targets := _targets(node):
                    self._record(node, targets)

    def _record(self, node: ast.AST, targets: list[ast.expr]) -> None:
        simple = isinstance(node, ast.Assign) and len(targets) == 1 and isinstance(targets[0], ast.Attribute)
        for target in targets:
            for t in walk(target):
                if isinstance(t, ast.Attribute) and not isinstance(t.ctx, ast.Load):
                    self.stores.setdefault(t.attr, set()).add(_key(node.value) if simple else None)

    def constant(self, attr: str) -> object | None:
        """The one constant every store of `attr` writes, or None when it may hold anything else."""
        keys = self.stores.get(attr, set())
        if len(keys) != 1 or None in keys or attr in self.blocked or attr in _external_attributes():
            return None
        return next(iter(keys))


def _constants_of(cls: ast.ClassDef, index: _Index) -> dict[str, object]:
    """attribute -> constant key for the attributes of `cls` this pass may fold (module docstring)."""
    if cls.name in index.bases or cls.decorator_list or cls.keywords:
        return {}
    if not all(ast.unparse(b) in _BASES for b in cls.bases):
        return {}
    init = next((f for f in cls.body if isinstance(f, ast.FunctionDef) and f.name == "__init__"), None)
    receiver = _instance_receiver(init) if init is not None and not init.decorator_list else None
    if receiver is None or any(isinstance(n, ast.Return) for n in walk(init)):
        return {}  # an early return could leave an instance without the slot
    out = {}
    for stmt in init.body:
        if (store := _self_store(stmt, receiver)) is not None and index.constant(store[0]) == store[1]:
            out[store[0]] = store[1]
    return out


def _reads(fn: ast.FunctionDef, receiver: str, attrs: dict[str, object]) -> list[ast.Attribute]:
    """The `receiver.a` loads of `fn` for `a` in `attrs` (`receiver` as method_receiver gives it: never rebound)."""
    return [n for n in walk(fn) if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Load)
            and n.attr in attrs and isinstance(n.value, ast.Name) and n.value.id == receiver]


class _Replace(ast.NodeTransformer):
    def __init__(self, values: dict[int, object]):
        self.values = values

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        if id(node) in self.values:
            return ast.copy_location(ast.Constant(self.values[id(node)][1]), node)
        return self.generic_visit(node)


def fold_attributes(trees: list[ast.Module]) -> set[int]:
    """Replace the reads of constant instance attributes in the flat program's sections (`trees`, edited in
    place; the module docstring says which). Returns the indexes of the trees that changed."""
    index = _Index(trees)
    if index.dynamic:
        return set()
    changed: set[int] = set()
    for i, tree in enumerate(trees):
        # a literal in callee, receiver or subscripted position (`None(...)`, `None.x`) would compile with a
        # SyntaxWarning: those reads stay (they sit in branches the folded tests remove anyway)
        operands = {id(c) for n in walk(tree) for c in (
            [n.func] if isinstance(n, ast.Call) else [n.value] if isinstance(n, (ast.Attribute, ast.Subscript)) else [])}
        values: dict[int, object] = {}
        for cls in tree.body:
            if not isinstance(cls, ast.ClassDef) or not (attrs := _constants_of(cls, index)):
                continue
            for fn in cls.body:
                if (receiver := _instance_receiver(fn)) is not None:
                    values |= {id(n): attrs[n.attr] for n in _reads(fn, receiver, attrs) if id(n) not in operands}
        if values:
            _Replace(values).visit(tree)
            changed.add(i)
    return changed
