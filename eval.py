"""Score a checkpoint, an artifact or a run directory on the validation shards.

    python eval.py path=outputs/<run>                     # its last export's artifact (the number you submit)
    python eval.py path=outputs/<run>/model.int8+zlib.golf   # one artifact
    python eval.py path=outputs/<run>/checkpoint.pt eval.max_tokens=65536
    python eval.py path=outputs/<run> eval=sliding                  # one mode (eval group option)
    python eval.py path=outputs/<run> eval.modes=[standard,sliding,ttt]   # several modes, one loaded model

Prints one line per mode and writes eval.json next to the scored file: `results` holds one entry per mode
(val_loss in nats, val_bpb, tokens, bytes, seconds, details, over_budget); the top-level val_loss/val_bpb are
the first mode's.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig

from golf.config import EvalRunConfig, register_configs
from golf.device import pick_device
from golf.entry import EntryContext, require_override, run_entry
from golf.eval.data import load_val_data
from golf.eval.run import EvalContext, run_modes
from golf.record import submission_code_bytes
from golf.runcfg import run_eval_settings
from golf.summary import RunSummary, format_summary
from golf.train.load import load_for_eval
from golf.train.tracking import Tracker, train_run_link, write_json

register_configs()


def _eval(cfg: EvalRunConfig, ctx: EntryContext) -> float:
    t0 = time.perf_counter()
    device = pick_device(cfg.device)
    loaded = load_for_eval(cfg.path, device)
    eval_cfg, eval_source = run_eval_settings(loaded.path.parent, cfg.eval, ctx.overrides)
    print(eval_source, flush=True)
    seq_len = eval_cfg.seq_len or loaded.run_config.trainer.train_seq_len
    val = load_val_data(cfg.data, loaded.model_cfg.vocab_size, seq_len, eval_cfg.max_tokens)
    results = run_modes(loaded.model, val, eval_cfg, EvalContext(device, progress=True))
    for r in results:
        print(f"{r.mode} val_loss:{r.val_loss:.8f} val_bpb:{r.val_bpb:.8f} val_tokens:{r.tokens} "
              f"val_bytes:{r.bytes} eval_time:{r.seconds:.2f}s ({loaded.kind} {loaded.path})")
    first = results[0]
    out = Path(cfg.out) if cfg.out else loaded.path.parent / "eval.json"
    write_json(out, {"path": str(loaded.path), "kind": loaded.kind, **first.to_dict(),
                     "modes": [r.mode for r in results], "results": {r.mode: r.to_dict() for r in results},
                     "total_seconds": time.perf_counter() - t0})
    link = train_run_link(loaded.path.parent)
    tracker = Tracker(cfg.logger, loaded.path.parent, job_type="eval",
                      config={**ctx.config, "train_run_id": link.get("id")}, name=f"eval:{loaded.path}",
                      group=cfg.logger.group or link.get("group") or "eval", tags=ctx.tags)
    summary = {"val/bpb": first.val_bpb, "val/loss": first.val_loss}
    for r in results:
        summary.update({f"val/{r.mode}/bpb": r.val_bpb, f"val/{r.mode}/loss": r.val_loss,
                        f"val/{r.mode}/seconds": r.seconds})
    tracker.summary(summary)
    tracker.finish()
    print(format_summary(eval_summary(eval_cfg, loaded, results, time.perf_counter() - t0)), flush=True)
    return first.val_bpb


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
    main()
