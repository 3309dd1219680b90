"""Measurements of issue #11 for experiment=record_0427_sota (not a test; prints a JSON report).

    GOLF_DATA_DIR=<caseops data root> python tests/measure_record_0427.py OUT.json

The data root must hold datasets/fineweb10B_sp8192_lossless_caps_caseops_v1_reserved (golf.data.prepare
--text-transform caseops_v1 on ../shared/data/fineweb/docs_sample_200.jsonl, --val-docs 50) and the CaseOps
tokenizer under tokenizers/. Steps:
1. forward max |delta| golf vs the record's GPT (d 128, CaseOps val tokens, with and without the document mask);
2. GPTQ/gate/LQER codes and per-group artifact bytes, golf vs the record's serializer, on the same weights
   (the preset architecture at d 384 — the smallest width where every matrix passes the record's 65,536-element
   passthrough — weights = init + N(0, 0.02), Hessians from 4 CaseOps training batches);
3. a cpu_tiny run of the preset (train.py), exported with and without LQER and with brotli-11 instead of
   pergroup: bytes and quantization gaps;
4. phased TTT vs plain score-first TTT (eval=ttt) on that artifact and the same tokens.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from record_0427 import load_record_module, record_hparams  # noqa: E402
from test_presets import preset  # noqa: E402
from test_record_0427 import record_state_dict  # noqa: E402

from golf.data.config import DataConfig  # noqa: E402
from golf.data.shards import read_shard  # noqa: E402
from golf.eval.config import EvalConfig, PhasedTTTConfig, TTTConfig  # noqa: E402
from golf.eval.data import load_val_data  # noqa: E402
from golf.eval.run import EvalContext, run_evaluation  # noqa: E402
from golf.export_run import export_run  # noqa: E402
from golf.model import build_model  # noqa: E402
from golf.model.config import ModelConfig  # noqa: E402
from golf.quant.artifact import write_artifact  # noqa: E402
from golf.quant.config import LQERConfig  # noqa: E402
from golf.quant.gptq import calibration_batches, collect_hessians  # noqa: E402
from golf.quant.int8 import quantize_state_dict  # noqa: E402
from golf.record import submission_code_bytes  # noqa: E402
from golf.train.load import load_for_eval  # noqa: E402

VARIANT = "sp8192_lossless_caps_caseops_v1_reserved"
CPU = torch.device("cpu")


def forward_delta(tg, root: Path) -> dict:
    out = {}
    base = preset("record_0427_sota").model
    toks = read_shard(root / "datasets" / f"fineweb10B_{VARIANT}" / "fineweb_val_000000.bin")
    start = int((toks[1:] == 1).nonzero()[0][0]) - 200
    x = torch.from_numpy(toks[start: start + 384].astype("int64"))[None]
    for mask in (False, True):
        cfg = ModelConfig(**(base.__dict__ | dict(model_dim=128, num_heads=4, num_kv_heads=2, attn_doc_mask=mask,
                                                  attn_doc_mask_max_len=128)))
        torch.manual_seed(0)
        ours = build_model(cfg).float().eval()
        with torch.no_grad():
            for p in ours.parameters():
                p.add_(torch.randn_like(p) * 0.02)
        h = record_hparams(model_dim=128, num_heads=4, num_kv_heads=2, fused_ce_enabled=False, smear_gate_enabled=True,
                           sparse_attn_gate_enabled=True, sparse_attn_gate_scale=0.5, train_seq_len=128)
        theirs = tg.GPT(h).float().eval()
        theirs.load_state_dict(record_state_dict(ours.state_dict(), cfg, tg), strict=True)
        theirs.looping_active = True
        kw = {}
        if mask:
            cu, ml = tg._build_cu_seqlens((x[0] == 1).nonzero(as_tuple=True)[0].tolist(), x.numel(), "cpu", 128, 64)
            kw = {"cu_seqlens": cu, "max_seqlen": ml}
        with torch.no_grad():
            d = (ours.logits(x) - theirs.forward_logits(x, **kw)).abs().max().item()
        out["doc_mask" if mask else "plain"] = d
    return out


def quantizer_and_bytes(tg, root: Path) -> dict:
    base = preset("record_0427_sota")
    cfg = ModelConfig(**(base.model.__dict__ | dict(model_dim=384, num_heads=6, num_kv_heads=3)))
    torch.manual_seed(0)
    model = build_model(cfg).float().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    data = DataConfig(variant=VARIANT, root=str(root), vocab_size=8192)
    batches = calibration_batches(data.train_glob(), 4, 4096, 256, CPU)
    golf_state = {k: v.detach() for k, v in model.state_dict().items()}
    names = {n for n, t in golf_state.items() if t.ndim == 2 and t.numel() > 65536}
    hess, secs = collect_hessians(model, batches, names)
    rec_flat = tg._unbank_state_dict(record_state_dict(golf_state, cfg, tg), cfg.num_layers)
    rename = {v: k for k, v in {"smear.lam": "smear_lambda", "smear.proj.weight": "smear_gate.weight",
                                "parallel.post_lambdas": "parallel_post_lambdas",
                                "parallel.resid_lambdas": "parallel_resid_lambdas"}.items()}
    to_golf = {k: rename.get(k, k.replace(".attn.attn_gate_w", ".attn.gate.weight")) for k in rec_flat}
    rec_hess = {k: hess[to_golf[k]] for k in rec_flat if to_golf[k] in hess}
    h = record_hparams(embed_bits=7, mlp_clip_sigmas=11.5, embed_clip_sigmas=14.0, gated_attn_quant_gate=True)
    t0 = time.perf_counter()
    res, meta = tg.gptq_mixed_quantize(rec_flat, rec_hess, h)
    t_rec = time.perf_counter() - t0
    quant = dataclasses.replace(base.quant, keep_float_max_numel=65536)
    t0 = time.perf_counter()
    qs = quantize_state_dict(golf_state, quant, hess)
    t_golf = time.perf_counter() - t0
    equal, total = 0, 0
    for k, gk in to_golf.items():
        for suffix, ours in ((".q", qs.quantized.get(gk)), (".scale", qs.scales.get(gk)), (".gq", qs.quantized.get(gk)),
                             (".lqA_a", qs.quantized.get(gk + ".lqer_a")), (".lqB_a", qs.quantized.get(gk + ".lqer_b"))):
            if k + suffix in res:
                total += 1
                equal += int(ours is not None and torch.equal(ours.reshape(res[k + suffix].shape), res[k + suffix]))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        blob = tg._serialize_pergroup(res, meta, cfg.num_layers, tmp)
        t_rser = time.perf_counter() - t0
        t0 = time.perf_counter()
        info = write_artifact(Path(tmp) / "m.golf", qs, codec="pergroup")
        t_gser = time.perf_counter() - t0
        brotli_info = write_artifact(Path(tmp) / "b.golf", qs, codec="brotli", level=11)
    return {"width": 384, "params": sum(t.numel() for t in golf_state.values()), "hessian_s": secs,
            "codes_equal": f"{equal}/{total}", "lqer_tensors": sorted(qs.lqer),
            "record_serializer_bytes": len(blob), "golf_artifact_file_bytes": info.file_bytes,
            "golf_payload_bytes": info.compressed_bytes, "golf_brotli11_file_bytes": brotli_info.file_bytes,
            "rel_diff_file_vs_record": info.file_bytes / len(blob) - 1, "streams": info.streams,
            "quantize_s": {"record": t_rec, "golf": t_golf}, "serialize_s": {"record": t_rser, "golf": t_gser}}


def cpu_tiny_run(root: Path, work: Path, steps: int) -> Path:
    run = work / "run"
    env = dict(os.environ, GOLF_DATA_DIR=str(root), WANDB_MODE="disabled")
    cmd = [sys.executable, str(HERE.parent / "train.py"), "experiment=record_0427_sota", "scale=cpu_tiny",
           "logger=none", f"schedule.iterations={steps}", "trainer.train_batch_tokens=4096",
           "trainer.grad_accum_base=1", "eval.max_tokens=8192", "quant.gptq.calib_batches=4",
           f"hydra.run.dir={run}"]
    subprocess.run(cmd, check=True, cwd=HERE.parent, env=env, capture_output=True)
    return run


def exports(run: Path) -> dict:
    run_cfg = load_for_eval(run / "checkpoint.pt", CPU).run_config
    quant = run_cfg.quant
    ev = EvalConfig(mode="standard", max_tokens=8192, batch_tokens=8192)
    out = {}
    for name, q in (("lqer", quant), ("no_lqer", dataclasses.replace(quant, lqer=LQERConfig(enabled=False))),
                    ("brotli11", dataclasses.replace(quant, codec="brotli", level=11))):
        r = export_run(run, q, run_cfg.budget, ev, CPU, out=run / f"model_{name}.golf",
                       code_bytes=submission_code_bytes)
        out[name] = {"artifact_bytes": r["artifact_bytes"], "pre_bpb": r["pre_quant"]["val_bpb"],
                     "post_bpb": r["val_bpb"], "gap_bpb": r["quant_gap_bpb"], "codec": r["codec"]}
    return out


def ttt_compare(root: Path, run: Path) -> dict:
    loaded = load_for_eval(run / "model_lqer.golf", CPU)
    out = {}
    for transform in ("identity", "caseops_v1"):
        data = DataConfig(variant=VARIANT, root=str(root), vocab_size=8192, text_transform=transform)
        val = load_val_data(data, 8192, 128, max_tokens=8192)
        modes = {"standard": EvalConfig(mode="standard", batch_tokens=8192),
                 "phased_ttt": EvalConfig(mode="phased_ttt", phased=PhasedTTTConfig(
                     doc_batch=4, prefix_docs=6, global_chunk_tokens=1024, global_batch_seqs=4, lanes=1))}
        if transform == "identity":  # eval=ttt counts bytes with the LUTs only
            modes["ttt"] = EvalConfig(mode="ttt", stride=128, ttt=TTTConfig(chunk_tokens=2048))
        for mode, ev in modes.items():
            r = run_evaluation(loaded.model, val, ev, EvalContext(CPU))
            out[f"{mode}_{'original_bytes' if transform != 'identity' else 'token_bytes'}"] = {
                "val_bpb": r.val_bpb, "tokens": r.tokens, "bytes": r.bytes, "seconds": r.seconds}
    return out


def main() -> None:
    torch.set_num_threads(1)
    root = Path(os.environ["GOLF_DATA_DIR"])
    tg = load_record_module("train_gpt")
    tg.BOS_ID = 1
    report = {"record": "2026-04-27_SP8192_LQER_SparseGate_BOSSmearFix_9HpStack_1.0611",
              "forward_max_abs_delta": forward_delta(tg, root)}
    print(json.dumps(report, indent=1), flush=True)
    if os.environ.get("QUANTIZER", "1") == "1":  # QUANTIZER=0 skips step 2 (minutes of lrzip on this CPU)
        report["quantizer"] = quantizer_and_bytes(tg, root)
        print(json.dumps(report["quantizer"], indent=1), flush=True)
    with tempfile.TemporaryDirectory() as work:
        run = cpu_tiny_run(root, Path(work), int(os.environ.get("STEPS", "12")))
        report["cpu_tiny_metrics"] = json.loads((run / "metrics.json").read_text())
        report["exports"] = exports(run)
        print(json.dumps(report["exports"], indent=1), flush=True)
        report["eval"] = ttt_compare(root, run)
    text = json.dumps(report, indent=1, default=str)
    print(text)
    if len(sys.argv) > 1:
        Path(sys.argv[1]).write_text(text)


if __name__ == "__main__":
    main()
