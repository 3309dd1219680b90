"""Score a checkpoint, an artifact or a run directory on the validation shards.

    python eval.py path=outputs/<run>                     # its last export's artifact (the number you submit)
    python eval.py path=outputs/<run>/model.int8+zlib.golf   # one artifact
    python eval.py path=outputs/<run>/checkpoint.pt eval.max_tokens=65536
    python eval.py path=outputs/<run> eval=sliding                  # one mode (eval group option)
    python eval.py path=outputs/<run> eval.modes=[standard,sliding,ttt]   # several modes, one loaded model

Prints one line per mode and writes eval.json next to the scored file: `results` holds one entry per mode
(val_loss in nats, val_bpb, tokens, bytes, seconds, details, over_budget, world_size, rank_tokens); the
top-level val_loss/val_bpb are the first mode's; `eval_time_s` per mode (load + dequantization + mode) and the
`compliance` block (golf.train.compliance).

    torchrun --standalone --nproc_per_node=8 eval.py path=outputs/<run> eval=ttt
    python eval.py path=outputs/<run> eval=ttt dist.nproc_per_node=8     # the same (re-launches under torchrun)

Under torchrun every mode shares its windows / chunks / documents across the ranks; rank 0 alone prints and
writes eval.json and W&B.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig

from golf.config import EvalRunConfig, register_configs
from golf.entry import EntryContext, guarded_main, require_override, run_entry
from golf.eval.data import load_val_data
from golf.eval.run import EvalContext, run_evaluation
from golf.record import submission_code_bytes
from golf.runcfg import run_eval_settings
from golf.summary import RunSummary, format_summary
from golf.sweep.launch import needs_torchrun, run_under_torchrun
from golf.train.compliance import compliance_block, format_block, hardware, summary_values, val_data_use
from golf.train.dist import collective_errors, init_distributed, max_over_ranks, teardown
from golf.train.load import load_for_eval, resolve_model_path
from golf.train.tracking import METRICS_NAME, Tracker, read_json, train_run_link, write_json

register_configs()


def _out_path(cfg: EvalRunConfig, scored: Path) -> Path:
    return Path(cfg.out) if cfg.out else scored.parent / "eval.json"


def _eval(cfg: EvalRunConfig, ctx: EntryContext) -> float:
    if needs_torchrun(cfg.dist):
        out = _out_path(cfg, resolve_model_path(cfg.path)).absolute()
        return run_under_torchrun(Path(__file__).resolve(), ctx.overrides, ctx.run_dir, cfg.dist.nproc_per_node,
                                  cfg.logger.group or "eval", ctx.run_dir.name, result=out,
                                  log_glob="eval*.log")["val_bpb"]
    dctx = init_distributed(cfg.device, cfg.dist.timeout_s)
    try:
        with collective_errors(dctx.rank, dctx.world_size, cfg.dist.timeout_s):
            result = _eval_ranks(cfg, ctx, dctx)
        teardown(barrier=True)
        return result
    finally:
        teardown()


def _eval_ranks(cfg: EvalRunConfig, ctx: EntryContext, dctx) -> float:
    """Every rank loads the model and scores its share of each mode; rank 0 prints and writes eval.json/W&B.

    Each mode's eval_time_s counts what a submission's evaluation would: loading and dequantizing the model,
    loading the val data, and the mode itself (slowest rank)."""
    t0 = time.perf_counter()
    device = dctx.device
    loaded = load_for_eval(cfg.path, device)
    eval_cfg, eval_source = run_eval_settings(loaded.path.parent, cfg.eval, ctx.overrides)
    if dctx.is_main:
        print(eval_source, flush=True)
    seq_len = eval_cfg.seq_len or loaded.run_config.trainer.train_seq_len
    val = load_val_data(cfg.data, loaded.model_cfg.vocab_size, seq_len, eval_cfg.max_tokens)
    setup_s = time.perf_counter() - t0
    ectx = EvalContext(device, dctx.rank, dctx.world_size, progress=dctx.is_main)
    results = [run_evaluation(loaded.model, val, eval_cfg, ectx, mode) for mode in eval_cfg.run_modes()]
    eval_time = {r.mode: max_over_ranks(setup_s + r.seconds, device) for r in results}
    if not dctx.is_main:
        return results[0].val_bpb
    for r in results:
        print(f"{r.mode} val_loss:{r.val_loss:.8f} val_bpb:{r.val_bpb:.8f} val_tokens:{r.tokens} "
              f"val_bytes:{r.bytes} eval_time:{r.seconds:.2f}s ranks:{r.world_size} ({loaded.kind} {loaded.path})")
    block = _compliance(loaded, eval_time, eval_cfg.run_modes(), device, dctx.world_size)
    print(format_block(block))
    first = results[0]
    out = _out_path(cfg, loaded.path)
    write_json(out, {"path": str(loaded.path), "kind": loaded.kind, **first.to_dict(),
                     "modes": [r.mode for r in results], "results": {r.mode: r.to_dict() for r in results},
                     "world_size": dctx.world_size, "load_s": setup_s, "eval_time_s": eval_time,
                     "compliance": block, "total_seconds": time.perf_counter() - t0})
    link = train_run_link(loaded.path.parent)
    tracker = Tracker(cfg.logger, loaded.path.parent, job_type="eval",
                      config={**ctx.config, "train_run_id": link.get("id")}, name=f"eval:{loaded.path}",
                      group=cfg.logger.group or link.get("group") or "eval", tags=ctx.tags)
    summary = {"val/bpb": first.val_bpb, "val/loss": first.val_loss, **summary_values(block)}
    for r in results:
        summary.update({f"val/{r.mode}/bpb": r.val_bpb, f"val/{r.mode}/loss": r.val_loss,
                        f"val/{r.mode}/seconds": r.seconds})
    tracker.summary(summary)
    tracker.finish()
    print(format_summary(eval_summary(eval_cfg, loaded, results, time.perf_counter() - t0)), flush=True)
    return first.val_bpb


def _compliance(loaded, eval_time: dict, modes: list[str], device, world_size: int) -> dict:
    """eval.json's compliance block: this evaluation's times, plus the training clock and bytes recorded in
    the run directory (metrics.json, export.json) when present."""
    run_dir = loaded.path.parent
    metrics = read_json(run_dir / METRICS_NAME) if (run_dir / METRICS_NAME).is_file() else {}
    export = read_json(run_dir / "export.json") if (run_dir / "export.json").is_file() else {}
    calib = (export.get("calibration") or metrics.get("calibration") or {"where": "none", "seconds": None})
    same = Path(str(export.get("artifact", ""))).name == loaded.path.name  # that export wrote this artifact
    bytes_total = export.get("bytes_total") if loaded.kind == "artifact" and same else None
    block = compliance_block(hardware(device, world_size), eval_time_s=eval_time, bytes_total=bytes_total,
                             val_data=val_data_use(modes), calibration_time_s=calib.get("seconds"),
                             calibration_where=calib.get("where", "none"))
    train = metrics.get("compliance")
    if train:  # training's clock, judged on the hardware it ran on
        block["train_time_s"], block["train_limit_s"] = train["train_time_s"], train["train_limit_s"]
        block["train_hardware"] = train["hardware"]
        block["verdicts"]["train_time"] = train["verdicts"]["train_time"]
        if calib.get("where") != "after_training":
            block["verdicts"]["calibration"] = train["verdicts"]["calibration"]
    return block


def eval_summary(eval_cfg, loaded, results, total_s: float) -> RunSummary:
    """Summary of an evaluation: the first mode's score; artifact and code bytes when an artifact was scored
    (code bytes from the run's export.json, else the generated train_gpt.py for the artifact's config)."""
    first = results[0]
    art = loaded.path.stat().st_size if loaded.kind == "artifact" else None
    code = None
    if art is not None:
        try:
            code = json.loads((loaded.path.parent / "export.json").read_text())["code_bytes"]
        except (OSError, ValueError, KeyError):
            code = submission_code_bytes(loaded.run_config)
    notes = [f"{r.mode}: val_bpb {r.val_bpb:.5f} in {r.seconds:.1f} s" for r in results[1:]]
    return RunSummary("eval", loaded.path.parent, first.val_loss, first.val_bpb, first.tokens, eval_cfg.max_tokens,
                      first.mode, "artifact" if art is not None else "checkpoint, pre-quantization", art,
                      loaded.path if art is not None else None, code, eval_s=total_s, notes=notes)


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> float:
    return run_entry(cfg, EvalRunConfig, _eval)


if __name__ == "__main__":
    require_override("path", "python eval.py path=outputs/<run>[/model.<scheme>+<codec>.golf] [eval=...]")
    guarded_main(main)
