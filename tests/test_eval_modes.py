"""Evaluation modes: sliding window (exact coverage, document-aware), legal score-first TTT, multi-mode eval.py.

Mechanics use a small randomly initialized GPT on real FineWeb val tokens (sp1024); the "sliding beats
standard" and eval.py checks use the trained `tiny_run` model.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import random_tiny_gpt, run_golf

from golf.data.loader import load_validation_tokens
from golf.data.tokenizer import load_tokenizer
from golf.eval.bpb import build_byte_luts, token_bytes
from golf.eval.config import EvalConfig, TTTConfig
from golf.eval.data import ValData
from golf.eval.lora import LoRAAdapters
from golf.eval.run import EvalContext, run_evaluation
from golf.eval.sliding import evaluate_sliding, sliding_plan
from golf.eval.standard import evaluate_standard
from golf.eval.ttt import evaluate_ttt
from golf.eval.windows import EvalModeError, official_windows, plan_range, target_coverage
from golf.train.dist import teardown
from golf.train.load import load_for_eval

SEQ = 32
BOS = 1


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def luts(sp1024_model: Path):
    return build_byte_luts(load_tokenizer(sp1024_model, 1024), 1024)


@pytest.fixture(scope="module")
def val_stream(sp1024_shards: Path) -> torch.Tensor:
    """All val tokens of the 50-document sample (int64); the first BOS after position 0 is at 21,022."""
    return load_validation_tokens(str(sp1024_shards / "fineweb_val_*.bin"), SEQ, 1024).to(torch.int64)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    """A small GPT whose weights (outputs projections included) are random, so losses depend on context."""
    return random_tiny_gpt()


def _doc_slice(stream: torch.Tensor, n: int = 384) -> tuple[torch.Tensor, int]:
    """n + 1 tokens around the first document boundary, and the boundary's position in the slice."""
    boundary = int((stream[1:] == BOS).nonzero()[0]) + 1
    lo = boundary - 150
    return stream[lo: lo + n + 1].clone(), boundary - lo


def _perturb(tokens: torch.Tensor, lo: int, hi: int, seed: int = 1) -> torch.Tensor:
    """Copy of tokens with positions [lo, hi) replaced by random non-special ids; BOS tokens stay, so the
    document layout (and hence the batching) is the same in both runs."""
    out = tokens.clone()
    gen = torch.Generator().manual_seed(seed)
    keep = out[lo:hi] == BOS
    out[lo:hi] = torch.where(keep, out[lo:hi], torch.randint(3, 1024, (hi - lo,), generator=gen))
    return out


def _nan_losses(tokens: torch.Tensor) -> torch.Tensor:
    return torch.full((tokens.numel() - 1,), float("nan"), dtype=torch.float64)


# ----------------------------------------------------------------------------- sliding window

def test_sliding_with_stride_equal_to_seq_len_matches_standard(model, val_stream, luts):
    tokens = val_stream[: 16 * SEQ + 1]
    std = evaluate_standard(model, tokens, luts, SEQ, 8 * SEQ)
    sld = evaluate_sliding(model, tokens, luts, SEQ, SEQ, 8 * SEQ)
    assert (sld.tokens, sld.bytes) == (std.tokens, std.bytes) == (16 * SEQ, sld.bytes)
    assert sld.details["windows"] == 16
    assert sld.val_loss == pytest.approx(std.val_loss, abs=1e-6)
    assert sld.val_bpb == pytest.approx(std.val_bpb, abs=1e-6)


