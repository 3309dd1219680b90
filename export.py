"""Export a trained run: quantize + compress its checkpoint into one artifact and check the byte budget.

    python export.py run_dir=outputs/<run>                       # the run's own quant config (int8 + zlib-9 default)
    python export.py run_dir=outputs/<run> quant=gptq_int6 quant.codec=best
    python export.py run_dir=outputs/<run> budget.target_bytes=15000000

Writes <run_dir>/model.<scheme>+<codec>.golf (or out=), export.json and export_report.md; prints the budget report and the round-trip val_bpb.
Exits non-zero, writing nothing, when artifact + code exceed budget.target_bytes.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig

from golf.config import ExportRunConfig, register_configs
from golf.device import pick_device
from golf.entry import EntryContext, require_override, run_entry
from golf.errors import GolfError
from golf.export_run import export_run
from golf.record import submission_code_bytes
from golf.runcfg import run_eval_settings
from golf.summary import RunSummary, format_summary
from golf.train.checkpoint import CHECKPOINT_NAME
from golf.train.tracking import Tracker, train_run_link

register_configs()
log = logging.getLogger("golf")


def _export(cfg: ExportRunConfig, ctx: EntryContext) -> float | None:
    # Without quant overrides, export with what the run trained with (e.g. its QAT rule); else as told.
    quant = cfg.quant if any(o.lstrip("+~").startswith("quant") for o in ctx.overrides) else None
    device = pick_device(cfg.device)  # bad input fails here, before a W&B run exists
    if not (Path(cfg.run_dir) / CHECKPOINT_NAME).is_file():
        raise GolfError(f"run_dir={cfg.run_dir}: no {CHECKPOINT_NAME} there (train first, or give the run directory)")
    eval_cfg, eval_source = run_eval_settings(cfg.run_dir, cfg.eval, ctx.overrides)
    log.info(eval_source)
    link = train_run_link(cfg.run_dir)
    tracker = Tracker(cfg.logger, cfg.run_dir, job_type="export",
                      config={**ctx.config, "train_run_id": link.get("id")}, name=f"export:{cfg.run_dir}",
                      group=cfg.logger.group or link.get("group") or "export", tags=ctx.tags)
    try:
        t0 = time.perf_counter()
        result = export_run(cfg.run_dir, quant, cfg.budget, eval_cfg, device, cfg.out or None, cfg.roundtrip_eval,
                            code_bytes=submission_code_bytes)
        tracker.summary({"bytes_total": result["bytes_total"], "artifact_bytes": result["artifact_bytes"],
                         **({"val/bpb": result["val_bpb"], "quant_gap_bpb": result["quant_gap_bpb"]}
                            if "val_bpb" in result else {})})
    finally:
        tracker.finish()
    rt = result.get("roundtrip") or {}
    print(format_summary(RunSummary(
        "export", cfg.run_dir, result.get("val_loss"), result.get("val_bpb"), rt.get("val_tokens"), eval_cfg.max_tokens,
        eval_cfg.mode, "artifact round trip", result["artifact_bytes"], result["artifact"], result["code_bytes"],
        result["target_bytes"], eval_s=rt.get("seconds"),
        notes=[f"quantization gap {result['quant_gap_bpb']:+.5f} bpb (pre-quantization "
               f"{result['pre_quant']['val_bpb']:.5f})" if "quant_gap_bpb" in result else "round trip skipped",
               f"export took {time.perf_counter() - t0:.1f} s; tables in export_report.md / export.json"])),
        flush=True)
    return result.get("val_bpb")


@hydra.main(version_base="1.3", config_path="conf", config_name="export")
def main(cfg: DictConfig) -> float | None:
    return run_entry(cfg, ExportRunConfig, _export)


if __name__ == "__main__":
    require_override("run_dir", "python export.py run_dir=outputs/<run> [quant=...]")
    main()
