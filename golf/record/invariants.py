"""What a generated train_gpt.py need not check at run time: golf's own invariants.

A record file is generated from a run that has already executed the same code on the same baked config, and
golf's test suite holds those layers to their contracts. The checks inside the layers that compute on that
config (INVARIANT_LAYERS: model, optim, quant, eval) guard golf's own values: a codec level in range, packed
codes within their bit width, every parameter routed to one optimizer, a Newton-Schulz input of rank 2. They
cannot fire in the file unless golf itself is wrong, so `drop_invariant_checks` removes their
`if <test>: raise ...` statements (the messages are ~7% of a preset's counted bytes).

What varies when the file runs keeps its one-line refusal: the environment variables (the config rules left by
golf.record.prevalidated, the whole `golf.schema` / `golf.submission` path, and the config schemas
`golf.<layer>.config`, whose rules and their helpers are golf.record.prevalidated's to drop), the data and
tokenizer files (`golf.data`), the world size and device (`golf.train`, `golf.device`), the output files
(`golf.io`), the artifact read back from disk and the 16,000,000-byte budget (SHIPPED_REFUSALS). Inside
INVARIANT_LAYERS, a check whose test can change when the file runs is marked `# run-time` (RUN_TIME) and ships:
the eval batch against VAL_BATCH_SIZE and the world size, the stride against TRAIN_SEQ_LEN, phased-TTT lanes
against the world size, the data's BOS and byte sidecar, the flash-attn install, the lrzip binary, a non-finite
Hessian. The pass runs on golf's own sources, before specialisation re-emits a module without its comments.

A check is dropped only when its exception class is known (the name, or the return annotation of the helper that
builds it, resolved in the golf module) and no handler in the bundled modules recovers from it: an `except` whose
body does not end in `raise` (`except OSError: pass`), other than golf's reporters of `GolfError` itself (the
entry point's one-line `error: ...`), catching that class or a base of it blocks the drop everywhere. A test
whose evaluation could bind a name (`:=`) or suspend is kept. Works on source lines like the other generation
passes, so the readable file keeps golf's comments; the exception classes and message helpers left unused are
then removed by golf.record.shake.
"""

from __future__ import annotations

import ast
import builtins
import importlib
import re
import typing

from golf.errors import GolfError
from golf.record.prevalidated import _raise_if
from golf.record.trees import walk

INVARIANT_LAYERS = ("golf.model", "golf.optim", "golf.quant", "golf.eval")
"""Packages whose checks guard golf's computations on the baked config (dropped from the generated file)."""
SHIPPED_REFUSALS = ("golf.quant.artifact.ArtifactError", "golf.quant.budget.BudgetExceededError")
"""Refusals raised inside INVARIANT_LAYERS that still ship: the artifact read back from disk (its payload
checksum) and the submission budget (the issue's "fails with one line if the total is over 16,000,000")."""
RUN_TIME = re.compile(r"#\s*run-time\b")
"""The mark of a check in INVARIANT_LAYERS whose test can change when the file runs (an environment variable,
the world size, the data, what is installed: `if local_batch_tokens < seq_len:  # run-time: VAL_BATCH_SIZE`), on
its `if` line (any line of the test): it ships."""


def _golf_name(module: str, package: str) -> str:
    return "golf" + module[len(package):]


def _namespace(module: str) -> dict | None:
    """The globals of golf module `module` (spelled golf.x), or None when it cannot be imported."""
    try:
        return vars(importlib.import_module(module))
    except ImportError:
        return None


def _resolve(expr: ast.expr, namespace: dict | None) -> object | None:
    """The object a `Name` / dotted `Attribute` expression names in `namespace`; None when it is anything else
    or not found."""
    if namespace is None:
        return None
    if isinstance(expr, ast.Name):
        return namespace.get(expr.id, getattr(builtins, expr.id, None))
    if isinstance(expr, ast.Attribute):
        owner = _resolve(expr.value, namespace)
        return getattr(owner, expr.attr, None) if owner is not None else None
    return None


def _exception_class(exc: ast.expr | None, namespace: dict | None) -> type | None:
    """The class a `raise` statement's expression raises: `E(...)`, `E`, or `helper(...)` whose return
    annotation is an exception class (`inflation_error(...) -> CodecError`); None when it cannot be told."""
    target = exc.func if isinstance(exc, ast.Call) else exc
    found = _resolve(target, namespace) if target is not None else None
    if isinstance(found, type):
        return found if issubclass(found, BaseException) else None
    if callable(found):
        try:
            returned = typing.get_type_hints(found).get("return")
        except Exception:  # an annotation that does not evaluate: the class is unknown, the check stays
            return None
        if isinstance(returned, type) and issubclass(returned, BaseException):
            return returned
    return None


