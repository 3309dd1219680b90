"""Estimate-vs-logged table over `RECORDS`: artifact bytes and 8xH100 ms/step (`python -m golf.preflight --records`)."""

from __future__ import annotations

from golf.preflight.check import FULL_VAL_TOKENS, H100_COUNT, step_time_model
from golf.preflight.compose import record_config
from golf.preflight.records import RECORDS, RecordConfig, read_record_log
from golf.quant.estimate import estimate_artifact, trained_weight_std


def record_rows(records: list[RecordConfig] | None = None) -> list[dict]:
    """One dict per record with logs: estimated vs logged model bytes and ms/step, relative errors."""
    model = step_time_model()
    rows = []
    for rec in records if records is not None else RECORDS:
        try:
            log = read_record_log(rec.folder)
        except FileNotFoundError:
            continue
        cfg = record_config(rec)
        est = estimate_artifact(cfg.model, cfg.quant, trained_weight_std(cfg.optim.matrix_lr, cfg.optim.muon_wd))
        ms = model.step_ms(cfg.model, cfg.trainer.train_batch_tokens, cfg.trainer.train_seq_len)
        seq = cfg.eval.seq_len or cfg.trainer.train_seq_len
        evals = [(name, logged / 1000.0, model.eval_ms(cfg.model, FULL_VAL_TOKENS, seq,
                                                       "sliding" if "sliding" in name else "standard") / 1000.0)
                 for name, logged in log.eval_ms.items() if "sliding" in name or "roundtrip" in name]
        rows.append({
            "record": rec.folder, "preset": rec.preset, "overrides": rec.overrides, "seeds": log.seeds,
            "logged_bytes": log.model_bytes, "estimated_bytes": est.total_bytes,
            "bytes_error": (est.total_bytes - log.model_bytes) / log.model_bytes if log.model_bytes else None,
            "logged_ms": log.step_ms, "estimated_ms": ms,
            "ms_error": (ms - log.step_ms) / log.step_ms if log.step_ms else None,
            "eval_s": [{"eval": n, "logged_s": a, "estimated_s": b} for n, a, b in evals],
        })
    return rows


def format_rows(rows: list[dict]) -> str:
    """Markdown table of `record_rows`."""
    out = [f"| record | preset | logged model bytes | estimated | error | logged ms/step ({H100_COUNT}xH100) | "
           "estimated | error |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        be = f"{r['bytes_error'] * 100:+.2f}%" if r["bytes_error"] is not None else "-"
        me = f"{r['ms_error'] * 100:+.1f}%" if r["ms_error"] is not None else "-"
        lb = f"{r['logged_bytes']:,.0f}" if r["logged_bytes"] else "-"
        lm = f"{r['logged_ms']:.2f}" if r["logged_ms"] else "-"
        out.append(f"| {r['record']} | `{r['preset']}` | {lb} | {r['estimated_bytes']:,} | {be} | {lm} | "
                   f"{r['estimated_ms']:.2f} | {me} |")
    out += ["", "| record | eval (log line) | logged s | estimated s |", "|---|---|---:|---:|"]
    for r in rows:
        for e in r["eval_s"]:
            out.append(f"| {r['record']} | {e['eval']} | {e['logged_s']:.1f} | {e['estimated_s']:.1f} |")
    m = step_time_model()
    out.append(f"\nstep-time model: {m.ms_per_tflop:.2f} ms per TFLOP per GPU + {m.overhead_ms:.2f} ms/step, "
               f"fitted on {', '.join(m.fitted_on)}")
    return "\n".join(out)
