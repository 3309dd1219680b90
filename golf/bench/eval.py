"""Evaluation throughput: `python -m golf.bench.eval [--ranks 1,2] [--modes ...] [--gpu]`.

CPU (default): every eval preset (conf/eval/: standard, sliding, sliding_docs, ttt, ttt_lora) scores the same val
tokens with a random-weight model, once per rank count (gloo processes on this machine, one intra-op thread
each), and prints one JSON line per (mode, ranks): tokens scored per second and the wall seconds of the mode.

GPU (`--gpu`): one process on cuda:0. Each mode is probed on a small slice to learn its rate, then measured
on a slice sized to take about `--target-seconds`; the full val set's time on 8xH100 is PROJECTED from that
single-GPU rate: setup + val_tokens / (rate x 8 x speed_vs_h100), assuming perfect 8-way scaling (the modes
share windows, chunks or documents across ranks with one all-reduce per chunk step). It is labelled
`projected_8xh100_s` and is an estimate, not a measurement.

Data: the FineWeb val shards under GOLF_DATA_DIR (or the shared 50-document sample, prepared once, see
golf.bench.train); without them (e.g. on a bare GPU machine) synthetic tokens with a BOS every ~1,240 tokens
(the sp1024 val split's mean document length) and 2 bytes per token, labelled `data: synthetic`.
Throughput does not depend on the token values; the document layout matters only to the doc-aware modes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from golf.eval.bpb import ByteLUTs
from golf.eval.config import EvalConfig
from golf.eval.data import ValData
from golf.eval.run import EvalContext, run_evaluation
from golf.model import ModelConfig, build_model, cast_for_device
from golf.schema import build_dataclass
from golf.train.dist import teardown

ROOT = Path(__file__).resolve().parents[2]
PRESETS = ("standard", "sliding", "sliding_docs", "ttt", "ttt_lora", "phased_ttt")
SP1024_VAL_TOKENS = 62_021_632
MEAN_DOC_TOKENS = 1240
BOS = 1


def preset(name: str, batch_tokens: int, chunk_tokens: int | None, doc_batch: int | None = None) -> EvalConfig:
    """conf/eval/<name>.yaml as an EvalConfig (no Hydra), with the benchmark's batch size."""
    import yaml

    values = yaml.safe_load((ROOT / "conf" / "eval" / f"{name}.yaml").read_text())
    values.pop("defaults", None)
    values["batch_tokens"] = batch_tokens
    if chunk_tokens and values.get("mode") == "ttt" and values.get("ttt", {}).get("reset", "never") == "never":
        values.setdefault("ttt", {})["chunk_tokens"] = chunk_tokens
    if doc_batch and values.get("mode") == "phased_ttt":  # CPU: enough batches for every rank to get documents
        values["phased"]["doc_batch"] = doc_batch
    return build_dataclass(EvalConfig, values, "eval.", strict=True)


