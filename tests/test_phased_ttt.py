"""Phased TTT (2026-04-27 record): score-first legality, event order, phases, the record's helpers, and sharding
(2 gloo ranks score like 1 process, every target once; adapter lanes)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import random_tiny_gpt
from record_0427 import load_record_module, record_hparams

from golf.data.loader import load_validation_tokens
from golf.data.tokenizer import load_tokenizer
from golf.eval.bpb import build_byte_luts
from golf.eval.config import EvalConfig, PhasedTTTConfig
from golf.eval.phased_ttt import batch_order, chunk_window, evaluate_phased_ttt, find_documents
from golf.eval.windows import EvalModeError
from golf.model import build_model
from golf.model.config import ModelConfig
from golf.train.dist import teardown

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


LANES = PhasedTTTConfig(**{**CFG.__dict__, "prefix_docs": 6, "lanes": 2})
"""12 documents in 6 batches: phase 0 after the 2nd batch, phase 1 after the 3rd, then 3 batches on 2 lanes
(so one lane carries its warm-started A from one batch to the next)."""


SPLIT = PhasedTTTConfig(**{**LANES.__dict__, "global_split": True, "lr": 0.0, "weight_decay": 0.0})
"""global_split (each rank its documents of a global-SGD row), adapters frozen: AdamW's nearly sign-like first
steps would turn the float-order differences of the summed gradients into visible score differences."""
DIST_CFGS = {"lanes": LANES, "split": SPLIT}


@pytest.fixture(scope="module")
def stream12(sp1024_shards: Path) -> torch.Tensor:
    """The first 12 val documents, the text of document i cut to <= 30 + 10 i tokens."""
    toks = load_validation_tokens(str(sp1024_shards / "fineweb_val_*.bin"), SEQ, 1024).to(torch.int64)
    bos = (toks == BOS).nonzero(as_tuple=True)[0].tolist()
    return torch.cat([toks[a: min(b, a + 30 + 10 * i)] for i, (a, b) in enumerate(zip(bos[:12], bos[1:13],
                                                                                          strict=True))])


def _phased_scores(model, toks, luts, cfg, rank: int, world_size: int) -> dict:
    out = torch.full((toks.numel() - 1,), float("nan"), dtype=torch.float64)
    r = evaluate_phased_ttt(model, toks, luts, SEQ, cfg, BOS, rank=rank, world_size=world_size, target_losses=out)
    return {"val_loss": r.val_loss, "val_bpb": r.val_bpb, "tokens": r.tokens, "bytes": r.bytes,
            "world_size": r.world_size, "rank_tokens": r.rank_tokens, "details": r.details,
            "scored": (~out.isnan()).nonzero().flatten().tolist()}


def _phased_worker(rank: int, world_size: int, init_file: str, model, toks, luts, out_dir: str) -> None:
    import datetime
    import json

    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size,
                            timeout=datetime.timedelta(seconds=120))
    try:
        scores = {name: _phased_scores(model, toks, luts, cfg, rank, world_size) for name, cfg in DIST_CFGS.items()}
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(scores))
        dist.barrier()
        teardown(barrier=True)  # no rank leaves gloo while a peer still has collectives in flight
    finally:
        teardown()


def test_two_ranks_score_like_one_and_every_target_once(model, stream12, luts, tmp_path):
    """Issue #12: lanes shared out to 2 gloo ranks, the global SGD gradients summed over the ranks' documents."""
    import json

    import numpy as np
    import torch.multiprocessing as mp

    mp.spawn(_phased_worker, args=(2, str(tmp_path / "init"), model, stream12, luts, str(tmp_path)), nprocs=2)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    n = stream12.numel() - 1
    for name, cfg in DIST_CFGS.items():
        r0, r1 = ranks[0][name], ranks[1][name]
        one = _phased_scores(model, stream12, luts, cfg, 0, 1)
        print(f"\n{name}: 1 rank val_loss {one['val_loss']!r} val_bpb {one['val_bpb']!r} | 2 ranks val_loss "
              f"{r0['val_loss']!r} val_bpb {r0['val_bpb']!r} rank_tokens {r0['rank_tokens']}")
        assert one["details"]["phases"] == 2 and one["details"]["global_steps"] > 0, name
        assert one["details"]["batches"] == 6, name
        assert abs(r0["val_bpb"] - one["val_bpb"]) <= 1e-6 and abs(r0["val_loss"] - one["val_loss"]) <= 1e-6, name
        assert r0["val_bpb"] == r1["val_bpb"] and r0["tokens"] == one["tokens"] == n, name
        assert r0["bytes"] == one["bytes"], name
        cover = np.bincount(np.array(r0["scored"] + r1["scored"], dtype=np.int64), minlength=n)
        assert (cover == 1).all(), name
        assert r0["world_size"] == 2 and r0["rank_tokens"] == [len(r0["scored"]), len(r1["scored"])], name
        assert min(r0["rank_tokens"]) > 0 and one["world_size"] == 1 and one["rank_tokens"] == [n], name


def test_lanes_set_the_score_and_must_cover_the_ranks(model, stream12, luts):
    one_lane = PhasedTTTConfig(**{**LANES.__dict__, "lanes": 1})
    a, b = _run(model, stream12, luts, LANES)[0], _run(model, stream12, luts, one_lane)[0]
    assert a.tokens == b.tokens and abs(a.val_bpb - b.val_bpb) > 1e-5  # warm-started A chains differ
    with pytest.raises(EvalModeError, match="eval.phased.lanes=1 is below the world size 2"):
        evaluate_phased_ttt(model, stream12, luts, SEQ, one_lane, BOS, rank=0, world_size=2)
    with pytest.raises(ValueError, match="eval.phased.lanes"):
        PhasedTTTConfig(lanes=0)
    unmasked = random_tiny_gpt()  # no document attention mask: a packed row cannot be split between ranks
    with pytest.raises(EvalModeError, match="eval.phased.global_split=true needs model.attn_doc_mask=true"):
        evaluate_phased_ttt(unmasked, stream12, luts, SEQ, SPLIT, BOS)


def test_rank_spans_hold_whole_documents_in_order():
    from golf.eval.phases import _rank_span

    x = torch.tensor([5, 6, 1, 7, 8, 9, 1, 4, 1, 3, 3, 3, 3, 3, 3, 3])
    for world in (1, 2, 3, 4):
        spans = [_rank_span(x, 1, r, world) for r in range(world)]
        assert spans[0][0] == 0 and spans[-1][1] == x.numel()
        assert all(spans[r][1] == spans[r + 1][0] for r in range(world - 1))
        assert all(a == b or a == 0 or x[a] == 1 for a, b in spans)  # each share starts at a document start
    assert [_rank_span(x, 1, r, 2) for r in range(2)] == [(0, 8), (8, 16)]
