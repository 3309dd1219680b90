"""Score a checkpoint, an artifact or a run directory on the validation shards.

    python eval.py path=outputs/<run>/model.golf          # the number that would be submitted
    python eval.py path=outputs/<run>                     # artifact if present, else checkpoint
    python eval.py path=outputs/<run>/checkpoint.pt eval.max_tokens=65536
    python eval.py path=outputs/<run> eval=sliding                  # one mode (eval group option)
    python eval.py path=outputs/<run> eval.modes=[standard,sliding,ttt]   # several modes, one loaded model

Prints one line per mode and writes eval.json next to the scored file: `results` holds one entry per mode
(val_loss in nats, val_bpb, tokens, bytes, seconds, details, over_budget); the top-level val_loss/val_bpb are
the first mode's.
"""

from __future__ import annotations

import time
from pathlib import Path

import hydra
from omegaconf import DictConfig

from golf.config import EvalRunConfig, register_configs
from golf.device import pick_device
from golf.entry import EntryContext, run_entry
from golf.eval.data import load_val_data
from golf.eval.run import EvalContext, run_modes
from golf.train.load import load_for_eval
from golf.train.tracking import Tracker, write_json

register_configs()


def _eval(cfg: EvalRunConfig, ctx: EntryContext) -> float:
    t0 = time.perf_counter()
    device = pick_device(cfg.device)
    loaded = load_for_eval(cfg.path, device)
    seq_len = cfg.eval.seq_len or loaded.run_config.trainer.train_seq_len
    val = load_val_data(cfg.data, loaded.model_cfg.vocab_size, seq_len, cfg.eval.max_tokens)
    results = run_modes(loaded.model, val, cfg.eval, EvalContext(device, progress=True))
    for r in results:
        print(f"{r.mode} val_loss:{r.val_loss:.8f} val_bpb:{r.val_bpb:.8f} tokens:{r.tokens} "
              f"bytes:{r.bytes} eval_time:{r.seconds:.2f}s ({loaded.kind} {loaded.path})")
    first = results[0]
    out = Path(cfg.out) if cfg.out else loaded.path.parent / "eval.json"
    write_json(out, {"path": str(loaded.path), "kind": loaded.kind, **first.to_dict(),
                     "modes": [r.mode for r in results], "results": {r.mode: r.to_dict() for r in results},
                     "total_seconds": time.perf_counter() - t0})
    tracker = Tracker(cfg.logger, loaded.path.parent, job_type="eval", config=ctx.config,
                      name=f"eval:{loaded.path}", group=cfg.logger.group or "eval", tags=ctx.tags)
    summary = {"val/bpb": first.val_bpb, "val/loss": first.val_loss}
    for r in results:
        summary.update({f"val/{r.mode}/bpb": r.val_bpb, f"val/{r.mode}/loss": r.val_loss,
                        f"val/{r.mode}/seconds": r.seconds})
    tracker.summary(summary)
    tracker.finish()
    return first.val_bpb


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> float:
    return run_entry(cfg, EvalRunConfig, _eval)


if __name__ == "__main__":
    main()
