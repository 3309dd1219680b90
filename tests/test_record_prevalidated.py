"""What the generated train_gpt.py leaves out because golf checked it at generation: the config's defaults (the
file bakes a delta) and the rules of the sections no environment variable reaches. Both must give the same
typed config as golf's own, for every preset; the rules that guard the overrides must still ship and fire."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
from record_helpers import REPO, preset, run_guarded

from golf.model.config import ModelConfig
from golf.optim.config import OptimConfig, ScheduleConfig
from golf.quant.config import QuantConfig
from golf.record import submission_bundle, submission_config
from golf.record.prevalidated import baked_delta, config_delta, prevalidated_classes, section_paths
from golf.submission import ENV_OVERRIDES
from golf.train.config import TrainerConfig, TrainRunConfig

PRESETS = sorted(p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml"))
OVERRIDES = set(ENV_OVERRIDES.values())


def _key(cls: type) -> tuple[str, str]:
    return cls.__module__, cls.__qualname__


def _sections(obj):
    yield obj
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            yield from _sections(value)


def test_delta_keeps_what_differs_and_rebases_nested_sections_on_their_class():
    full = TrainRunConfig().to_dict()
    assert config_delta(TrainRunConfig, full) == {}
    full["seed"] = 1337.0  # same value, other type: kept
    full["quant"]["groups"]["attn"]["bits"] = 6
    delta = config_delta(TrainRunConfig, full)
    assert delta["seed"] == 1337.0 and type(delta["seed"]) is float
    # the attn group differs, so it is given whole relative to GroupQuant(): its patterns (QuantGroups' default
    # factory, not GroupQuant's) must be in the delta
    assert delta["quant"] == {"groups": {"attn": {"bits": 6, "patterns": [".attn."]}}}


@pytest.mark.parametrize("name", PRESETS)
def test_baked_delta_rebuilds_the_whole_config(name):
    full = submission_config(preset(name))
    assert TrainRunConfig.from_dict(baked_delta(full)).to_dict() == full


def test_sections_an_override_reaches_keep_their_rules():
    dropped = prevalidated_classes(OVERRIDES)
    assert {_key(ModelConfig), _key(OptimConfig), _key(QuantConfig)} <= dropped
    assert not {_key(TrainRunConfig), _key(ScheduleConfig), _key(TrainerConfig)} & dropped
    assert _key(ScheduleConfig) in prevalidated_classes(OVERRIDES - {k for k in OVERRIDES if "schedule" in k})


@pytest.mark.parametrize("name", PRESETS)
def test_dropped_rules_change_nothing_in_the_baked_config(name):
    """Running a dropped __post_init__ again on the baked values is a no-op, so the file without it builds the
    same objects (the rules' normalisations are idempotent; a rule that rewrote values would fail here)."""
    dropped = prevalidated_classes(OVERRIDES)
    cfg = TrainRunConfig.from_dict(submission_config(preset(name)))
    checked = 0
    for section in _sections(cfg):
        if _key(type(section)) in dropped:
            again = copy.deepcopy(section)
            again.__post_init__()
            assert again == section, type(section).__name__
            checked += 1
    assert checked >= 3


def test_section_paths_name_each_unique_section():
    paths = section_paths()
    assert paths["QuantConfig"] == ("quant",) and paths["ScheduleConfig"] == ("schedule",)
    assert "GroupQuant" not in paths  # five quantization groups share it: never a typed receiver


def test_generated_file_drops_model_rules_and_keeps_schedule_rules():
    readable = submission_bundle(preset("baseline")).readable
    model_src = readable.split("#@_pg.model.config ")[1].split("\n#@")[0]
    optim_src = readable.split("#@_pg.optim.config ")[1].split("\n#@")[0]
    assert "class ModelConfig" in model_src and "__post_init__" not in model_src
    assert "class ScheduleConfig" in optim_src and "def __post_init__" in optim_src


def test_a_bad_override_still_stops_the_generated_file_with_one_line(tmp_path: Path):
    script = tmp_path / "train_gpt.py"
    script.write_text(submission_bundle(preset("baseline")).shipped, encoding="utf-8")
    proc = run_guarded(script, tmp_path, {"ITERATIONS": "-1", "RUN_ID": "bad"}, timeout=300)
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "schedule.iterations" in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr


SECTION = '''from __future__ import annotations
from dataclasses import dataclass

CHOICES = ("a", "b")


def _allowed(key, value, allowed):
    if value not in allowed:
        raise ValueError(f"{key}={value!r}")


def _noisy(key, value):
    print(key)
    if value is None:
        raise ValueError(key)


@dataclass
class Section:
    steps: int = 1
    kind: str = "a"
    width: int = 2
    ratio: float = 0.5
    modes: tuple = ("a",)
    derived: int = 0

    def __post_init__(self):
        owner = "section"
        if self.steps < 0:
            raise ValueError("steps")
        if self.steps > 10 ** 6:
            raise ValueError(f"{owner}.steps too large")
        _allowed(owner, self.kind, CHOICES)
        if self.kind not in CHOICES:
            raise ValueError("kind")
        _allowed("width", self.width, (2, 4))
        _noisy("ratio", self.ratio)
        copy = self.ratio
        if not 0 <= copy <= 1:
            raise ValueError("ratio")
        self.modes = list(self.modes)
        if len(self.modes) > 3:
            raise ValueError("modes")
        for i, mode in enumerate(self.modes):
            _allowed(f"modes[{i}]", mode, CHOICES)
        for step in range(self.steps % 5):
            _allowed("stepwise", step, range(3))
        for seen in self.modes:
            _allowed("seen", seen, CHOICES)
        if seen == "z":
            raise ValueError("seen after the loop")
        self.derived = self.steps * 2
        if self.derived > 100:
            raise ValueError("derived")
        if self.kind == "b" and self.uses_steps():
            raise ValueError("method")
        if self.kind == "b" and steps_of(section=self) > 9:
            raise ValueError("handed on")

    def uses_steps(self):
        return self.steps > 0


def steps_of(section):
    return section.steps


@dataclass
class Quiet:
    width: int = 2

    def __post_init__(self):
        if self.width < 1:
            raise ValueError("width")
'''


def test_live_sections_lose_only_the_checks_no_override_reaches():
    from golf.record.prevalidated import drop_settled_checks

    live = {("golf.s", "Section"): {"steps"}, ("golf.s", "Quiet"): {"other"}}
    out = drop_settled_checks({"_pg.s": SECTION}, live, "_pg")["_pg.s"]
    post = out.split("def __post_init__")[1].split("def uses_steps")[0]
    assert 'raise ValueError("steps")' in post  # reads a live field
    assert '"kind"' not in post and "_allowed(owner" not in post and '_allowed("width"' not in post  # settled
    assert 'owner = "section"' in post and "too large" in post  # a literal local is settled; a kept check reads it
    assert "copy" not in post and '"ratio")' not in post  # the settled local and its check
    assert "_noisy(" in post  # prints: not a pure checker
    assert '"modes"' not in post  # set from itself (baked state): still settled
    assert "modes[" not in post  # a loop of checks over baked items
    assert '"stepwise"' in post  # a loop over a live field
    assert '"seen"' in post  # its target is read after the loop
    assert '"derived"' in post  # set from a live field: live
    assert '"method"' in post  # a method of the receiver may read a live field
    assert '"handed on"' in post  # so may a function given the receiver, here by keyword
    assert "class Quiet" in out and out.count("def __post_init__") == 1  # nothing left: the method goes
    namespace: dict = {}
    exec(compile(out, "s", "exec"), namespace)
    with pytest.raises(ValueError, match="steps"):
        namespace["Section"](steps=-1)
    with pytest.raises(ValueError, match="stepwise"):
        namespace["Section"](steps=4)
    with pytest.raises(ValueError, match="section.steps too large"):
        namespace["Section"](steps=10 ** 7)
    with pytest.raises(ValueError, match="derived"):
        namespace["Section"](steps=51)


def test_generated_file_keeps_the_trainer_check_an_override_reaches_only():
    readable = submission_bundle(preset("baseline")).readable
    trainer = readable.split("class TrainerConfig")[1].split("\nclass ")[0]
    assert "self.train_seq_len < 1" in trainer  # TRAIN_SEQ_LEN / TRAIN_BATCH_TOKENS
    assert "trainer.device=" not in trainer and "trainer.loader=" not in trainer
    data = readable.split("class DataConfig")[1].split("\nclass ")[0]
    assert "__post_init__" not in data  # data.text_transform is baked: its only check went
