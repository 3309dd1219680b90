"""Every preset at CPU scale, as a user runs it: `python -m golf.bench.presets [PRESET ...] [--json FILE]`.

For each preset (default: all of conf/experiment/ but `smoke`) this runs, in subprocesses,

    python train.py experiment=<preset> scale=cpu_tiny logger=none hydra.run.dir=<work>/<preset>
    python export.py run_dir=<work>/<preset> logger=none

and prints one Markdown row per preset: parameters, steps, training seconds, the pre-quantization val_bpb (the
trainer's final validation) and the artifact's (export's round trip, the same windows and tokens), the
quantization gap, artifact and code bytes, and the wall seconds of both commands. scale=cpu_tiny trains 40
steps of 8,192 tokens at d 128 with every structural choice kept and scores the first 32,768 validation tokens
with standard windows (conf/scale/cpu_tiny.yaml): the rows compare techniques at equal steps, not what a system
reaches in 600 s on 8xH100.

Data (the same documents for every tokenizer): the shared FineWeb sample (200 documents, the first 50 for
validation) prepared once per data variant into `--data-cache` (default ~/.cache/golf/bench_presets) with the
variant's tokenizer: sp1024/sp8192 from ../shared/data/tokenizers, the CaseOps one (record_0427_sota) from its
record folder. A variant whose tokenizer is missing is reported as skipped, not guessed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from golf.io import atomic_write_json
from golf.preflight.compose import compose_train_config
from golf.preflight.records import RECORDS_DIR

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
DOCS = SHARED / "fineweb" / "docs_sample_200.jsonl"
VAL_DOCS = 50
SCALE = ("scale=cpu_tiny", "logger=none")


@dataclass
class PresetRow:
    """One preset's CPU-scale train -> export (bytes, val_bpb in bits per byte, seconds)."""

    preset: str
    params: int
    steps: int
    train_s: float
    val_bpb: float
    artifact_val_bpb: float
    quant_gap_bpb: float
    artifact_bytes: int
    code_bytes: int
    eval_tokens: int
    wall_s: float


def presets() -> list[str]:
    """Every preset name under conf/experiment/ except `smoke` (already a CPU config)."""
    return sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml") if p.stem != "smoke")


def tokenizer_file(name: str) -> Path | None:
    """The SentencePiece model `name`: the shared tokenizers first, then the record folders'."""
    shared = SHARED / "tokenizers" / name
    if shared.is_file():
        return shared
    return next(iter(sorted(RECORDS_DIR.glob(f"*/tokenizers/{name}"))), None)


def ensure_data(preset: str, cache: Path) -> str | None:
    """Prepare the preset's data variant under `cache` (official layout) if absent. Returns why it cannot run,
    or None."""
    from golf.data.prepare import prepare_shards

    data = compose_train_config([f"experiment={preset}", *SCALE, f"data.root={cache}"]).data
    dataset, tok_path = data.resolve_dataset_dir(), data.resolve_tokenizer_path()
    if list(dataset.glob("fineweb_val_*.bin")) and tok_path.is_file():
        return None
    source = tokenizer_file(tok_path.name)
    if source is None:
        return f"tokenizer {tok_path.name} is in neither {SHARED / 'tokenizers'} nor a record folder"
    if not DOCS.is_file():
        return f"{DOCS} is missing"
    tok_path.parent.mkdir(parents=True, exist_ok=True)
    if not tok_path.exists():
        tok_path.symlink_to(source)
    prepare_shards(DOCS, tok_path, dataset, val_docs=VAL_DOCS, text_transform=data.text_transform)
    return None


def _run(script: str, args: list[str], cache: Path) -> None:
    env = {**os.environ, "GOLF_DATA_DIR": str(cache), "WANDB_MODE": "offline", "OMP_NUM_THREADS": "2"}
    proc = subprocess.run([sys.executable, script, *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines() or ["(no output)"])[-1]
        raise RuntimeError(f"{script} failed ({proc.returncode}): {tail}")


def measure(preset: str, work: Path, cache: Path, overrides: list[str]) -> PresetRow:
    """Train and export `preset` at CPU scale under `work/preset`; the row of its metrics.json and export.json."""
    run = work / preset
    t0 = time.perf_counter()
    _run("train.py", [f"experiment={preset}", *SCALE, *overrides, f"hydra.run.dir={run}"], cache)
    _run("export.py", [f"run_dir={run}", "logger=none"], cache)
    wall = time.perf_counter() - t0
    m = json.loads((run / "metrics.json").read_text())
    e = json.loads((run / "export.json").read_text())
    return PresetRow(preset, m["params"], m["steps"], round(m["train_time_s"], 1), e["pre_quant"]["val_bpb"],
                     e["val_bpb"], e["quant_gap_bpb"], e["artifact_bytes"], e["code_bytes"],
                     e["roundtrip"]["val_tokens"], round(wall, 1))


def format_table(rows: list[PresetRow], skipped: dict[str, str]) -> str:
    lines = ["| preset | params | steps | train s | val_bpb pre-quant → artifact | gap | artifact bytes | "
             "code bytes | wall s |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| `{r.preset}` | {r.params:,} | {r.steps} | {r.train_s:.1f} | {r.val_bpb:.4f} → "
                     f"{r.artifact_val_bpb:.4f} | {r.quant_gap_bpb:+.4f} | {r.artifact_bytes:,} | {r.code_bytes:,} | "
                     f"{r.wall_s:.0f} |")
    lines += [f"| `{name}` | skipped: {why} |" for name, why in skipped.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("presets", nargs="*", help="preset names (default: every preset but smoke)")
    parser.add_argument("--work", type=Path, default=ROOT / "outputs" / "bench_presets",
                        help="run directories go under WORK/<date_time>/<preset> (earlier ones are kept)")
    parser.add_argument("--data-cache", type=Path, default=Path.home() / ".cache" / "golf" / "bench_presets")
    parser.add_argument("--override", action="append", default=[], metavar="KEY=VALUE",
                        help="a Hydra override for every preset's training (repeatable)")
    parser.add_argument("--json", type=Path, help="also write the rows here as JSON")
    args = parser.parse_args(argv)
    names = args.presets or presets()
    unknown = sorted(set(names) - set(presets()))
    if unknown:
        print(f"error: unknown preset(s) {', '.join(unknown)}; known: {', '.join(presets())}", file=sys.stderr)
        return 2
    rows, skipped = [], {}
    work = args.work.resolve() / time.strftime("%Y%m%d_%H%M%S")
    for name in names:
        why, row = ensure_data(name, args.data_cache.resolve()), None
        if not why:
            try:
                row = measure(name, work, args.data_cache.resolve(), args.override)
            except RuntimeError as exc:
                why = str(exc)
        if row:
            rows.append(row)
        else:
            skipped[name] = why
        print(f"{name}: {asdict(row) if row else f'skipped: {why}'}", flush=True)
    print(format_table(rows, skipped))
    if args.json:
        atomic_write_json(args.json, {"rows": [asdict(r) for r in rows], "skipped": skipped,
                                      "overrides": args.override})
    return 1 if skipped else 0


if __name__ == "__main__":
    sys.exit(main())
