"""Export a trained run: quantize + compress its checkpoint into one artifact and check the byte budget.

    python export.py run_dir=outputs/<run>                       # the run's own quant config (int8 + zlib-9 default)
    python export.py run_dir=outputs/<run> quant=gptq_int6 quant.codec=best
    python export.py run_dir=outputs/<run> budget.target_bytes=15000000

    torchrun --standalone --nproc_per_node=8 export.py run_dir=outputs/<run>        # round trip on 8 ranks
    python export.py run_dir=outputs/<run> dist.nproc_per_node=8                    # the same (re-launches)
    python export.py run_dir=outputs/<run> quant=gptq_int6 --non-record             # calibrate after training

Writes <run_dir>/model.golf and <run_dir>/export.json (with its `compliance` block); prints the budget report
and the round-trip val_bpb. Exits non-zero, writing nothing, when artifact + code exceed budget.target_bytes,
or when the export would calibrate on training data after training without --non-record (non_record=true).
Under torchrun rank 0 alone quantizes and writes files and W&B.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from golf.config import ExportRunConfig, register_configs
from golf.device import pick_device
from golf.entry import EntryContext, run_entry
from golf.export_run import EXPORT_REPORT, export_run
from golf.sweep.launch import needs_torchrun, run_under_torchrun
from golf.train.compliance import summary_values
from golf.train.dist import collective_errors, init_distributed, teardown
from golf.train.tracking import Tracker

register_configs()


def _export(cfg: ExportRunConfig, ctx: EntryContext) -> float | None:
    if needs_torchrun(cfg.dist):
        report = Path(cfg.run_dir).absolute() / EXPORT_REPORT
        return run_under_torchrun(Path(__file__).resolve(), ctx.overrides, ctx.run_dir,
                                  cfg.dist.nproc_per_node, cfg.logger.group or "export", ctx.run_dir.name,
                                  result=report, log_glob="export*.log").get("val_bpb")
    # Without quant overrides, export with what the run trained with (e.g. its QAT rule); else as told.
    quant = cfg.quant if any(o.lstrip("+~").startswith("quant") for o in ctx.overrides) else None
    dctx = init_distributed(cfg.device, cfg.dist.timeout_s)
    tracker = Tracker(cfg.logger, cfg.run_dir, job_type="export", config=ctx.config, name=f"export:{cfg.run_dir}",
                      group=cfg.logger.group or "export", tags=ctx.tags, active=dctx.is_main)
    try:
        with collective_errors(dctx.rank, dctx.world_size, cfg.dist.timeout_s):
            result = export_run(cfg.run_dir, quant, cfg.budget, cfg.eval,
                                dctx.device if dctx.distributed else pick_device(cfg.device), cfg.out or None,
                                cfg.roundtrip_eval, non_record=cfg.non_record, rank=dctx.rank,
                                world_size=dctx.world_size)
        if dctx.is_main:
            tracker.summary({"bytes_total": result["bytes_total"], "artifact_bytes": result["artifact_bytes"],
                             **({"val/bpb": result["val_bpb"], "quant_gap_bpb": result["quant_gap_bpb"]}
                                if "val_bpb" in result else {}), **summary_values(result["compliance"])})
        teardown(barrier=True)
    finally:
        tracker.finish()
        teardown()
    return result.get("val_bpb")


@hydra.main(version_base="1.3", config_path="conf", config_name="export")
def main(cfg: DictConfig) -> float | None:
    return run_entry(cfg, ExportRunConfig, _export)


if __name__ == "__main__":
    sys.argv = ["non_record=true" if a == "--non-record" else a for a in sys.argv]
    main()
