"""Score a checkpoint, an artifact or a run directory on the validation shards.

    python eval.py path=outputs/<run>/model.golf          # the number that would be submitted
    python eval.py path=outputs/<run>                     # artifact if present, else checkpoint
    python eval.py path=outputs/<run>/checkpoint.pt eval.max_tokens=65536

Prints and writes val_loss (nats) and val_bpb to eval.json next to the scored file.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from golf.config import EvalRunConfig, register_configs
from golf.entry import run_entry
from golf.evaluate import load_for_eval, load_val_data, run_evaluation
from golf.train.dist import pick_device
from golf.train.tracking import Tracker, write_json

register_configs()


def _eval(cfg: EvalRunConfig, ctx: dict) -> float:
    device = pick_device(cfg.device)
    loaded = load_for_eval(cfg.path, device)
    seq_len = cfg.eval.seq_len or loaded.run_config.get("train_seq_len") or loaded.run_config["trainer"]["train_seq_len"]
    val = load_val_data(cfg.data, loaded.model_cfg.vocab_size, seq_len, cfg.eval.max_tokens)
    result = run_evaluation(loaded.model, val, cfg.eval, device)
    print(f"{cfg.eval.mode} val_loss:{result.val_loss:.8f} val_bpb:{result.val_bpb:.8f} tokens:{result.tokens} "
          f"bytes:{result.bytes} eval_time:{result.seconds:.2f}s ({loaded.kind} {loaded.path})")
    out = Path(cfg.out) if cfg.out else loaded.path.parent / "eval.json"
    write_json(out, {"path": str(loaded.path), "kind": loaded.kind, **result.to_dict()})
    tracker = Tracker(cfg.logger, loaded.path.parent, job_type="eval", config=ctx["config"],
                      name=f"eval:{loaded.path}", group=cfg.logger.group or "eval", tags=ctx["tags"])
    tracker.summary({"val/bpb": result.val_bpb, "val/loss": result.val_loss})
    tracker.finish()
    return result.val_bpb


@hydra.main(version_base="1.3", config_path="conf", config_name="eval")
def main(cfg: DictConfig) -> float:
    return run_entry(cfg, EvalRunConfig, _eval)


if __name__ == "__main__":
    main()
