"""python -m golf.record RUN_OR_SWEEP_DIR [--out DIR] [--name ...] [--author ...] [--github-id ...]
[--blurb ...] [--hardware ...] [--baseline SWEEP_DIR] [--non-record]

Writes records/track_10min_16mb/<date>_<name>/ (track_non_record_16mb with --non-record): train_gpt.py (the
counted, self-extracting file generated from the run's config), train_gpt.readable.py, submission.json,
README.md, requirements.txt and train_seed<S>.log per seed. Refuses with one line `error: ...`, writing nothing,
for a run over the byte budget, over 600 s of training or eval (unless --non-record), seed runs of different
configurations, or a missing log / export.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

from golf.errors import GolfError
from golf.record import submission_bundle
from golf.record.folder import (
    NON_RECORD_TRACK,
    TRACK,
    baseline_comparison,
    default_hardware,
    readme,
    requirements,
    submission_json,
    today,
    write_folder,
)
from golf.record.runs import check_limits, find_runs


def make_record(run_or_sweep: str | Path, out: str | Path = "records", name: str = "", author: str = "",
                github_id: str = "", blurb: str = "", hardware: str = "", baseline: str | Path | None = None,
                non_record: bool = False, date: str = "") -> Path:
    """Write the record folder and return its path. Raises GolfError (one line) and then writes nothing."""
    runs = find_runs(Path(run_or_sweep))
    cfg = runs[0].cfg
    bundle = submission_bundle(cfg)
    check_limits(runs, bundle.code_bytes, cfg.budget.target_bytes, non_record)
    comparison = baseline_comparison(runs, find_runs(Path(baseline))) if baseline else None
    name = name or cfg.experiment_name
    date = date or today()
    track = NON_RECORD_TRACK if non_record else TRACK
    sub = submission_json(runs, bundle.code_bytes, author=author, github_id=github_id, name=name, blurb=blurb,
                          date=date, track=track, hardware=hardware or default_hardware(runs), comparison=comparison)
    slug = re.sub(r"[^A-Za-z0-9_.+-]+", "_", name).strip("_") or "run"
    final = Path(out) / f"track_{track}" / f"{date}_{slug}"

    files: dict[str, str | Path] = {
        "train_gpt.py": bundle.shipped, "train_gpt.readable.py": bundle.readable,
        "submission.json": json.dumps(sub, indent=2) + "\n", "requirements.txt": requirements(cfg),
        "README.md": readme(runs, sub, bundle.code_bytes, final.name, bundle.modules),
        **{f"train_seed{r.seed}.log": r.log for r in runs},
    }
    write_folder(final, files)
    return final


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m golf.record", description=__doc__.split("\n\n")[1])
    parser.add_argument("run_or_sweep", help="an exported run directory, or a sweep directory of seed runs")
    parser.add_argument("--out", default="records", help="records root (default ./records)")
    parser.add_argument("--name", default="", help="record name (default: the experiment name)")
    parser.add_argument("--author", default="")
    parser.add_argument("--github-id", default="")
    parser.add_argument("--blurb", default="")
    parser.add_argument("--hardware", default="", help="e.g. '8xH100 80GB SXM' (default: world size x device)")
    parser.add_argument("--baseline", default=None, help="sweep directory of baseline seed runs (Welch test)")
    parser.add_argument("--non-record", action="store_true", help="non-record track: no 600 s limits")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    try:
        final = make_record(args.run_or_sweep, args.out, args.name, args.author, args.github_id, args.blurb,
                            args.hardware, args.baseline, args.non_record)
    except GolfError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {final} in {time.perf_counter() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
