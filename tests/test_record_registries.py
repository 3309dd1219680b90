"""golf.record.registries: constant membership tests of constant tables, and imports of modules the flat
program holds, folded; and every rule that keeps them."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from record_helpers import fold_once, preset, run_program

from golf.record import submission_bundle
from golf.record.registries import fold_imports, fold_members

MEMBERS = """
MODES = {'standard': 'm.standard', 'ttt': 'm.ttt'}
SIDECAR = ('standard', 'phased')
def check(mode_given=None):
    out = []
    if 'standard' not in MODES:
        out.append('unknown')
    if 'sliding' in MODES:
        out.append('sliding')
    if 'standard' not in SIDECAR:
        out.append('no sidecar')
    return out, ' or '.join(SIDECAR)
"""


def test_membership_in_a_constant_table_folds_and_keeps_the_result():
    folded, changed = fold_once(fold_members, MEMBERS)
    assert changed and " in MODES" not in folded and " in SIDECAR" not in folded
    assert run_program(folded, "check()") == run_program(MEMBERS, "check()") == ([], "standard or phased")


@pytest.mark.parametrize("change", [
    "MODES['sliding'] = 'm.sliding'",  # a store into the dict
    "del MODES['standard']",
    "MODES.update(sliding='m.sliding')",  # any read other than a subscript or a membership test
    "MODES = {}",  # bound twice
])
def test_a_table_that_may_change_keeps_its_tests(change: str):
    program = MEMBERS.replace("def check(", change + "\ndef check(")
    folded, _ = fold_once(fold_members, program)
    assert "'standard' not in MODES" in folded and "'sliding' in MODES" in folded
    assert run_program(folded, "check()") == run_program(program, "check()")


def test_a_tuple_is_folded_whatever_else_reads_it_but_a_list_is_not():
    """A tuple cannot change in place: other reads (the join) do not keep its tests; a list's may append."""
    folded, _ = fold_once(fold_members, MEMBERS)
    assert "' or '.join(SIDECAR)" in folded and "not in SIDECAR" not in folded
    as_list = MEMBERS.replace("SIDECAR = ('standard', 'phased')", "SIDECAR = ['standard', 'phased']")
    folded, _ = fold_once(fold_members, as_list)
    assert "'standard' not in SIDECAR" in folded


def test_a_local_or_class_binding_of_the_name_keeps_its_tests():
    shadowed = MEMBERS + "def other(MODES):\n    return 'ttt' in MODES\n"
    folded, _ = fold_once(fold_members, shadowed)
    assert "'ttt' in MODES" in folded and "'standard' not in MODES" in folded
    assert run_program(folded, "other({})") is False


def test_a_non_constant_left_side_or_a_non_literal_table_is_left_alone():
    program = "T = dict(a=1)\nS = {'a': 1}\ndef f(k):\n    return ('a' in T, k in S)\n"
    folded, changed = fold_once(fold_members, program)
    assert not changed and "'a' in T" in folded and "k in S" in folded


@settings(max_examples=200, deadline=None)
@given(keys=st.lists(st.one_of(st.integers(-3, 3), st.booleans(), st.text("ab", max_size=2), st.none()),
                     max_size=5),
       probe=st.one_of(st.integers(-3, 3), st.booleans(), st.text("ab", max_size=2), st.none(), st.floats(-3, 3)),
       kind=st.sampled_from(["tuple", "set", "dict"]), negate=st.booleans())
def test_membership_folds_as_python_decides_it(keys, probe, kind, negate):
    """Python's own equality, booleans and 1.0 == 1 == True included."""
    literal = {"tuple": f"({', '.join(map(repr, keys))}{',' if len(keys) == 1 else ''})",
               "set": "{" + ", ".join(map(repr, keys)) + "}" if keys else "set()",
               "dict": "{" + ", ".join(f"{k!r}: 0" for k in keys) + "}"}[kind]
    program = f"T = {literal}\ndef f():\n    return {probe!r} {'not in' if negate else 'in'} T\n"
    folded, _ = fold_once(fold_members, program)
    assert run_program(folded, "f()") == run_program(program, "f()")


IMPORTS = """
import importlib
import sys as _sys, types as _types
def score(x):
    return x + 1
def helper():
    return 7
def _ns(name, **attrs):
    module = _types.ModuleType(name)
    module.__dict__.update(attrs)
    _sys.modules[name] = module
def run(x):
    importlib.import_module('_pg.quant.int8')
    return importlib.import_module('_pg.eval.standard').score(x)
def shadowed(score):
    return importlib.import_module('_pg.eval.standard').score(score)
def other():
    return importlib.import_module('json').dumps(1)
_ns('_pg.eval.standard', score=score, helper=helper)
_ns('_pg.quant.int8')
"""


def test_an_import_of_a_held_module_becomes_its_flat_name_and_its_entry_goes():
    program = IMPORTS.replace("def shadowed(score):\n    return importlib.import_module('_pg.eval.standard')"
                              ".score(score)\n", "")
    folded, changed = fold_once(fold_imports, program)
    assert changed and "return score(x)" in folded and "import_module('_pg" not in folded
    assert "_ns(" not in folded.split("_sys.modules[name] = module")[1]  # no string names them any more
    assert "importlib.import_module('json')" in folded  # not a module of the program
    assert run_program(folded, "run(1), other()") == run_program(program, "run(1), other()") == (2, "1")


def test_a_parameter_named_like_the_flat_name_keeps_the_import_and_its_entry():
    folded, _ = fold_once(fold_imports, IMPORTS)
    assert "return score(x)" in folded  # run() binds no `score`
    assert "importlib.import_module('_pg.eval.standard').score(score)" in folded  # shadowed() does
    assert "_ns('_pg.eval.standard', score=score, helper=helper)" in folded and "_ns('_pg.quant.int8')" not in folded
    assert run_program(folded, "shadowed(4)") == 5


def test_a_string_that_still_spells_the_module_keeps_its_entry():
    program = IMPORTS + "NAME = '_pg.quant.int8'\n"
    folded, _ = fold_once(fold_imports, program)
    assert "_ns('_pg.quant.int8')" in folded


def test_a_local_importlib_keeps_every_import():
    program = IMPORTS.replace("def run(x):\n", "def run(x, importlib=importlib):\n")
    folded, changed = fold_once(fold_imports, program)
    assert not changed and "import_module('_pg.quant.int8')" in folded


def test_baseline_ships_no_registry_lookup():
    """The baseline's eval mode, quant scheme and train loader are reached directly: no `_ns` module objects,
    no SCHEME_MODULES / MODE_MODULES / LOADER_MODULES tables or their membership checks."""
    readable = submission_bundle(preset("baseline")).readable
    for gone in ("_ns(", "MODE_MODULES", "SCHEME_MODULES", "LOADER_MODULES", "SIDECAR_MODES"):
        assert gone not in readable, gone