@pytest.mark.parametrize("doc_aware", [False, True])
def test_every_target_scored_exactly_once_for_every_stride(doc_aware):
    # Stream lengths that are not multiples of the window, BOS at the start, back to back and near the end.
    gen = torch.Generator().manual_seed(0)
    for n in (SEQ, 5 * SEQ, 5 * SEQ + 7, 301):
        tokens = torch.randint(3, 1024, (n + 1,), generator=gen)
        tokens[[p for p in (0, 20, 21, 97, n - 2, n) if p <= n]] = BOS
        for stride in (1, 3, 7, 16, 24, SEQ - 1, SEQ):
            plan = sliding_plan(tokens, SEQ, stride, doc_aware, BOS)
            assert (target_coverage(plan, n) == 1).all(), (n, stride)
            assert (plan.length <= SEQ).all() and (plan.score_len <= plan.length).all()
            # Longest context the window allows: every target after the first window of its segment has
            # at least SEQ - stride earlier tokens in its window.
            targets = plan.scored_targets()
            window_start = np.repeat(plan.start, plan.score_len)
            context = targets - window_start + 1
            if not doc_aware:
                assert (context[targets >= SEQ] >= SEQ - stride + 1).all()
                assert (context[targets < SEQ] == targets[targets < SEQ] + 1).all()


def test_sliding_windows_match_the_records_window_list():
    """Where the records' (04-01 fixed) list is exact, N - seq_len a multiple of the stride, it is this plan:
    window starts 0, stride, 2 stride, ...; the first scores everything, later ones their last `stride`."""
    for n, stride in ((8 * SEQ, 8), (8 * SEQ, SEQ), (SEQ + 14 * 12, 12), (5 * SEQ, 16)):
        assert (n - SEQ) % stride == 0
        plan = sliding_plan(torch.zeros(n + 1, dtype=torch.int64), SEQ, stride)
        starts = [ws for ws in range(0, n, stride) if ws + SEQ - stride < n]
        assert plan.start.tolist() == starts
        assert plan.length.tolist() == [SEQ] * len(starts)
        assert plan.score_len.tolist() == [SEQ] + [stride] * (len(starts) - 1)


def test_official_windows_are_the_one_segment_plan_with_stride_seq_len():
    """Standard mode's plan (official eval_val windows) equals plan_range over the whole stream at stride seq_len,
    field by field and dtype for dtype; a stream that is no multiple of seq_len stops with one line."""
    for n, seq in ((8 * SEQ, SEQ), (SEQ, SEQ), (0, SEQ), (12 * 7, 7)):
        mine = official_windows(n, seq)
        ref = plan_range(np.array([[0, n]], dtype=np.int64), 0, n, seq, seq)
        for key in ("start", "length", "score_len", "group"):
            got, want = getattr(mine, key), getattr(ref, key)
            assert got.dtype == want.dtype and got.tolist() == want.tolist(), (n, seq, key)
    with pytest.raises(EvalModeError, match="not a multiple of seq_len=16"):
        official_windows(33, 16)


def test_sliding_counts_every_target_and_byte_once(model, val_stream, luts):
    """A stride that divides neither the window nor the stream (the records' tail double-count case)."""
    tokens = val_stream[: 301 + 1]
    result = evaluate_sliding(model, tokens, luts, SEQ, 24, 4 * SEQ)
    assert result.tokens == 301
    assert result.bytes == int(token_bytes(tokens[:-1], tokens[1:], luts).sum())


def test_sliding_rejects_a_stride_longer_than_the_window(model, val_stream, luts):
    with pytest.raises(EvalModeError, match="eval.stride"):
        evaluate_sliding(model, val_stream[: 4 * SEQ + 1], luts, SEQ, SEQ + 1, 4 * SEQ)


