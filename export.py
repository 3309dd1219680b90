"""Export a trained run: quantize + compress its checkpoint into one artifact and check the byte budget.

    python export.py run_dir=outputs/<run>                       # the run's own quant config (int8 + zlib-9 default)
    python export.py run_dir=outputs/<run> quant=gptq_int6 quant.codec=best
    python export.py run_dir=outputs/<run> budget.target_bytes=15000000

Writes <run_dir>/model.golf and <run_dir>/export.json; prints the budget report and the round-trip val_bpb.
Exits non-zero, writing nothing, when artifact + code exceed budget.target_bytes.
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from golf.config import ExportRunConfig, register_configs
from golf.device import pick_device
from golf.entry import EntryContext, run_entry
from golf.export_run import export_run
from golf.record import submission_code_bytes
from golf.train.tracking import Tracker

register_configs()


def _export(cfg: ExportRunConfig, ctx: EntryContext) -> float | None:
    # Without quant overrides, export with what the run trained with (e.g. its QAT rule); else as told.
    quant = cfg.quant if any(o.lstrip("+~").startswith("quant") for o in ctx.overrides) else None
    tracker = Tracker(cfg.logger, cfg.run_dir, job_type="export", config=ctx.config, name=f"export:{cfg.run_dir}",
                      group=cfg.logger.group or "export", tags=ctx.tags)
    try:
        result = export_run(cfg.run_dir, quant, cfg.budget, cfg.eval, pick_device(cfg.device), cfg.out or None,
                            cfg.roundtrip_eval, code_bytes=submission_code_bytes)
        tracker.summary({"bytes_total": result["bytes_total"], "artifact_bytes": result["artifact_bytes"],
                         **({"val/bpb": result["val_bpb"], "quant_gap_bpb": result["quant_gap_bpb"]}
                            if "val_bpb" in result else {})})
    finally:
        tracker.finish()
    return result.get("val_bpb")


@hydra.main(version_base="1.3", config_path="conf", config_name="export")
def main(cfg: DictConfig) -> float | None:
    return run_entry(cfg, ExportRunConfig, _export)


if __name__ == "__main__":
    main()
