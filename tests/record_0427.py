"""Load the 2026-04-27 record's own scripts on CPU as test oracles (never as golf source).

The record's ``train_gpt.py`` imports CUDA-only modules at the top (``flash_attn_interface``, Triton). This
helper registers stand-ins before importing it (as records/README.md describes): flash attention built on
``scaled_dot_product_attention`` (the varlen form runs each document separately) and a Triton module whose
``jit`` leaves the kernel functions unused. Everything the tests compare (model forward, GPTQ/LQER, per-group
serializer, bpb arithmetic) is the record's own Python code.

Small and self-contained on purpose; the record-oracle harness of the fidelity branch can replace it.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

RECORD = (Path(__file__).resolve().parents[1] / ".." / "shared" / "reference" / "records"
          / "2026-04-27_SP8192_LQER_SparseGate_BOSSmearFix_9HpStack_1.0611").resolve()
if not RECORD.is_dir():  # worktrees live next to main: /work/wt-x/../shared
    RECORD = Path("/work/shared/reference/records/2026-04-27_SP8192_LQER_SparseGate_BOSSmearFix_9HpStack_1.0611")
CASEOPS_TOKENIZER = RECORD / "tokenizers" / "fineweb_8192_bpe_lossless_caps_caseops_v1_reserved.model"


def require_record() -> Path:
    if not (RECORD / "train_gpt.py").is_file():
        pytest.skip(f"record folder {RECORD} is absent")
    return RECORD


def _sdpa_bthd(q, k, v, causal=True):
    """flash-attn layout [B, T, H, D] (GQA by head repetition) through SDPA."""
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    if k.size(1) != q.size(1):
        rep = q.size(1) // k.size(1)
        k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
    return F.scaled_dot_product_attention(q, k, v, is_causal=causal).transpose(1, 2)


def _flash_attn_func(q, k, v, causal=True, **_):
    return _sdpa_bthd(q, k, v, causal)


def _flash_attn_varlen_func(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, causal=True, **_):
    out = torch.empty_like(q)
    cu = cu_seqlens_q.tolist()
    for a, b in zip(cu[:-1], cu[1:], strict=True):
        if b > a:
            out[a:b] = _sdpa_bthd(q[None, a:b], k[None, a:b], v[None, a:b], causal)[0]
    return out


class _Anything:
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Anything()

    def __call__(self, *a, **k):
        return _Anything()


def _stand_ins() -> dict[str, types.ModuleType]:
    """Modules to place in sys.modules while the record's script is imported (Triton only if absent)."""
    fa = types.ModuleType("flash_attn_interface")
    fa.flash_attn_func = _flash_attn_func
    fa.flash_attn_varlen_func = _flash_attn_varlen_func
    mods = {"flash_attn_interface": fa}
    if importlib.util.find_spec("triton") is not None:
        return mods
    tr = types.ModuleType("triton")
    tr.jit = lambda fn=None, **k: fn if fn is not None else (lambda f: f)
    tr.cdiv = lambda a, b: -(-a // b)
    tl = types.ModuleType("triton.language")
    tl.__getattr__ = _Anything().__getattr__
    tr.language = tl
    td = types.ModuleType("triton.tools.tensor_descriptor")
    td.TensorDescriptor = _Anything
    mods.update({"triton": tr, "triton.language": tl, "triton.tools": types.ModuleType("triton.tools"),
                 "triton.tools.tensor_descriptor": td})
    return mods


_MODULES: dict[str, types.ModuleType] = {}


def load_record_module(name: str = "train_gpt") -> types.ModuleType:
    """Import one of the record's scripts (``train_gpt``, ``lossless_caps``, ``prepare_caseops_data``) once."""
    require_record()
    if name in _MODULES:
        return _MODULES[name]
    stand_ins = {}
    if name == "train_gpt":
        torch.compile(lambda t: t)  # imports torch's compiler stack first, so it never sees the Triton stand-in
        stand_ins = {k: m for k, m in _stand_ins().items() if k not in sys.modules}
    if str(RECORD) not in sys.path:
        sys.path.insert(0, str(RECORD))  # prepare_caseops_data imports lossless_caps from its folder
    spec = importlib.util.spec_from_file_location(f"record0427_{name}", RECORD / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.update(stand_ins)
    try:
        spec.loader.exec_module(mod)
    finally:
        for k in stand_ins:
            sys.modules.pop(k, None)
    _MODULES[name] = mod
    return mod


def record_hparams(**overrides) -> types.SimpleNamespace:
    """The record's Hyperparameters defaults (class attributes read at import) with overrides."""
    tg = load_record_module("train_gpt")
    base = {k: v for k, v in vars(tg.Hyperparameters).items() if not k.startswith("__")}
    base.update(overrides)
    return types.SimpleNamespace(**base)
