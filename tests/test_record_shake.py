"""The bundle's two source passes: config specialisation (fold baked config reads, drop dead branches) and tree
shaking (drop unreferenced definitions). Each rule has a case that fails without it; the end-to-end proof that
the shaken, specialised file is still the run is tests/test_record.py."""

from __future__ import annotations

import ast
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from golf.record.constants import propagate_constants
from golf.record.shake import shake
from golf.record.specialize import specialize

FUTURE = "from __future__ import annotations\n"


def _shake(sources: dict[str, str], entry=("main",)) -> dict[str, str]:
    return shake({k: FUTURE + v for k, v in sources.items()}, "_pg", set(entry))


def _defs(source: str) -> set[str]:
    tree = ast.parse(source)
    out = {n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        out |= {f"{cls.name}.{m.name}" for m in cls.body if isinstance(m, ast.FunctionDef)}
    return out


def test_unreferenced_functions_go_and_the_entry_stays():
    out = _shake({"_pg.a": "def main():\n    return used()\n\ndef used():\n    return 1\n\ndef unused():\n    return 2\n"})
    assert _defs(out["_pg.a"]) == {"main", "used"}


def test_references_across_modules_and_import_aliases():
    out = _shake({
        "_pg.a": "from _pg.b import helper as h, dead\n\ndef main():\n    return h()\n",
        "_pg.b": "def helper():\n    return 1\n\ndef dead():\n    return 2\n",
    })
    assert _defs(out["_pg.b"]) == {"helper"}  # `helper as h`: h used -> helper kept
    assert "dead" not in out["_pg.a"] and "helper as h" in out["_pg.a"]  # the alias of a removed def goes too


def test_methods_go_by_name_but_implicit_and_dunder_methods_stay():
    src = ("import torch\n\nclass M(torch.nn.Module):\n    def __init__(self):\n        super().__init__()\n"
           "    def forward(self, x):\n        return self.used(x)\n    def used(self, x):\n        return x\n"
           "    def unused(self):\n        return 0\n\ndef main():\n    return M()\n")
    assert _defs(_shake({"_pg.a": src})["_pg.a"]) == {"M", "M.__init__", "M.forward", "M.used", "main"}


RECEIVERS = """
class Config:
    def validate(self):
        raise ValueError('never called in this program')

class Loop:
    def run(self):
        return self.validate()

    def validate(self):
        return 'loop'

def main():
    Config()
    return Loop().run()
"""


def test_a_method_read_only_on_another_classs_receiver_goes():
    out = _shake({"_pg.a": RECEIVERS})["_pg.a"]
    assert _defs(out) == {"Config", "Loop", "Loop.run", "Loop.validate", "main"}
    scope: dict = {}
    exec(compile(out, "a", "exec"), scope)
    assert scope["main"]() == "loop"


@pytest.mark.parametrize("extra, why", [
    ("\nclass Both(Loop, Config):\n    pass\n", "a subclass of Loop inherits Config.validate through a mixin"),
    ("\nclass Sub(Config, Loop):\n    pass\n", "Sub's MRO puts Config.validate before Loop.validate"),
    ("\ndef check(c):\n    return c.validate()\n", "read on a receiver of unknown class"),
    ("\nNAMES = ['validate']\n", "spelled as a string (getattr)"),
])
def test_a_method_another_receiver_may_reach_stays(extra, why):
    out = _shake({"_pg.a": RECEIVERS + extra}, entry=("main", "Both", "Sub", "check", "NAMES"))["_pg.a"]
    assert "Config.validate" in _defs(out), why


@pytest.mark.parametrize("method, why", [
    ("    def run(self):\n        self = CONFIG\n        return self.validate()\n", "receiver rebound"),
    ("    @staticmethod\n    def run(self):\n        return self.validate()\n", "a staticmethod has no receiver"),
    ("    def run(self):\n        return [self.validate() for self in [CONFIG]][0]\n", "rebound in a comprehension"),
    ("    def run(self):\n        def inner(self):\n            return self.validate()\n        return inner(CONFIG)\n",
     "a nested function's own parameter"),
    ("    def run(self):\n        try:\n            raise CONFIG.Error()\n        except Exception as self:\n"
     "            return self.validate()\n", "an except clause's capture"),
])
def test_a_receiver_that_may_hold_another_object_reads_like_any_name(method, why):
    src = RECEIVERS.replace("    def run(self):\n        return self.validate()\n", method) + "\nCONFIG = Config()\n"
    out = _shake({"_pg.a": src})["_pg.a"]
    assert "Config.validate" in _defs(out), why


def test_registering_decorators_keep_their_function():
    src = ("REG = {}\n\ndef register(f):\n    REG[f.__name__] = f\n    return f\n\n@register\ndef scheme():\n    return 1\n\n"
           "@property\ndef pure():\n    return 2\n\ndef main():\n    return REG\n")
    assert _defs(_shake({"_pg.a": src})["_pg.a"]) == {"register", "scheme", "main"}


def test_docstring_words_are_not_references_but_string_tables_are():
    src = ('def main():\n    """calls helper"""\n    return getattr(T, "named")\n\n'
           "def helper():\n    return 1\n\ndef named():\n    return 2\n\nT = 0\n")
    assert _defs(_shake({"_pg.a": src})["_pg.a"]) == {"main", "named"}


def test_argument_annotations_are_not_references():
    src = "def main(x: Segments) -> Segments:\n    return x\n\nclass Segments:\n    pass\n"
    assert _defs(_shake({"_pg.a": src})["_pg.a"]) == {"main"}


def test_a_class_emptied_of_methods_keeps_a_body():
    src = "class C:\n    def gone(self):\n        return 1\n\ndef main():\n    return C()\n"
    out = _shake({"_pg.a": src})["_pg.a"]
    compile(out, "a", "exec")
    assert _defs(out) == {"C", "main"}


def test_modules_without_future_annotations_are_refused():
    with pytest.raises(ValueError, match="__future__"):
        shake({"_pg.a": "def main(x: int):\n    return x\n"}, "_pg", {"main"})


CONFIG = {"model": {"smear_gate": "", "bigram_buckets": 0, "vocab_size": 1024, "num_layers": 9},
          "eval": {"mode": "standard", "seq_len": 0}, "trainer": {"checkpoint": True, "train_seq_len": 1024},
          "quant": {"groups": {"embed": {"bits": 8}, "attn": {"bits": 6}}, "scheme": "int8"}}


def _specialize(src: str, frozen=()) -> str:
    return specialize({"_pg.a": FUTURE + src}, CONFIG, set(frozen))["_pg.a"]


def test_config_reads_fold_and_dead_branches_go():
    src = ("def build(cfg):\n    if cfg.smear_gate == 'v1':\n        return SmearV1()\n"
           "    elif cfg.model.bigram_buckets:\n        return Bigram()\n    else:\n        return Plain(cfg.vocab_size)\n")
    out = _specialize(src)
    assert "SmearV1" not in out and "Bigram" not in out and "return Plain(1024)" in out


def test_self_cfg_reads_fold_and_code_after_a_folded_return_goes():
    src = ("class G:\n    def seg(self, x):\n        if not self.cfg.model.bigram_buckets:\n            return None\n"
           "        return segments(x)\n")
    out = _specialize(src)
    assert "segments" not in out and "return None" in out


@pytest.mark.parametrize("read,why", [
    ("cfg.bits", "two places in the config"),
    ("cfg.train_seq_len", "an environment override"),
    ("cfg.checkpoint", "a replace(...) keyword somewhere in the bundle"),
    ("other.vocab_size", "not a config receiver"),
    ("cfg.unknown_field", "not in the config"),
])
def test_reads_that_can_change_or_are_ambiguous_stay(read, why):
    src = f"def f(cfg, other):\n    return {read}\n\ndef g(cfg):\n    return replace(cfg, checkpoint=False)\n"
    out = _specialize(src, frozen={"trainer.train_seq_len"})
    assert f"return {read}" in out, why


def test_type_checking_blocks_never_run_so_they_go():
    src = ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from _pg.varlen import Segments\n"
           "def f(x: Segments):\n    return x if not TYPE_CHECKING else None\n")
    out = _specialize(src)
    assert "_pg.varlen" not in out and "return x" in out and "None" not in out


