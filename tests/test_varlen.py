"""Document-masked (varlen) attention and the document-packing loader of the 2026-04-27 record."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import CASEOPS_VARIANT
from record_0427 import load_record_module, record_hparams

from golf.data.config import DataConfig
from golf.data.packing import DocumentPackingLoader
from golf.data.shards import read_shard
from golf.model import build_model
from golf.model.config import ModelConfig
from golf.model.varlen import Segments, segments_from_ids, varlen_attention, varlen_attention_reference

pytestmark = pytest.mark.usefixtures("one_thread")


def _masked_reference(q, k, v, seg: Segments):
    """Full attention over the flattened stream with a block-diagonal causal mask (independent of the loop)."""
    bsz, heads, t, d = q.shape
    n = bsz * t
    doc = torch.zeros(n, dtype=torch.long)
    for i, b in enumerate(seg.cu_seqlens.tolist()[1:-1]):
        doc[b:] = i + 1
    mask = (doc[:, None] == doc[None, :]) & torch.ones(n, n, dtype=torch.bool).tril()
    flat = [x.transpose(0, 1).reshape(1, x.size(1), n, d) for x in (q, k, v)]
    out = F.scaled_dot_product_attention(*flat, attn_mask=mask, enable_gqa=True)
    return out[0].reshape(heads, bsz, t, d).transpose(0, 1)


def test_segments_equal_record_cu_seqlens(caseops_data_root):
    tg = load_record_module("train_gpt")
    toks = torch.from_numpy(read_shard(caseops_data_root / "datasets" / f"fineweb10B_{CASEOPS_VARIANT}"
                                       / "fineweb_val_000000.bin")[:4000].astype("int64"))
    for max_len in (0, 128, 2048):
        seg = segments_from_ids(toks[None], 1, max_len)
        bos = (toks == 1).nonzero(as_tuple=True)[0].tolist()
        cu, max_seqlen = tg._build_cu_seqlens(bos, toks.numel(), "cpu", max_len, 64)
        theirs = sorted(set(cu.tolist()))
        assert seg.cu_seqlens.tolist() == theirs and seg.max_seqlen == max_seqlen


def test_reference_varlen_equals_block_diagonal_mask():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 4, 40, 8), torch.randn(2, 2, 40, 8), torch.randn(2, 2, 40, 8)
    ids = torch.randint(2, 50, (2, 40))
    ids[0, [0, 7, 30]] = 1
    ids[1, [12, 13]] = 1
    seg = segments_from_ids(ids, 1, 16)
    ours = varlen_attention(q, k, v, seg)
    torch.testing.assert_close(ours, _masked_reference(q, k, v, seg), rtol=1e-5, atol=1e-6)
    plain = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    assert (ours - plain).abs().max() > 1e-3  # the mask matters


def _tiny_cfg(**kw) -> ModelConfig:
    base = dict(vocab_size=64, num_layers=11, model_dim=32, num_heads=4, num_kv_heads=2, mlp_mult=4.0,
                mlp_activation="leaky_relu2", rope_dims=4, ln_scale=True, qk_gain_init=5.0, xsa_last_n=11,
                num_loops=2, loop_start=3, loop_end=5, skip_gates=True, parallel_start_layer=8,
                attn_gate="sparse", attn_gate_width=12, attn_gate_scale=0.5, smear_gate="v2", smear_gate_width=12,
                bos_id=1, ortho_init="pr162", attn_doc_mask=True)
    base.update(kw)
    return ModelConfig(**base)


def test_doc_mask_isolates_documents():
    """A packed row of two documents gives each document the logits it gets alone."""
    torch.manual_seed(0)
    model = build_model(_tiny_cfg()).float().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)  # leave the zero-init identities
    a, b = torch.randint(2, 64, (1, 23)), torch.randint(2, 64, (1, 17))
    a[0, 0] = b[0, 0] = 1
    with torch.no_grad():
        packed = model.logits(torch.cat([a, b], dim=1))
        torch.testing.assert_close(packed[:, :23], model.logits(a), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(packed[:, 23:], model.logits(b), rtol=1e-5, atol=1e-5)
        leaky = build_model(_tiny_cfg(attn_doc_mask=False)).float().eval()
        leaky.load_state_dict(model.state_dict())
        assert (leaky.logits(torch.cat([a, b], dim=1))[:, 23:] - model.logits(b)).abs().max() > 1e-4


def test_packing_loader_equals_record(caseops_data_root, monkeypatch):
    tg = load_record_module("train_gpt")
    real_empty = torch.empty
    monkeypatch.setattr(torch, "empty", lambda *a, pin_memory=False, **k: real_empty(*a, **k))
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self: self)
    monkeypatch.setattr(tg, "BOS_ID", 1)
    data = DataConfig(variant=CASEOPS_VARIANT, root=str(caseops_data_root), vocab_size=8192)
    for rank in (0, 1):
        h = record_hparams(rank=rank, world_size=2, train_seq_len=256, train_files=data.train_glob())
        theirs = tg.DocumentPackingLoader(h, torch.device("cpu"))
        ours = DocumentPackingLoader(data.train_glob(), rank, 2, torch.device("cpu"), bos_id=1)
        for _ in range(6):
            x, y, cu, _ = theirs.next_batch(16384, 2)
            ox, oy = ours.next_batch(16384, 256, 2)
            assert torch.equal(ox, x) and torch.equal(oy, y)
            seg = segments_from_ids(ox, 1, 256)
            assert seg.cu_seqlens.tolist() == sorted(set(cu.tolist()))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (flash-attention varlen kernel)")
def test_flash_varlen_equals_reference_on_cuda():
    torch.manual_seed(0)
    q = torch.randn(2, 8, 256, 64, device="cuda", dtype=torch.bfloat16)
    k, v = (torch.randn(2, 4, 256, 64, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    ids = torch.randint(2, 100, (2, 256), device="cuda")
    ids[0, [0, 50, 51, 200]] = 1
    seg = segments_from_ids(ids, 1, 128)
    out = varlen_attention(q, k, v, seg)
    ref = varlen_attention_reference(q.float(), k.float(), v.float(), seg)
    torch.testing.assert_close(out.float(), ref, rtol=2e-2, atol=2e-2)
