"""The bundled modules flattened into one namespace (golf.record.flatten): same behaviour as the packaged
modules, names that two modules bind kept apart, builtins never shadowed, tables of module names still working,
and every preset flattened with no undefined name left."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import types
import warnings
from pathlib import Path

import pytest
from record_helpers import REPO, preset

from golf.record import submission_bundle
from golf.record.bundle import minify_flat
from golf.record.flatten import FlattenError, flatten

FUTURE = "from __future__ import annotations\n"
PRESETS = sorted(p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml"))


def _run(sources: dict[str, str], call: str, minified: bool = False):
    """Flatten `sources`, execute the result (minified with globals renamed if asked), evaluate `call`."""
    source, names = flatten({k: FUTURE + v for k, v in sources.items()}, "_pg")
    if minified:
        source = minify_flat(source + f"RESULT={call}\nKEEP = 'RESULT'\n")  # a spelled name is kept
        call = "RESULT"
    module = types.ModuleType("flat_test")  # as the script runs: its module in sys.modules (dataclasses look)
    sys.modules["flat_test"] = module
    try:
        exec(compile(source, "flat", "exec"), module.__dict__)
        return eval(call, module.__dict__), names
    finally:
        for m in [m for m in sys.modules if m in ("_pg", "flat_test") or m.startswith("_pg.")]:
            del sys.modules[m]


SOURCES = {
    "_pg.a": "HEADER = 1\nlog = 'a'\n\ndef a_header():\n    return HEADER, log\n",
    "_pg.b": ("import importlib\nfrom dataclasses import dataclass\nfrom _pg.a import a_header as ah\n"
              "HEADER = 2\nlog = 'b'\n\n@dataclass\nclass Cfg:\n    bits: int = HEADER\n\n"
              "def b_header():\n    return HEADER, log, ah(), Cfg().bits\n"),
    "_pg.c": ("from _pg.b import HEADER as H, b_header\n\n"
              "def c_all():\n    from _pg.a import HEADER\n    return H, HEADER, b_header()\n"),
}


@pytest.mark.parametrize("minified", [False, True])
def test_names_two_modules_bind_stay_apart(minified):
    result, names = _run(SOURCES, "c_all()", minified)
    assert result == (2, 1, (2, "b", (1, "a"), 2))
    assert names["_pg.a"]["HEADER"] == "HEADER" and names["_pg.b"]["HEADER"] != "HEADER"


@pytest.mark.parametrize("minified", [False, True])
@pytest.mark.parametrize("installed", [True, False])
def test_an_import_fallback_is_the_imports_own_variable(minified, installed):
    """`try: import x / except ImportError: x = None` binds one variable; another module's `x` is kept apart.
    (It once renamed the fallback and every read, not the import: with the package installed the read failed.)"""
    package = "json" if installed else "golf_no_such_package"
    sources = {"_pg.a": f"try:\n    import {package} as kernels\nexcept ImportError:\n    kernels = None\n\n"
                        "def a_has():\n    return kernels is not None\n",
               "_pg.b": "kernels = 'mine'\n\ndef b_has():\n    return kernels\n"}
    result, names = _run(sources, "(a_has(), b_has())", minified)
    assert result == (installed, "mine")
    assert "kernels" not in names["_pg.a"] or names["_pg.a"]["kernels"] == "kernels"


def test_a_name_both_imported_and_bound_is_refused():
    sources = {"_pg.a": "import json\njson = None\n\ndef a_json():\n    return json\n"}
    with pytest.raises(FlattenError, match="'json' is both imported and bound"):
        _run(sources, "a_json()")


def test_a_global_never_shadows_a_builtin_another_module_uses():
    sources = {"_pg.a": "def sorted(x):\n    return 'mine'\n\ndef a_sort():\n    return sorted([2, 1])\n",
               "_pg.b": "def b_sort():\n    return sorted([2, 1])\n"}
    assert _run(sources, "(a_sort(), b_sort())")[0] == ("mine", [1, 2])


def test_modules_named_in_tables_are_importable_with_their_attributes():
    sources = {"_pg.modes.standard": "def score():\n    return 'standard'\n",
               "_pg.modes.sliding": "def score():\n    return 'sliding'\n",
               "_pg.run": ("import importlib\nMODES = {'a': '_pg.modes.standard', 'b': '_pg.modes.sliding'}\n\n"
                           "def run(m):\n    return importlib.import_module(MODES[m]).score()\n")}
    assert _run(sources, "(run('a'), run('b'))", minified=True)[0] == ("standard", "sliding")


def test_a_function_import_of_a_module_not_bundled_fails_only_when_run():
    sources = {"_pg.a": "def f(x):\n    if x:\n        from _pg.gone import thing\n        return thing\n    return 0\n"}
    source, _ = flatten({k: FUTURE + v for k, v in sources.items()}, "_pg")
    namespace: dict = {}
    exec(compile(source, "flat", "exec"), namespace)
    assert namespace["f"](False) == 0
    with pytest.raises(ModuleNotFoundError):
        namespace["f"](True)


def test_blocks_left_empty_by_removed_imports_stay_valid():
    sources = {"_pg.a": "X = 1\n", "_pg.c": "X = 3\n",
               "_pg.b": "FLAG = True\nif FLAG:\n    from _pg.c import X\n\n"
                        "def f():\n    from _pg.c import X\n\ndef g():\n    return X\n"}
    assert _run(sources, "(f(), g())")[0] == (None, 3)  # c's X is renamed; b's guarded import still finds it


def test_modules_run_after_what_their_top_level_imports():
    sources = {"_pg.z": "from _pg.a import REG\nREG.append('z')\n",
               "_pg.a": "REG = []\n",
               "_pg.m": "from _pg.z import REG\nFIRST = list(REG)\n"}
    assert _run(sources, "FIRST")[0] == ["z"]


@pytest.mark.parametrize("sources,why", [
    ({"_pg.a": "log = 1\n", "_pg.b": "log = 2\n\ndef f(log):\n    return log\n"}, "parameter"),
    ({"_pg.a": "import numpy as np\n", "_pg.b": "import torch as np\n"}, "imports"),
    ({"_pg.a": "def f():\n    import _pg.b\n", "_pg.b": "X = 1\n"}, "module object"),
    ({"_pg.a": "class Muon:\n    pass\n", "_pg.b": "class Muon:\n    pass\nNAME = 'Muon'\n"}, "string"),
    ({"_pg.a": "log = 1\n", "_pg.b": "log = 2\n\ndef f():\n    def log():\n        pass\n    return log\n"},
     "nested definition"),
    ({"_pg.a": "e = 1\n", "_pg.b": "e = 2\n\ndef f():\n    try:\n        pass\n    except ValueError as e:\n"
      "        return e\n"}, "except"),
    ({"_pg.a": "np = 1\n", "_pg.b": "np = 2\n\ndef f():\n    import numpy as np\n    return np\n"},
     "local import"),
])
def test_what_cannot_share_one_namespace_is_refused(sources, why):
    with pytest.raises(FlattenError, match=why):
        flatten({k: FUTURE + v for k, v in sources.items()}, "_pg")


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_flattens_with_no_global_lost(name, tmp_path: Path):
    """No name a bundled module binds is left undefined in the flat program (a renaming that missed a use).
    Other undefined names are uses of modules the config never runs, in code it never reaches (the fitter's
    names after `budget.fit` folded to false), as in the packaged form."""
    bundle = submission_bundle(preset(name))
    assert bundle.layout == "flat"
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        pytest.skip("ruff (dev extra) not installed")
    script = tmp_path / "train_gpt.readable.py"
    script.write_text(bundle.readable, encoding="utf-8")
    proc = subprocess.run([ruff, "check", "--no-cache", "--isolated", "--select", "F821", "--output-format",
                           "concise", str(script)], capture_output=True, text=True)
    undefined = set(re.findall(r"F821 Undefined name `(\w+)`", proc.stdout))
    bound = {n for names in bundle.flat_names.values() for pair in names.items() for n in pair}
    assert not undefined & bound, proc.stdout[-3000:]


@pytest.mark.parametrize("name", PRESETS)
def test_every_preset_runs_its_module_code_and_builds_its_config_flat(name):
    """Both forms run every module's top-level code in one namespace (no __main__: no training), the shipped
    one through its own 2-line wrapper (lzma, or brotli for a config whose codec needs brotli), and the readable
    one rebuilds the typed config there (dataclass annotations resolved in the flat namespace)."""
    bundle = submission_bundle(preset(name))
    for source in (bundle.shipped, bundle.readable):
        module = types.ModuleType("flat_check")
        sys.modules["flat_check"] = module
        try:
            with warnings.catch_warnings():  # e.g. `None(...)` left by a fold: a SyntaxWarning on every start
                warnings.simplefilter("error", SyntaxWarning)
                exec(compile(source, "train_gpt.py", "exec"), module.__dict__)
            if source is bundle.readable:
                run_config = module.__dict__[bundle.flat_names["_pg.train.config"]["TrainRunConfig"]]
                assert run_config.from_dict(module.CONFIG).to_dict() == bundle.config
        finally:
            for m in [m for m in sys.modules if m in ("_pg", "flat_check") or m.startswith("_pg.")]:
                del sys.modules[m]