@pytest.mark.parametrize("src,why", [
    ("import typing\nif typing.TYPE_CHECKING:\n    import _pg.varlen\n", "not imported by its own name"),
    ("from typing import TYPE_CHECKING\nTYPE_CHECKING = True\nif TYPE_CHECKING:\n    import _pg.varlen\n",
     "rebound"),
    ("from mylib import TYPE_CHECKING\nif TYPE_CHECKING:\n    import _pg.varlen\n", "not typing's"),
])
def test_a_type_checking_name_that_may_be_true_stays(src, why):
    assert "_pg.varlen" in _specialize(src), why


def test_assignments_to_a_config_field_block_folding_it():
    src = "def f(cfg):\n    cfg.model.num_layers = 3\n    return cfg.model.num_layers\n"
    assert "return cfg.model.num_layers" in _specialize(src)


EXPRS = st.deferred(lambda: st.one_of(
    st.sampled_from(["cfg.smear_gate", "cfg.bigram_buckets", "cfg.eval.mode", "cfg.seq_len", "x", "y", "0", "1",
                     "''", "'v1'", "None"]),
    st.tuples(st.sampled_from(["and", "or"]), EXPRS, EXPRS).map(lambda t: f"({t[1]} {t[0]} {t[2]})"),
    EXPRS.map(lambda e: f"(not {e})"),
    st.tuples(EXPRS, EXPRS, EXPRS).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
    st.tuples(EXPRS, st.sampled_from(["==", "!=", "is", "is not"])).map(lambda t: f"({t[0]} {t[1]} None)"),
))


