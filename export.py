"""Export a trained run: quantize + compress its checkpoint into one artifact and check the byte budget.

    python export.py run_dir=outputs/<run>                       # the run's own quant config (int8 + zlib-9 default)
    python export.py run_dir=outputs/<run> quant=gptq_int6 quant.codec=best
    python export.py run_dir=outputs/<run> budget.target_bytes=15000000

    torchrun --standalone --nproc_per_node=8 export.py run_dir=outputs/<run>        # round trip on 8 ranks
    python export.py run_dir=outputs/<run> dist.nproc_per_node=8                    # the same (re-launches)
    python export.py run_dir=outputs/<run> quant=gptq_int6 --non-record             # calibrate after training
    python export.py run_dir=outputs/<run> eval.gap=standard     # a TTT run: gap on standard windows, TTT once

Writes <run_dir>/model.<scheme>+<codec>.golf (or out=), export.json (with its `compliance` block) and
export_report.md; prints the budget report and the round-trip val_bpb. Exits non-zero, writing nothing, when
artifact + code exceed budget.target_bytes, or when the export would calibrate on training data after training
without --non-record (non_record=true). Under torchrun rank 0 alone quantizes and writes files and W&B.
"""

from __future__ import annotations

import logging
import sys
import time
from functools import partial
from pathlib import Path

import hydra
from omegaconf import DictConfig

from golf.config import ExportRunConfig, register_configs
from golf.device import pick_device
from golf.entry import EntryContext, guarded_main, require_override, run_entry
from golf.errors import GolfError
from golf.export_run import EXPORT_REPORT, export_run, gap_apart
from golf.quant.config import QuantConfig
from golf.record import submission_code_bytes
from golf.runcfg import command_line_paths, overlay, run_eval_settings, saved_group
from golf.summary import RunSummary, format_summary
from golf.sweep.launch import needs_torchrun, run_under_torchrun
from golf.train.checkpoint import CHECKPOINT_NAME
from golf.train.compliance import summary_values
from golf.train.dist import collective_errors, init_distributed, teardown
from golf.train.tracking import Tracker, train_run_link

register_configs()
log = logging.getLogger("golf")


def _export(cfg: ExportRunConfig, ctx: EntryContext) -> float | None:
    if not (Path(cfg.run_dir) / CHECKPOINT_NAME).is_file():
        raise GolfError(f"run_dir={cfg.run_dir}: no {CHECKPOINT_NAME} there (train first, or give the run directory)")
    if needs_torchrun(cfg.dist):
        report = Path(cfg.run_dir).absolute() / EXPORT_REPORT
        return run_under_torchrun(Path(__file__).resolve(), ctx.overrides, ctx.run_dir,
                                  cfg.dist.nproc_per_node, cfg.logger.group or "export", ctx.run_dir.name,
                                  result=report, log_glob="export*.log").get("val_bpb")
    # The run's own quant settings (e.g. its QAT rule) with the command line's quant.* keys on top; quant=<group>
    # replaces them.
    paths = command_line_paths(ctx.overrides, "quant")
    quant = cfg.quant if paths is None else partial(overlay, given=cfg.quant, paths=paths) if paths else None
    if paths and (saved := saved_group(cfg.run_dir, "quant", QuantConfig)) is not None:
        overlay(saved, cfg.quant, paths)  # a bad mix is one line here, before W&B or any file
    dctx = init_distributed(cfg.device, cfg.dist.timeout_s)
    device = dctx.device if dctx.distributed else pick_device(cfg.device)  # bad input fails before W&B starts
    eval_cfg, eval_source = run_eval_settings(cfg.run_dir, cfg.eval, ctx.overrides)
    log.info(eval_source)
    link = train_run_link(cfg.run_dir)
    tracker = Tracker(cfg.logger, cfg.run_dir, job_type="export",
                      config={**ctx.config, "train_run_id": link.get("id")}, name=f"export:{cfg.run_dir}",
                      group=cfg.logger.group or link.get("group") or "export", tags=ctx.tags, active=dctx.is_main)
    try:
        t0 = time.perf_counter()
        with collective_errors(dctx.rank, dctx.world_size, cfg.dist.timeout_s):
            result = export_run(cfg.run_dir, quant, cfg.budget, eval_cfg, device, cfg.out or None,
                                cfg.roundtrip_eval, non_record=cfg.non_record, rank=dctx.rank,
                                world_size=dctx.world_size, code_bytes=submission_code_bytes)
        if dctx.is_main:
            tracker.summary({"bytes_total": result["bytes_total"], "artifact_bytes": result["artifact_bytes"],
                             **({"val/bpb": result["val_bpb"], "quant_gap_bpb": result["quant_gap_bpb"]}
                                if "val_bpb" in result else {}), **summary_values(result["compliance"])})
        teardown(barrier=True)
    finally:
        tracker.finish()
        teardown()
    if not dctx.is_main:
        return result.get("val_bpb")
    rt = result.get("roundtrip") or {}
    print(format_summary(RunSummary(
        "export", cfg.run_dir, result.get("val_loss"), result.get("val_bpb"), rt.get("val_tokens"), eval_cfg.max_tokens,
        eval_cfg.mode, "artifact round trip", result["artifact_bytes"], result["artifact"], result["code_bytes"],
        result["target_bytes"], eval_s=rt.get("seconds"),
        notes=[f"quantization gap {result['quant_gap_bpb']:+.5f} bpb (pre-quantization "
               f"{result['pre_quant']['val_bpb']:.5f}{f', {w} windows' if (w := gap_apart(result)) else ''})"
               if "quant_gap_bpb" in result else "round trip skipped",
               f"export took {time.perf_counter() - t0:.1f} s; tables in export_report.md / export.json"])),
        flush=True)
    return result.get("val_bpb")


@hydra.main(version_base="1.3", config_path="conf", config_name="export")
def main(cfg: DictConfig) -> float | None:
    return run_entry(cfg, ExportRunConfig, _export)


if __name__ == "__main__":
    sys.argv = ["non_record=true" if a == "--non-record" else a for a in sys.argv]
    require_override("run_dir", "python export.py run_dir=outputs/<run> [quant=...]")
    guarded_main(main)
