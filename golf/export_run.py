"""Export: checkpoint -> quantized, compressed artifact -> byte-budget report -> round-trip evaluation.

Nothing is overwritten unless the new artifact fits the budget: the artifact is first written to a temporary
file beside the target, measured, and only then renamed over it. The checkpoint is only ever read.
"""

from __future__ import annotations

import logging
import os
from dataclasses import asdict
from pathlib import Path

import torch

from golf.data.config import DataConfig
from golf.evaluate import ARTIFACT_NAME, load_for_eval, load_val_data, run_evaluation
from golf.quant.artifact import write_artifact
from golf.quant.budget import (
    BudgetExceededError,
    build_budget_report,
    check_budget,
    count_code_bytes,
    format_report,
)
from golf.quant.config import BudgetConfig, QuantConfig
from golf.quant.int8 import quantize_state_dict
from golf.train.checkpoint import CHECKPOINT_NAME
from golf.train.tracking import write_json

log = logging.getLogger("golf.export")
PROJECT_ROOT = Path(__file__).resolve().parents[1]
EXPORT_REPORT = "export.json"


def code_bytes_for(budget: BudgetConfig) -> tuple[int, list]:
    """Counted code bytes; relative code paths are relative to the golf project root."""
    paths = [p if Path(p).is_absolute() else PROJECT_ROOT / p for p in budget.code_paths]
    n, files = count_code_bytes(paths, budget.code_mode)
    return n, [(str(Path(f).relative_to(PROJECT_ROOT)) if Path(f).is_relative_to(PROJECT_ROOT) else str(f), b)
               for f, b in files]


def export_run(run_dir: str | Path, quant: QuantConfig, budget: BudgetConfig, eval_cfg, device: torch.device,
               out: str | Path | None = None, roundtrip_eval: bool = True) -> dict:
    """Quantize <run_dir>/checkpoint.pt into an artifact and return the export report (also export.json).

    Raises BudgetExceededError (artifact + code > target; nothing written), CheckpointError, ArtifactError.
    """
    run_dir = Path(run_dir)
    out = Path(out) if out else run_dir / ARTIFACT_NAME
    loaded = load_for_eval(run_dir / CHECKPOINT_NAME, torch.device("cpu"))
    run_cfg = loaded.run_config
    state = {k: v.detach().cpu() for k, v in loaded.model.state_dict().items()}
    qstate = quantize_state_dict(state, quant)
    extra = {"model": asdict(loaded.model_cfg), "train_seq_len": run_cfg["trainer"]["train_seq_len"],
             "data": {"variant": run_cfg["data"]["variant"], "vocab_size": run_cfg["data"]["vocab_size"]},
             "quant": asdict(quant)}
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        info = write_artifact(tmp, qstate, codec=quant.codec, level=quant.level, config=run_cfg, extra=extra)
        code_bytes, code_files = code_bytes_for(budget)
        report = build_budget_report(qstate, info, code_bytes, code_files, budget.target_bytes, budget.code_mode)
        log.info("\n" + format_report(report))
        check_budget(report)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    result = {"artifact": str(out), "artifact_bytes": report.artifact_bytes, "code_bytes": report.code_bytes,
              "bytes_total": report.total_bytes, "target_bytes": budget.target_bytes, "fits": report.fits,
              "scheme": quant.scheme, "codec": quant.codec, "budget": report.to_dict()}
    log.info(f"Serialized model {quant.scheme}+{quant.codec}: {report.artifact_bytes} bytes; "
             f"code {report.code_bytes} bytes; Total submission size: {report.total_bytes} bytes "
             f"(target {budget.target_bytes}, headroom {budget.target_bytes - report.total_bytes})")
    if roundtrip_eval:
        result.update(roundtrip(run_dir, out, run_cfg, eval_cfg, device))
    write_json(run_dir / EXPORT_REPORT, result)
    return result


def roundtrip(run_dir: Path, artifact: Path, run_cfg: dict, eval_cfg, device: torch.device) -> dict:
    """Evaluate the checkpoint and the re-loaded artifact on the same tokens; return both and the gap."""
    data = DataConfig(**run_cfg["data"])
    seq_len = eval_cfg.seq_len or run_cfg["trainer"]["train_seq_len"]
    val = load_val_data(data, run_cfg["model"]["vocab_size"], seq_len, eval_cfg.max_tokens)
    pre = run_evaluation(load_for_eval(run_dir / CHECKPOINT_NAME, device).model, val, eval_cfg, device)
    post = run_evaluation(load_for_eval(artifact, device).model, val, eval_cfg, device)
    log.info(f"pre-quant val_loss:{pre.val_loss:.4f} val_bpb:{pre.val_bpb:.4f}")
    log.info(f"final_roundtrip val_loss:{post.val_loss:.4f} val_bpb:{post.val_bpb:.4f} "
             f"eval_time:{post.seconds * 1000:.0f}ms")
    log.info(f"final_roundtrip_exact val_loss:{post.val_loss:.8f} val_bpb:{post.val_bpb:.8f}")
    log.info(f"quantization gap: {post.val_bpb - pre.val_bpb:+.5f} bpb")
    return {"pre_quant": pre.to_dict(), "roundtrip": post.to_dict(), "val_bpb": post.val_bpb,
            "val_loss": post.val_loss, "quant_gap_bpb": post.val_bpb - pre.val_bpb}


__all__ = ["export_run", "roundtrip", "BudgetExceededError", "EXPORT_REPORT"]
