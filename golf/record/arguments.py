"""Constant arguments of the flat program: a parameter every call passes the same constant becomes that constant.

After config folding (golf.record.specialize) and flattening (golf.record.flatten), the one config's program
calls many of golf's functions with the same literal everywhere: `build_train_loader('sequential', ...,
vocab_size=1024)`, `load_state_dict_from_artifact(path, False)`, `Muon(..., weight_decay=0.0)`. Such a parameter
is a constant of the program. This pass removes it from the signature and from every call, binds it as a local at
the top of the body and lets golf.record.constants propagate it, so the simplifier decides the branches it
guarded (the other loader kinds, the structural artifact checks, Muon's range checks) and the shaker drops what
only those branches used. Also:
- a parameter the body never reads is removed when every call passes it something that runs no code (a
  constant, a name, attributes of a name);
- a function whose body is `return <constant>` (`calibrates_in_training` once its config folded) is replaced by
  that constant at calls whose arguments run no code;
- a constant-key read of a module-level table of constants and names (`NS_COEFFICIENTS['jordan']`) is replaced by
  the entry (`fold_tables`), so the other entries (the Polar Express coefficients) can be shaken;
- a module-level name bound once to a short constant (`PERGROUP_CODEC = 'pergroup'`) is replaced at its reads
  (`fold_globals`), so `codec == PERGROUP_CODEC` decides once the codec is a constant.

A function qualifies only when nothing else can call it, so every call is seen:
- it is a top-level `def` of the flat program, bound once at module level, undecorated or with pure decorators
  only (golf.record.shake's list), and no function, lambda or comprehension binds its name; or it is the own
  `__init__` of such a top-level class that only calls by name construct (no dataclass, `__new__`, classmethod,
  `type(self)` or `__class__`, and no subclass: naming it as a base is a use);
- its name is read only as the callee of calls, as the class an `isinstance`/`issubclass` call tests against
  (`isinstance(opt, Muon)`), or in parameter annotations (never evaluated: every module has
  `from __future__ import annotations`); never passed elsewhere, stored, tabled in a `sys.modules` namespace, or spelled
  as a string other than in a comparison (`type(o).__name__ == 'Muon'`); no call uses `*args` or `**kwargs`.
A parameter is folded when it is a plain positional or keyword-only one (not `*args`/`**kwargs`), every call
passes it (or leaves its default) as the same constant (same type and value), and the function never rebinds it,
shadows it in a nested scope, or reads a global of that name in a default or decorator. Python's semantics are
kept exactly.
"""

from __future__ import annotations

import ast
import re

from golf.record.constants import SCOPES, ReplaceNames, bound_names, own_nodes
from golf.record.shake import decorator_name, removable_def
from golf.record.trees import walk

_MARK = re.compile(r"(?m)^(?=#@)")


def _key(node: ast.expr | None):
    """A hashable identity of a constant argument (type included: 1, 1.0 and True differ), else None."""
    return (type(node.value), node.value) if isinstance(node, ast.Constant) else None


def _params(fn: ast.FunctionDef, skip: int) -> list[tuple[str, int | None, ast.expr | None, int | None]]:
    """(name, index among a call's positional arguments or None when keyword-only, default, index in the def's
    positional parameters) of each plain parameter after the first `skip` (1: an `__init__`'s self)."""
    a = fn.args
    pos = [*a.posonlyargs, *a.args]
    defaults = [None] * (len(pos) - len(a.defaults)) + list(a.defaults)
    return ([(p.arg, i - skip, d, i) for i, (p, d) in enumerate(zip(pos, defaults, strict=True)) if i >= skip]
            + [(p.arg, None, d, None) for p, d in zip(a.kwonlyargs, a.kw_defaults, strict=True)])


def _passed(call: ast.Call, name: str, index: int | None, default: ast.expr | None) -> ast.expr | None:
    if index is not None and index < len(call.args):
        return call.args[index]
    return next((k.value for k in call.keywords if k.arg == name), default)


