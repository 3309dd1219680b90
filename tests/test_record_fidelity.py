"""Every record preset is the record it names, checked against the record's own train_gpt.py (tests/records).

Per record: same logits on real FineWeb tokens (fp32, reduced width, weights copied by name map), the log's
full-scale `model_params:`, the hyperparameters the record runs with equal to the preset's resolved values (or on
the spec's documented deliberate list), and the record's quantizer vs golf's on the same state dict.
"""

from __future__ import annotations

import pytest
import torch
from records import specs
from records.oracle import (
    compare_quantizers,
    fineweb_tokens,
    golf_config,
    hparam_rows,
    log_values,
    max_rel_diff,
    paired_models,
    randomize_,
    record_dir,
)
from records.specs import SPECS

from golf.model import count_params_for
from golf.quant.int8 import quantize_state_dict

pytestmark = pytest.mark.usefixtures("one_thread")
KEYS = sorted(SPECS)


def _spec(key: str):
    spec = SPECS[key]
    if not (record_dir(spec.folder) / spec.script).is_file():
        pytest.skip(f"record folder {spec.folder} not found under ../shared/reference/records")
    return spec


@pytest.mark.parametrize("key", KEYS)
def test_forward_matches_the_record(key):
    spec = _spec(key)
    record, golf, _, _ = paired_models(spec, spec.small_env, spec.small_overrides)
    record, golf = record.to(spec.forward_dtype), golf.to(spec.forward_dtype)
    tokens = fineweb_tokens(spec.vocab, spec.seq_len)
    x, y = tokens[:-1][None], tokens[1:][None]
    with torch.no_grad():
        ref, got = spec.logits(record, x).float(), golf.logits(x)
        ref_loss, got_loss = record(x, y), golf(x, y)
    _, rel = max_rel_diff(got, ref)
    assert rel <= 1e-5, f"logits differ: max relative {rel:.3g}"
    assert abs(float(got_loss) - float(ref_loss)) <= 1e-5 * float(ref_loss)


def test_forward_check_fails_without_ntk_rope():
    """The harness can fail: 0322 without NTK RoPE (tables for 2048 instead of 1024 scaled) is far off."""
    spec = _spec("0322")
    record, golf, _, _ = paired_models(spec, spec.small_env, [*spec.small_overrides, "model.rope_train_seq_len=0"])
    x = fineweb_tokens(spec.vocab, spec.seq_len)[:-1][None]
    with torch.no_grad():
        _, rel = max_rel_diff(golf.logits(x), spec.logits(record, x).float())
    assert rel > 1e-3


@pytest.mark.parametrize("key", KEYS)
def test_full_scale_parameter_count_is_the_logged_one(key):
    spec = _spec(key)
    logged = int(log_values(spec.folder, spec.log)["model_params"])
    assert count_params_for(golf_config(spec.preset, []).model) == logged


@pytest.mark.parametrize("key", KEYS)
def test_logged_hyperparameters_are_the_scripts_defaults(key):
    """The values the record logged are the script's defaults, so the module's Hyperparameters are the run's."""
    spec = _spec(key)
    logged = log_values(spec.folder, spec.log)
    h = spec.module({}).Hyperparameters
    checked = 0
    for logged_name, value in logged.items():
        name = spec.log_aliases.get(logged_name, logged_name)
        if name and hasattr(h, name) and not name.endswith(("_path", "_dir", "_files", "run_id", "logfile")):
            ours = getattr(h, name)
            if isinstance(ours, bool):
                assert str(ours) == value, name
            elif isinstance(ours, int | float):
                assert float(ours) == float(value), name
            checked += 1
    assert checked >= 5


@pytest.mark.parametrize("key", KEYS)
def test_hyperparameters_equal_the_preset_or_are_deliberate(key):
    spec = _spec(key)
    rows = hparam_rows(spec)
    different = [r for r in rows if r[4] == "DIFFERENT"]
    assert not different, "\n".join(f"{r[0]}={r[1]!r} vs {r[2]}={r[3]!r}" for r in different)
    assert all(k in {r[0] for r in rows} for k in spec.deliberate), "a deliberate entry names no checked key"


@pytest.mark.parametrize("key", [pytest.param(k, marks=[pytest.mark.slow] if SPECS[k].quant_slow else [])
                                 for k in KEYS if SPECS[k].quantize is not None])
def test_quantizer_matches_the_record(key):
    spec = _spec(key)
    record, golf, mapping, cfg = paired_models(spec, spec.quant_env, spec.quant_overrides)
    module = spec.module(spec.quant_env)
    hessians = None
    if spec.hessians is not None:  # GPTQ: both quantizers get the record's own calibration Hessians
        specs.HESSIANS.clear()
        specs.HESSIANS.update(spec.hessians(module, record))
        hessians = {mapping.get(k, k): v for k, v in specs.HESSIANS.items()}
    sd = {k: v.detach().clone() for k, v in spec.record_state(module, record).items()}
    expected = spec.quantize(module, sd)
    qstate = quantize_state_dict({k: v.detach().clone() for k, v in golf.state_dict().items()}, cfg.quant, hessians)
    problems = compare_quantizers(expected, qstate, mapping, spec.transforms)
    assert not problems, "\n".join(problems)


def test_qat_rowmax31_is_the_records_fake_quantization():
    """quant.qat.rule=rowmax31 gives the records' CastedLinear QAT forward (and its STE gradient) exactly."""
    from torch import nn

    from golf.model.layers import CastedLinear
    from golf.quant.qat import install_qat

    spec = _spec("0322")
    mod = spec.module({})
    ref = mod.CastedLinear(256, 512, bias=False)
    ours = nn.Sequential(CastedLinear(256, 512, bias=False))
    randomize_(ref, seed=3)
    with torch.no_grad():
        ref.weight.mul_(40.0)  # rows above and below the 1/31 floor
        ours[0].weight.copy_(ref.weight)
    cfg = golf_config("record_0322_gptq_lite_ema", ["quant.qat.folded_flag=false"])
    assert install_qat(ours, cfg.quant, enabled=True) == ["0.weight"]
    x = fineweb_tokens(1024, 64)[:64].float().reshape(1, 64, 1).expand(1, 64, 256) / 1024.0
    x = x + torch.linspace(-1, 1, 256)
    mod.CastedLinear._qat_enabled = True
    try:
        ref.train()
        y_ref = ref(x)
    finally:
        mod.CastedLinear._qat_enabled = False
    y = ours(x)
    assert torch.equal(y, y_ref)
    y_ref.square().sum().backward()
    y.square().sum().backward()
    assert torch.equal(ours[0].weight.grad, ref.weight.grad)


def test_folded_qat_flag_never_switches_on():
    """quant.qat.folded_flag=true (the records' published runs): installed, but set_qat_enabled leaves it off."""
    from torch import nn

    from golf.model.layers import CastedLinear
    from golf.quant.qat import install_qat, set_qat_enabled

    model = nn.Sequential(CastedLinear(256, 512, bias=False))
    randomize_(model, seed=4)
    x = torch.randn(2, 8, 256, generator=torch.Generator().manual_seed(0))
    plain = model(x)
    cfg = golf_config("record_0322_gptq_lite_ema", [])
    assert cfg.quant.qat.folded_flag and install_qat(model, cfg.quant, enabled=True) == ["0.weight"]
    assert set_qat_enabled(model, True) == 0
    assert torch.equal(model(x), plain)