class _Cfg:
    def __init__(self, d):
        for k, v in d.items():
            setattr(self, k, _Cfg(v) if isinstance(v, dict) else v)


@settings(max_examples=300, deadline=None)
@given(expr=EXPRS, x=st.sampled_from([0, 1, "", "a", None]), y=st.sampled_from([0, 2, "", "b", None]))
def test_folding_keeps_python_semantics(expr, x, y):
    src = f"def f(cfg, x, y):\n    if {expr}:\n        return ('then', {expr})\n    return ('else', {expr})\n"
    folded = _specialize(src)
    cfg = _Cfg({**CONFIG["model"], **CONFIG, "mode": "standard", "seq_len": 0})
    before, after = {}, {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)  # `0 is None` is what the fuzzer is meant to write
        exec(compile(FUTURE + src, "a", "exec"), before)
        exec(compile(folded, "a", "exec"), after)
    assert after["f"](cfg, x, y) == before["f"](cfg, x, y), folded


SECTIONS = {"QuantConfig": ("quant",), "ModelConfig": ("model",)}


def test_parameters_typed_as_a_config_section_fold():
    src = ("def f(quant: QuantConfig, m: ModelConfig):\n"
           "    def inner():\n        return quant.scheme\n"
           "    return (quant.groups.embed.bits, m.vocab_size, inner())\n")
    out = specialize({"_pg.a": FUTURE + src}, CONFIG, set(), SECTIONS)["_pg.a"]
    assert "return (8, 1024, inner())" in out and "return 'int8'" in out


