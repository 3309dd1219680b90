"""Constant arguments of the flat program (golf.record.arguments, run by golf.record.bundle.fold_program): each
rule has a case that fails without it, and every rewrite keeps the program's results. The end-to-end proof that
the folded file is still the run is tests/test_record.py."""

from __future__ import annotations

import ast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from golf.record.arguments import fold_arguments
from golf.record.bundle import fold_program

HEAD = "from __future__ import annotations\nfrom dataclasses import dataclass\n"


def _run(source: str) -> dict:
    scope: dict = {}
    exec(compile(source, "flat", "exec"), scope)
    return scope


def _fold(body: str) -> str:
    """fold_program over a one-section flat program whose entry is `main`; the folded source."""
    return fold_program(HEAD + "#@_pg.m 0\n" + body, "main")


def _signature(source: str, name: str) -> list[str]:
    fn = next(n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name == name)
    return [a.arg for a in (*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs)]


LOADER = """
def load(path, kind='seq', strict=True, *, vocab=1024):
    if kind == 'seq':
        out = ('seq', path)
    else:
        out = other_kind(path)
    if strict:
        out = out + (vocab,)
    return out

def other_kind(path):
    return ('other', path)

def main(p):
    return load(p, 'seq', vocab=1024), load(p + '!', kind='seq', strict=True)
"""


def test_a_parameter_every_call_passes_the_same_constant_is_folded_and_its_dead_branch_goes():
    out = _fold(LOADER)
    assert _signature(out, "load") == ["path"]  # kind, strict (default everywhere), vocab all folded
    assert "other_kind" not in out  # only the dead branch called it: shaken after folding
    assert _run(out)["main"]("x") == _run(HEAD + LOADER)["main"]("x") == (("seq", "x", 1024), ("seq", "x!", 1024))


@pytest.mark.parametrize("change, why", [
    ("return load(p, 'seq'), load(p, 'other')", "two different constants"),
    ("return load(p, p), load(p, 'seq')", "a call passes a variable"),
    ("return load(p, 'seq'), load(p, 1)", "'seq' and 1 are different constants"),
    ("return load(p, True), load(p, 1)", "True and 1 compare equal but differ in type"),
])
def test_a_parameter_that_differs_between_calls_stays(change, why):
    src = LOADER.replace("return load(p, 'seq', vocab=1024), load(p + '!', kind='seq', strict=True)", change)
    assert "kind" in _signature(_fold(src), "load"), why


@pytest.mark.parametrize("extra, why", [
    ("\nTABLE = {'load': load}\n", "the function is stored in a table"),
    ("\ndef main2(load):\n    return load(1, 'x')\n", "a parameter shadows it: that call is not ours"),
    ("\ndef main3(p, args):\n    return load(p, *args)\n", "a call with *args hides which parameter gets what"),
    ("\nNAME = 'load'\n", "it is spelled as a string (getattr tables)"),
    ("\nload = staticmethod(load)\n", "the name is bound twice at module level"),
])
def test_a_function_reachable_other_than_by_direct_calls_is_left_alone(extra, why):
    assert "kind" in _signature(_fold(LOADER + extra), "load"), why


def test_a_parameter_rebound_or_shadowed_in_its_function_stays():
    src = """
def f(x, mode='a'):
    mode = mode + '!'
    return x, mode

def g(x, mode='a'):
    def inner(mode):
        return mode
    return inner(x), mode

def main(x):
    return f(x, 'a'), g(x + 1, 'a')
"""
    out = _fold(src)
    assert _signature(out, "f") == ["x", "mode"] and _signature(out, "g") == ["x", "mode"]
    assert _run(out)["main"](1) == ((1, "a!"), (2, "a"))


def test_a_function_returning_a_constant_is_replaced_at_calls_that_run_no_code():
    src = """
def calibrates(cfg):
    '''Whether calibration runs.'''
    return False

def calibrate(cfg):
    return 'calibrated'

def side(log):
    log.append(1)
    return log

def main(cfg, log):
    a = 'calibrated' if calibrates(cfg.quant) else None
    b = calibrates(side(log))
    return a, b, log
"""
    out = _fold(src)
    assert "def calibrate(" not in out  # its branch was decided
    assert "calibrates(side(log))" in out  # that argument runs code: the call stays
    assert _run(out)["main"](type("C", (), {"quant": 1})(), []) == (None, False, [1])


def test_keyword_only_and_positional_only_parameters_fold():
    src = """
def f(a, b=2, /, c=3, *, d=4):
    return a + b + c + d

def main():
    return f(1, 2, c=3), f(1, 2, 3, d=4)
"""
    out = _fold(src)
    assert _signature(out, "f") == []
    assert _run(out)["main"]() == (10, 10)


def test_folding_reports_the_sections_it_changed():
    trees = [ast.parse("def f(x=1):\n    return x\n"), ast.parse("y = 0\n"), ast.parse("z = f(1)\n")]
    assert fold_arguments(trees) == {0, 2}


