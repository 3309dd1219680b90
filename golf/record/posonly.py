"""Parameters no caller names become positional-only, so python-minifier can rename them in place.

python-minifier keeps a parameter's name (a caller could pass it by keyword) and, when the body uses it often,
binds a short alias at the top: `def f(path):A=path;...`. In the flat program golf ships (golf.record.flatten)
every caller is in the same file, so golf can see which names a function is ever called with. A leading run of
parameters that no call can name is moved in front of a `/`; the minifier then renames them where they stand
(`def f(A,/):...`), with no alias. On the generated files that is ~2% of the counted bytes.

A call site is matched by name: `f(...)` for a module-level function `f`, `x.m(...)` for every method `m`, and
for a class's `__init__` the calls of that class and of its subclasses in the program. A function counts as
called from anywhere (so every keyword and every identifier inside a string of the program may name its
parameters) when:
- its name is read other than as the callee of a call (passed as a value: `torch.compile(f)`,
  `zeropower_fn=f`, a registry entry, a bound method stored), or spelled inside a string (`getattr(o, "m")`);
- for `__init__`: the class or a subclass escapes that way, or defines a classmethod (`cls(...)`), or some call
  builds an instance through an expression (`type(x)(...)`).
Left as they are: methods other code calls by contract (dunders other than `__init__`, names that any of the
library base classes golf subclasses defines, such as `forward` or `step`), functions under any decorator but
staticmethod / classmethod / property (the decorator may call them with keywords), lambdas, and any function
called with `**mapping` at a matched call site.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import logging
import re
import threading

import numpy as np
import torch
from torch import nn

from golf.record.trees import walk

_PLAIN_DECORATORS = frozenset({"staticmethod", "classmethod", "property"})
_LIBRARY_BASES = (object, dict, list, set, tuple, str, bytes, BaseException, Exception, nn.Module, nn.Linear,
                  nn.Embedding, torch.optim.Optimizer, torch.autograd.Function, torch.Tensor, np.ndarray,
                  logging.Handler, logging.Formatter, logging.Filter, logging.Logger, io.IOBase, threading.Thread,
                  json.JSONEncoder, contextlib.ContextDecorator, contextlib.AbstractContextManager)
CONTRACT_NAMES = frozenset(name for base in _LIBRARY_BASES for name in dir(base))
"""Method names some library calls on golf's subclasses (forward, step, emit, ...): their signatures stay."""
_IDENTIFIER = re.compile(r"[A-Za-z_]\w*")
_ESCAPES = "*"


def _callee(func: ast.expr) -> tuple[str, str] | None:
    """('name', f) for `f(...)`, ('attr', m) for `x.m(...)`, None for any other callee expression."""
    if isinstance(func, ast.Name):
        return ("name", func.id)
    if isinstance(func, ast.Attribute):
        return ("attr", func.attr)
    return None


class _Calls:
    """What the program's calls say about each callee name: the keywords they pass, which ones unpack
    `**mapping`, which names are read as values, and the identifiers spelled in strings."""

    def __init__(self, tree: ast.Module) -> None:
        self.keywords: dict[tuple[str, str] | None, set[str]] = {}
        self.unpacked: set[tuple[str, str]] = set()
        self.escaped: set[tuple[str, str]] = set()
        self.spelled: set[str] = set()
        self.expression_calls = False
        callees = {id(n.func) for n in walk(tree) if isinstance(n, ast.Call)}
        for node in walk(tree):
            if isinstance(node, ast.Call):
                key = _callee(node.func)
                self.expression_calls |= key is None  # `type(x)(...)`, `getattr(o, "m")(...)`: callee unknown
                self.keywords.setdefault(key, set()).update(k.arg for k in node.keywords if k.arg)
                if any(k.arg is None for k in node.keywords):
                    self.unpacked.add(key)
            elif isinstance(node, (ast.Name, ast.Attribute)) and isinstance(node.ctx, ast.Load) \
                    and id(node) not in callees:
                self.escaped.add(("name", node.id) if isinstance(node, ast.Name) else ("attr", node.attr))
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                self.spelled.update(_IDENTIFIER.findall(node.value))
        self.any_keyword = self.spelled.union(*self.keywords.values())


def _subclasses(classes: dict[str, ast.ClassDef]) -> dict[str, set[str]]:
    """Class name -> itself and every class of the program deriving from it (bases named directly)."""
    children: dict[str, set[str]] = {name: set() for name in classes}
    for name, node in classes.items():
        for base in node.bases:
            if isinstance(base, ast.Name) and base.id in children:
                children[base.id].add(name)
    out = {}
    for name in classes:
        seen, todo = set(), [name]
        while todo:
            current = todo.pop()
            if current not in seen:
                seen.add(current)
                todo.extend(children[current])
        out[name] = seen
    return out


def _callers(fn: ast.FunctionDef, owner: ast.ClassDef | None, calls: _Calls,
             family: dict[str, set[str]], classes: dict[str, ast.ClassDef]) -> list | None:
    """The callee keys whose call sites may reach `fn`, `[_ESCAPES]` when any call may, or None when its
    signature must stay (a contract method, a decorated function, `**mapping` at a call site)."""
    if any(not (isinstance(d, ast.Name) and d.id in _PLAIN_DECORATORS) for d in fn.decorator_list):
        return None
    if owner is None:
        keys = [("name", fn.name), ("attr", fn.name)]
    elif fn.name == "__init__":
        members = family[owner.name]
        keys = [("attr", "__init__"), *(("name", c) for c in members)]
        if calls.expression_calls or any(
                ("name", c) in calls.escaped or c in calls.spelled or _has_classmethod(classes[c]) for c in members):
            return [_ESCAPES]
    elif fn.name.startswith("__") or fn.name in CONTRACT_NAMES:
        return None
    else:
        keys = [("attr", fn.name)]
    if any(k in calls.unpacked for k in keys):
        return None
    if fn.name in calls.spelled or any(k in calls.escaped for k in keys):
        return [_ESCAPES]
    return keys


def _has_classmethod(node: ast.ClassDef) -> bool:
    return any(isinstance(s, ast.FunctionDef) and any(isinstance(d, ast.Name) and d.id == "classmethod"
                                                       for d in s.decorator_list) for s in node.body)


def positional_only(source: str) -> str:
    """`source` (a whole flat program) with each function's leading parameters that no call site can name by
    keyword made positional-only (module docstring). Behaviour is unchanged; comments are dropped
    (`ast.unparse`). The program must be one namespace: imports of its own functions under other names are
    not followed (golf.record.flatten's flat form has none)."""
    tree = ast.parse(source)
    make_positional_only(tree)
    return ast.unparse(tree)


def make_positional_only(tree: ast.Module) -> None:
    """`positional_only` on a parsed program, in place."""
    calls = _Calls(tree)
    classes = {n.name: n for n in walk(tree) if isinstance(n, ast.ClassDef)}
    family = _subclasses(classes)
    owners = {id(s): c for c in classes.values() for s in c.body}
    for fn in walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        keys = _callers(fn, owners.get(id(fn)), calls, family, classes)
        if keys is None:
            continue
        named = calls.any_keyword if keys == [_ESCAPES] else set().union(*(calls.keywords.get(k, ()) for k in keys))
        args = fn.args
        lead = 0
        while lead < len(args.args) and args.args[lead].arg not in named:
            lead += 1
        args.posonlyargs, args.args = [*args.posonlyargs, *args.args[:lead]], args.args[lead:]
