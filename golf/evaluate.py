"""Load a model from a checkpoint or an artifact and score it on the validation shards.

`load_for_eval(path)` accepts checkpoint.pt, an artifact (decompressed and dequantized) or a run directory
(its model.golf if present, else its checkpoint.pt). The model architecture comes from the file itself:
the checkpoint's stored config or the artifact manifest's `extra.model`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from golf.data.config import DataConfig
from golf.data.loader import load_validation_byte_sidecar, load_validation_tokens
from golf.errors import GolfError
from golf.eval.bpb import ByteLUTs, build_byte_luts, load_tokenizer
from golf.eval.config import EVAL_MODES, EvalConfig
from golf.eval.phased_ttt import evaluate_phased_ttt
from golf.eval.sliding import evaluate_sliding
from golf.eval.standard import EvalResult, evaluate_standard
from golf.eval.ttt import evaluate_ttt
from golf.model import build_model, cast_for_device
from golf.model.config import ModelConfig
from golf.quant.artifact import MAGIC, read_artifact
from golf.quant.int8 import dequantize_state
from golf.train.checkpoint import CHECKPOINT_NAME, load_checkpoint

log = logging.getLogger("golf.eval")
ARTIFACT_NAME = "model.golf"


@dataclass
class LoadedModel:
    model: nn.Module
    model_cfg: ModelConfig
    kind: str
    """'checkpoint' or 'artifact'."""
    path: Path
    run_config: dict
    """Config stored with the model (train config for checkpoints, manifest extra for artifacts)."""


def resolve_model_path(path: str | Path) -> Path:
    """A run directory -> its artifact if present, else its checkpoint. Raises GolfError if nothing is there."""
    p = Path(path)
    if p.is_dir():
        for name in (ARTIFACT_NAME, CHECKPOINT_NAME):
            if (p / name).is_file():
                return p / name
        raise GolfError(f"{p}: no {ARTIFACT_NAME} or {CHECKPOINT_NAME} in this directory")
    if not p.is_file():
        raise GolfError(f"{p}: no such checkpoint or artifact")
    return p


def is_artifact(path: Path) -> bool:
    with path.open("rb") as f:
        return f.read(len(MAGIC)) == MAGIC


def load_for_eval(path: str | Path, device: torch.device, control_patterns: tuple[str, ...] = ()) -> LoadedModel:
    """Build the model described by `path` and load its weights (strict)."""
    p = resolve_model_path(path)
    if is_artifact(p):
        qstate, manifest = read_artifact(p)
        extra = manifest.get("extra") or {}
        if "model" not in extra:
            raise GolfError(f"{p}: artifact manifest has no model config (extra.model)")
        state, model_cfg, kind, run_cfg = dequantize_state(qstate), ModelConfig(**extra["model"]), "artifact", extra
    else:
        ckpt = load_checkpoint(p)
        run_cfg = ckpt["config"]
        state, model_cfg, kind = ckpt["model"], ModelConfig(**run_cfg["model"]), "checkpoint"
    model = build_model(model_cfg)
    model.load_state_dict(state, strict=True)
    return LoadedModel(cast_for_device(model, device, control_patterns), model_cfg, kind, p, run_cfg)


@dataclass
class ValData:
    tokens: torch.Tensor
    luts: ByteLUTs
    seq_len: int
    bos_id: int = -1
    """Tokenizer BOS id (start of every document), -1 when the tokenizer has none."""
    byte_sidecar: torch.Tensor | None = None
    """int32 [len(tokens)]: original bytes per token (CaseOps data); None = count bytes with the LUTs."""


def load_val_data(data: DataConfig, vocab_size: int, seq_len: int, max_tokens: int = 0) -> ValData:
    """Val tokens (truncated to whole windows, optionally to the first `max_tokens`) and the byte LUTs."""
    sp = load_tokenizer(data.resolve_tokenizer_path(), vocab_size)
    tokens = load_validation_tokens(data.val_glob(), seq_len, vocab_size)
    if max_tokens:
        tokens = tokens[: (min(max_tokens, tokens.numel() - 1) // seq_len) * seq_len + 1]
    sidecar = None
    if data.uses_byte_sidecar:
        sidecar = load_validation_byte_sidecar(data.val_bytes_glob(), tokens.numel())
    return ValData(tokens, build_byte_luts(sp, vocab_size), seq_len, int(sp.bos_id()), sidecar)


def run_evaluation(model: nn.Module, val: ValData, cfg: EvalConfig, device: torch.device,
                   progress: bool = True, mode: str | None = None, rank: int = 0,
                   world_size: int = 1) -> EvalResult:
    """Score `model` with `mode` (default cfg.mode) and the settings in `cfg`.

    The wall time counts everything the mode does (TTT's model copy and adapter set-up included); a run over
    cfg.time_budget_s logs a warning and sets `over_budget`. The caller's model is left unchanged by every mode.
    """
    mode = mode or cfg.mode
    t0 = time.perf_counter()
    common = dict(rank=rank, world_size=world_size, device=device, progress=progress)
    if val.byte_sidecar is not None and mode not in ("standard", "phased_ttt"):
        raise GolfError(f"eval mode {mode!r} does not count bytes from the CaseOps byte sidecar yet; "
                        "use standard or phased_ttt")
    if mode == "standard":
        if cfg.doc_aware:
            log.info("eval.doc_aware applies to sliding and ttt; standard stays the official evaluation")
        result = evaluate_standard(model, val.tokens, val.luts, val.seq_len, cfg.batch_tokens, **common,
                                   byte_sidecar=val.byte_sidecar)
    elif mode == "sliding":
        result = evaluate_sliding(model, val.tokens, val.luts, val.seq_len, cfg.stride, cfg.batch_tokens,
                                  cfg.doc_aware, val.bos_id, **common)
    elif mode == "phased_ttt":
        result = evaluate_phased_ttt(model, val.tokens, val.luts, val.seq_len, cfg.phased, val.bos_id,
                                     val.byte_sidecar, device=device)
    elif mode == "ttt":
        result = evaluate_ttt(model, val.tokens, val.luts, val.seq_len, cfg.stride, cfg.batch_tokens, cfg.ttt,
                              cfg.doc_aware, val.bos_id, **common)
    else:
        raise GolfError(f"eval mode {mode!r}; allowed: {', '.join(EVAL_MODES)}")
    result.seconds = time.perf_counter() - t0
    if result.seconds > cfg.time_budget_s:
        result.over_budget = True
        log.warning(f"eval {mode} took {result.seconds:.1f}s, over the {cfg.time_budget_s:.0f}s eval budget "
                    "(eval.time_budget_s)")
    return result


def run_modes(model: nn.Module, val: ValData, cfg: EvalConfig, device: torch.device,
              progress: bool = True) -> list[EvalResult]:
    """Score `model` with every mode of `cfg.run_modes()` in order, reusing the loaded model and val data."""
    return [run_evaluation(model, val, cfg, device, progress, mode) for mode in cfg.run_modes()]