def test_a_typed_parameter_rebound_in_its_function_stays_a_read():
    src = "def f(quant: QuantConfig):\n    quant = other(quant)\n    return quant.scheme\n"
    out = specialize({"_pg.a": FUTURE + src}, CONFIG, set(), SECTIONS)["_pg.a"]
    assert "return quant.scheme" in out
    shadow = "def f(quant: QuantConfig):\n    def g(quant):\n        return quant.scheme\n    return g\n"
    assert "return quant.scheme" in specialize({"_pg.a": FUTURE + shadow}, CONFIG, set(), SECTIONS)["_pg.a"]


def _propagated(src: str) -> str:
    tree = ast.parse(src)
    propagate_constants(tree)
    return ast.unparse(tree)


def test_a_local_bound_once_to_a_constant_is_propagated_and_its_branch_goes():
    src = ("def f(cfg, x):\n    table, fit = None, None\n    if cfg.smear_gate:\n        table = 3\n"
           "    if table is not None:\n        return fit\n    return x\n")
    out = _specialize(src)  # smear_gate '' folds the reassignment away; then table is a constant local
    assert "table" not in out and "fit" not in out and out.rstrip().endswith("return x")


@pytest.mark.parametrize("src,why", [
    ("def f(xs):\n    a = None\n    for x in xs:\n        a = x\n    return a\n", "rebound in a loop"),
    ("def f():\n    try:\n        pass\n    except ValueError as a:\n        pass\n    a = 1\n    return a\n",
     "bound by except-as"),
    ("def f():\n    def g(a):\n        return a\n    a = 1\n    return g(2) + a\n", "a nested parameter"),
    ("def f(a):\n    a = 1\n    return a\n", "a parameter"),
    ("def f():\n    global a\n    a = 1\n    return a\n", "a global"),
    ("def f(c):\n    if c:\n        a = 1\n    return a\n", "bound in a branch"),
])
def test_locals_that_may_change_or_be_unbound_stay(src, why):
    assert "return a" in _propagated(src), why


def test_a_tuple_binding_propagates_the_names_that_qualify_and_keeps_the_others():
    src = ("def f(xs):\n    table, fit = None, None\n    for x in xs:\n        fit = x\n"
           "    return (table, fit)\n")
    out = _propagated(src)
    assert "fit = None" in out and "table" not in out and "return (None, fit)" in out
    namespace: dict = {}
    exec(out, namespace)
    assert namespace["f"]([1, 2]) == (None, 2) and namespace["f"]([]) == (None, None)


def test_a_constant_needing_a_backslash_is_not_put_inside_an_f_string():
    """ast.unparse (Python < 3.12) cannot write f'{sep}' with sep = '\\n' inlined: that local stays."""
    out = _propagated("def f(x):\n    sep = '\\n'\n    return f'{x}{sep}'\n")
    assert "sep = " in out
    assert "', '" in _propagated("def f(x):\n    sep = ', '\n    return f'{x}{sep}'\n")


def test_a_typed_receiver_folds_once_the_branch_that_rebound_it_is_gone():
    src = ("def f(quant: QuantConfig, cfg):\n    table = None if cfg.model.vocab_size == 1024 else {}\n"
           "    if table is not None:\n        quant = other(quant)\n    return quant.scheme\n")
    out = specialize({"_pg.a": FUTURE + src}, CONFIG, set(), SECTIONS)["_pg.a"]
    assert "return 'int8'" in out


def test_a_nested_function_reading_the_constant_gets_it_too():
    src = "def f():\n    a = 7\n    def g():\n        return a\n    return g()\n"
    out = _propagated(src)
    assert "a = 7" not in out and "return 7" in out
    namespace: dict = {}
    exec(out, namespace)
    assert namespace["f"]() == 7


def _derived(src: str, frozen=()) -> str:
    from golf.record.prevalidated import section_paths
    from golf.train.config import TrainRunConfig

    root = TrainRunConfig()
    sources = {"_pg.a": FUTURE + "from _pg.quant.config import calibrates\n" + src}
    return specialize(sources, root.to_dict(), set(frozen), section_paths(), root)["_pg.a"]