def _handled(handler: ast.ExceptHandler, namespace: dict | None) -> tuple[type, ...]:
    """The classes an `except` clause catches; (BaseException,) when bare or not resolvable."""
    if handler.type is None:
        return (BaseException,)
    items = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    found = [_resolve(item, namespace) for item in items]
    if not all(isinstance(f, type) and issubclass(f, BaseException) for f in found):
        return (BaseException,)
    return tuple(found)


def recovered_classes(sources: dict[str, str], package: str) -> tuple[type, ...]:
    """The exception classes some `except` clause of `sources` may catch without raising again (execution goes
    on with a fallback): every clause whose body does not end in `raise` (`except ImportError:` that raises only
    `if backend != "auto"` recovers otherwise), except those catching exactly GolfError: golf's reporters, which
    end the run."""
    out: list[type] = []
    for module, src in sources.items():
        namespace = _namespace(_golf_name(module, package))
        for node in walk(ast.parse(src)):
            if isinstance(node, ast.ExceptHandler) and not isinstance(node.body[-1], ast.Raise):
                caught = _handled(node, namespace)
                if caught != (GolfError,):
                    out.extend(caught)
    return tuple(out)


def _blocks(node: ast.AST):
    """Every statement list in `node` (function bodies, branches, loop bodies, handlers)."""
    for child in walk(node):
        for name in ("body", "orelse", "finalbody"):
            block = getattr(child, name, None)
            if isinstance(block, list) and block and isinstance(block[0], ast.stmt):
                yield block


def _pure_test(test: ast.expr) -> bool:
    return not any(isinstance(n, (ast.NamedExpr, ast.Await, ast.Yield, ast.YieldFrom)) for n in walk(test))


def _in_post_init(tree: ast.Module) -> set[int]:
    """ids of the statements inside a `__post_init__` (config rules, governed by golf.record.prevalidated)."""
    return {id(n) for fn in walk(tree) if isinstance(fn, ast.FunctionDef) and fn.name == "__post_init__"
            for n in walk(fn)}


def invariant_check_spans(src: str, namespace: dict, shipped: tuple[type, ...], recovered: tuple[type, ...]
                          ) -> list[tuple[int, int, int, bool]]:
    """(first line, last line, column, whole block) of each droppable `if <test>: raise E(...)` in `src`: no
    else, no `# run-time` mark, a test that binds nothing, E known, neither shipped nor a subclass of a
    recovered class, not in a `__post_init__` (a config rule). `whole block` marks the last one of a block that
    would be left empty (it becomes `pass`; an `elif` that only raised leaves `pass` after its `if`)."""
    tree = ast.parse(src)
    rules = _in_post_init(tree)
    lines = src.splitlines()
    spans = []
    for block in _blocks(tree):
        dropped = []
        for stmt in block:
            if not (_raise_if(stmt) and id(stmt) not in rules and _pure_test(stmt.test)
                    and not any(RUN_TIME.search(line) for line in lines[stmt.lineno - 1:stmt.body[0].lineno - 1])):
                continue
            classes = [_exception_class(s.exc, namespace) for s in stmt.body]
            if all(c is not None and not issubclass(c, shipped) and not issubclass(c, recovered) for c in classes):
                dropped.append(stmt)
        for stmt in dropped:
            last = stmt is dropped[-1] and len(dropped) == len(block)
            spans.append((stmt.lineno, stmt.end_lineno or stmt.lineno, stmt.col_offset, last))
    return spans


def drop_invariant_checks(sources: dict[str, str], package: str, layers: tuple[str, ...] = INVARIANT_LAYERS
                          ) -> dict[str, str]:
    """`sources` (golf modules spelled `package.x`) without the invariant checks of the modules in `layers`
    (spelled golf.x): see the module docstring. Other modules are returned unchanged."""
    shipped = tuple(getattr(importlib.import_module(owner), cls)
                    for owner, _, cls in (name.rpartition(".") for name in SHIPPED_REFUSALS))
    recovered = recovered_classes(sources, package)
    out = dict(sources)
    for module, src in sources.items():
        golf_module = _golf_name(module, package)
        if golf_module.endswith(".config") or not any(
                golf_module == layer or golf_module.startswith(layer + ".") for layer in layers):
            continue  # a config schema's rules (and their helpers) are golf.record.prevalidated's
        namespace = _namespace(golf_module)
        if namespace is None:
            continue
        lines = src.splitlines(keepends=True)
        for first, last, col, whole in sorted(invariant_check_spans(src, namespace, shipped, recovered),
                                              reverse=True):
            lines[first - 1:last] = [" " * col + "pass\n"] if whole else []
        out[module] = "".join(lines)
    return out