@settings(max_examples=60, deadline=None)
@given(consts=st.lists(st.sampled_from([0, 1, True, False, None, "a", 1.0, 2]), min_size=1, max_size=4),
       use_default=st.booleans(), x=st.integers(-3, 3))
def test_folding_keeps_the_results(consts, use_default, x):
    """For any mix of constants passed at the calls (same or not, default or not), the folded program returns
    what the original returns."""
    calls = ", ".join(("f(x)" if use_default and i == 0 else f"f(x, {c!r})") for i, c in enumerate(consts))
    src = f"""
def f(x, flag=1):
    if flag == 1:
        return ('one', x)
    if flag is None:
        return ('none', x)
    return (repr(flag), x * 2)

def main(x):
    return [{calls}]
"""
    assert _run(_fold(src))["main"](x) == _run(HEAD + src)["main"](x)


def test_a_default_reading_a_global_of_the_parameters_name_keeps_the_parameter():
    """`def f(x, mode='a', other=mode)`: the default reads the global `mode`, which a local binding must not
    replace."""
    src = """
mode = 'global'

def f(x, mode='a', other=mode):
    return x, mode, other

def main(x):
    return f(x, 'a'), f(x)
"""
    out = _fold(src)
    assert "mode" in _signature(out, "f")
    assert _run(out)["main"](1) == ((1, "a", "global"),) * 2


OPTIMIZER = """
class Opt:
    def __init__(self, params, lr, wd=0.0, cautious=False):
        if wd < 0:
            raise ValueError('wd must be >= 0')
        self.params, self.lr, self.wd = params, lr, wd
        self.decay = cautious_decay if cautious else plain_decay

def cautious_decay(p):
    return p

def plain_decay(p):
    return p * 0.5

def main(ps, lr):
    o = Opt(ps, lr, wd=0.0)
    return type(o).__name__ == 'Opt', o.decay(4), o.wd
"""


