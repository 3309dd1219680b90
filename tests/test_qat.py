"""QAT: the fake-quantized forward equals the exported model's forward, gradients are straight-through, the
switch is a tensor read inside the compiled graph (record 03-21's constant-folded flag), and the late-QAT hook."""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.testing import CompileCounter

from golf.model import build_model
from golf.model.config import ModelConfig
from golf.model.layers import CastedLinear
from golf.quant.config import GroupQuant, QuantConfig, QuantGroups
from golf.quant.int8 import dequantize_state, quantize_state_dict
from golf.quant.intn import fake_quantize_rows
from golf.quant.qat import install_qat, remove_qat, set_qat_enabled
from golf.train.qat import QATHook

# keep_float_max_numel=64: every matrix of the tiny model (d=32) is quantized, every vector is passed through
# (the default 65,536 would pass the matrices through as well); the embedding stays fp32.
INT3 = QuantConfig(scheme="mixed", keep_float_max_numel=64, groups=QuantGroups(
    embed=GroupQuant(passthrough="float32", patterns=["tok_emb"]),
    attn=GroupQuant(bits=3, clip="search", patterns=[".attn."]),
    mlp=GroupQuant(bits=4, clip="std", clip_sigmas=3.0, patterns=[".mlp."]),
    other=GroupQuant(passthrough="float32"), small=GroupQuant(passthrough="float32")))


def tiny_model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_model(ModelConfig(vocab_size=64, num_layers=2, model_dim=32, num_heads=2, num_kv_heads=1))
    with torch.no_grad():
        for p in model.parameters():  # non-zero everywhere so every weight matters
            p.normal_(0.0, 0.1)
    return model


def batch(seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 64, (2, 12), generator=g), torch.randint(0, 64, (2, 12), generator=g)


def exported_copy(model: torch.nn.Module, quant: QuantConfig) -> torch.nn.Module:
    """The model as export + load would give it: dequant(quant(state_dict))."""
    ref = tiny_model()
    ref.load_state_dict(dequantize_state(quantize_state_dict(model.state_dict(), quant)))
    return ref


def test_qat_forward_equals_dequantized_export_forward():
    model, (x, y) = tiny_model(), batch()
    float_loss = model(x, y)
    covered = install_qat(model, INT3)
    assert len(covered) == 12 and all(".attn." in n or ".mlp." in n for n in covered)
    assert torch.equal(model(x, y), float_loss)  # installed but off: the float model
    set_qat_enabled(model, True)
    ref = exported_copy(model, INT3)
    assert torch.equal(model.logits(x), ref.logits(x))
    assert not torch.equal(model(x, y), float_loss)


def test_qat_gradient_is_straight_through():
    model, (x, y) = tiny_model(), batch()
    install_qat(model, INT3, enabled=True)
    model(x, y).backward()
    ref = exported_copy(model, INT3)
    ref(x, y).backward()
    # STE: d loss / d w equals the gradient at the quantized weights.
    for (name, p), (_, p_ref) in zip(model.named_parameters(), ref.named_parameters(), strict=True):
        assert torch.allclose(p.grad, p_ref.grad, atol=1e-6, rtol=1e-5), name


def test_qat_keeps_state_dict_and_remove_restores_classes():
    model = tiny_model()
    keys = list(model.state_dict())
    install_qat(model, INT3, enabled=True)
    assert list(model.state_dict()) == keys  # the flag buffer is not persistent
    assert remove_qat(model) == 12
    assert all(type(m) is CastedLinear for m in model.modules() if isinstance(m, CastedLinear))
    assert not any("qat_flag" in n for n, _ in model.named_buffers())


def test_official_int8_qat_covers_only_quantized_weights():
    model = tiny_model()  # with the official 65,536 threshold every matrix of this model is passthrough
    assert install_qat(model, QuantConfig()) == []
    assert install_qat(model, QuantConfig(keep_float_max_numel=0))  # official int8 rule on every matrix


def test_enabling_qat_changes_compiled_forward_without_recompiling():
    model, (x, y) = tiny_model(), batch()
    counter = CompileCounter()
    compiled = torch.compile(model, backend=counter, fullgraph=True, dynamic=False)
    float_loss = compiled(x, y)
    install_qat(model, INT3)  # after compiling, as the training loop does (hooks run after priming)
    assert torch.equal(compiled(x, y), float_loss)
    frames = counter.frame_count
    set_qat_enabled(model, True)
    qat_loss = compiled(x, y)
    assert counter.frame_count == frames  # flipping the buffer needs no new graph: it is read, not folded
    assert not torch.equal(qat_loss, float_loss)
    assert torch.equal(qat_loss, exported_copy(model, INT3)(x, y))
    set_qat_enabled(model, False)
    assert torch.equal(compiled(x, y), float_loss) and counter.frame_count == frames


