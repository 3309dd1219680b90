"""`python -m golf.preflight [--measure] [--json FILE] [--records] <hydra overrides>`: cost and fit of a config.

    python -m golf.preflight experiment=baseline                  # seconds, no data, no GPU needed
    python -m golf.preflight experiment=pr374_gptq_lite quant.groups.mlp.bits=5
    python -m golf.preflight --measure experiment=baseline         # + 20 real steps on this machine's GPU
    python -m golf.preflight --records                             # estimate vs the records' logged bytes/ms
"""

from __future__ import annotations

import argparse
import json
import sys

from golf.errors import GolfError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m golf.preflight", description=__doc__.splitlines()[0])
    ap.add_argument("--measure", action="store_true", help="run 20 real training steps on the GPU (needs data)")
    ap.add_argument("--steps", type=int, default=20, help="steps for --measure")
    ap.add_argument("--json", default="", help="also write the report as JSON to this file")
    ap.add_argument("--records", action="store_true", help="print the estimate-vs-logged table of the records")
    ap.add_argument("overrides", nargs="*", help="Hydra overrides, as for train.py")
    args = ap.parse_args(argv)
    from golf.preflight.check import format_report, preflight
    from golf.preflight.compose import compose_train_config

    if args.records:
        from golf.preflight.table import format_rows, record_rows

        rows = record_rows()
        print(format_rows(rows))
        if args.json:
            _write_json(args.json, rows)
        return 0
    try:
        cfg = compose_train_config(args.overrides)
        report = preflight(cfg)
    except GolfError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_report(report), flush=True)
    out = report.to_dict()
    if args.measure:
        from golf.preflight.measure import measure

        try:
            out["measured"] = measure(args.overrides, args.steps)
        except GolfError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        m = out["measured"]
        print(f"measured: {m['ms_per_step']:.1f} ms/step on {m['world_size']} x {m['device_name']} "
              f"({m['steps']} steps); scaled to 8 GPUs: {m['ms_per_step_8gpu']:.1f} ms/step -> "
              f"{m['steps_in_cap_8gpu']:,} steps in {report.wallclock_s:.0f} s (replaces the estimate)")
    if args.json:
        _write_json(args.json, out)
    return 0


def _write_json(path: str, obj) -> None:
    import os
    import tempfile
    from pathlib import Path

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.name}.")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=2, default=str)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, p)


if __name__ == "__main__":
    sys.exit(main())
