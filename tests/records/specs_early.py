"""Record specs of the PR #65 / PR #315 / PR #374 line (03-19, 03-21, 03-22, seed 002 on 03-22)."""

from __future__ import annotations

import io
import types
from dataclasses import replace

import torch
from torch import Tensor, nn

from records.common import (
    LOG_ALIASES_0320,
    PR374_NAME_MAP,
    PR374_TRANSFORMS,
    SMALL_ENV,
    SMALL_GOLF,
    _hp_common,
    _hp_pr374,
    _logits_forward_logits,
    _quantize_0322,
    _serialize_0322,
)
from records.oracle import HParam, RecordSpec


# --- 2026-03-22 (PR #374 stack + EMA + GPTQ-lite) -----------------------------------------------------------
def _build_0322(mod: types.ModuleType) -> nn.Module:
    h = mod.Hyperparameters
    return mod.GPT(
        vocab_size=h.vocab_size, num_layers=h.num_layers, model_dim=h.model_dim, num_heads=h.num_heads,
        num_kv_heads=h.num_kv_heads, mlp_mult=h.mlp_mult, tie_embeddings=h.tie_embeddings,
        tied_embed_init_std=h.tied_embed_init_std, logit_softcap=h.logit_softcap, rope_base=h.rope_base,
        qk_gain_init=h.qk_gain_init, mtp_num_heads=0, mtp_loss_weight=0.0, bigram_vocab_size=h.bigram_vocab_size,
        bigram_dim=h.bigram_dim, xsa_last_n=h.xsa_last_n, rope_dims=h.rope_dims, ln_scale=h.ln_scale,
        dtg=h.dtg_enabled, ve_enabled=h.ve_enabled, ve_dim=h.ve_dim, ve_layers=h.ve_layers)



RECORD_0322 = RecordSpec(
    key="0322",
    folder="2026-03-22_11L_EMA_GPTQ-lite_warmdown3500_QAT015_1.1233",
    script="train_gpt.py",
    log="train_seed1337.log",
    preset="record_0322_gptq_lite_ema",
    published_bpb=1.1228,
    vocab=1024,
    small_env=SMALL_ENV,
    small_overrides=SMALL_GOLF,
    build=_build_0322,
    logits=_logits_forward_logits,
    name_map=PR374_NAME_MAP,
    transforms=PR374_TRANSFORMS,
    hparams=_hp_pr374(),
    quantize=_quantize_0322,
    serialize=_serialize_0322,
    # Full width (every tensor on the same side of the 65,536-element passthrough line as at full scale), 2 layers.
    quant_env={"NUM_LAYERS": "2", "VE_LAYERS": "0,1", "XSA_LAST_N": "1"},
    quant_overrides=["model.num_layers=2", "model.value_embed_layers=[0,1]", "model.xsa_last_n=1"],
    seq_len=2048,
    log_aliases=LOG_ALIASES_0320,
)

# --- 2026-03-19 (PR #65, seed 003) ------------------------------------------------------------------------------
def _build_0319(mod: types.ModuleType) -> nn.Module:
    h = mod.Hyperparameters
    return mod.GPT(
        vocab_size=h.vocab_size, num_layers=h.num_layers, model_dim=h.model_dim, num_heads=h.num_heads,
        num_kv_heads=h.num_kv_heads, mlp_mult=h.mlp_mult, tie_embeddings=h.tie_embeddings,
        tied_embed_init_std=h.tied_embed_init_std, logit_softcap=h.logit_softcap, rope_base=h.rope_base,
        qk_gain_init=h.qk_gain_init, bigram_hash_buckets=h.bigram_hash_buckets, bigram_hash_dim=h.bigram_hash_dim,
        use_smeargate=h.use_smeargate)


def _quantize_0319(mod: types.ModuleType, sd: dict[str, Tensor]) -> dict[str, dict]:
    obj, _ = mod.quantize_state_dict_int8(sd)
    out = {name: {"q": q, "scale": obj["scales"][name]} for name, q in obj["quantized"].items()}
    out.update({name: {"passthrough": t} for name, t in obj["passthrough"].items()})
    return out


def _serialize_0319(mod: types.ModuleType, sd: dict[str, Tensor]) -> int:
    import zstandard

    obj, _ = mod.quantize_state_dict_int8(sd)
    buf = io.BytesIO()
    torch.save(obj, buf)
    return len(zstandard.ZstdCompressor(level=22).compress(buf.getvalue()))


RECORD_0319 = RecordSpec(
    key="0319",
    folder="2026-03-19_smeargate_orthoinit_muonwd",
    script="train_gpt_v5.py",
    log="train.log",
    preset="smeargate_pr65",
    published_bpb=1.1556,
    vocab=1024,
    small_env=SMALL_ENV,
    small_overrides=SMALL_GOLF,
    build=_build_0319,
    logits=_logits_forward_logits,
    name_map=[(r"bigram_hash\.(.*)", r"bigram.\1"), (r"smeargate\.gate", "smear.gate")],
    hparams=[
        *_hp_common(),
        HParam("muon_weight_decay", "optim.muon_wd"),
        HParam("bigram_hash_buckets", "model.bigram_buckets"), HParam("bigram_hash_dim", "model.bigram_dim"),
        HParam("src:INT6_CLIP_Q = ([0-9.]+)", "quant.groups.mlp.clip_percentile", lambda q: 100.0 * float(q)),
        HParam("src:INT6_CLIP_Q = ([0-9.]+)", "quant.groups.attn.clip_percentile", lambda q: 100.0 * float(q)),
    ],
    quantize=_quantize_0319,
    serialize=_serialize_0319,
    quant_env={"NUM_LAYERS": "2"},
    quant_overrides=["model.num_layers=2"],
    seq_len=1024,
    log_aliases=LOG_ALIASES_0320,
)