def test_enabling_qat_changes_inductor_compiled_linear():
    torch.manual_seed(0)
    net = torch.nn.Sequential(CastedLinear(32, 16, bias=False))
    quant = QuantConfig(scheme="mixed", keep_float_max_numel=0, groups=QuantGroups(other=GroupQuant(bits=3)))
    install_qat(net, quant)
    compiled = torch.compile(net, fullgraph=True, dynamic=False)  # default inductor backend, CPU
    x = torch.randn(4, 32)
    off = compiled(x)
    set_qat_enabled(net, True)
    on = compiled(x)
    w_hat = dequantize_state(quantize_state_dict({"0.weight": net[0].weight.detach()}, quant))["0.weight"]
    assert not torch.allclose(on, off)
    assert torch.allclose(on, x @ w_hat.T, atol=1e-6)


def test_inductor_fake_quantization_is_bit_exact_for_every_clip_mode():
    # Without emulate_precision_casts (set by install_qat) inductor skips the fp16 rounding of the scales.
    install_qat(torch.nn.Sequential(), INT3)
    rules = [GroupQuant(bits=3, clip=c, clip_sigmas=2.0) for c in ("percentile", "rowmax", "search", "std")]
    rules.append(GroupQuant(bits=5, clip="search", clip_search="row"))
    w = torch.randn(16, 32, generator=torch.Generator().manual_seed(0)) * 0.2
    compiled = torch.compile(lambda w: [fake_quantize_rows(w, r, torch.float16) for r in rules], fullgraph=True)
    for rule, got in zip(rules, compiled(w), strict=True):
        assert torch.equal(got, fake_quantize_rows(w, rule, torch.float16)), rule.clip


@pytest.mark.parametrize("threshold, switch_step", [(0.0, 0), (0.5, 4)])
def test_late_qat_hook_switches_when_lr_scale_drops(threshold, switch_step):
    model, (x, y) = tiny_model(), batch()
    quant = QuantConfig(**{**INT3.__dict__, "qat": INT3.qat.__class__(enabled=True, late_threshold=threshold)})
    hook = QATHook(quant)
    float_loss = model(x, y)
    hook.on_model_built(model)  # the loop installs QAT before compile/priming
    assert torch.equal(model(x, y), float_loss) or threshold <= 0.0
    hook.on_train_start(model, [])
    for step, scale in enumerate([1.0, 0.8, 0.6, 0.4, 0.2], start=1):
        on = not torch.equal(model(x, y), float_loss)
        assert on == (step > switch_step), step
        metrics = hook.on_step_end(step, scale, model)
        assert metrics["qat/enabled"] == float(step >= switch_step)
    hook.on_train_end(model)
    assert torch.equal(model(x, y), float_loss)


def test_build_hooks_registers_qat_only_when_enabled():
    from golf.train.config import TrainRunConfig
    from golf.train.techniques import build_hooks

    cfg = TrainRunConfig()
    assert not any(isinstance(h, QATHook) for h in build_hooks(cfg))
    cfg.quant.qat.enabled = True
    assert any(isinstance(h, QATHook) for h in build_hooks(cfg))


def test_qat_that_would_cover_nothing_is_an_error():
    """Regression: at d 128 every matrix sat below the 65,536-element passthrough threshold and QAT silently
    fake-quantized 0 weights."""
    from golf.train.qat import QATConfigError

    model = tiny_model()
    quant = QuantConfig(**{**INT3.__dict__, "keep_float_max_numel": 10**9,
                           "qat": INT3.qat.__class__(enabled=True, late_threshold=0.0)})
    with pytest.raises(QATConfigError, match="quant.keep_float_max_numel"):
        QATHook(quant).on_model_built(model)


def test_late_qat_waits_for_the_decay_not_the_warmup():
    """Regression: with an lr warmup (WSD-S) the multiplier starts below the late-QAT threshold, and QAT
    switched on at step 1 instead of late in the decay."""
    model = tiny_model()
    quant = QuantConfig(**{**INT3.__dict__, "qat": INT3.qat.__class__(enabled=True, late_threshold=0.15)})
    hook = QATHook(quant)
    hook.on_model_built(model)
    hook.on_train_start(model, [])
    warmup, peak, decay = [0.05, 0.1], [1.0, 1.0], [0.5, 0.1]
    enabled = [hook.on_step_end(i, s, model)["qat/enabled"] for i, s in enumerate(warmup + peak + decay, 1)]
    assert enabled == [0, 0, 0, 0, 0, 1]