def test_derived_config_values_fold():
    src = ("def f(m: ModelConfig, q: QuantConfig, b: BudgetConfig):\n"
           "    if calibrates(q, b) or q.uses_gptq():\n        return gptq()\n"
           "    return (m.head_dim, m.kv_dim)\n")
    out = _derived(src)
    assert "gptq()" not in out and "return (64, 256)" in out


def test_derived_values_reading_a_field_that_may_change_stay():
    src = "def f(s: ScheduleConfig, d: DataConfig):\n    return (s.schedule_cap_ms, d.train_glob())\n"
    out = _derived(src, frozen={"schedule.max_wallclock_seconds", "data.dataset_dir"})
    assert "s.schedule_cap_ms" in out and "d.train_glob()" in out


def test_a_derived_call_that_writes_the_config_stays():
    out = _derived("def f(m: ModelConfig):\n    return m.__post_init__()\n")  # it normalises a list field
    assert "m.__post_init__()" in out


IMPORTS = """import math
import torch
import torch.nn.functional as F
from collections.abc import Callable
from pathlib import Path
from torch import nn
import numpy as np
from pathlib import Path
import torch.distributed
try:
    import json
except ImportError:
    json = None

def main(fn: Callable, p: Path) -> nn.Module:
    return Path(str(p)), torch.zeros(1), torch.distributed.is_available()
"""


def test_unreferenced_and_repeated_imports_of_other_packages_go():
    out = _shake({"_pg.a": IMPORTS})["_pg.a"]
    tops = [ast.unparse(n) for n in ast.parse(out).body if isinstance(n, (ast.Import, ast.ImportFrom))]
    # math, Callable (annotation only), nn (annotation only, torch is loaded anyway) and F go; numpy stays: nothing
    # else loads it; `import torch.distributed` is another target than `import torch`; the second Path goes;
    # the import inside try is not top level and stays.
    assert tops == ["from __future__ import annotations", "import torch", "from pathlib import Path",
                    "import numpy as np", "import torch.distributed"], tops
    assert "import json" in out
    namespace: dict = {}
    exec(compile(out, "a", "exec"), namespace)
    assert namespace["main"](None, "x")[0].name == "x"


def test_an_import_used_in_another_module_or_a_string_stays():
    out = _shake({"_pg.a": "import math\nimport struct\n\ndef main():\n    return table['struct']\n",
                  "_pg.b": "from _pg.a import main\n\ndef g():\n    return math.pi\n"}, entry=("main", "g"))
    assert "import math" in out["_pg.a"] and "import struct" in out["_pg.a"]


@pytest.mark.parametrize("use, kept", [
    ("    return name != 'wsd'\n", False),  # compared with: fetches nothing
    ("    return name in ('wsd', 'flat')\n", False),
    ("    raise ValueError(f'{name} is only used by schedule.name=wsd')\n", False),  # prose
    ("    return getattr(table, 'wsd')\n", True),  # may fetch it
    ("    return [getattr(table, n) for n in 'wsd flat'.split()]\n", True),  # names split from a string
    ("    return f'{name}'.join(['wsd'])\n", True),
])
def test_strings_keep_a_definition_only_where_they_could_fetch_it(use, kept):
    out = _shake({"_pg.a": f"def wsd():\n    return 1\n\ndef main(name, table):\n{use}"})["_pg.a"]
    assert ("def wsd" in out) is kept, use


def test_a_container_built_by_builtins_is_a_constant_table():
    src = "NAMES = frozenset({'wsd', 'flat'})\nKEEP = tuple(['x'])\n\ndef wsd():\n    return 1\n\ndef main():\n    return KEEP\n"
    out = _shake({"_pg.a": src})["_pg.a"]
    assert "NAMES" not in out and "def wsd" not in out and "KEEP = tuple" in out
    shadowed = "def frozenset(x):\n    return print(x)\n\n" + src
    assert "NAMES = frozenset" in _shake({"_pg.a": shadowed})["_pg.a"]  # a call of golf's own: it may do anything