def synthetic_val(n_tokens: int, seq_len: int, vocab: int, seed: int = 0) -> ValData:
    """n_tokens (rounded down to whole windows) + 1 random ids, a BOS at every document start."""
    gen = np.random.default_rng(seed)
    n = max(seq_len, n_tokens // seq_len * seq_len)
    ids = gen.integers(3, vocab, size=n + 1)
    pos = 0
    while pos < n:
        ids[pos] = BOS
        pos += max(16, int(gen.exponential(MEAN_DOC_TOKENS)))
    base = torch.full((vocab,), 2, dtype=torch.int16)
    boundary = torch.zeros(vocab, dtype=torch.bool)
    base[:3], boundary[:3] = 0, True
    luts = ByteLUTs(base, torch.zeros(vocab, dtype=torch.bool), boundary)
    return ValData(torch.from_numpy(ids).to(torch.int64), luts, seq_len, BOS)


def real_val(n_tokens: int, seq_len: int) -> ValData | None:
    """The first n_tokens of the FineWeb val shards (GOLF_DATA_DIR or the prepared shared sample), or None."""
    try:
        from golf.bench.train import ensure_bench_data  # needs Hydra (absent on a bare GPU machine)

        ensure_bench_data()
    except (ImportError, OSError):
        return None
    from golf.data.config import DataConfig
    from golf.eval.data import load_val_data

    try:
        return load_val_data(DataConfig(root=os.environ["GOLF_DATA_DIR"]), 1024, seq_len, n_tokens)
    except Exception:  # no usable shards: fall back to synthetic tokens
        return None


def make_model(args, device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    cfg = ModelConfig(num_layers=args.layers, model_dim=args.dim, num_heads=args.heads, num_kv_heads=args.kv_heads)
    return cast_for_device(build_model(cfg), device, ()).eval()


def score_modes(model, val: ValData, modes: list[str], args, rank: int, world_size: int,
                device: torch.device) -> list[dict]:
    out = []
    for name in modes:
        cfg = preset(name, args.batch_tokens, args.chunk_tokens, args.doc_batch)
        t0 = time.perf_counter()
        r = run_evaluation(model, val, cfg, EvalContext(device, rank, world_size))
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        t = torch.tensor([seconds], dtype=torch.float64)
        if world_size > 1:
            import torch.distributed as dist

            dist.all_reduce(t, op=dist.ReduceOp.MAX)
        out.append({"mode": name, "ranks": world_size, "tokens": r.tokens, "seconds": round(float(t.item()), 3),
                    "tokens_per_s": round(r.tokens / float(t.item()), 1), "val_bpb": round(r.val_bpb, 5),
                    "rank_tokens": r.rank_tokens})
    return out


def _cpu_worker(rank: int, world_size: int, init_file: str, args, modes: list[str], out: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(args.threads)
    if world_size > 1:
        import datetime

        dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size,
                                timeout=datetime.timedelta(seconds=600))
    try:
        val = real_val(args.tokens, args.seq_len) if not args.synthetic else None
        data = "fineweb val" if val is not None else "synthetic"
        val = val or synthetic_val(args.tokens, args.seq_len, 1024)
        rows = score_modes(make_model(args, torch.device("cpu")), val, modes, args, rank, world_size,
                           torch.device("cpu"))
        if rank == 0:
            Path(out).write_text(json.dumps([{**r, "data": data, "device": "cpu", "threads_per_rank": args.threads}
                                             for r in rows]))
        teardown(barrier=True)  # no rank leaves gloo while a peer still has collectives in flight
    finally:
        teardown()


def run_cpu(args, modes: list[str]) -> list[dict]:
    import torch.multiprocessing as mp

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for world_size in args.ranks:
            out = str(Path(tmp) / f"w{world_size}.json")
            if world_size == 1:
                _cpu_worker(0, 1, "", args, modes, out)
            else:
                mp.spawn(_cpu_worker, args=(world_size, str(Path(tmp) / f"init{world_size}"), args, modes, out),
                         nprocs=world_size)
            rows += json.loads(Path(out).read_text())
    return rows


def run_gpu(args, modes: list[str]) -> list[dict]:
    """Single-GPU rates on a slice sized from a probe, and the projected full-val time on 8xH100."""
    from golf.train.compliance import device_speed

    device = torch.device("cuda", 0)
    torch.backends.cuda.matmul.allow_tf32 = True
    name = torch.cuda.get_device_name(device)
    speed = device_speed(name) or 1.0
    t0 = time.perf_counter()
    model = make_model(args, device)
    torch.cuda.synchronize()
    setup_s = time.perf_counter() - t0
    rows = []
    for mode in modes:
        probe_tokens = max(args.probe_tokens, 2 * (args.chunk_tokens or 32_768) if mode == "ttt" else 0)
        probe = synthetic_val(probe_tokens, args.seq_len, 1024)
        w0 = time.perf_counter()
        score_modes(model, probe, [mode], args, 0, 1, device)  # warm-up (kernels, cuBLAS, allocator)
        warmup_s = time.perf_counter() - w0
        first = score_modes(model, probe, [mode], args, 0, 1, device)[0]
        n = int(min(args.max_tokens, max(probe_tokens, first["tokens_per_s"] * args.target_seconds)))
        row = score_modes(model, synthetic_val(n, args.seq_len, 1024), [mode], args, 0, 1, device)[0]
        projected = setup_s + warmup_s + args.val_tokens / (row["tokens_per_s"] * 8 * speed)
        rows.append({**row, "device": name, "data": "synthetic", "warmup_s": round(warmup_s, 2),
                     "setup_s": round(setup_s, 2), "val_tokens": args.val_tokens,
                     "projected_8xh100_s": round(projected, 1),
                     "projection": "single-GPU rate x 8 ranks (perfect scaling assumed) x H100/device speed "
                                   f"({speed:g}); estimate, not a measurement"})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--modes", default=",".join(PRESETS), help="comma-separated conf/eval presets")
    p.add_argument("--ranks", default="1,2", help="CPU: comma-separated process counts")
    p.add_argument("--tokens", type=int, default=8192, help="CPU: val tokens scored per mode")
    p.add_argument("--threads", type=int, default=1, help="CPU: intra-op threads per rank")
    p.add_argument("--layers", type=int, default=None, help="model layers (CPU 4, GPU 9)")
    p.add_argument("--dim", type=int, default=None, help="model width (CPU 256, GPU 512)")
    p.add_argument("--heads", type=int, default=None)
    p.add_argument("--kv-heads", type=int, default=None)
    p.add_argument("--seq-len", type=int, default=None, help="window length (CPU 256, GPU 1024)")
    p.add_argument("--batch-tokens", type=int, default=None, help="eval tokens per forward (CPU 16384, GPU 524288)")
    p.add_argument("--doc-batch", type=int, default=None,
                   help="phased TTT documents per batch (CPU 4: a few thousand tokens hold few documents; GPU: preset)")
    p.add_argument("--chunk-tokens", type=int, default=None,
                   help="score-first TTT chunk (CPU default tokens/4 so a slice holds several; GPU 32768)")
    p.add_argument("--synthetic", action="store_true", help="CPU: synthetic tokens even if shards exist")
    p.add_argument("--gpu", action="store_true", help="measure on cuda:0 and project the 8xH100 time")
    p.add_argument("--probe-tokens", type=int, default=65_536, help="GPU: tokens of the probe slice")
    p.add_argument("--target-seconds", type=float, default=20.0, help="GPU: aim of each measured slice")
    p.add_argument("--max-tokens", type=int, default=8_388_608, help="GPU: largest measured slice")
    p.add_argument("--val-tokens", type=int, default=SP1024_VAL_TOKENS, help="GPU: full val tokens to project")
    args = p.parse_args(argv)
    gpu = args.gpu
    defaults = {"layers": (4, 9), "dim": (256, 512), "heads": (4, 8), "kv_heads": (2, 4), "seq_len": (256, 1024),
                "batch_tokens": (16_384, 524_288)}
    for key, (cpu_value, gpu_value) in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, gpu_value if gpu else cpu_value)
    if args.doc_batch is None and not gpu:
        args.doc_batch = 4
    if args.chunk_tokens is None and not gpu:
        args.chunk_tokens = max(args.seq_len, args.tokens // 4)
    modes = [m for m in args.modes.split(",") if m]
    unknown = [m for m in modes if m not in PRESETS]
    if unknown:
        sys.exit(f"error: unknown mode(s) {', '.join(unknown)}; allowed: {', '.join(PRESETS)}")
    if gpu:
        if not torch.cuda.is_available():
            sys.exit("error: --gpu needs CUDA, which this machine does not have")
        return run_gpu(args, modes)
    args.ranks = [int(r) for r in args.ranks.split(",") if r]
    rows = run_cpu(args, modes)
    for r in rows:
        print(json.dumps(r))
    return rows


if __name__ == "__main__":
    main()