def _init_of(cls: ast.ClassDef) -> ast.FunctionDef | None:
    """The class's own `__init__` when its instances can be made only by calling the class by name: not a
    dataclass or named tuple (their __init__ is generated), no `__new__`, no classmethod (`cls(...)`), no
    `type(self)(...)` / `self.__class__` (`type(o)` of a name that is no method's receiver is allowed)."""
    if cls.decorator_list or cls.keywords:
        return None
    init = None
    for item in cls.body:
        if isinstance(item, ast.FunctionDef):
            if item.name == "__new__" or any(decorator_name(d) == "classmethod" for d in item.decorator_list):
                return None
            if item.name == "__init__" and not item.decorator_list:
                init = item
        elif isinstance(item, (ast.AnnAssign, ast.AsyncFunctionDef)):
            return None
    # `type(self)(...)` makes an instance without naming the class; `type(o)` of another object is harmless
    receivers = {first[0].arg for item in cls.body if isinstance(item, ast.FunctionDef)
                 if (first := [*item.args.posonlyargs, *item.args.args][:1])}
    for n in walk(cls):
        if (isinstance(n, ast.Attribute) and n.attr == "__class__") or (
                isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "type"
                and not (len(n.args) == 1 and isinstance(n.args[0], ast.Name) and n.args[0].id not in receivers)):
            return None
    return init