# --- 2026-03-21 (PR #315 line: XSA4, EMA, partial RoPE, LN scale) -----------------------------------------------
def _build_0321(mod: types.ModuleType) -> nn.Module:
    h = mod.Hyperparameters
    return mod.GPT(
        vocab_size=h.vocab_size, num_layers=h.num_layers, model_dim=h.model_dim, num_heads=h.num_heads,
        num_kv_heads=h.num_kv_heads, mlp_mult=h.mlp_mult, tie_embeddings=h.tie_embeddings,
        tied_embed_init_std=h.tied_embed_init_std, logit_softcap=h.logit_softcap, rope_base=h.rope_base,
        qk_gain_init=h.qk_gain_init, mtp_num_heads=0, mtp_loss_weight=0.0, bigram_vocab_size=h.bigram_vocab_size,
        bigram_dim=h.bigram_dim, xsa_last_n=h.xsa_last_n, rope_dims=h.rope_dims, ln_scale=h.ln_scale)


RECORD_0321 = RecordSpec(
    key="0321",
    folder="2026-03-21_11L_XSA4_EMA_PartialRoPE_LateQAT_1.1248",
    script="train_gpt.py",
    log="train_seed1337.log",
    preset="record_0321_xsa_partialrope",
    published_bpb=1.1248,
    vocab=1024,
    # README "Configuration": the published run's environment.
    run_env={"NUM_LAYERS": "11", "BIGRAM_VOCAB_SIZE": "2048", "XSA_LAST_N": "4", "EMA_ENABLED": "1",
             "EMA_DECAY": "0.997", "SWA_ENABLED": "0", "ROPE_DIMS": "16", "LN_SCALE": "1", "LATE_QAT": "1",
             "QAT_THRESHOLD": "0.1", "MUON_WD": "0.04", "ADAM_WD": "0.04", "MATRIX_LR": "0.025",
             "SCALAR_LR": "0.025", "TIED_EMBED_LR": "0.035", "MUON_MOMENTUM": "0.99",
             "MUON_MOMENTUM_WARMUP_START": "0.92", "MUON_MOMENTUM_WARMUP_STEPS": "1500", "WARMDOWN_ITERS": "3000",
             "ITERATIONS": "9000", "MAX_WALLCLOCK_SECONDS": "600", "EVAL_STRIDE": "64"},
    small_env=SMALL_ENV,
    small_overrides=SMALL_GOLF,
    build=_build_0321,
    logits=_logits_forward_logits,
    name_map=PR374_NAME_MAP,
    transforms=PR374_TRANSFORMS,
    hparams=[
        *_hp_common(),
        HParam("muon_wd", "optim.muon_wd"), HParam("eval_seq_len", "eval.seq_len|trainer.train_seq_len"),
        HParam("adam_wd", "optim.embed_wd"), HParam("adam_wd", "optim.scalar_wd"),
        HParam("bigram_vocab_size", "model.bigram_buckets"), HParam("bigram_dim", "model.bigram_dim"),
        HParam("xsa_last_n", "model.xsa_last_n"), HParam("rope_dims", "model.rope_dims"),
        HParam("ln_scale", "model.ln_scale"), HParam("ema_decay", "averaging.ema_decay"),
        HParam(r'src:os\.environ\.get\("QAT_THRESHOLD", "([0-9.]+)"\)', "quant.qat.late_threshold"),
        HParam(r"src:Rotary\(self\.head_dim, base=rope_base, train_seq_len=(\d+)", "model.rope_train_seq_len", int),
    ],
    quantize=_quantize_0322,
    serialize=_serialize_0322,
    quant_env={"NUM_LAYERS": "2", "XSA_LAST_N": "1"},
    quant_overrides=["model.num_layers=2", "model.xsa_last_n=1"],
    seq_len=2048,
    log_aliases={**LOG_ALIASES_0320, "late_qat": None},  # "late_qat:enabled step:..." is an event line
)


# Seed 002 (PR #379) = the PR #374 stack + GPTQ-lite; record 03-22 is PR #374 + EMA/warmdown 3500/QAT 0.15 +
# GPTQ-lite, so it is the oracle of everything but those three and the clip candidates.
PR374 = replace(
    RECORD_0322, key="pr374", preset="pr374_gptq_lite", published_bpb=1.1257,
    deliberate={
        "warmdown_iters": "PR #374 / seed 002 warm down over 3000 steps; 03-22 changed it to 3500",
        "late_qat_threshold": "PR #374 / seed 002 switch late QAT at lr scale 0.1; 03-22 at 0.15",
    },
    # The quantizer check uses 03-22's candidates; the preset uses seed 002's (100/99.9/99.5/99/98).
    extra_overrides=["quant.groups.attn.clip_candidates=[99.9,99.95,99.99,99.999]",
                     "quant.groups.mlp.clip_candidates=[99.9,99.95,99.99,99.999]"],
)
