"""experiment=record_0427_sota against records/track_10min_16mb/2026-04-27_SP8192_LQER_SparseGate_BOSSmearFix_
9HpStack_1.0611: parameter count from its log, forward equality with its GPT on the same weights (CaseOps
tokens, with and without the document mask), hyperparameters, and the whole preset end to end at cpu_tiny."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from conftest import CASEOPS_VARIANT, run_golf
from record_0427 import RECORD, load_record_module, record_hparams
from test_presets import preset

from golf.data.shards import read_shard
from golf.model import build_model, count_params_for
from golf.model.config import ModelConfig

pytestmark = pytest.mark.usefixtures("one_thread")
RENAMES = {"smear.lam": "smear_lambda", "smear.proj.weight": "smear_gate.weight",
           "parallel.post_lambdas": "parallel_post_lambdas", "parallel.resid_lambdas": "parallel_resid_lambdas"}


def record_state_dict(golf_state: dict, cfg: ModelConfig, tg) -> dict:
    """golf state dict -> the record GPT's (banked) state dict, through the record's own _rebank_state_dict."""
    flat = {}
    for k, v in golf_state.items():
        k = RENAMES.get(k, k)
        flat[re.sub(r"\.attn\.gate\.weight$", ".attn.attn_gate_w", k)] = v
    head = cfg.model_dim // cfg.num_heads
    return tg._rebank_state_dict(flat, cfg.num_layers, cfg.model_dim, cfg.num_kv_heads * head, cfg.mlp_hidden)


def _log_value(key: str) -> str:
    text = (RECORD / "train_seed42.log").read_text()
    return re.search(rf"^\s*{key}[:=]\s*(\S+)", text, re.M).group(1)


def test_full_scale_parameter_count_equals_record_log():
    load_record_module("lossless_caps")  # skips without the record folder
    cfg = preset("record_0427_sota")
    assert count_params_for(cfg.model) == int(_log_value("model_params")) == 35_945_671


def test_hyperparameters_equal_record_log():
    """Every setting the preset shares with the record's logged Hyperparameters (seed 42 run)."""
    load_record_module("lossless_caps")
    cfg = preset("record_0427_sota")
    m, o, s, q = cfg.model, cfg.optim, cfg.schedule, cfg.quant
    ours = {
        "num_layers": m.num_layers, "model_dim": m.model_dim, "num_heads": m.num_heads, "num_kv_heads": m.num_kv_heads,
        "mlp_mult": m.mlp_mult, "vocab_size": m.vocab_size, "xsa_last_n": m.xsa_last_n, "rope_dims": m.rope_dims,
        "qk_gain_init": m.qk_gain_init, "num_loops": m.num_loops, "loop_start": m.loop_start, "loop_end": m.loop_end,
        "enable_looping_at": m.enable_looping_at, "parallel_start_layer": m.parallel_start_layer,
        "logit_softcap": m.logit_softcap, "gate_window": m.attn_gate_width, "sparse_attn_gate_scale": m.attn_gate_scale,
        "tied_embed_init_std": m.tied_embed_init_std, "matrix_lr": o.matrix_lr, "scalar_lr": o.scalar_lr,
        "tied_embed_lr": o.tied_embed_lr, "muon_momentum": o.muon_momentum,
        "muon_momentum_warmup_start": o.muon_momentum_warmup_start,
        "muon_momentum_warmup_steps": o.muon_momentum_warmup_steps, "muon_backend_steps": o.muon_backend_steps,
        "beta1": o.beta1, "beta2": o.beta2, "adam_eps": o.adam_eps, "grad_clip_norm": o.grad_clip_norm,
        "muon_wd": o.muon_wd, "embed_wd": o.embed_wd, "adam_wd": o.scalar_wd, "warmdown_frac": s.warmdown_frac,
        "min_lr": s.min_lr, "warmup_steps": s.warmup_steps, "max_wallclock_seconds": s.max_wallclock_seconds,
        "gptq_reserve_seconds": s.gptq_reserve_seconds, "ema_decay": cfg.averaging.ema_decay,
        "train_seq_len": cfg.trainer.train_seq_len, "train_batch_tokens": cfg.trainer.train_batch_tokens,
        "eval_seq_len": cfg.eval.seq_len, "embed_bits": q.groups.embed.bits, "matrix_bits": q.groups.other.bits,
        "embed_clip_sigmas": q.groups.embed.clip_sigmas, "mlp_clip_sigmas": q.groups.mlp.clip_sigmas,
        "attn_clip_sigmas": q.groups.attn.clip_sigmas, "matrix_clip_sigmas": q.groups.other.clip_sigmas,
        "gptq_calibration_batches": q.gptq.calib_batches, "lqer_rank": q.lqer.rank, "lqer_top_k": q.lqer.top_k,
        "lqer_factor_bits": q.lqer.factor_bits, "lqer_asym_group": q.lqer.asym_group,
        "lqer_asym_enabled": q.lqer.asym, "gated_attn_quant_gate": q.gate_int8,
    }
    for key, value in ours.items():
        logged = _log_value(key)
        expected = {"True": True, "False": False}.get(logged, logged)
        if isinstance(value, bool) or isinstance(expected, bool):
            assert value == expected, key
        else:
            assert float(value) == pytest.approx(float(expected)), key
    assert o.muon_row_normalize and o.muon_ns_coeffs == "polar_express"
    assert m.smear_gate == "v2" and m.attn_gate == "sparse" and m.skip_gates and m.ln_scale
    assert cfg.data.text_transform == "caseops_v1" and q.codec == "pergroup" and q.lqer.enabled