def test_sliding_beats_standard_on_a_trained_model(tiny_run: Path, data_root: Path, luts):
    loaded = load_for_eval(tiny_run, torch.device("cpu"))
    seq = loaded.run_config.trainer.train_seq_len
    tokens = load_validation_tokens(str(data_root / "datasets" / "fineweb10B_sp1024" / "fineweb_val_*.bin"),
                                    seq, 1024)[: 32 * seq + 1]
    std = evaluate_standard(loaded.model, tokens, luts, seq, 16 * seq)
    sld = evaluate_sliding(loaded.model, tokens, luts, seq, seq // 4, 16 * seq)
    assert sld.tokens == std.tokens and sld.bytes == std.bytes
    assert sld.val_bpb < std.val_bpb - 5e-4  # measured: -0.0017 bpb after 30 training steps


# ----------------------------------------------------------------------------- document-aware

def test_document_aware_mode_never_attends_across_a_bos(model, val_stream, luts):
    tokens, boundary = _doc_slice(val_stream)
    changed = _perturb(tokens, 1, boundary)  # the previous document, not its closing BOS
    after = slice(boundary, None)  # targets whose inputs start at the new document's BOS

    def losses(toks, doc_aware):
        out = _nan_losses(toks)
        evaluate_sliding(model, toks, luts, SEQ, 8, 4 * SEQ, doc_aware=doc_aware, bos_id=BOS, target_losses=out)
        assert not out.isnan().any()
        return out

    # Without document awareness the next document's first targets see the perturbed tokens...
    assert not torch.allclose(losses(tokens, False)[after], losses(changed, False)[after], atol=1e-6)
    # ...with it, they never do.
    torch.testing.assert_close(losses(tokens, True)[after], losses(changed, True)[after], rtol=0, atol=1e-7)
    # Per-document LoRA TTT keeps documents independent as well.
    cfg = TTTConfig(params="lora", reset="document", chunk_tokens=16, epochs=1, optimizer="adam", lr=0.05,
                    doc_batch=4, grad_clip=0.0)

    def ttt_losses(toks):
        out = _nan_losses(toks)
        evaluate_ttt(model, toks, luts, SEQ, 16, 4 * SEQ, cfg, doc_aware=True, bos_id=BOS, target_losses=out)
        return out

    torch.testing.assert_close(ttt_losses(tokens)[after], ttt_losses(changed)[after], rtol=0, atol=1e-7)


def test_document_aware_needs_a_bos_id(model, val_stream, luts):
    with pytest.raises(EvalModeError, match="BOS"):
        evaluate_sliding(model, val_stream[: 4 * SEQ + 1], luts, SEQ, 8, 4 * SEQ, doc_aware=True, bos_id=-1)


# ----------------------------------------------------------------------------- test-time training

def test_ttt_without_updates_equals_sliding(model, val_stream, luts):
    tokens = val_stream[: 8 * SEQ + 1]
    sld = evaluate_sliding(model, tokens, luts, SEQ, 8, 4 * SEQ)
    ttt = evaluate_ttt(model, tokens, luts, SEQ, 8, 4 * SEQ, TTTConfig(chunk_tokens=48, epochs=0))
    assert (ttt.tokens, ttt.bytes) == (sld.tokens, sld.bytes)
    assert ttt.val_loss == pytest.approx(sld.val_loss, abs=1e-6)


TTT_VARIANTS = {
    "full_sgd": (TTTConfig(chunk_tokens=64, epochs=2, batch_seqs=2, lr=0.2, grad_clip=0.0), False),
    "lora_per_document": (TTTConfig(params="lora", reset="document", chunk_tokens=16, epochs=1,
                                    optimizer="adam", lr=0.05, doc_batch=2, grad_clip=0.0), True),
}


@pytest.mark.parametrize("variant", sorted(TTT_VARIANTS))
def test_ttt_loss_of_a_token_never_depends_on_later_tokens(variant, model, val_stream, luts):
    """Issue #1017 conditions 1 and 3: perturbing tokens after position t (mid-chunk) leaves the loss of every
    target up to t unchanged. Training on a chunk before scoring it would break this."""
    cfg, doc_aware = TTT_VARIANTS[variant]
    tokens, _ = _doc_slice(val_stream, 256)
    t = 64 + 37  # inside the second chunk of the full-parameter variant
    changed = _perturb(tokens, t + 1, tokens.numel())

    def losses(toks):
        out = _nan_losses(toks)
        res = evaluate_ttt(model, toks, luts, SEQ, 8, 4 * SEQ, cfg, doc_aware=doc_aware, bos_id=BOS,
                           target_losses=out)
        assert res.tokens == toks.numel() - 1 and res.details["updates"] > 0 and not out.isnan().any()
        return out

    base, other = losses(tokens), losses(changed)
    torch.testing.assert_close(base[:t], other[:t], rtol=0, atol=1e-7)
    assert not torch.allclose(base[t:], other[t:], atol=1e-4)
    # The updates matter: the adapted losses differ from plain sliding-window losses.
    plain = _nan_losses(tokens)
    evaluate_sliding(model, tokens, luts, SEQ, 8, 4 * SEQ, doc_aware=doc_aware, bos_id=BOS, target_losses=plain)
    assert not torch.allclose(base, plain, atol=1e-4)


@pytest.mark.parametrize("params", ["full", "lora"])
def test_ttt_updates_a_chunk_only_after_scoring_it(params, model, val_stream, luts):
    tokens = val_stream[: 6 * SEQ + 1]
    cfg = TTTConfig(params=params, chunk_tokens=2 * SEQ, epochs=2, batch_seqs=1, lr=0.1, optimizer="sgd")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    events: list[tuple[str, int, float]] = []

    def record(event):
        events.append((event.kind, event.chunk, sum(float(p.detach().double().sum()) for p in event.params)))

    first = evaluate_ttt(model, tokens, luts, SEQ, 8, 4 * SEQ, cfg, callback=record)
    assert [(k, c) for k, c, _ in events] == [("scored", 0), ("updated", 0), ("scored", 1), ("updated", 1),
                                             ("scored", 2)]  # the last chunk is scored, never trained on
    sums = [s for _, _, s in events]
    assert sums[1] != sums[0] and sums[3] != sums[2]  # each update changed the weights...
    assert sums[2] == sums[1] and sums[4] == sums[3]  # ...and nothing changed them between update and scoring
    assert first.details["updates"] == 2 * 2 * 2  # 2 trained chunks x 2 epochs x 2 windows
    # The caller's model is untouched and a second evaluation starts from the same weights.
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    again = evaluate_ttt(model, tokens, luts, SEQ, 8, 4 * SEQ, cfg)
    assert again.val_loss == first.val_loss


def test_lora_adapters_start_as_identity_and_detach(model, val_stream):
    x = val_stream[: SEQ].view(1, -1)
    with torch.no_grad():
        ref = model.logits(x)
        adapters = LoRAAdapters(model, ["c_q", "mlp.proj"], rank=4)
        assert len(adapters.names) == 4  # 2 blocks x (c_q, mlp.proj)
        torch.testing.assert_close(model.logits(x), ref)  # B = 0 at init
        for b in adapters.B:
            b.normal_()
        assert not torch.allclose(model.logits(x), ref)
        adapters.remove()
        torch.testing.assert_close(model.logits(x), ref)
    with pytest.raises(EvalModeError, match="available: .*attn.c_q"):
        LoRAAdapters(model, ["lm_head"], rank=4)  # tied embeddings: there is no lm_head module


# ----------------------------------------------------------------------------- config, budget, eval.py

def test_eval_config_validates_modes():
    assert EvalConfig(modes=["standard", "sliding"]).run_modes() == ["standard", "sliding"]
    assert EvalConfig(mode="ttt").run_modes() == ["ttt"]
    with pytest.raises(ValueError, match=r"eval.modes\[1\]='slidng'; allowed: standard, sliding, ttt"):
        EvalConfig(modes=["standard", "slidng"])
    with pytest.raises(ValueError, match="twice"):
        EvalConfig(modes=["sliding", "sliding"])
    with pytest.raises(ValueError, match="eval.ttt.reset=document needs eval.ttt.params=lora"):
        EvalConfig(mode="ttt", ttt=TTTConfig(reset="document"))
    with pytest.raises(ValueError, match="eval.doc_aware=true"):
        EvalConfig(mode="ttt", ttt=TTTConfig(params="lora", reset="document"))


def test_time_budget_overrun_warns(model, val_stream, luts, caplog):
    val = ValData(val_stream[: 4 * SEQ + 1], luts, SEQ, BOS)
    cfg = EvalConfig(mode="sliding", stride=16, batch_tokens=4 * SEQ, time_budget_s=1e-6)
    with caplog.at_level(logging.WARNING, logger="golf.eval"):
        result = run_evaluation(model, val, cfg, EvalContext(torch.device("cpu")))
    assert result.over_budget and result.seconds > 0
    assert "over the" in caplog.text and "eval.time_budget_s" in caplog.text


def test_eval_py_scores_several_modes_with_one_model(tiny_run: Path, data_root: Path, tmp_path: Path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    out = tmp_path / "eval.json"
    proc = run_golf("eval.py", f"path={run / 'checkpoint.pt'}", "logger=none", "eval.max_tokens=4096",
                    "eval.modes=[standard,sliding]", "eval.stride=32", f"out={out}", data_root=data_root)
    scored = json.loads(out.read_text())
    assert scored["modes"] == ["standard", "sliding"]
    std, sld = scored["results"]["standard"], scored["results"]["sliding"]
    for r in (std, sld):
        assert set(r) >= {"val_loss", "val_bpb", "val_tokens", "val_bytes", "seconds", "details", "over_budget"}
        assert math.isfinite(r["val_bpb"]) and r["val_tokens"] == 4096
    assert sld["details"]["stride"] == 32 and std["val_bytes"] == sld["val_bytes"]
    assert scored["val_bpb"] == std["val_bpb"]  # top level = first mode
    assert "standard val_loss:" in proc.stdout and "sliding val_loss:" in proc.stdout
    bad = run_golf("eval.py", f"path={run / 'checkpoint.pt'}", "logger=none", "eval.modes=[standard,slidng]",
                   f"out={tmp_path / 'bad.json'}", data_root=data_root, check=False)
    assert bad.returncode == 2 and "allowed: standard, sliding, ttt" in bad.stderr
    assert not (tmp_path / "bad.json").exists()


# ----------------------------------------------------------------------------- several ranks

DIST_TTT = {"full": (TTTConfig(chunk_tokens=64, epochs=1, batch_seqs=3, lr=0.2, grad_clip=1.0), False),
            "lora_doc": (TTTConfig(params="lora", reset="document", chunk_tokens=16, optimizer="adam", lr=0.05,
                                   doc_batch=1, grad_clip=0.0), True)}


def _score_all(model, tokens, luts, rank=0, world_size=1) -> dict[str, float]:
    out = {"sliding": evaluate_sliding(model, tokens, luts, SEQ, 8, 4 * SEQ, rank=rank,
                                       world_size=world_size).val_loss}
    for name, (cfg, doc_aware) in DIST_TTT.items():
        out[name] = evaluate_ttt(model, tokens, luts, SEQ, 8, 4 * SEQ, cfg, doc_aware=doc_aware, bos_id=BOS,
                                 rank=rank, world_size=world_size).val_loss
    return out


def _dist_worker(rank: int, world_size: int, init_file: str, model, tokens, luts, out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        scores = _score_all(model, tokens, luts, rank, world_size)
        if rank == 0:
            Path(out).write_text(json.dumps(scores))
        teardown(barrier=True)  # no rank leaves gloo while a peer still has collectives in flight
    finally:
        teardown()


def test_two_ranks_score_like_one(model, val_stream, luts, tmp_path):
    """Windows, TTT gradients (summed over ranks) and per-document streams split across 2 gloo ranks give the
    single-process numbers."""
    import torch.multiprocessing as mp

    tokens, _ = _doc_slice(val_stream, 256)
    out = tmp_path / "scores.json"
    mp.spawn(_dist_worker, args=(2, str(tmp_path / "init"), model, tokens, luts, str(out)), nprocs=2)
    two = json.loads(out.read_text())
    one = _score_all(model, tokens, luts)
    for name, value in one.items():
        assert two[name] == pytest.approx(value, abs=2e-6), name
