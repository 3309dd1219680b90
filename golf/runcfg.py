"""A run's own settings for the commands that follow it (export.py, eval.py): one run, one val_bpb per model state.

Export and eval score with the eval settings the run was trained with (its `.hydra/config.yaml`) unless the
command line overrides the `eval` group, and say which they used.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from golf.eval.config import EvalConfig


def run_eval_settings(run_dir: str | Path, given: EvalConfig, overrides: list[str]) -> tuple[EvalConfig, str]:
    """(eval config, where it came from): `given` when an override touches eval, else the run's own eval
    group from <run_dir>/.hydra/config.yaml, else `given` (no saved config)."""
    if any(o.lstrip("+~").split("=", 1)[0].split(".")[0] == "eval" for o in overrides):
        return given, "eval settings from the command line"
    saved = Path(run_dir) / ".hydra" / "config.yaml"
    try:
        run_eval = OmegaConf.load(saved).get("eval")
    except (OSError, ValueError):
        run_eval = None
    if run_eval is None:
        return given, "eval settings: defaults (the run saved no config)"
    merged = OmegaConf.merge(OmegaConf.structured(EvalConfig), run_eval)
    cfg = OmegaConf.to_object(merged)
    return cfg, f"eval settings of the run ({saved}); override with eval.*"
