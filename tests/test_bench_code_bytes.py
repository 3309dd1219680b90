"""golf.bench.code_bytes: a flat train_gpt.py's counted bytes by module and by layer."""

from __future__ import annotations

import random
import re
import string
from itertools import pairwise

import pytest
from record_helpers import preset

from golf.bench.code_bytes import ENTRY, breakdown, group_of, sections
from golf.bench.record import measure
from golf.record import submission_bundle
from golf.record.bundle import Bundle, minify_flat
from golf.record.cache import OFF
from golf.record.wrapper import wrap


def _bundle(readable: str) -> Bundle:
    config = {"quant": {"codec": "zlib"}, "budget": {"code_wrapper": "auto", "code_text": "base85"}}
    return Bundle(shipped=wrap(minify_flat(readable), "zlib"), readable=readable, modules=[], config=config)


def test_sections_cover_the_baseline_program_module_by_module():
    bundle = submission_bundle(preset("baseline"))
    spans = sections(bundle.readable)
    names = [name for name, _, _ in spans]
    assert names[-1] == ENTRY and re.match(r"CONFIG ?=", bundle.readable[spans[-1][1]:])  # the tail, re-emitted or not
    assert sorted(names[:-1]) == sorted(bundle.modules)  # each bundled module once
    assert spans[0][1] == bundle.readable.index("#@") and spans[-1][2] == len(bundle.readable)
    assert all(a[2] == b[1] for a, b in pairwise(spans))  # contiguous: nothing counted twice or skipped


def test_marginal_bytes_follow_what_each_module_holds():
    noise = "".join(random.Random(0).choices(string.ascii_letters, k=3000))  # incompressible
    readable = ("from __future__ import annotations\n"
                f"#@_pg.model.big 0\nTABLE = {noise!r}\n"
                "#@_pg.optim.small 0\ndef lr(step):\n    return 0.5 ** step\n"
                "#@_pg.quant.config 0\nLEVEL = 9\n"
                "CONFIG={}\nif __name__=='__main__':print(TABLE, lr(2), LEVEL, CONFIG)\n")
    modules, layers = breakdown(_bundle(readable))
    by_name = {p.name: p for p in modules}
    assert [p.name for p in modules][0] == "golf.model.big" and by_name["golf.model.big"].marginal > 2000
    assert 0 < by_name["golf.optim.small"].marginal < 60
    assert by_name[ENTRY].readable_bytes == len("CONFIG={}\nif __name__=='__main__':print(TABLE, lr(2), LEVEL, CONFIG)\n")
    assert {p.name for p in layers} == {"model", "optim", "config"}


def test_a_packaged_program_has_no_breakdown():
    with pytest.raises(ValueError, match="flat-layout"):
        sections("M={'_pg': (1, '')}\n")


@pytest.mark.parametrize("module,layer", [
    ("golf.model.gpt", "model"), ("golf.model", "model"), ("golf.quant.config", "config"),
    ("golf.schema", "config"), ("golf.submission", "top"), ("golf", "top"), ("golf.train.trainer", "train"),
])
def test_each_module_falls_in_its_layer(module, layer):
    assert group_of(module) == layer


def test_table_overrides_reach_every_measured_preset(monkeypatch):
    """`python -m golf.bench.record budget.code_text=base128` measures the presets with that override: the
    baseline row shrinks by the denser text (and the bench's cache-off switch does not leak out of it)."""
    monkeypatch.setenv("GOLF_CACHE_DIR", OFF)
    (plain,), (dense,) = measure([], ["baseline"]), measure(["budget.code_text=base128"], ["baseline"])
    assert dense["code_bytes"] < plain["code_bytes"] - 1000 and dense["target"] == plain["target"] == 20_000
