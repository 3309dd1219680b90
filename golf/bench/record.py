"""Record benchmark: `python -m golf.bench.record [KEY=VALUE ...] [--run RUN_OR_SWEEP_DIR] [--json]`,
`python -m golf.bench.record --breakdown PRESET [KEY=VALUE ...] [--json]`, or
`python -m golf.bench.record --floor PRESET [KEY=VALUE ...] [--data-root DIR] [--json]`.

Per preset: counted code bytes of its generated train_gpt.py (golf.record.submission_code_bytes: the file as
shipped), the unminified size, the number of golf modules bundled and the time to generate it (fresh, module
trace included), next to the issue #9 targets taken from the records' own code bytes. With --run, the time of a
whole `python -m golf.record` (fresh interpreter) into a temporary folder. KEY=VALUE overrides apply to every
preset (`budget.code_text=base128` measures golf's denser wrapper). Both are cold: the on-disk bundle
memo (golf.record.cache) is off while they run.

With --breakdown, one preset's counted bytes by module and by layer (golf.bench.code_bytes: the bytes deleting
each would save in the shipped file), with the overrides given after the preset name.

With --floor, one preset at CPU scale run under a line tracer (golf.bench.code_floor): its counted bytes without
the statements the run never reached, with and without the raises; needs the official data layout under
--data-root (default $GOLF_DATA_DIR or ./data; `make data` makes one).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from hydra import compose, initialize_config_dir

from golf.bench.code_bytes import breakdown
from golf.bench.code_floor import CPU_SCALE, floor, reached_lines
from golf.config import register_configs, to_typed
from golf.record import submission_bundle
from golf.record.bundle import _build, minify
from golf.record.cache import OFF
from golf.train.config import TrainRunConfig

ROOT = Path(__file__).resolve().parents[2]
TARGETS = {"baseline": 20_000, "pr374_gptq_lite": 67_603}
"""Issue #9: baseline <= 20,000 (the official train_gpt.py is 47,642 raw); pr374_gptq_lite <= 67,603 (the
2026-03-22 record's code bytes); every preset <= LARGEST_TARGET (the 2026-04-27 record's 31,999)."""
LARGEST_TARGET = 32_000


def presets() -> list[str]:
    return sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))


def _compose(name: str, overrides: list[str]) -> TrainRunConfig:
    """The typed config of preset `name` with Hydra `overrides`."""
    register_configs()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return to_typed(compose("train", overrides=[f"experiment={name}", *overrides]), TrainRunConfig)


def measure(overrides: list[str] = (), names: list[str] | None = None) -> list[dict]:
    """One row per preset in `names` (default: all) composed with `overrides`: code bytes, readable bytes,
    modules, layout, generation seconds and the issue #9 target."""
    os.environ["GOLF_CACHE_DIR"] = OFF  # time the generation, not the memo
    rows = []
    for name in names or presets():
        cfg = _compose(name, list(overrides))
        _build.cache_clear()
        minify.cache_clear()  # each preset from scratch (module trace and minification included)
        t0 = time.perf_counter()
        bundle = submission_bundle(cfg)
        rows.append({"preset": name, "code_bytes": bundle.code_bytes,
                     "readable_bytes": len(bundle.readable.encode("utf-8")), "modules": len(bundle.modules),
                     "layout": bundle.layout,
                     "seconds": time.perf_counter() - t0, "target": TARGETS.get(name)})
    return rows


def print_breakdown(name: str, overrides: list[str], as_json: bool) -> None:
    """Print one preset's breakdown (golf.bench.code_bytes) as tables, or as JSON."""
    os.environ["GOLF_CACHE_DIR"] = OFF
    bundle = submission_bundle(_compose(name, overrides))
    if bundle.layout != "flat":
        raise SystemExit(f"{name}: packaged layout; the breakdown needs the flat one")
    modules, layers = breakdown(bundle)
    if as_json:
        print(json.dumps({"preset": name, "overrides": overrides, "code_bytes": bundle.code_bytes,
                          "layers": [asdict(p) for p in layers], "modules": [asdict(p) for p in modules]}, indent=2))
        return
    print(f"{' '.join([name, *overrides])}: {bundle.code_bytes:,} counted code bytes, {len(bundle.modules)} modules; "
          "marginal = bytes the shipped file loses without it")
    for title, parts in (("layer", layers), ("module", modules)):
        print(f"\n{title:<44} {'readable':>9} {'marginal':>8}")
        for p in parts:
            print(f"{p.name:<44} {p.readable_bytes:>9,} {p.marginal:>8,}")


