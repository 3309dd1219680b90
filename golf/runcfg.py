"""A run's own settings for the commands that follow it (export.py, eval.py): one run, one val_bpb per model state.

Export and eval score with the eval settings the run was trained with (its `.hydra/config.yaml`), and export
quantizes with the run's own quant settings; `eval.*` / `quant.*` keys on the command line change those keys on
top of the run's settings, while picking a group (`eval=sliding`, `quant=int8`) replaces the run's group. Each
command says which it used.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from omegaconf import OmegaConf

from golf.eval.config import EvalConfig

T = TypeVar("T")


def command_line_paths(overrides: list[str], group: str) -> list[str] | None:
    """The keys under `group` that Hydra `overrides` set, dotted below the group (`eval.max_tokens=4096` ->
    "max_tokens", `+quant.gptq.calib_batches=2` -> "gptq.calib_batches"); None when one picks the group itself
    (`eval=sliding`): the command line then gives the whole group."""
    paths = []
    for override in overrides:
        head, _, rest = override.lstrip("+~").split("=", 1)[0].partition(".")
        if head == group:
            if not rest:
                return None
            paths.append(rest)
    return paths


def overlay(base: T, given: T, paths: list[str]) -> T:
    """`base` (a group's typed config) with the values `given` (the same schema, as the command line composed it)
    holds at the dotted `paths`; built again through the schema, so its checks run (the schema's error, e.g.
    QuantConfigError, on a bad mix)."""
    merged, source = OmegaConf.structured(base), OmegaConf.structured(given)
    for path in paths:
        OmegaConf.update(merged, path, OmegaConf.select(source, path), merge=False)
    return OmegaConf.to_object(merged)


def saved_config(run_dir: str | Path) -> Path:
    """Where Hydra saved a run's resolved config."""
    return Path(run_dir) / ".hydra" / "config.yaml"


def saved_group(run_dir: str | Path, group: str, schema: type[T]) -> T | None:
    """The run's own `group` settings from its `saved_config` as a `schema` object; None when the run saved no
    config (or no such group)."""
    try:
        values = OmegaConf.load(saved_config(run_dir)).get(group)
    except (OSError, ValueError):
        values = None
    return None if values is None else OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), values))


def run_eval_settings(run_dir: str | Path, given: EvalConfig, overrides: list[str]) -> tuple[EvalConfig, str]:
    """(eval config, where it came from): the run's own eval group from <run_dir>/.hydra/config.yaml with the
    command line's `eval.*` keys on top; `given` when the command line picks the group (`eval=…`) or the run
    saved no config."""
    paths = command_line_paths(overrides, "eval")
    if paths is None:
        return given, "eval settings from the command line"
    saved = saved_config(run_dir)
    own = saved_group(run_dir, "eval", EvalConfig)
    if own is None:
        return given, "eval settings: defaults (the run saved no config)"
    if not paths:
        return own, f"eval settings of the run ({saved}); override with eval.*"
    keys = ", ".join(f"eval.{p}" for p in paths)
    return overlay(own, given, paths), f"eval settings of the run ({saved}) with {keys} from the command line"