class _Program:
    """One round's index of the flat program's sections (`trees`), built by one walk so each fold need not walk
    again. Where names are bound: `module` (name -> how many module-level statements bind it), `local` (names
    some function, lambda or comprehension binds: a read there may be a local), `in_classes` (names a class body
    binds at its own level, which its body's reads see first). What is where: `owner` (node id -> section),
    `calls`, `names`, `strings` (str constants), `subscripts` (subscript reads), `compares`, and the ids of `callees`,
    `compared` (comparison operands), `subscripted` (what subscript reads read), `class_tests` (the classes
    `isinstance`/`issubclass` test against: read, never called or stored) and `unevaluated` (parameter and
    return annotations: never evaluated, every module has `from __future__ import annotations`); `dynamic`:
    the program calls globals() or setattr. Folding keeps the index conservative: it only turns parameters into
    locals of the same name, drops parameters, and replaces nodes (a replaced node's entries point nowhere)."""

    def __init__(self, trees: list[ast.Module]):
        self.module: dict[str, int] = {}
        self.local: set[str] = set()
        self.in_classes: set[str] = set()
        for tree in trees:
            for node in tree.body:
                names = [node.name] if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) \
                    else bound_names(node)
                for name in names:
                    self.module[name] = self.module.get(name, 0) + 1
            self._scopes(tree)
        self.owner: dict[int, int] = {}
        self.calls: list[ast.Call] = []
        self.names: list[ast.Name] = []
        self.strings: list[ast.Constant] = []
        self.subscripts: list[ast.Subscript] = []
        self.compares: list[ast.Compare] = []
        self.callees: set[int] = set()
        self.compared: set[int] = set()
        self.subscripted: set[int] = set()
        self.unevaluated: set[int] = set()
        self.class_tests: set[int] = set()
        self.dynamic = False
        for i, tree in enumerate(trees):
            for node in walk(tree):
                self.owner[id(node)] = i
                if isinstance(node, ast.Call):
                    self.calls.append(node)
                    self.callees.add(id(node.func))
                    self.dynamic |= getattr(node.func, "id", "") in ("globals", "setattr")
                    if getattr(node.func, "id", "") in ("isinstance", "issubclass") and len(node.args) == 2:
                        kind = node.args[1]
                        self.class_tests |= {id(k) for k in (kind.elts if isinstance(kind, ast.Tuple) else [kind])}
                elif isinstance(node, ast.Name):
                    self.names.append(node)
                elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                    self.strings.append(node)
                elif isinstance(node, ast.Compare):
                    self.compared |= {id(c) for c in (node.left, *node.comparators)}
                    self.compares.append(node)
                elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
                    self.subscripts.append(node)
                    self.subscripted.add(id(node.value))
                elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    a = node.args
                    annotations = [p.annotation for p in (*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg)
                                   if p is not None and p.annotation is not None]
                    self.unevaluated |= {id(n) for ann in [*annotations, node.returns] if ann is not None
                                         for n in walk(ann)}

    def _scopes(self, node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                for item in child.body:
                    if not isinstance(item, SCOPES):
                        self.in_classes |= bound_names(item)
                    elif not isinstance(item, ast.ClassDef):
                        self.in_classes.add(item.name)
                self._scopes(child)
            elif isinstance(child, SCOPES):  # its whole subtree at once: nested scopes bind locally too
                self.local |= bound_names(child) - {getattr(child, "name", None)}
                for inner in walk(child):
                    if isinstance(inner, ast.ClassDef):
                        self.in_classes |= bound_names(inner)
            else:
                self._scopes(child)


def _candidates(trees: list[ast.Module],
                program: _Program) -> dict[str, tuple[ast.FunctionDef, list[ast.Call], int]]:
    """Top-level functions (and classes, through their `__init__`) that only direct calls reach ->
    (the def, every call, how many leading parameters calls do not pass)."""
    defs: dict[str, tuple[ast.FunctionDef, int]] = {}
    for tree in trees:
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and removable_def(node):
                defs[node.name] = (node, 0)
            elif isinstance(node, ast.ClassDef) and (init := _init_of(node)) is not None:
                defs[node.name] = (init, 1)
    defs = {k: v for k, v in defs.items() if program.module.get(k) == 1 and k not in program.local}
    calls: dict[str, list[ast.Call]] = {k: [] for k in defs}
    escaped: set[str] = set()
    for node in program.calls:
        if isinstance(node.func, ast.Name) and node.func.id in defs:
            calls[node.func.id].append(node)
            if any(isinstance(a, ast.Starred) for a in node.args) or any(k.arg is None for k in node.keywords):
                escaped.add(node.func.id)
    tests_builtin = not ({"isinstance", "issubclass"} & (program.local | set(program.module)))
    escaped |= {n.id for n in program.names if n.id in defs and id(n) not in program.callees
                and id(n) not in program.unevaluated and not (tests_builtin and id(n) in program.class_tests)}
    # a string naming it may fetch it (getattr, import tables), unless it is only compared with
    # (`type(o).__name__ == 'Muon'`)
    escaped |= {c.value for c in program.strings if c.value in defs and id(c) not in program.compared}
    return {k: (defs[k][0], calls[k], defs[k][1]) for k in defs if k not in escaped and calls[k]}


def _foldable(fn: ast.FunctionDef, name: str) -> bool:
    """`name` is never rebound in `fn`, no nested scope binds it and no default or decorator reads a global of that
    name (so a binding at the top of the body reaches every read, and only those)."""
    stores = [n for n in own_nodes(fn) if isinstance(n, ast.Name) and n.id == name and not isinstance(n.ctx, ast.Load)]
    nested = [n for n in own_nodes(fn) if isinstance(n, SCOPES)]
    outer = [*fn.decorator_list, *fn.args.defaults, *(d for d in fn.args.kw_defaults if d)]  # read outside fn
    return (not stores and not any(name in bound_names(s) for s in nested)
            and not any(isinstance(n, ast.Name) and n.id == name for o in outer for n in walk(o)))


def _drop_parameter(fn: ast.FunctionDef, calls: list[ast.Call], name: str, index: int | None,
                    pindex: int | None) -> None:
    """Remove parameter `name` from the def and its argument from every call (arguments as `_params` gives)."""
    for call in calls:
        if index is not None and index < len(call.args):
            del call.args[index]
        else:
            call.keywords = [k for k in call.keywords if k.arg != name]
    a = fn.args
    if pindex is None:
        i = [p.arg for p in a.kwonlyargs].index(name)
        del a.kwonlyargs[i], a.kw_defaults[i]
        return
    first_default = len(a.posonlyargs) + len(a.args) - len(a.defaults)
    if pindex >= first_default:
        del a.defaults[pindex - first_default]
    if pindex < len(a.posonlyargs):
        del a.posonlyargs[pindex]
    else:
        del a.args[pindex - len(a.posonlyargs)]


def _bind_local(fn: ast.FunctionDef, name: str, value: ast.Constant) -> None:
    """`name = value` as the body's first statement (after the docstring)."""
    docstring = isinstance(fn.body[0], ast.Expr) and isinstance(fn.body[0].value, ast.Constant)
    start = 1 if docstring and len(fn.body) > 1 else 0
    # placed at column 0 of the first statement's line: before every read in the body (golf.record.constants
    # propagates only a binding that precedes all reads)
    line = fn.body[start].lineno
    binding = ast.Assign(targets=[ast.Name(name, ast.Store())], value=ast.Constant(value.value), lineno=line,
                         col_offset=0, end_lineno=line, end_col_offset=0)
    fn.body.insert(start, binding)


def _unread(fn: ast.FunctionDef, name: str) -> bool:
    return not any(isinstance(n, ast.Name) and n.id == name for n in walk(fn))


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


def fold_constants(trees: list[ast.Module], program: _Program | None = None) -> set[int]:
    """One round of every fold of this module over the flat program's sections (`trees`, edited in place):
    constant and unread arguments, constant-returning calls, table reads, global constants. `program`: the
    round's index of `trees` (built when not given). Returns the indexes of the trees that changed."""
    program = program or _Program(trees)
    return fold_arguments(trees, program) | fold_tables(trees, program) | fold_globals(trees, program)


def fold_arguments(trees: list[ast.Module], program: _Program | None = None) -> set[int]:
    """Fold the constant parameters and constant-returning calls of the flat program's modules (`trees`, edited
    in place; the module docstring says which). Returns the indexes of the trees that changed."""
    changed: set[int] = set()
    program = program or _Program(trees)
    owner = program.owner
    for fn, calls, skip in _candidates(trees, program).values():
        folded = False
        for name, index, default, pindex in reversed(_params(fn, skip)):  # last first: earlier indexes stay valid
            passed = [_passed(call, name, index, default) for call in calls]
            keys = {_key(p) for p in passed}
            if len(keys) == 1 and None not in keys and _foldable(fn, name):
                _drop_parameter(fn, calls, name, index, pindex)
                _bind_local(fn, name, passed[0])
            elif (_unread(fn, name) and all(p is not None and _inert(p) for p in passed)
                  and (default is None or _inert(default))):
                _drop_parameter(fn, calls, name, index, pindex)  # never read, and passing it runs no code
            else:
                continue
            folded = True
        if folded:
            changed |= {owner[id(fn)]} | {owner[id(c)] for c in calls}
        value = _returned_constant(fn) if not skip else None
        if value is not None:
            inert = {id(c): value for c in calls if all(_inert(a) for a in c.args)
                     and all(_inert(k.value) for k in c.keywords)}
            for i in {owner[k] for k in inert}:
                _ReplaceCalls(inert).visit(trees[i])
                changed.add(i)
    return changed


def _table(node: ast.stmt) -> tuple[str, dict] | None:
    """(name, {constant key: value}) of a module-level `NAME = {...}` whose keys are constants and values are
    constants or names."""
    if isinstance(node, ast.Assign) and len(node.targets) == 1:
        target, value = node.targets[0], node.value
    elif isinstance(node, ast.AnnAssign) and node.value is not None:
        target, value = node.target, node.value
    else:
        return None
    if not (isinstance(target, ast.Name) and isinstance(value, ast.Dict)):
        return None
    if not all(isinstance(k, ast.Constant) and isinstance(v, (ast.Constant, ast.Name))
               for k, v in zip(value.keys, value.values, strict=True)):
        return None
    return target.id, {_key(k): v for k, v in zip(value.keys, value.values, strict=True)}


def fold_tables(trees: list[ast.Module], program: _Program | None = None) -> set[int]:
    """`NS_COEFFICIENTS['jordan']` -> `NS5_COEFFS`: a constant-key read of a module-level table (`_table`) is
    replaced by the entry, so the tables' other entries (and what only they name) can be shaken. Only when the
    table and every name among its values are bound once at module level and never locally, and nothing stores
    into the table (`T[k] = v`, `T.update(...)`, `del T[k]`: any use but a subscript read keeps every read).
    Returns the indexes of the trees that changed."""
    program = program or _Program(trees)
    tables = dict(found for tree in trees for node in tree.body if (found := _table(node)))
    other = {n.id for n in program.names if n.id in tables and id(n) not in program.subscripted
             and isinstance(n.ctx, ast.Load)}
    values: dict[int, ast.expr] = {}
    changed: set[int] = set()
    for read in program.subscripts:
        name = read.value.id if isinstance(read.value, ast.Name) else None
        if name not in tables or name in other or program.module.get(name) != 1 or name in program.local:
            continue
        entry = tables[name].get(_key(read.slice))
        if entry is None or (isinstance(entry, ast.Name) and (program.module.get(entry.id) != 1
                                                              or entry.id in program.local)):
            continue
        values[id(read)] = entry
        changed.add(program.owner[id(read)])
    for i in changed:
        _ReplaceSubscripts(values).visit(trees[i])
    return changed


class _ReplaceSubscripts(ast.NodeTransformer):
    def __init__(self, values: dict[int, ast.expr]):
        self.values = values

    def visit_Subscript(self, node: ast.Subscript):
        entry = self.values.get(id(node))
        if entry is None:
            self.generic_visit(node)
            return node
        return ast.copy_location(ast.Name(entry.id, ast.Load()) if isinstance(entry, ast.Name)
                                 else ast.Constant(entry.value), node)


_SHORT = 40
"""Longest string a global constant may be to be copied into its reads (a long one is cheaper named once)."""


def fold_globals(trees: list[ast.Module], program: _Program | None = None) -> set[int]:
    """`PERGROUP_CODEC` -> `'pergroup'`: the reads of a module-level name bound once, by `NAME = <constant>`
    (a bool, number, None or a string of at most `_SHORT` characters), become the constant, so comparisons with
    it fold. Only when no function, lambda, comprehension or class body binds or declares the name anywhere
    (so every read is the global) and the program never calls `globals()` or `setattr`. Returns the indexes of
    the trees that changed."""
    program = program or _Program(trees)
    module_bound, locally_bound = program.module, program.local | program.in_classes
    if program.dynamic:
        return set()
    values: dict[str, ast.Constant] = {}
    for tree in trees:
        for node in tree.body:
            target = node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else (
                node.target if isinstance(node, ast.AnnAssign) else None)
            value = getattr(node, "value", None)
            if (isinstance(target, ast.Name) and isinstance(value, ast.Constant)
                    and module_bound.get(target.id) == 1 and target.id not in locally_bound
                    and (not isinstance(value.value, (str, bytes)) or len(value.value) <= _SHORT)):
                values[target.id] = value
    if not values:
        return set()
    changed = set()
    for i, tree in enumerate(trees):
        replacer = _ReplaceOutsideFStrings(values)
        replacer.visit(tree)
        if replacer.replaced:
            changed.add(i)
    return changed


class _ReplaceOutsideFStrings(ReplaceNames):
    """A constant inside an f-string's braces may need a backslash there (`f'{MAGIC!r}'`, b'...\\x00'), which
    ast.unparse cannot write before Python 3.12: those reads stay names. `replaced`: how many reads changed."""

    replaced = 0

    def visit_Name(self, node: ast.Name):
        new = super().visit_Name(node)
        self.replaced += new is not node
        return new

    def visit_JoinedStr(self, node: ast.JoinedStr):
        return node


def split_sections(source: str) -> list[str]:
    """The flat program cut before each `#@<module>` marker line (the first part is the program's head)."""
    return _MARK.split(source)