def print_floor(name: str, overrides: list[str], data_root: Path, as_json: bool) -> None:
    """Print one preset's code floor (golf.bench.code_floor) at CPU scale, or as JSON."""
    os.environ["GOLF_CACHE_DIR"] = OFF
    full = submission_bundle(_compose(name, overrides)).code_bytes
    bundle = submission_bundle(_compose(name, [*overrides, *CPU_SCALE]))
    if bundle.layout != "flat":
        raise SystemExit(f"{name}: packaged layout; the floor needs the flat one")
    result = floor(bundle.readable, bundle.config, bundle.code_bytes, reached_lines(bundle.readable, data_root))
    if as_json:
        print(json.dumps({"preset": name, "overrides": overrides, "code_bytes": full, "cpu_scale": list(CPU_SCALE),
                          **asdict(result)}, indent=2))
        return
    print(f"{' '.join([name, *overrides])}: {full:,} counted code bytes at full scale")
    print(f"at CPU scale ({' '.join(CPU_SCALE)}): {result.shipped:,} bytes; the run reached "
          f"{result.statements_reached:,} of {result.statements:,} statements")
    print(f"  without the statements it never reached, raises kept: {result.reached:>7,}")
    print(f"  without those and without every raise:               {result.reached_no_raise:>7,}")


def time_record(run: str) -> float:
    """Wall time of `python -m golf.record RUN --non-record` in a fresh interpreter (imports included)."""
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "golf.record", run, "--out", out, "--name", "bench", "--non-record"],
                       cwd=ROOT, check=True, capture_output=True, env={**os.environ, "GOLF_CACHE_DIR": OFF})
        return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m golf.bench.record")
    parser.add_argument("--run", default="", help="an exported run or sweep directory to time golf.record on")
    parser.add_argument("--breakdown", metavar="PRESET", default="",
                        help="counted bytes of one preset's train_gpt.py by module and by layer")
    parser.add_argument("--floor", metavar="PRESET", default="",
                        help="counted bytes of one preset's train_gpt.py without the code a CPU-scale run never reaches")
    parser.add_argument("--data-root", type=Path, default=Path(os.environ.get("GOLF_DATA_DIR", "./data")),
                        help="official data layout for --floor (default: $GOLF_DATA_DIR or ./data)")
    parser.add_argument("overrides", nargs="*", help="KEY=VALUE overrides of every preset (or of the --breakdown one)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.breakdown:
        print_breakdown(args.breakdown, args.overrides, args.json)
        return
    if args.floor:
        print_floor(args.floor, args.overrides, args.data_root, args.json)
        return
    rows = measure(args.overrides)
    record_s = time_record(args.run) if args.run else None
    if args.json:
        print(json.dumps({"overrides": args.overrides, "presets": rows, "record_seconds": record_s}, indent=2))
        return
    if args.overrides:
        print(f"overrides: {' '.join(args.overrides)}")
    print(f"{'preset':<28} {'code bytes':>10} {'target':>8} {'readable':>9} {'modules':>7} {'layout':>8} "
          f"{'build s':>7}")
    for r in rows:
        target = r["target"] or LARGEST_TARGET
        mark = "ok" if r["code_bytes"] <= target else f"+{r['code_bytes'] - target:,}"
        print(f"{r['preset']:<28} {r['code_bytes']:>10,} {target:>8,} {r['readable_bytes']:>9,} {r['modules']:>7} "
              f"{r['layout']:>8} {r['seconds']:>7.1f}  {mark}")
    largest = max(rows, key=lambda r: r["code_bytes"])
    print(f"largest: {largest['preset']} {largest['code_bytes']:,} bytes (target {LARGEST_TARGET:,})")
    if record_s is not None:
        print(f"python -m golf.record {args.run}: {record_s:.1f}s (target < 10 s)")


if __name__ == "__main__":
    main()
