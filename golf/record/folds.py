"""Expression folds of golf.record.specialize's simplifier: constant comparison chains, and tests where only their
truth counts (`if self.smear is not None and False:`).

golf.record.specialize folds a baked config read into a constant, and its simplifier folds `and`/`or` by value:
`x and False` keeps `x` (its value is the result when falsy). In a test (`if`, `elif`, `while`, `assert`, a
conditional expression, a comprehension's `if`, the operand of `not` and, recursively, the operands of an
`and`/`or` standing there) only the truth of the expression is used, so more folds are exact:

- a truthy constant operand of `and` (a falsy one of `or`) is dropped: `if skips and True:` -> `if skips:`;
- operands after a falsy constant of `and` (a truthy one of `or`) are never evaluated and are dropped, and the
  whole test is that constant when the operands before it are reads (`self.smear is not None and False` ->
  `False`, then the `if` goes): a name, an attribute of a read, a constant, `not`/`and`/`or`/comparisons of
  reads. Such a read has no effect in the program golf ships (plain fields and effect-free properties), so
  dropping it changes nothing but an error a broken program would raise.

Comparisons (`constant_prefix`): a chain's leading pairs of constants are evaluated (`0 < 0 < self.head_dim`,
`0 <= -1 <= layer` are False): a false pair decides the chain (the rest is never evaluated), a true one is
dropped; a comparison of constants only is its value.
"""

from __future__ import annotations

import ast
import operator

_COMPARE = {ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
            ast.Gt: operator.gt, ast.GtE: operator.ge, ast.Is: operator.is_, ast.IsNot: operator.is_not,
            ast.In: lambda a, b: operator.contains(b, a), ast.NotIn: lambda a, b: not operator.contains(b, a)}


def is_constant(node: ast.AST) -> bool:
    """Whether `node` is a literal constant."""
    return isinstance(node, ast.Constant)


def _const_seq(node: ast.AST) -> bool:
    return isinstance(node, (ast.Tuple, ast.List, ast.Set)) and all(is_constant(e) for e in node.elts)


def _literal(node: ast.AST):
    return node.value if is_constant(node) else tuple(e.value for e in node.elts)


def constant_prefix(node: ast.Compare) -> ast.expr:
    """`node` with its leading constant pairs evaluated: a false one decides the chain (the operands after it are
    never evaluated), a true one is dropped (`0 <= 1 <= x` is `1 <= x`). `node` itself when none folds."""
    operands = [node.left, *node.comparators]
    done = 0
    for op, left, right in zip(node.ops, operands, operands[1:], strict=False):
        membership = isinstance(op, (ast.In, ast.NotIn))  # `x in (1, 2)`: a literal sequence on the right
        if not is_constant(left) or not (is_constant(right) or (membership and _const_seq(right))):
            break
        fn = _COMPARE.get(type(op))
        a, b = left.value, _literal(right)
        if fn is None or (isinstance(op, (ast.Is, ast.IsNot)) and not (a is None or b is None)):
            break
        if not fn(a, b):
            return ast.copy_location(ast.Constant(False), node)
        done += 1
    if done == 0:
        return node
    if done == len(node.ops):
        return ast.copy_location(ast.Constant(True), node)
    return ast.copy_location(ast.Compare(left=operands[done], ops=node.ops[done:], comparators=node.comparators[done:]),
                             node)


def is_read(node: ast.expr) -> bool:
    """Whether `node` only reads names, attributes and constants (and compares or negates such reads)."""
    if isinstance(node, (ast.Constant, ast.Name)):
        return True
    if isinstance(node, ast.Attribute):
        return is_read(node.value)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        return is_read(node.operand)
    if isinstance(node, ast.BoolOp):
        return all(is_read(v) for v in node.values)
    if isinstance(node, ast.Compare):
        return is_read(node.left) and all(is_read(c) for c in node.comparators)
    return False


def fold_test(node: ast.expr) -> ast.expr:
    """`node` as a test: the same truth on every run (module docstring). Returns `node` itself when nothing
    folds, else a new expression."""
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        operand = fold_test(node.operand)
        if isinstance(operand, ast.Constant):
            return ast.copy_location(ast.Constant(not operand.value), node)
        return node if operand is node.operand else ast.copy_location(ast.UnaryOp(ast.Not(), operand), node)
    if not isinstance(node, ast.BoolOp):
        return node
    is_and = isinstance(node.op, ast.And)
    values = [fold_test(v) for v in node.values]
    kept: list[ast.expr] = []
    for value in values:
        if isinstance(value, ast.Constant):
            if bool(value.value) == is_and:
                continue  # neutral in a test: `x and True` is as true as `x`
            if all(is_read(v) for v in kept):
                return ast.copy_location(ast.Constant(value.value), node)
            kept.append(value)  # decides the test; what follows is never evaluated
            break
        kept.append(value)
    if kept == node.values:
        return node
    if not kept:
        return ast.copy_location(ast.Constant(is_and), node)
    if len(kept) == 1:
        return kept[0]
    return ast.copy_location(ast.BoolOp(op=node.op, values=kept), node)
