"""golf.record.attributes: reads of constant instance attributes folded, and every rule that keeps a read."""

from __future__ import annotations

import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from record_helpers import fold_once, run_program

from golf.record.attributes import fold_attributes

BASE = """
class Attention:
    def __init__(self, dim):
        self.dim = dim
        self.gate = None
    def forward(self, x):
        if self.gate is not None:
            return self.gate(x)
        return x * self.dim
"""


def _fold(source: str) -> tuple[str, bool]:
    """(folded program, whether it changed)."""
    return fold_once(fold_attributes, source)


_run = run_program


def test_a_constant_slot_decides_its_branch_and_the_program_computes_the_same():
    folded, changed = _fold(BASE)
    assert changed and "self.gate(x)" not in folded and "self.gate = None" in folded
    assert "self.dim" in folded  # set from a parameter: not a constant
    assert _run(folded, "Attention(3).forward(2)") == _run(BASE, "Attention(3).forward(2)") == 6


@pytest.mark.parametrize("why,extra", [
    ("another store writes another constant", "def enable(a):\n    a.gate = 1\n"),
    ("another store writes a computed value", "def enable(a, g):\n    a.gate = g\n"),
    ("a tuple store", "def enable(a):\n    a.gate, a.dim = (None, 1)\n"),
    ("a del", "def drop(a):\n    del a.gate\n"),
    ("a string spells it", "def read(a):\n    return getattr(a, 'gate')\n"),
    ("a keyword names it", "def make():\n    return dict(gate=1)\n"),
    ("a class body binds it", "class Other:\n    gate = None\n"),
    ("a subclass", "class Gated(Attention):\n    pass\n"),
    ("setattr with a computed name", "def put(a, k):\n    setattr(a, k, 1)\n"),
])
def test_a_read_is_kept_when_the_slot_may_hold_something_else(why, extra):
    folded, changed = _fold(BASE + extra)
    assert not changed and "self.gate(x)" in folded, why


@pytest.mark.parametrize("why,source", [
    ("set only in a branch", BASE.replace("        self.gate = None", "        if dim:\n            self.gate = None")),
    ("an early return", BASE.replace("        self.dim = dim", "        self.dim = dim\n        if not dim:\n            return")),
    ("an unknown base class", BASE.replace("class Attention:", "class Attention(dict):")),
    ("an attribute torch.nn.Module sets itself", BASE.replace("gate", "training")),
    ("the receiver rebound", BASE.replace("        if self.gate", "        self = self\n        if self.gate")),
    ("a static method", BASE.replace("    def forward(self, x):", "    @staticmethod\n    def forward(self, x):")),
])
def test_a_slot_outside_the_rules_is_not_folded(why, source):
    folded, changed = _fold(source)
    assert not changed and ("self.gate(x)" in folded or "self.training(x)" in folded), why


def test_a_slot_that_is_called_or_dereferenced_keeps_its_read():
    """`None(x)` / `None.x` compile with a SyntaxWarning (printed by every run of the generated file)."""
    source = BASE.replace("        return x * self.dim", "        return self.gate(x) if x else self.gate.y")
    folded, _ = _fold(source)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SyntaxWarning)
        compile(folded, "<folded>", "exec")
    assert "self.gate(x) if x else self.gate.y" in folded


def test_nn_module_subclasses_fold():
    source = "from torch import nn\n" + BASE.replace("class Attention:", "class Attention(nn.Module):").replace(
        "self.dim = dim", "super().__init__()\n        self.dim = dim")
    folded, changed = _fold(source)
    assert changed and "self.gate(x)" not in folded
    assert _run(folded, "Attention(3).forward(2)") == 6


CONSTANTS = [0, 1, True, False, None, "a", 1.0, 2]


@settings(max_examples=60, deadline=None)
@given(first=st.sampled_from(CONSTANTS), later=st.one_of(st.none(), st.sampled_from(CONSTANTS)),
       reset=st.booleans(), x=st.integers(-3, 3))
def test_folding_keeps_the_results(first, later, reset, x):
    """For any constant the constructor sets, and any later store of the same or another constant (or none), the
    folded program returns what the original returns."""
    setter = f"def switch(o):\n    o.mode = {later!r}\n" if later is not None or reset else ""
    calls = "switch(k); " if setter and reset else ""
    src = f"""
class K:
    def __init__(self, x):
        self.x = x
        self.mode = {first!r}
    def kind(self):
        if self.mode is None:
            return ('none', self.x)
        if self.mode == 1:
            return ('one', self.x)
        return (repr(self.mode), self.x * 2)
{setter}
def main(x):
    k = K(x); {calls}return k.kind(), K(x + 1).kind()
"""
    folded, _ = _fold(src)
    assert _run(folded, f"main({x})") == _run(src, f"main({x})")
