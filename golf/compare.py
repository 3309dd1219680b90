"""Compare every artifact of a run: `python -m golf.compare <run_dir> [--out DIR]`.

Exports with different schemes or codecs land in different files (`model.<scheme>+<codec>.golf`), each with its
report `<artifact>.export.json`. This tables them all (scheme, codec, artifact bytes, total with code, fits,
round-trip val_bpb and quantization gap), ranked by the submitted (round-trip) val_bpb, and draws the bytes per
tensor group of each (`group_bytes.png`). Artifacts without a report (exported before reports existed, or
copied in) are listed from their manifest, without scores. Writes compare.md + compare.json into --out
(default: the run directory).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from golf.errors import GolfError
from golf.export_run import gap_apart
from golf.quant.artifact import ArtifactError, read_artifact
from golf.sweep.plots import plot_group_bytes

COMPARE_MD, COMPARE_JSON, GROUPS_PNG = "compare.md", "compare.json", "group_bytes.png"


def artifact_rows(run_dir: str | Path) -> list[dict]:
    """One row per model*.golf in `run_dir`, best submitted val_bpb first (unscored last). Raises GolfError
    when the directory has no artifact."""
    run_dir = Path(run_dir)
    files = sorted(run_dir.glob("model*.golf")) if run_dir.is_dir() else []
    if not files:
        raise GolfError(f"{run_dir}: no model*.golf artifact (export first: python export.py run_dir={run_dir})")
    rows = []
    for f in files:
        row = {"artifact": f.name, "artifact_bytes": f.stat().st_size}
        report = f.with_name(f.name + ".export.json")
        if report.is_file():
            r = json.loads(report.read_text())
            row.update(scheme=r.get("scheme"), codec=f"{r.get('codec')}-{r.get('level')}",
                       code_bytes=r.get("code_bytes"), bytes_total=r.get("bytes_total"), fits=r.get("fits"),
                       val_bpb=r.get("val_bpb"), quant_gap_bpb=r.get("quant_gap_bpb"),
                       pre_quant_bpb=(r.get("pre_quant") or {}).get("val_bpb"),
                       gap_windows=gap_apart(r),
                       groups={g["group"]: g["compressed_bytes"] for g in (r.get("budget") or {}).get("groups", [])})
        else:
            try:
                _, manifest = read_artifact(f)
            except ArtifactError as exc:
                row.update(error=str(exc))
                rows.append(row)
                continue
            row.update(scheme=manifest.get("scheme"), codec=f"{manifest.get('codec')}-{manifest.get('level')}",
                       groups={})
        rows.append(row)
    return sorted(rows, key=lambda r: (r.get("val_bpb") is None, r.get("val_bpb") or 0.0, r["artifact_bytes"]))


def format_rows(rows: list[dict]) -> str:
    """Markdown table of `artifact_rows`."""
    def f(v, spec):
        return "—" if v is None else format(v, spec)

    out = ["| artifact | scheme | codec | artifact bytes | total (+ code) | fits | val_bpb (round trip) | "
           "gap vs pre-quant |", "|---|---|---|---:|---:|---|---:|---:|"]
    for r in rows:
        fits = "—" if r.get("fits") is None else ("yes" if r["fits"] else "**over**")
        out.append(f"| {r['artifact']} | {r.get('scheme', '—')} | {r.get('codec', '—')} | {r['artifact_bytes']:,} | "
                   f"{f(r.get('bytes_total'), ',')} | {fits} | {f(r.get('val_bpb'), '.5f')} | "
                   f"{f(r.get('quant_gap_bpb'), '+.5f')}{f' ({w} windows)' if (w := r.get('gap_windows')) else ''} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m golf.compare", description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("--out", default=None, help="where compare.md/json and group_bytes.png go (default run_dir)")
    args = ap.parse_args(argv)
    try:
        rows = artifact_rows(args.run_dir)
    except GolfError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out or args.run_dir)
    out.mkdir(parents=True, exist_ok=True)
    md = f"# Artifacts of {Path(args.run_dir).name}\n\nRanked by the submitted (round-trip) val_bpb.\n\n"
    md += format_rows(rows) + f"\n\n![bytes per group]({GROUPS_PNG})\n"
    with_groups = [{"label": r["artifact"], "groups": r["groups"]} for r in rows if r.get("groups")]
    plot_group_bytes(with_groups, out / GROUPS_PNG)
    (out / COMPARE_MD).write_text(md)
    (out / COMPARE_JSON).write_text(json.dumps(rows, indent=2) + "\n")
    print(md)
    print(f"wrote {out / COMPARE_MD}, {out / COMPARE_JSON}, {out / GROUPS_PNG}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