def _tiny(cfg: ModelConfig, **kw) -> ModelConfig:
    d = cfg.__dict__ | dict(model_dim=128, num_heads=4, num_kv_heads=2) | kw
    return ModelConfig(**d)


def paired_d128(tg, cfg, seq_len: int):
    """golf's model of `cfg` (d 128, 4/2 heads; seed 0, every parameter moved off its init by N(0, 0.02) so
    zero-initialized gates and projections matter) and the record's GPT holding the same weights, looping on,
    both fp32 in eval mode."""
    torch.manual_seed(0)
    ours = build_model(cfg).float().eval()
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    h = record_hparams(model_dim=128, num_heads=4, num_kv_heads=2, fused_ce_enabled=False, smear_gate_enabled=True,
                       sparse_attn_gate_enabled=True, sparse_attn_gate_scale=0.5, train_seq_len=seq_len)
    theirs = tg.GPT(h).float().eval()
    theirs.load_state_dict(record_state_dict(ours.state_dict(), cfg, tg), strict=True)
    theirs.looping_active = True
    return ours, theirs


@pytest.mark.parametrize("doc_mask", [False, True])
def test_forward_equals_record_gpt(caseops_data_root, doc_mask, monkeypatch):
    tg = load_record_module("train_gpt")
    monkeypatch.setattr(tg, "BOS_ID", 1)
    cfg = _tiny(preset("record_0427_sota").model, attn_doc_mask=doc_mask, attn_doc_mask_max_len=128)
    ours, theirs = paired_d128(tg, cfg, 128)
    toks = read_shard(caseops_data_root / "datasets" / f"fineweb10B_{CASEOPS_VARIANT}" / "fineweb_val_000000.bin")
    start = int((toks[1:] == 1).nonzero()[0][0]) - 200  # a window holding a document boundary
    x = torch.from_numpy(toks[start: start + 384].astype("int64"))[None]
    assert (x == 1).any()
    kw = {}
    if doc_mask:
        bos = (x[0] == 1).nonzero(as_tuple=True)[0].tolist()
        cu, max_len = tg._build_cu_seqlens(bos, x.numel(), "cpu", 128, 64)
        kw = {"cu_seqlens": cu, "max_seqlen": max_len}
    with torch.no_grad():
        got, want = ours.logits(x), theirs.forward_logits(x, **kw)
    assert (got - want).abs().max().item() < 1e-4
    assert (got - want).abs().max().item() <= 1e-4 * want.abs().max().item() + 1e-5


