"""The generated train_gpt.py leaves out golf's invariant checks (model, optim, quant, eval) and keeps the
refusals of what varies at run time: the environment's config rules, the data files, the artifact checksum and
the budget. A check some handler recovers from, or whose class cannot be told, stays."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from record_helpers import data_dir, preset, run_guarded

from golf.record import submission_bundle
from golf.record.bundle import PRIVATE, module_path, rename
from golf.record.invariants import drop_invariant_checks

PACKING = f"{PRIVATE}.quant.packing"


def _source(module: str) -> str:
    return rename(module_path(module).read_text(encoding="utf-8"))


def _raised(src: str) -> set[str]:
    """Names raised by `if ...: raise Name(...)` statements in `src`."""
    return {ast.unparse(s.exc.func if isinstance(s.exc, ast.Call) else s.exc)
            for n in ast.walk(ast.parse(src)) if isinstance(n, ast.If)
            for s in n.body if isinstance(s, ast.Raise) and s.exc is not None}


def _rule_checks(src: str) -> int:
    return sum(isinstance(n, ast.If) and any(isinstance(s, ast.Raise) for s in n.body)
               for fn in ast.walk(ast.parse(src)) if isinstance(fn, ast.FunctionDef) and fn.name == "__post_init__"
               for n in ast.walk(fn))


def test_generated_file_drops_invariant_checks_and_keeps_run_time_refusals():
    readable = submission_bundle(preset("baseline")).readable
    raised = _raised(readable)
    assert not {"CodecError", "QuantizationError", "PackingError", "ParamRoutingError"} & raised
    assert "bit width" not in readable and "is already registered" not in readable
    # what the file reads or is told at run time still stops it with one line
    assert {"ArtifactError", "BudgetExceededError", "NoShardsFoundError", "_fail", "OptimConfigError"} <= raised
    assert "checksum mismatch" in readable and "-byte target" in readable and "bad magic" in readable
    assert "gives less than one" in readable  # `# run-time`: VAL_BATCH_SIZE and the world size decide it


def test_a_check_marked_run_time_ships():
    marked = ("\n\ndef _fit(bits: int) -> None:\n"
              "    if bits > 8:  # run-time: a variable\n"
              "        raise PackingError('x')\n")
    src = _source("golf.quant.packing") + marked
    out = drop_invariant_checks({PACKING: src}, PRIVATE)[PACKING]
    assert "raise PackingError('x')" in out and "bit width" not in out


def test_checks_of_the_invariant_layers_go_and_an_emptied_block_keeps_pass():
    src = _source("golf.quant.packing") + (
        "\n\ndef _only_checks(bits: int) -> None:\n"
        "    if bits > 8:\n"
        "        raise PackingError('too wide')\n"
        "\n\ndef _chain(bits: int, a: bool) -> int:\n"
        "    if a:\n        bits += 1\n"
        "    elif bits > 8:\n        raise PackingError('too wide')\n"
        "    return bits\n")
    out = drop_invariant_checks({PACKING: src}, PRIVATE)[PACKING]
    assert "PackingError" in _raised(src) and not _raised(out)
    assert re.search(r"def _only_checks\(bits: int\) -> None:\n    pass\n", out)
    scope: dict = {}
    compile(out, PACKING, "exec")
    exec(out[out.index("def _chain"):], scope)  # an elif that only raised leaves `pass` after its `if`
    assert scope["_chain"](9, False) == 9 and scope["_chain"](3, True) == 4


def test_a_recovering_handler_keeps_the_checks_it_could_catch():
    recovering = ("\n\ndef _safe(q):\n    try:\n        return pack_codes(q, 4)\n"
                  "    except ValueError:\n        return None\n")
    src = _source("golf.quant.packing") + recovering  # PackingError is a ValueError
    assert drop_invariant_checks({PACKING: src}, PRIVATE)[PACKING] == src
    # a handler of another family, or golf's reporter of GolfError itself, does not keep them
    unrelated = recovering.replace("except ValueError", "except OSError")
    reporter = recovering.replace("except ValueError:\n        return None",
                                  "except GolfError as exc:\n        print(f'error: {exc}')")
    conditional = recovering.replace("        return None",
                                     "        if q is None:\n            raise\n        return None")
    src = _source("golf.quant.packing") + conditional  # recovers unless q is None: still a recovering handler
    assert drop_invariant_checks({PACKING: src}, PRIVATE)[PACKING] == src
    for extra in (unrelated, reporter):
        src = _source("golf.quant.packing") + "\nfrom _pg.errors import GolfError\n" + extra
        assert "PackingError" not in _raised(drop_invariant_checks({PACKING: src}, PRIVATE)[PACKING])


def test_unknown_classes_config_rules_and_other_layers_keep_their_checks():
    unknown = "\n\ndef _odd(x):\n    if x:\n        raise _made_elsewhere(x)\n"
    src = _source("golf.quant.packing") + unknown
    assert "_made_elsewhere" in _raised(drop_invariant_checks({PACKING: src}, PRIVATE)[PACKING])
    for module in ("golf.optim.config", "golf.data.shards"):  # a config schema's rules; the data read at run time
        name = PRIVATE + module[len("golf"):]
        src = _source(module)
        assert _raised(src) and drop_invariant_checks({name: src}, PRIVATE)[name] == src
    rule = "def __post_init__(self):\n    if self:\n        raise ValueError('rule')\n\n\n"
    rules = _source("golf.optim.muon").replace("def zeropower_via", rule + "def zeropower_via")
    muon = f"{PRIVATE}.optim.muon"
    out = drop_invariant_checks({muon: rules}, PRIVATE)[muon]
    assert _rule_checks(out) == _rule_checks(rules) == 1 and out != rules


def test_a_helper_building_the_error_is_told_by_its_return_annotation():
    compress = f"{PRIVATE}.quant.compress"
    src = _source("golf.quant.compress")
    assert "inflation_error" in _raised(src)
    assert "inflation_error" not in _raised(drop_invariant_checks({compress: src}, PRIVATE)[compress])


@pytest.mark.slow
def test_a_run_time_check_still_stops_the_generated_file(data_root: Path, tmp_path: Path, one_thread):
    """VAL_BATCH_SIZE below one window per rank: the step-0 validation refuses it by name, as the official
    script does (a ValueError), instead of looping over range(..., 0)."""
    sub = data_dir(tmp_path / "submission", data_root)
    script = sub / "train_gpt.py"
    script.write_text(submission_bundle(preset("baseline")).shipped, encoding="utf-8")
    proc = run_guarded(script, sub, {"RUN_ID": "small", "VAL_BATCH_SIZE": "8", "VAL_LOSS_EVERY": "1"}, timeout=300)
    assert proc.returncode != 0
    assert "eval.batch_tokens=8 gives less than one" in proc.stderr, proc.stderr[-2000:]


def test_renaming_golf_leaves_file_names_and_urls_alone():
    text = "import golf.eval\nfrom golf import x\n'golf.quant.int8' shared/reference/parameter-golf.md openai/parameter-golf"
    assert rename(text) == (f"import {PRIVATE}.eval\nfrom {PRIVATE} import x\n'{PRIVATE}.quant.int8' "
                            "shared/reference/parameter-golf.md openai/parameter-golf")
