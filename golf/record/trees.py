"""`walk`: `ast.walk` for the generator's passes, the same nodes in the same order, ~1.6x faster.

The folds, shakes and checks of golf.record walk the whole program a few hundred times per generated file
(2.7 M node visits for `smoke`, ~30% of a cold `python -m golf.record`). `ast.walk` reaches each node's children
through `ast.iter_child_nodes` and `ast.iter_fields`, two generator layers per node; reading `_fields` here
gives the same breadth-first order (tests/test_record_trees.py checks it on every golf module).
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Iterator

_AST = ast.AST


def walk(node: ast.AST) -> Iterator[ast.AST]:
    """Every node of the tree under `node` (itself first), breadth first, in `ast.walk`'s order."""
    todo = deque([node])
    pop, push, extend = todo.popleft, todo.append, todo.extend
    while todo:
        node = pop()
        for name in node._fields:
            try:
                value = getattr(node, name)
            except AttributeError:  # an optional field never set, as ast.iter_fields skips it
                continue
            if isinstance(value, _AST):
                push(value)
            elif isinstance(value, list):
                extend([item for item in value if isinstance(item, _AST)])
        yield node
