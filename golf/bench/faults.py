"""Fault benchmark: `python -m golf.bench.faults [--work DIR] [--jobs N] [--only CLASS ...] [--json FILE]`.

Runs every bad input of `golf.bench.fault_cases` as a subprocess of the real entry point (train.py, export.py,
eval.py) and counts what a user would see, per class of input:

    one-line    exit status != 0, exactly one `error:` line on stderr, no traceback
    traceback   a Python traceback (or a `--- Logging error ---` report) anywhere in the output
    hang        no exit within --timeout seconds (the process is killed)
    partial     files present afterwards in the watched directories that were not there before (a case may
                allow complete files, e.g. the resume point of a training stopped by a full disk; never temps)
    lost        files present before that changed or disappeared (logs and .hydra copies included)
    other       the case's own check failed (e.g. a malicious pickle ran code, the message names no key)

The table printed at the end is what the issue #13 closing note quotes. Fixtures (FineWeb shards prepared from
../shared/data, a 30-step tiny model and its artifact) are made once under --work.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from golf.bench.fault_cases import build_cases, prepare_fixtures, unmount_all
from golf.bench.fault_inputs import CLASSES, ROOT, Case


@dataclass
class Outcome:
    cls: str
    name: str
    rc: int | None
    one_line: bool
    traceback: bool
    hang: bool
    partial: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    other: str | None = None
    error: str = ""
    seconds: float = 0.0


def snapshot(dirs: list[Path]) -> dict[str, str]:
    """path -> sha256 (files) / 'dir' / 'link:<target>' for everything under ``dirs`` (hidden files included)."""
    out: dict[str, str] = {}
    for d in dirs:
        if not d.exists():
            continue
        for p in [d, *sorted(d.rglob("*"))]:
            if p.is_symlink():
                out[str(p)] = f"link:{os.readlink(p)}"
            elif p.is_dir():
                out[str(p)] = "dir"
            elif p.is_file():
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def run_case(case: Case, timeout: float) -> Outcome:
    """Run one case and classify what happened."""
    stop = case.around() if case.around else None
    before = snapshot(case.watch)
    env = {**os.environ, "GOLF_DATA_DIR": str(case.data_root), "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, case.script, *case.args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=timeout)
        rc, out, err, hang = proc.returncode, proc.stdout, proc.stderr, False
    except subprocess.TimeoutExpired as exc:
        rc, hang = None, True
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
    finally:
        if stop:
            stop()
    seconds = time.perf_counter() - t0
    after = snapshot(case.watch)
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    tb = "Traceback (most recent call last)" in out + err or "--- Logging error ---" in out + err
    one = not hang and rc not in (0, None) and not tb and len(errors) == 1
    base = case.watch[0]
    partial = sorted(p for p in after if p not in before and (
        p.endswith(".golftmp") or not any(Path(p).relative_to(base).match(k) for k in case.keeps)))
    lost = sorted(p for p in before if after.get(p) != before[p])
    other = case.check(err) if case.check else None
    if rc == 0:
        other = other or "exited 0 on a bad input"
    return Outcome(case.cls, case.name, rc, one, tb, hang, partial, lost, other, errors[0] if errors else
                   (err.strip().splitlines() or [""])[-1][:300], seconds)


def summarize(outcomes: list[Outcome]) -> list[dict]:
    """One row per class (and a total): cases, one-line, traceback, hang, partial, lost, other."""
    rows = []
    for cls in [*CLASSES, "total"]:
        sel = [o for o in outcomes if cls in ("total", o.cls)]
        if not sel:
            continue
        rows.append({"class": cls, "cases": len(sel), "one_line": sum(o.one_line for o in sel),
                     "traceback": sum(o.traceback for o in sel), "hang": sum(o.hang for o in sel),
                     "partial": sum(bool(o.partial) for o in sel), "lost": sum(bool(o.lost) for o in sel),
                     "other": sum(o.other is not None for o in sel)})
    return rows


def format_table(rows: list[dict]) -> str:
    head = "| class | cases | one-line errors | tracebacks | hangs | partial outputs | data lost | other |"
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['class']} | {r['cases']} | {r['one_line']} | {r['traceback']} | {r['hang']} | "
                     f"{r['partial']} | {r['lost']} | {r['other']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "golf_faults")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=240.0)
    ap.add_argument("--only", nargs="*", choices=CLASSES, default=None)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    fixtures = prepare_fixtures(args.work)
    cases, skipped = build_cases(fixtures, args.work / "cases")
    if args.only:
        cases = [c for c in cases if c.cls in args.only]
    print(f"running {len(cases)} fault cases with {args.jobs} jobs (timeout {args.timeout:.0f}s each)", flush=True)
    try:
        with ThreadPoolExecutor(args.jobs) as pool:
            outcomes = list(pool.map(lambda c: run_case(c, args.timeout), cases))
    finally:
        unmount_all(args.work / "cases")
    for o in outcomes:
        bad = not o.one_line or o.partial or o.lost or o.other
        if bad or args.verbose:
            print(f"{'FAIL' if bad else 'ok  '} {o.cls}/{o.name} rc={o.rc} {o.seconds:.1f}s: {o.error}"
                  + (f" partial={o.partial}" if o.partial else "") + (f" lost={o.lost}" if o.lost else "")
                  + (f" other={o.other}" if o.other else ""))
    for s in skipped:
        print(f"skipped: {s}")
    rows = summarize(outcomes)
    print(format_table(rows))
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "cases": [asdict(o) for o in outcomes],
                                         "skipped": skipped}, indent=2) + "\n")
    clean = all(o.one_line and not o.partial and not o.lost and o.other is None for o in outcomes)
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
