"""Phased TTT (2026-04-27 record): score-first legality, event order, phases, and the record's helpers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from record_0427 import load_record_module, record_hparams

from golf.data.loader import load_validation_tokens
from golf.data.tokenizer import load_tokenizer
from golf.eval.bpb import build_byte_luts
from golf.eval.config import EvalConfig, PhasedTTTConfig
from golf.eval.phased_ttt import batch_order, chunk_window, evaluate_phased_ttt, find_documents
from golf.model import build_model
from golf.model.config import ModelConfig

pytestmark = pytest.mark.usefixtures("one_thread")
SEQ, BOS = 32, 1
CFG = PhasedTTTConfig(lora_rank=4, lora_alpha=8.0, lr=0.05, chunk_tokens=16, doc_batch=2, prefix_docs=4,
                      num_phases=2, global_lr=0.05, global_chunk_tokens=64, global_batch_seqs=2)


@pytest.fixture(scope="module")
def luts(sp1024_model: Path):
    return build_byte_luts(load_tokenizer(sp1024_model, 1024), 1024)


@pytest.fixture(scope="module")
def stream(sp1024_shards: Path) -> torch.Tensor:
    """The val stream cut to 7 documents with their text shortened to <= 90 tokens (fast, same structure)."""
    toks = load_validation_tokens(str(sp1024_shards / "fineweb_val_*.bin"), SEQ, 1024).to(torch.int64)
    bos = (toks == BOS).nonzero(as_tuple=True)[0].tolist()
    parts = [toks[a: min(b, a + 30 + 10 * i)] for i, (a, b) in enumerate(zip(bos[:7], bos[1:8], strict=True))]
    return torch.cat(parts)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    m = build_model(ModelConfig(vocab_size=1024, num_layers=4, model_dim=32, num_heads=4, num_kv_heads=2,
                                num_loops=1, loop_start=1, loop_end=2, attn_doc_mask=True))
    with torch.no_grad():
        for p in m.parameters():
            if p.ndim == 2:
                p.normal_(0.0, 0.08)
    return m.eval()


def _run(model, toks, luts, cfg=CFG, events=None):
    out = torch.full((toks.numel() - 1,), float("nan"), dtype=torch.float64)
    cb = (lambda kind, b, c: events.append((kind, b, c))) if events is not None else None
    res = evaluate_phased_ttt(model, toks, luts, SEQ, cfg, BOS, target_losses=out, callback=cb)
    return res, out


def test_helpers_equal_record(stream):
    tg = load_record_module("train_gpt")
    tg.BOS_ID = 1
    docs = find_documents(stream, BOS)
    assert docs == tg._find_docs(stream)
    h = record_hparams(ttt_batch_size=2)
    theirs = tg._build_ttt_global_batches(list(enumerate(docs)), h)
    assert [(b, m) for b, m in batch_order(docs, 2)] == [(b, [i for i, _ in e]) for b, e in theirs]
    for args in [(0, 100, 7, 16, 32), (6, 100, 7, 16, 32), (3, 64, 4, 16, 2048)]:
        assert chunk_window(*args) == tg._compute_chunk_window(*args)


def test_scores_every_target_once_and_both_kinds_of_update_happen(model, stream, luts):
    events = []
    res, out = _run(model, stream, luts, events=events)
    assert res.tokens == stream.numel() - 1 and not out.isnan().any()
    assert res.details["phases"] == 2 and res.details["global_steps"] > 0 and res.details["lora_steps"] > 0
    frozen = PhasedTTTConfig(**{**CFG.__dict__, "lr": 0.0, "global_lr": 0.0, "weight_decay": 0.0})
    plain, _ = _run(model, stream, luts, frozen)
    assert abs(plain.val_bpb - res.val_bpb) > 1e-4  # the updates change the score
    g = next(i for i, e in enumerate(events) if e[0] == "global")
    b = events[g][1]  # the batch whose scoring completed the first phase's prefix
    assert g > max(i for i, e in enumerate(events) if e[:2] == ("scored", b))
    assert events[g + 1][0] == "scored" and events[g + 1][1] != b


def test_each_chunk_is_scored_before_it_is_trained_on(model, stream, luts):
    events = []
    _run(model, stream, luts, events=events)
    seen = set()
    for kind, b, c in events:
        if kind == "scored":
            seen.add((b, c))
        elif kind == "updated":
            assert (b, c) in seen


def test_loss_of_a_token_never_depends_on_later_tokens_of_its_document_or_later_documents(model, stream, luts):
    """Perturb document D after offset t: every target scored before it (in processing order), and D's targets
    up to t, keep their losses; later targets of D move."""
    docs = find_documents(stream, BOS)
    order = batch_order(docs, CFG.doc_batch)
    d = order[1][1][-1]  # a document of the second batch: the first batch and a global phase come before it
    start, n = docs[d]
    t = start + 20
    changed = stream.clone()
    gen = torch.Generator().manual_seed(1)
    changed[t + 1: start + n - 1] = torch.randint(3, 1024, (start + n - 2 - t,), generator=gen)
    base, other = _run(model, stream, luts)[1], _run(model, changed, luts)[1]
    before = [i for i in order[0][1]] + [i for i in order[1][1] if i != d]
    for i in before:
        s, m = docs[i]
        torch.testing.assert_close(base[s: s + m - 1], other[s: s + m - 1], rtol=0, atol=1e-7)
    torch.testing.assert_close(base[start: t], other[start: t], rtol=0, atol=1e-7)  # targets <= t
    assert not torch.allclose(base[t: start + n - 1], other[t: start + n - 1], atol=1e-4)


def test_caller_model_unchanged_and_config_checks(model, stream, luts):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _run(model, stream, luts)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="eval.phased.chunk_tokens"):
        EvalConfig(mode="phased_ttt", phased=PhasedTTTConfig(chunk_tokens=0))
