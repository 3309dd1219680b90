"""Throughput benchmark: `python -m golf.bench.train [--steps N] [hydra overrides...]`.

Runs the real training loop (same model, optimizers, loader and step code as train.py) for N timed steps
after the priming steps, with W&B, checkpointing and periodic validation off, and prints tokens/s, ms/step
and peak memory. The default configuration is the reference CPU benchmark of issue #2: 4 layers, d 256,
4 heads / 2 KV heads, seq 256, 8,192 tokens/step, fp32, eager (no torch.compile).

Data: the shards under GOLF_DATA_DIR (default ./data); if there are none, shards are prepared once from
../shared/data/fineweb/docs_sample_200.jsonl into ~/.cache/golf/bench_data.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from golf.config import register_configs, to_typed
from golf.train.config import TrainRunConfig
from golf.train.context import RunContext
from golf.train.run import train

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OVERRIDES = [
    "experiment=smoke", "model.num_layers=4", "model.model_dim=256", "model.num_heads=4", "model.num_kv_heads=2",
    "trainer.train_seq_len=256", "trainer.train_batch_tokens=8192", "trainer.compile=off", "logger=none",
    "trainer.checkpoint=false", "schedule.val_loss_every=0", "eval.max_tokens=4096",
]


def ensure_bench_data() -> None:
    """Point GOLF_DATA_DIR at sp1024 shards: the data root's when it holds them, else the shared FineWeb sample
    prepared once under ~/.cache/golf/bench_data (golf.bench.presets.ensure_data, as for `baseline`). Exits with
    one line when neither can be had."""
    root = Path(os.environ.get("GOLF_DATA_DIR", ROOT / "data"))
    if not list((root / "datasets" / "fineweb10B_sp1024").glob("fineweb_val_*.bin")):
        from golf.bench.presets import ensure_data

        root = Path.home() / ".cache" / "golf" / "bench_data"
        if (why := ensure_data("baseline", root)) is not None:
            raise SystemExit(f"error: {why}")
    os.environ["GOLF_DATA_DIR"] = str(root)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20, help="timed training steps")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, applied after the reference defaults")
    args = parser.parse_args(argv)
    ensure_bench_data()
    register_configs()
    overrides = DEFAULT_OVERRIDES + [f"schedule.iterations={args.steps}", "schedule.max_wallclock_seconds=0",
                                     "schedule.train_log_every=0"] + args.overrides
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = to_typed(compose("train", overrides=overrides), TrainRunConfig)
    with tempfile.TemporaryDirectory() as tmp:
        metrics = train(cfg, RunContext(Path(tmp), "bench", "bench"))
    peak_mib = (torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available()
                else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    result = {
        "device": metrics["device"], "params": metrics["params"], "steps": metrics["steps"],
        "tokens_per_step": cfg.trainer.train_batch_tokens, "ms_per_step": round(metrics["ms_per_step"], 2),
        "tokens_per_s": round(cfg.trainer.train_batch_tokens / (metrics["ms_per_step"] / 1000.0), 1),
        "peak_memory_mib": round(peak_mib, 1), "torch": torch.__version__, "threads": torch.get_num_threads(),
        "overrides": args.overrides,
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
