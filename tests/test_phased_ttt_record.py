"""Issue #11: golf's phased TTT score equals the 2026-04-27 record's own `eval_val_ttt_phased` on the same model
(the record_0427_sota architecture at d 128: loops, parallel lanes, sparse gate, SmearGate v2, document mask),
the same weights and the same CaseOps validation tokens with their byte sidecar (fp32, CPU, one process).

The record's script is the oracle (tests/record_0427.py loads it with CPU stand-ins). Only what the CPU forces
is changed on its side: its `torch.autocast(device_type="cuda")` is a no-op without CUDA (fp32), its fused
AdamW runs unfused, its Triton LeakyReLU² MLP kernel is replaced by its own unfused branch, torch.compile is not used (forward_ttt is passed directly) and its /tmp work-counter files
get a per-test run id. Its adapters draw A from the global RNG, seeded here with the config's seed.
"""

from __future__ import annotations

import os
import types
import warnings

import pytest
import torch
from conftest import CASEOPS_VARIANT
from record_0427 import load_record_module, record_hparams
from test_presets import preset
from test_record_0427 import paired_d128

from golf.data.loader import load_validation_byte_sidecar
from golf.data.shards import read_shard
from golf.data.tokenizer import load_tokenizer
from golf.eval.bpb import build_byte_luts
from golf.eval.config import PhasedTTTConfig
from golf.eval.phased_ttt import evaluate_phased_ttt, find_documents
from golf.model.config import ModelConfig

pytestmark = pytest.mark.usefixtures("one_thread")
SEQ, BOS, VOCAB = 64, 1, 8192
CFG = PhasedTTTConfig(lora_rank=4, lora_alpha=8.0, lr=0.01, beta1=0.0, beta2=0.99, weight_decay=0.5, chunk_tokens=16,
                      doc_batch=3, prefix_docs=6, num_phases=2, global_lr=0.01, global_momentum=0.9,
                      global_chunk_tokens=2 * SEQ, global_batch_seqs=2, global_grad_clip=1.0, seed=3,
                      lanes=1)
DOC_LENS = [40, 150, 70, 210, 33, 95, 120, 58, 175, 20]
"""Tokens kept of each of the first 10 validation documents (some longer than SEQ: sliding chunk windows)."""


def record_settings(cfg: PhasedTTTConfig, run_id: str) -> dict:
    """The record's Hyperparameters for golf's PhasedTTTConfig `cfg` (one process)."""
    return dict(ttt_lora_rank=cfg.lora_rank, ttt_lora_lr=cfg.lr, ttt_chunk_size=cfg.chunk_tokens,
                ttt_eval_seq_len=SEQ, eval_seq_len=SEQ, ttt_batch_size=cfg.doc_batch, ttt_grad_steps=1,
                ttt_weight_decay=cfg.weight_decay, ttt_beta1=cfg.beta1, ttt_beta2=cfg.beta2, ttt_optimizer="adam",
                ttt_k_lora=True, ttt_mlp_lora=True, ttt_o_lora=True, ttt_eval_batches="", val_doc_fraction=1.0,
                phased_ttt_prefix_docs=cfg.prefix_docs, phased_ttt_num_phases=cfg.num_phases,
                global_ttt_lr=cfg.global_lr, global_ttt_momentum=cfg.global_momentum,
                global_ttt_epochs=cfg.global_epochs, global_ttt_chunk_tokens=cfg.global_chunk_tokens,
                global_ttt_batch_seqs=cfg.global_batch_seqs, global_ttt_warmup_chunks=0,
                global_ttt_grad_clip=cfg.global_grad_clip, global_ttt_respect_doc_boundaries=True,
                run_id=run_id, rank=0, world_size=1, seed=cfg.seed)


