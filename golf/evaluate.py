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
from golf.data.loader import load_validation_tokens
from golf.errors import GolfError
from golf.eval.bpb import ByteLUTs, build_byte_luts, load_tokenizer
from golf.eval.config import EVAL_MODES, EvalConfig
from golf.eval.sliding import evaluate_sliding
from golf.eval.standard import EvalResult, evaluate_standard
from golf.eval.ttt import evaluate_ttt
from golf.model import cast_for_device
from golf.model.checked import load_checked_model, model_config_from
from golf.model.config import ModelConfig
from golf.quant.artifact import MAGIC, dequantized_state, read_artifact
from golf.train.checkpoint import CHECKPOINT_NAME, load_checkpoint
from golf.train.config import TrainerConfig
from golf.validate import build_section

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


def _starts_with(path: Path, magic: bytes) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(len(magic)) == magic
    except OSError as exc:
        raise GolfError(f"{path}: cannot read: {exc.strerror or exc}") from None


def is_artifact(path: Path) -> bool:
    """Whether ``path`` starts with the artifact magic; raises GolfError (one line) when it cannot be read."""
    return _starts_with(path, MAGIC)


def is_zip(path: Path) -> bool:
    """Whether ``path`` is a zip file (what torch.save writes); raises GolfError when it cannot be read."""
    return _starts_with(path, b"PK\x03\x04")


def load_for_eval(path: str | Path, device: torch.device, control_patterns: tuple[str, ...] = ()) -> LoadedModel:
    """Build the model described by `path` and load its weights (strict).

    The stored config sections (model, trainer, data) are checked against their schemas and the weights against
    the architecture before anything is allocated. Raises GolfError subclasses (one line): CheckpointError,
    ArtifactError, golf.validate.SchemaError, golf.model.checked.ModelLoadError."""
    p = resolve_model_path(path)
    if is_artifact(p):
        qstate, manifest = read_artifact(p)
        extra = manifest.get("extra") or {}
        if not isinstance(extra, dict) or "model" not in extra:
            raise GolfError(f"{p}: artifact manifest has no model config (extra.model)")
        model_cfg = model_config_from(extra["model"], f"{p}: manifest extra")
        seq = extra.get("train_seq_len")
        if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int) or seq < 1):
            raise GolfError(f"{p}: manifest extra: 'train_seq_len' is {seq!r}, expected a positive int")
        state, kind, run_cfg = dequantized_state(p, qstate), "artifact", extra
    else:
        if not is_zip(p):
            raise GolfError(f"{p}: neither a golf artifact (magic {MAGIC!r}) nor a golf checkpoint (a torch zip file)")
        ckpt = load_checkpoint(p)
        run_cfg = ckpt["config"]
        for section, schema in (("trainer", TrainerConfig), ("data", DataConfig)):
            build_section(schema, run_cfg.get(section), f"{section}.", f"{p}: stored config")
        model_cfg = model_config_from(run_cfg.get("model"), f"{p}: stored config")
        state, kind = ckpt["model"], "checkpoint"
    model = load_checked_model(model_cfg, state, str(p))
    return LoadedModel(cast_for_device(model, device, control_patterns), model_cfg, kind, p, run_cfg)


@dataclass
class ValData:
    tokens: torch.Tensor
    luts: ByteLUTs
    seq_len: int
    bos_id: int = -1
    """Tokenizer BOS id (start of every document), -1 when the tokenizer has none."""


def load_val_data(data: DataConfig, vocab_size: int, seq_len: int, max_tokens: int = 0) -> ValData:
    """Val tokens (truncated to whole windows, optionally to the first `max_tokens`) and the byte LUTs."""
    sp = load_tokenizer(data.resolve_tokenizer_path(), vocab_size)
    tokens = load_validation_tokens(data.val_glob(), seq_len, vocab_size)
    if max_tokens:
        tokens = tokens[: (min(max_tokens, tokens.numel() - 1) // seq_len) * seq_len + 1]
    return ValData(tokens, build_byte_luts(sp, vocab_size), seq_len, int(sp.bos_id()))


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
    if mode == "standard":
        if cfg.doc_aware:
            log.info("eval.doc_aware applies to sliding and ttt; standard stays the official evaluation")
        result = evaluate_standard(model, val.tokens, val.luts, val.seq_len, cfg.batch_tokens, **common)
    elif mode == "sliding":
        result = evaluate_sliding(model, val.tokens, val.luts, val.seq_len, cfg.stride, cfg.batch_tokens,
                                  cfg.doc_aware, val.bos_id, **common)
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
