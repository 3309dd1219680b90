"""Every eval mode on 2 gloo ranks scores like 1 process, and every target is scored exactly once across ranks.

Tiny random GPT (2 layers, d 64) on ~300 real FineWeb val tokens around a document boundary, so the document-
aware modes have two documents to share out. Standard and sliding must match bit for bit (exact sums on the
2**-20 grid); the TTT modes within 1e-6 bpb (the gradients are summed over ranks in another order).
"""

from __future__ import annotations

import datetime
import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import random_tiny_gpt

from golf.data.loader import load_validation_tokens
from golf.data.tokenizer import load_tokenizer
from golf.eval.bpb import build_byte_luts
from golf.eval.config import EvalConfig, TTTConfig
from golf.eval.data import ValData
from golf.eval.run import EvalContext, run_evaluation
from golf.train.dist import teardown

SEQ = 32
BOS = 1
N_TOKENS = 320

MODES = {
    "standard": EvalConfig(mode="standard", batch_tokens=4 * SEQ),
    "sliding": EvalConfig(mode="sliding", stride=8, batch_tokens=4 * SEQ),
    "sliding_docs": EvalConfig(mode="sliding", stride=8, doc_aware=True, batch_tokens=4 * SEQ),
    "ttt": EvalConfig(mode="ttt", stride=8, batch_tokens=4 * SEQ,
                      ttt=TTTConfig(chunk_tokens=64, epochs=1, batch_seqs=3, lr=0.2, grad_clip=1.0)),
    "ttt_lora": EvalConfig(mode="ttt", stride=16, doc_aware=True, batch_tokens=4 * SEQ,
                           ttt=TTTConfig(params="lora", reset="document", chunk_tokens=16, optimizer="adam",
                                         lr=0.05, lr_schedule="constant", doc_batch=2, grad_clip=0.0)),
}
EXACT = {"standard", "sliding", "sliding_docs"}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def val(sp1024_shards: Path, sp1024_model: Path) -> ValData:
    stream = load_validation_tokens(str(sp1024_shards / "fineweb_val_*.bin"), SEQ, 1024).to(torch.int64)
    boundary = int((stream[1:] == BOS).nonzero()[0]) + 1
    lo = boundary - 150
    tokens = stream[lo: lo + N_TOKENS + 1].clone()
    return ValData(tokens, build_byte_luts(load_tokenizer(sp1024_model, 1024), 1024), SEQ, BOS)


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    return random_tiny_gpt()


def _score_modes(model, val: ValData, rank: int, world_size: int) -> dict[str, dict]:
    out = {}
    for name, cfg in MODES.items():
        losses = torch.full((val.tokens.numel() - 1,), float("nan"), dtype=torch.float64)
        r = run_evaluation(model, val, cfg, EvalContext(torch.device("cpu"), rank, world_size,
                                                        target_losses=losses))
        out[name] = {"val_loss": r.val_loss, "val_bpb": r.val_bpb, "tokens": r.tokens, "bytes": r.bytes,
                     "world_size": r.world_size, "rank_tokens": r.rank_tokens,
                     "scored": (~losses.isnan()).nonzero().flatten().tolist()}
    return out


def _worker(rank: int, world_size: int, init_file: str, model, val, out_dir: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size,
                            timeout=datetime.timedelta(seconds=120))
    try:
        scores = _score_modes(model, val, rank, world_size)
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(scores))
        dist.barrier()
        teardown(barrier=True)  # no rank leaves gloo while a peer still has collectives in flight
    finally:
        teardown()


def test_every_mode_on_two_ranks_scores_like_one(model, val, tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_worker, args=(2, str(tmp_path / "init"), model, val, str(tmp_path)), nprocs=2)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    one = _score_modes(model, val, 0, 1)
    n = val.tokens.numel() - 1
    for name in MODES:
        r0, r1, single = ranks[0][name], ranks[1][name], one[name]
        if name in EXACT:
            assert r0["val_loss"] == single["val_loss"] and r0["val_bpb"] == single["val_bpb"], name
        else:
            assert abs(r0["val_bpb"] - single["val_bpb"]) <= 1e-6, name
        assert r0["val_bpb"] == r1["val_bpb"], name  # every rank reports the same reduced score
        assert r0["tokens"] == single["tokens"] == n and r0["bytes"] == single["bytes"], name
        # each target exactly once across ranks, and the ranks' counts are what they scored
        cover = np.bincount(np.array(r0["scored"] + r1["scored"], dtype=np.int64), minlength=n)
        assert (cover == 1).all(), name
        assert r0["world_size"] == 2 and r0["rank_tokens"] == [len(r0["scored"]), len(r1["scored"])], name
        assert min(r0["rank_tokens"]) > 0, name  # both ranks did work
        assert single["world_size"] == 1 and single["rank_tokens"] == [n], name


def test_document_modes_never_split_a_document_across_ranks(model, val, tmp_path):
    """sliding_docs: each rank holds whole documents; here one each (the boundary sits at target 150 of 320)."""
    from golf.eval.sliding import stream_segments
    from golf.eval.windows import rank_documents

    segments = stream_segments(val.tokens, True, BOS)
    assert len(segments) >= 2
    shares = [rank_documents(segments, r, 2) for r in range(2)]
    assert all(len(s) >= 1 for s in shares)
    assert np.array_equal(np.concatenate(shares), segments)


def _stall_worker(rank: int, init_file: str, out_dir: str) -> None:
    import os

    from golf.train.dist import DistTimeoutError, collective_errors, init_distributed

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1")
    torch.set_num_threads(1)
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2,
                            timeout=datetime.timedelta(seconds=2))
    ctx = init_distributed("cpu", timeout_s=2)  # joins nothing more: the group exists
    if rank == 1:
        time.sleep(5)  # the stalled rank
        os._exit(0)
    t0 = time.perf_counter()
    try:
        with collective_errors(ctx.rank, ctx.world_size, 2):
            dist.all_reduce(torch.ones(1))
    except DistTimeoutError as exc:
        Path(out_dir, "error.txt").write_text(f"{time.perf_counter() - t0:.2f}\n{exc}")
    os._exit(0)  # as the entry point does after its one line (a gloo group with a dead peer cannot be torn down)


def test_a_stalled_rank_ends_the_job_with_one_line(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_stall_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2)
    seconds, message = (tmp_path / "error.txt").read_text().split("\n", 1)
    assert float(seconds) < 6.0
    assert "\n" not in message and message.startswith("rank 0 of 2: ") and "dist.timeout_s=2s" in message


def test_dist_timeout_is_validated():
    from golf.train.config import DistConfig

    assert DistConfig().timeout_s < 600
    with pytest.raises(ValueError, match="dist.timeout_s"):
        DistConfig(timeout_s=0)