@pytest.fixture(scope="module")
def caseops_val(caseops_data_root):
    """(tokens, byte sidecar) of the first documents of the CaseOps val shard, each cut to DOC_LENS tokens."""
    folder = caseops_data_root / "datasets" / f"fineweb10B_{CASEOPS_VARIANT}"
    toks = torch.from_numpy(read_shard(folder / "fineweb_val_000000.bin").astype("int64"))
    side = load_validation_byte_sidecar(str(folder / "fineweb_val_bytes_*.bin"), toks.numel()).to(torch.int64)
    bos = (toks == BOS).nonzero(as_tuple=True)[0].tolist()
    keep = [torch.arange(a, a + min(n, b - a)) for a, b, n in zip(bos, bos[1:], DOC_LENS, strict=False)]
    idx = torch.cat(keep)
    tokenizer = next((caseops_data_root / "tokenizers").iterdir())
    luts = build_byte_luts(load_tokenizer(tokenizer, VOCAB), VOCAB)
    return toks[idx], side[idx].to(torch.int32), luts


def paired_models(tg):
    """golf's record_0427 model at d 128 (document mask cut at SEQ) and the record's GPT with the same weights."""
    base = preset("record_0427_sota").model
    cfg = ModelConfig(**(base.__dict__ | dict(model_dim=128, num_heads=4, num_kv_heads=2, attn_doc_mask=True,
                                              attn_doc_mask_max_len=SEQ, fused_ce=False, fused_mlp=False)))
    ours, theirs = paired_d128(tg, cfg, SEQ)
    for block in theirs.blocks:  # its Triton LeakyReLU² MLP kernel (training mode) is CUDA-only: the same math
        block.mlp.use_fused = False
    return ours, theirs


class _UnfusedAdamW(torch.optim.AdamW):
    """The record's `AdamW(..., fused=True)` on CPU: the same update, unfused."""

    def __init__(self, *args, fused=None, **kwargs):
        super().__init__(*args, **kwargs)


def record_phased(tg, model, tokens, sidecar, luts, cfg: PhasedTTTConfig, tmp_path, monkeypatch) -> tuple[float, float]:
    """(val_loss, val_bpb) of the record's eval_val_ttt_phased (one process, no torch.distributed)."""
    monkeypatch.setattr(tg, "BOS_ID", BOS)
    monkeypatch.setattr(tg.BatchedLinearLoRA, "_ALPHA", cfg.lora_alpha)  # TTT_LORA_ALPHA, read at import
    monkeypatch.setattr(tg.torch.optim, "AdamW", _UnfusedAdamW)
    run_id = f"golftest_{os.getpid()}_{tmp_path.name}"
    h = record_hparams(**record_settings(cfg, run_id))
    val_data = types.SimpleNamespace(val_tokens=tokens, val_bytes=sidecar, caseops_enabled=True,
                                     base_bytes_lut=luts.base_bytes, has_leading_space_lut=luts.has_leading_space,
                                     is_boundary_token_lut=luts.is_boundary)
    try:
        with torch.random.fork_rng(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "CUDA is not available, disabling autocast"
            torch.manual_seed(cfg.seed)
            return tg.eval_val_ttt_phased(h, model, torch.device("cpu"), val_data, model.forward_ttt)
    finally:
        for kind in ("counter", "prefix_counter", "pause_flag"):
            try:
                os.remove(f"/tmp/ttt_{kind}_{run_id}")
            except FileNotFoundError:
                pass


def test_phased_ttt_equals_record_eval(caseops_val, tmp_path, monkeypatch):
    tg = load_record_module("train_gpt")
    tokens, sidecar, luts = caseops_val
    assert len(find_documents(tokens, BOS)) == len(DOC_LENS)
    ours, theirs = paired_models(tg)
    res = evaluate_phased_ttt(ours, tokens, luts, SEQ, CFG, BOS, sidecar)
    want_loss, want_bpb = record_phased(tg, theirs, tokens, sidecar, luts, CFG, tmp_path, monkeypatch)
    print(f"\ngolf val_loss {res.val_loss!r} val_bpb {res.val_bpb!r} | record val_loss {want_loss!r} val_bpb "
          f"{want_bpb!r} | |d| {abs(res.val_loss - want_loss):.2e} {abs(res.val_bpb - want_bpb):.2e}")
    assert res.details["phases"] == 2 and res.details["global_steps"] > 0
    assert abs(res.val_loss - want_loss) <= 1e-6 and abs(res.val_bpb - want_bpb) <= 1e-6

