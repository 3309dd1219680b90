"""golf.record.folds: the simplifier's folds of constant comparison chains and of tests where only truth counts
(what specialisation leaves: `if self.smear is not None and False:`, `0 < 0 < self.head_dim`). Each fold has a
case that fails without it, a case it must leave alone, and a fuzzer that runs the program before and after."""

from __future__ import annotations

import ast
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from golf.record.specialize import simplify


def _simplify(source: str) -> str:
    tree = ast.parse(textwrap.dedent(source))
    return ast.unparse(ast.fix_missing_locations(simplify(tree)))


@pytest.mark.parametrize(("source", "folded"), [
    ("if self.smear is not None and False:\n    a()\nb()", "pass\nb()"),
    ("if skips and True:\n    a()", "if skips:\n    a()"),
    ("if not (x.y or True):\n    a()\nb()", "pass\nb()"),
    ("while go and True:\n    a()", "while go:\n    a()"),
    ("v = p if q and 1 else r", "v = p if q else r"),
    ("assert ok and True", "assert ok"),
    ("v = [i for i in s if i and True]", "v = [i for i in s if i]"),
    ("self.rope_dims = 0 if 0 < 0 < self.head_dim else 0", "self.rope_dims = 0"),
    ("self.parallel = 1 <= 0 <= layer", "self.parallel = False"),
    ("v = 0 <= 1 <= x", "v = 1 <= x"),
    ("v = 0 < 1 < 2", "v = True"),
    ("v = 2 in (1, 2)", "v = True"),
])
def test_a_test_or_chain_specialisation_leaves_folds(source, folded):
    assert _simplify(source) == folded


@pytest.mark.parametrize(("source", "why"), [
    ("if f() and False:\n    a()", "the call runs before the constant decides: it stays"),
    ("v = x and False", "a value, not a test: `x` is the result when it is falsy"),
    ("v = x or True", "a value: `x` is the result when it is truthy"),
    ("v = [1] == (1,)", "a list is never equal to a tuple: sequences fold only on the right of `in`"),
    ("v = x < 0 < 1", "the leading pair reads x: nothing after it folds"),
    ("if (x := g()) and False:\n    a()", "a walrus binds a name: not a plain read"),
])
def test_what_may_have_an_effect_or_differ_stays(source, why):
    assert _simplify(source) == ast.unparse(ast.parse(source)), why


class _Obj:
    def __init__(self, value):
        self.value = value


READS = ["i", "j", "o.value", "0", "1", "2", "-1"]
EXPRS = st.deferred(lambda: st.one_of(
    st.sampled_from(READS),
    st.tuples(st.sampled_from(["and", "or"]), EXPRS, EXPRS).map(lambda t: f"({t[1]} {t[0]} {t[2]})"),
    EXPRS.map(lambda e: f"(not {e})"),
    st.lists(st.sampled_from(READS), min_size=2, max_size=4).flatmap(
        lambda ops: st.lists(st.sampled_from(["<", "<=", "==", "!=", ">"]), min_size=len(ops) - 1,
                             max_size=len(ops) - 1).map(
            lambda cmps: "(" + " ".join(x for pair in zip(ops, [*cmps, ""], strict=True) for x in pair).strip()
            + ")")),
    st.tuples(EXPRS, EXPRS, EXPRS).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
))


@settings(max_examples=300, deadline=None)
@given(expr=EXPRS, i=st.integers(-1, 2), j=st.integers(-1, 2), value=st.integers(-1, 2))
def test_folds_keep_what_the_program_computes(expr, i, j, value):
    source = (f"def f(i, j, o):\n    if {expr}:\n        return ('then', {expr})\n"
              f"    assert {expr} or True\n    return ('else', [k for k in (i, j) if {expr}], {expr})\n")
    folded = _simplify(source)
    before, after = {}, {}
    exec(compile(source, "a", "exec"), before)
    exec(compile(folded, "a", "exec"), after)
    args = (i, j, _Obj(value))
    assert after["f"](*args) == before["f"](*args), folded