@pytest.mark.slow
def test_preset_runs_end_to_end_at_cpu_tiny(caseops_data_root, tmp_path):
    """train -> export (LQER, quant gate, pergroup) -> eval with the preset's eval mode, on CaseOps data."""
    run = tmp_path / "run"
    tiny = ["scale=cpu_tiny", "logger=none", "schedule.iterations=2", "eval.max_tokens=1024",
            "trainer.train_batch_tokens=2048", "trainer.grad_accum_base=1", "quant.gptq.calib_batches=1"]
    run_golf("train.py", "experiment=record_0427_sota", *tiny, f"hydra.run.dir={run}", data_root=caseops_data_root)
    metrics = json.loads((run / "metrics.json").read_text())
    assert (run / "hessians.pt").is_file() and metrics["gptq_calibration_s"] > 0
    # eval.gap=standard: the gap on standard windows (CaseOps byte sidecar), phased TTT once, for the round trip
    run_golf("export.py", f"run_dir={run}", "logger=none", "eval.max_tokens=1024", "eval.gap=standard",
             data_root=caseops_data_root)
    report = json.loads((run / "export.json").read_text())
    assert report["fits"] and report["codec"] == "pergroup" and abs(report["quant_gap_bpb"]) < 0.1
    assert report["pre_quant"]["mode"] == report["quantized"]["mode"] == report["gap_mode"] == "standard"
    assert report["roundtrip"]["mode"] == "phased_ttt" and report["compliance"]["eval_time_s"].keys() == {"phased_ttt"}
    assert [s["name"] for s in report["budget"]["streams"]][-2:] == ["remainder", "permutations"]
    run_golf("eval.py", f"path={run}", "logger=none", "data=fineweb_sp8192_caseops", "eval=phased_ttt",
             "eval.max_tokens=8192", "eval.phased.prefix_docs=2", "eval.phased.num_phases=1", "eval.phased.doc_batch=2",
             "eval.phased.global_chunk_tokens=256", "eval.phased.global_batch_seqs=2", data_root=caseops_data_root)
    out = json.loads((run / "eval.json").read_text())
    assert out["kind"] == "artifact" and out["mode"] == "phased_ttt" and 0 < out["val_bpb"] < 20
    assert out["details"]["phases"] == 1 and out["details"]["global_steps"] > 0 and out["details"]["lora_steps"] > 0


@pytest.mark.slow
def test_generated_file_reproduces_golf_on_caseops(caseops_data_root, tmp_path, monkeypatch):
    """The preset's train_gpt.py (flat layout: kernels, doc-packing loader, GPTQ calibrated inside training, LQER,
    quant gate, per-group codec, CaseOps byte sidecar, phased TTT) run without golf gives golf's own train ->
    export -> eval result: the same artifact bytes and val_bpb, at a 4-layer d64 scale."""
    from record_helpers import data_dir, final_line, run_guarded
    from record_helpers import preset as tiny_preset
    from test_record import golf_reference, write_script

    cfg = tiny_preset("record_0427_sota", "seed=7", "model.num_layers=4", "model.model_dim=64", "model.num_heads=2",
                      "model.num_kv_heads=1", "model.xsa_last_n=2", "model.loop_start=1", "model.loop_end=2",
                      "model.parallel_start_layer=3", "schedule.gptq_reserve_seconds=0")
    ref = golf_reference(cfg, data_dir(tmp_path / "golf", caseops_data_root), monkeypatch)
    sub = data_dir(tmp_path / "submission", caseops_data_root)
    script = write_script(cfg, sub)
    proc = run_guarded(script, sub, {"SEED": "7", "RUN_ID": "proof"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    val_loss, val_bpb = final_line(proc.stdout)
    assert abs(val_bpb - ref["val_bpb"]) < 1e-6 and abs(val_loss - ref["val_loss"]) < 1e-6
    assert (sub / "final_model.golf").read_bytes() == Path(ref["artifact"]).read_bytes()
    assert "phased_ttt_roundtrip_exact" in proc.stdout