def test_a_class_constructor_folds_its_constant_arguments():
    out = _fold(OPTIMIZER)
    init = next(n for n in ast.walk(ast.parse(out)) if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    assert [a.arg for a in init.args.args] == ["self", "params", "lr"]
    assert "cautious_decay" not in out and "must be >= 0" not in out  # the dead branch and the range check
    assert _run(out)["main"]([1], 0.1) == _run(HEAD + OPTIMIZER)["main"]([1], 0.1) == (True, 2.0, 0.0)


@pytest.mark.parametrize("extra, why", [
    ("\nclass Sub(Opt):\n    pass\n", "a subclass's construction passes through super().__init__"),
    ("\n@dataclass\nclass Opt2(Opt):\n    x: int = 0\n", "a subclass (and a generated __init__)"),
    ("\nTABLE = {'opt': Opt}\n", "the class is stored where calls cannot be seen"),
])
def test_a_class_made_other_than_by_calling_its_name_keeps_its_parameters(extra, why):
    out = _fold(OPTIMIZER + extra)
    init = next(n for n in ast.walk(ast.parse(out)) if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    assert "wd" in [a.arg for a in init.args.args], why


@pytest.mark.parametrize("clone", [
    "    def clone(self):\n        return type(self)(self.params, self.lr, 1.0)\n",
    "    def clone(me, /):\n        return type(me)(me.params, me.lr, 1.0)\n",  # a positional-only receiver
])
def test_a_class_that_copies_itself_keeps_its_parameters(clone):
    src = OPTIMIZER.replace("        self.decay = cautious_decay if cautious else plain_decay\n",
                            "        self.decay = cautious_decay if cautious else plain_decay\n\n" + clone)
    init = next(n for n in ast.walk(ast.parse(_fold(src))) if isinstance(n, ast.FunctionDef)
                and n.name == "__init__")
    assert "wd" in [a.arg for a in init.args.args]


def test_a_class_that_reads_the_type_of_another_object_still_folds():
    src = OPTIMIZER.replace("        self.decay = cautious_decay if cautious else plain_decay\n",
                            "        self.decay = cautious_decay if cautious else plain_decay\n\n"
                            "    def same_kind(self, other):\n        return type(other).__name__ == 'Opt'\n")
    out = _fold(src)
    init = next(n for n in ast.walk(ast.parse(out)) if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    assert [a.arg for a in init.args.args] == ["self", "params", "lr"]
    assert _run(out)["main"]([1], 0.1) == (True, 2.0, 0.0)


@pytest.mark.parametrize("test", ["isinstance(o, Opt)", "isinstance(o, (int, Opt))", "issubclass(type(o), Opt)"])
def test_a_class_tested_with_isinstance_still_folds(test):
    """`isinstance(opt, Muon)` reads the class without making or storing an instance (schedule.set_momentum)."""
    src = OPTIMIZER.replace("    return type(o).__name__ == 'Opt', o.decay(4), o.wd\n",
                            f"    return {test}, o.decay(4), o.wd\n")
    out = _fold(src)
    init = next(n for n in ast.walk(ast.parse(out)) if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    assert [a.arg for a in init.args.args] == ["self", "params", "lr"]
    assert _run(out)["main"]([1], 0.1) == (True, 2.0, 0.0)


@pytest.mark.parametrize("extra, why", [
    ("\ndef isinstance(o, c):\n    return c([], 1.0, wd=1.0)\n", "a global isinstance that calls its class"),
    ("\ndef probe(o):\n    return isinstance(o, Opt) or keep(Opt)\n\ndef keep(c):\n    return c\n",
     "passed to another function as well"),
])
def test_a_class_tested_with_isinstance_and_used_otherwise_keeps_its_parameters(extra, why):
    src = OPTIMIZER.replace("    return type(o).__name__ == 'Opt', o.decay(4), o.wd\n",
                            "    return isinstance(o, Opt), o.decay(4), o.wd, probe(o)\n") + extra
    if "probe" not in extra:
        src = src.replace(", probe(o)", "")
    out = _fold(src)
    init = next(n for n in ast.walk(ast.parse(out)) if isinstance(n, ast.FunctionDef) and n.name == "__init__")
    assert "wd" in [a.arg for a in init.args.args], why


def test_an_unread_parameter_goes_when_passing_it_runs_no_code():
    src = """
def f(x, cfg, log):
    return x + 1

def g(x, cfg):
    return x

def main(cfg, log):
    return f(1, cfg, log), f(2, cfg.model, log), g(3, make(log))

def make(log):
    log.append('made')
    return log
"""
    out = _fold(src)
    assert _signature(out, "f") == ["x"]
    assert _signature(out, "g") == ["cfg"]  # x is the constant 3; cfg is unread but its argument calls make()
    log: list = []
    assert _run(out)["main"](type("C", (), {"model": 0})(), log) == (2, 3, 3) and log == ["made"]


def test_a_constant_key_read_of_a_table_is_its_entry_and_the_other_entries_go():
    src = """
FAST = (1, 2)
SLOW = (3, 4)
TABLE = {'fast': FAST, 'slow': SLOW, 'n': 7}

def main():
    return TABLE['fast'], TABLE['n']
"""
    out = _fold(src)
    assert "SLOW" not in out and "TABLE" not in out
    assert _run(out)["main"]() == ((1, 2), 7)


@pytest.mark.parametrize("use, why", [
    ("TABLE['fast'] = (0, 0)", "a store into the table"),
    ("TABLE.update(fast=(0, 0))", "a method call may change it"),
    ("FAST = (0, 0)", "an entry's name is bound twice"),
])
def test_a_table_that_may_change_keeps_its_reads(use, why):
    src = f"""
FAST = (1, 2)
TABLE = {{'fast': FAST}}
{use}

def main():
    return TABLE['fast']
"""
    out = _fold(src)
    assert "TABLE['fast']" in out, why
    assert _run(out)["main"]() == _run(HEAD + src)["main"]()


def test_a_global_bound_once_to_a_constant_folds_into_its_reads_and_their_branches():
    src = """
PERGROUP = 'pergroup'
MAGIC = b'GOLF\\x00'

def pergroup(raw):
    return raw[::-1]

def compress(raw, codec):
    if codec == PERGROUP:
        return pergroup(raw)
    return raw

def main(raw):
    return compress(raw, 'zlib'), f'{MAGIC!r}'
"""
    out = _fold(src)
    assert "def pergroup" not in out  # 'zlib' == 'pergroup' decided the branch
    assert "f'{MAGIC!r}'" in out  # b'...\\x00' cannot go inside f-string braces before Python 3.12
    assert _run(out)["main"](b"ab") == _run(HEAD + src)["main"](b"ab") == (b"ab", "b'GOLF\\x00'")


@pytest.mark.parametrize("extra, why", [
    ("\ndef reset():\n    global MODE\n    MODE = 'b'\n", "a function declares it global"),
    ("\nclass K:\n    MODE = 'b'\n    picked = MODE\n", "a class body binds the name: its reads there are the class's"),
    ("\nMODE = 'b'\n", "bound twice at module level"),
    ("\ndef other():\n    import os as MODE\n    return MODE\n", "a function imports a local of that name"),
    ("\nLONG = 'x' * 1\nsetattr(K2, 'a', 1) if False else None\nclass K2:\n    pass\n", "setattr may bind anything"),
])
def test_globals_that_may_change_or_be_shadowed_stay_names(extra, why):
    src = "\nMODE = 'a'\n\ndef main():\n    return MODE == 'a'\n" + extra
    assert "return MODE == 'a'" in _fold(src), why


def test_a_long_string_global_stays_one_name():
    src = f"\nMESSAGE = {'x' * 80!r}\n\ndef main():\n    return MESSAGE + MESSAGE\n"
    assert "return MESSAGE + MESSAGE" in _fold(src)
