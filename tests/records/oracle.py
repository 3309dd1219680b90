"""Fidelity harness: a record's own `train_gpt.py` as the oracle for a golf preset.

For one record folder (`../shared/reference/records/<folder>/`) the harness
- loads the record's script on CPU (`load_record`): a stand-in `flash_attn_interface` built on PyTorch SDPA is
  registered in `sys.modules`, hyperparameters are set through the script's environment variables, and the
  module is cached per (script, env) for the session;
- builds the record's GPT and golf's model from the preset at the same reduced scale, fills the record's
  weights with deterministic heavy-tailed values (so zero-initialized projections do not hide a branch) and
  copies them into golf's model by the spec's name map (`copy_weights`);
- compares logits / loss on real FineWeb tokens (`fineweb_tokens`), the full-scale parameter count with the
  log's `model_params:`, the hyperparameters the record runs with against the preset's resolved values
  (`hparam_rows`), and the record's quantizer against golf's (`compare_quantizers`).

Adding a record = a `RecordSpec` (records/specs.py): folder, preset, name map, hyperparameter map and the
record-side calls. Nothing of a record's code is copied here: it is imported and run.
"""

from __future__ import annotations

import json
import math
import os
import re
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

REPO = Path(__file__).resolve().parents[2]
RECORDS = REPO.parent / "shared" / "reference" / "records"
DATA = REPO.parent / "shared" / "data"


# --- stand-in modules ---------------------------------------------------------------------------------------
def _flash_attn_func(q: Tensor, k: Tensor, v: Tensor, causal: bool = True, **_: object) -> Tensor:
    """FlashAttention-3 `flash_attn_func` on SDPA: q [B, T, H, D], k/v [B, T, Hkv, D] -> [B, T, H, D]."""
    y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=causal,
                                       enable_gqa=k.size(2) != q.size(2))
    return y.transpose(1, 2)


def _stand_ins() -> dict[str, types.ModuleType]:
    fa = types.ModuleType("flash_attn_interface")
    fa.flash_attn_func = _flash_attn_func
    return {"flash_attn_interface": fa}


# --- loading a record ---------------------------------------------------------------------------------------
def record_dir(folder: str) -> Path:
    return RECORDS / folder


# Python 3.12 f-strings (PEP 701: the same quote inside a replacement field) that Python 3.11 cannot parse, in
# log messages only. Loading swaps those inner quotes; nothing else of a record's source is touched.
PY311_PATCHES: dict[str, list[tuple[str, str]]] = {
    "train_gpt.decompressed.py": [('{", ".join(', "{', '.join("), ('glob("fineweb_train_*.bin")', "glob('fineweb_train_*.bin')")],
}


@cache
def _load(path: str, env_items: tuple[tuple[str, str], ...]) -> types.ModuleType:
    saved_env = {k: os.environ.get(k) for k, _ in env_items}
    saved_mods = {name: sys.modules.get(name) for name in _stand_ins()}
    try:
        os.environ.update(dict(env_items))
        sys.modules.update(_stand_ins())
        name = "record_" + re.sub(r"\W", "_", Path(path).parent.name) + f"_{abs(hash(env_items)) % 10**8}"
        source = Path(path).read_text(encoding="utf-8")
        if sys.version_info < (3, 12):
            for old, new in PY311_PATCHES.get(Path(path).name, []):
                if old not in source:
                    raise AssertionError(f"{path}: expected {old!r} for the Python 3.11 patch")
                source = source.replace(old, new)
        module = types.ModuleType(name)
        module.__file__ = path
        sys.modules[name] = module  # dataclasses / typing resolve the module by name while it executes
        exec(compile(source, path, "exec"), module.__dict__)
        return module
    finally:
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        for k, v in saved_mods.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def load_record(folder: str, script: str, env: dict[str, str] | None = None) -> types.ModuleType:
    """Import `<records>/<folder>/<script>` with `env` set during import (Hyperparameters read it then).

    Cached per (path, env) for the session. The returned module's `flash_attn_3_func` is the SDPA stand-in.
    """
    path = record_dir(folder) / script
    return _load(str(path), tuple(sorted((env or {}).items())))


# --- data ---------------------------------------------------------------------------------------------------
@cache
def fineweb_tokens(vocab: int, n_tokens: int) -> Tensor:
    """The first `n_tokens` + 1 tokens of the shared FineWeb sample, each document as [BOS] + ids (int64 [N+1])."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(DATA / "tokenizers" / f"fineweb_{vocab}_bpe.model"))
    out: list[int] = []
    with open(DATA / "fineweb" / "docs_sample_200.jsonl", encoding="utf-8") as f:
        for line in f:
            out += [sp.bos_id(), *sp.encode(json.loads(line)["text"])]
            if len(out) > n_tokens:
                break
    return torch.tensor(out[: n_tokens + 1], dtype=torch.int64)


# --- weights ------------------------------------------------------------------------------------------------
@torch.no_grad()
def randomize_(model: nn.Module, seed: int = 0) -> None:
    """Fill every parameter with deterministic values that exercise every branch.

    Matrices: Student-t (df 4) noise / sqrt(fan_in) (heavy tails like trained weights, so clip choices matter);
    vectors and scalars: their init + N(0, 0.1²) (gates, scales and mixes away from their init points).
    """
    g = torch.Generator().manual_seed(seed)
    for _, p in sorted(model.named_parameters()):
        if p.ndim >= 2:
            u = torch.randn(p.shape, generator=g)
            chi = torch.randn((4, *p.shape), generator=g).square().sum(0) / 4.0
            p.copy_(u / chi.sqrt() / math.sqrt(p.shape[-1]))
        else:
            p.add_(0.1 * torch.randn(p.shape, generator=g))


NameMap = list[tuple[str, str]]


def map_name(name: str, name_map: NameMap) -> str:
    """golf name of record parameter `name`: the first (regex, replacement) of `name_map` that matches."""
    for pattern, repl in name_map:
        if re.fullmatch(pattern, name):
            return re.sub(pattern, repl, name)
    return name


@torch.no_grad()
def copy_weights(record: nn.Module, golf: nn.Module, name_map: NameMap,
                 transforms: dict[str, Callable[[Tensor], Tensor]] | None = None,
                 record_params: dict[str, Tensor] | None = None) -> dict[str, str]:
    """Copy every record parameter into golf's by name map; returns record name -> golf name.

    Fails when a record parameter has no golf counterpart, shapes differ, or a golf parameter is left unset.
    `transforms` (golf name -> fn) converts a value between two parametrizations of the same map.
    `record_params` replaces `record.named_parameters()` (e.g. the record's own unbanked view of its banks).
    """
    golf_params = dict(golf.named_parameters())
    mapping: dict[str, str] = {}
    source = record_params if record_params is not None else dict(record.named_parameters())
    for name, p in source.items():
        target = map_name(name, name_map)
        if target not in golf_params:
            raise AssertionError(f"record parameter {name} -> {target}: no such golf parameter")
        q = golf_params[target]
        if q.shape != p.shape:
            raise AssertionError(f"{name} {tuple(p.shape)} vs golf {target} {tuple(q.shape)}")
        value = p.detach().float()
        if transforms and target in transforms:
            value = transforms[target](value)
        q.copy_(value)
        mapping[name] = target
    unset = sorted(set(golf_params) - set(mapping.values()))
    if unset:
        raise AssertionError(f"golf parameters with no record counterpart: {unset}")
    return mapping


def max_rel_diff(a: Tensor, b: Tensor) -> tuple[float, float]:
    """(max |a - b|, max |a - b| / max(1, max |b|))."""
    d = float((a.double() - b.double()).abs().max())
    return d, d / max(1.0, float(b.abs().max()))


# --- logs and hyperparameters -------------------------------------------------------------------------------
def log_values(folder: str, log: str) -> dict[str, str]:
    """`key:value` pairs of a record log's header lines (`model_params:26993756`, `matrix_lr:0.025`, ...) and
    the `  key: value` Hyperparameters block of the 04-xx logs. Later lines never override earlier ones."""
    out: dict[str, str] = {}
    lines = (record_dir(folder) / log).read_text(encoding="utf-8", errors="replace").splitlines()
    seps = [i for i, line in enumerate(lines) if line.startswith("=====")]
    if seps:  # logs that start with the script's own source: the run's lines follow the last separator
        lines = lines[seps[-1] + 1:]
    for line in lines:
        if line.startswith(("step:", "warmup_step", "W0", "Running")):
            continue
        m = re.fullmatch(r"\s+(\w+): (\S+)", line)
        pairs = [m.groups()] if m else re.findall(r"(?:^|\s)(\w+):(\S+)", line)
        for k, v in pairs:
            out.setdefault(k, v)
    return out


def source_constant(folder: str, script: str, pattern: str) -> str:
    """First group of `pattern` in the record's source (constants hard-coded in `main`, e.g. `ema_decay = 0.997`)."""
    m = re.search(pattern, (record_dir(folder) / script).read_text(encoding="utf-8"))
    if m is None:
        raise AssertionError(f"{folder}/{script}: no match for {pattern!r}")
    return m.group(1)


def resolve(cfg: object, dotted: str) -> object:
    """Value at a dotted path of a config; "a|b" = the first non-zero of a and b."""
    if "|" in dotted:
        values = [resolve(cfg, d) for d in dotted.split("|")]
        return next((v for v in values if v), values[-1])
    for part in dotted.split("."):
        cfg = getattr(cfg, part)
    return cfg


def same_value(a: object, b: object) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return bool(a) == bool(b)
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
    return a == b


@dataclass
class HParam:
    """One record hyperparameter and the golf key that must hold the same value.

    `record`: attribute of the record's `Hyperparameters` ("attr"), or "src:<regex>" for a constant in its
    source; `golf`: dotted path in golf's resolved TrainRunConfig; `convert`: record value -> golf's unit.
    """

    record: str
    golf: str
    """Dotted path; "a|b" = the first of a, b that is non-zero (e.g. eval.seq_len 0 means the train length)."""
    convert: Callable[[object], object] | None = None


@dataclass
class RecordSpec:
    """Everything the harness needs for one record. See module docstring."""

    key: str
    folder: str
    script: str
    log: str
    preset: str
    published_bpb: float
    vocab: int
    small_env: dict[str, str]
    """Record env vars of the reduced scale (width/depth), on top of run_env."""
    small_overrides: list[str]
    """golf overrides of the same reduced scale."""
    build: Callable[[types.ModuleType], nn.Module]
    """Builds the record's GPT from its (env-set) Hyperparameters."""
    logits: Callable[[nn.Module, Tensor], Tensor]
    """Record model + ids [B, T] -> logits [B, T, V]."""
    name_map: NameMap
    transforms: dict[str, Callable[[Tensor], Tensor]] = field(default_factory=dict)
    hparams: list[HParam] = field(default_factory=list)
    deliberate: dict[str, str] = field(default_factory=dict)
    """Record hyperparameter -> why golf's preset differs (documented, deliberate)."""
    quantize: Callable[[types.ModuleType, dict[str, Tensor]], dict[str, dict]] | None = None
    """Record module + state dict -> {name: {"q": codes, "scale": s} | {"passthrough": tensor}}."""
    hessians: Callable[[types.ModuleType, nn.Module], dict[str, Tensor]] | None = None
    """GPTQ records: record module + record model -> the record's own calibration Hessians (weight name ->
    [cols, cols]); `quantize` then reads them from `spec_hessians[...]` and golf gets the same (mapped) ones."""
    serialize: Callable[[types.ModuleType, dict[str, Tensor]], int] | None = None
    """Record module + state dict -> compressed artifact bytes of the record's own serializer."""
    unbank: Callable[[types.ModuleType, dict[str, Tensor]], dict[str, Tensor]] | None = None
    """Banked records (03-23, 03-29): record module + its state dict -> per-layer 2-D tensors (its own
    `_unbank_state_dict`), the view that is name-mapped, quantized and compared."""
    rebank: Callable[[types.ModuleType, dict[str, Tensor], dict[str, Tensor]], dict[str, Tensor]] | None = None
    """Inverse of unbank (record's `_rebank_state_dict`): (module, unbanked, template) -> banked state dict."""
    quant_env: dict[str, str] = field(default_factory=dict)
    """Record env of the quantizer check (full width so the same tensors cross the passthrough threshold)."""
    quant_overrides: list[str] = field(default_factory=list)
    quant_slow: bool = False
    """The quantizer check takes over ~20 s on a shared 2-core CPU (marked slow)."""
    seq_len: int = 1024
    run_env: dict[str, str] = field(default_factory=dict)
    """Env vars of the published run command (README), under which the record's hyperparameters are read."""
    forward_dtype: torch.dtype = torch.float32
    """dtype of the forward check. float64 only where fp32 rounding, amplified by the architecture, exceeds 1e-5
    with identical math (03-29: XSA on all 11 layers; the spec says what fp32 gives)."""
    log_aliases: dict[str, str | None] = field(default_factory=dict)
    """Logged key -> the Hyperparameters attribute it prints (None = not a hyperparameter, e.g. a derived value)."""
    extra_overrides: list[str] = field(default_factory=list)
    """golf overrides the comparison needs beyond the preset (none for a faithful preset)."""

    def module(self, env: dict[str, str] | None = None) -> types.ModuleType:
        """The record module under run_env + `env` (default: the reduced scale's small_env)."""
        return load_record(self.folder, self.script, {**self.run_env, **(env if env is not None else self.small_env)})

    def record_state(self, module: types.ModuleType, record: nn.Module, params_only: bool = False) -> dict[str, Tensor]:
        """The record's parameters (or state dict) in the per-layer view that is name-mapped."""
        sd = dict(record.named_parameters()) if params_only else record.state_dict()
        return self.unbank(module, sd) if self.unbank is not None else sd

    def record_value(self, module: types.ModuleType, key: str) -> object:
        if key.startswith("src:"):
            raw = source_constant(self.folder, self.script, key[4:])
            return float(raw) if re.fullmatch(r"[-+0-9.eE]+", raw) else raw
        return getattr(module.Hyperparameters, key)


def golf_config(preset: str, overrides: list[str]):
    """golf's typed TrainRunConfig of `experiment=<preset>` plus overrides (Hydra compose, as train.py)."""
    from hydra import compose, initialize_config_dir

    from golf.config import register_configs, to_typed
    from golf.train.config import TrainRunConfig

    register_configs()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return to_typed(compose("train", overrides=[f"experiment={preset}", *overrides]), TrainRunConfig)


def hparam_rows(spec: RecordSpec) -> list[tuple[str, object, str, object, str]]:
    """(record key, record value, golf key, golf value, status) with status equal | deliberate | DIFFERENT."""
    module = spec.module({})
    cfg = golf_config(spec.preset, [])
    rows = []
    for hp in spec.hparams:
        rv = spec.record_value(module, hp.record)
        if hp.convert is not None:
            rv = hp.convert(rv)
        gv = resolve(cfg, hp.golf)
        if same_value(rv, gv):
            status = "equal"
        elif hp.record in spec.deliberate:
            status = "deliberate"
        else:
            status = "DIFFERENT"
        rows.append((hp.record, rv, hp.golf, gv, status))
    return rows


# --- quantizers ---------------------------------------------------------------------------------------------
def golf_quantized(qstate, name: str) -> dict:
    if name in qstate.quantized:
        return {"q": qstate.quantized[name], "scale": qstate.scales[name]}
    return {"passthrough": qstate.passthrough[name]}


def compare_quantizers(record_q: dict[str, dict], qstate, mapping: dict[str, str],
                       transforms: dict[str, Callable[[Tensor], Tensor]] | None = None) -> list[str]:
    """Per tensor: same storage kind, codes, scales (values and dtype) and passthrough dtype/values.

    `transforms` (golf name -> fn) maps a record passthrough value into golf's parametrization (exact sign flips).
    Returns the list of mismatches (empty = identical)."""
    problems = []
    for rname, rec in record_q.items():
        gname = mapping.get(rname, rname)
        got = golf_quantized(qstate, gname)
        if transforms and gname in transforms and "passthrough" in rec:
            rec = {"passthrough": transforms[gname](rec["passthrough"])}
        if set(rec) != set(got):
            problems.append(f"{rname}: record {sorted(rec)} vs golf {sorted(got)} ({gname})")
            continue
        for k in rec:
            a, b = rec[k], got[k]
            if a.dtype != b.dtype or a.shape != b.shape or not torch.equal(a, b):
                n = int((a.float() != b.float()).sum()) if a.shape == b.shape else -1
                problems.append(f"{rname}.{k}: record {a.dtype}{tuple(a.shape)} vs golf {b.dtype}{tuple(b.shape)}"
                                f" ({n} values differ)")
    return problems


def paired_models(spec, env, overrides):
    """(record model, golf model, record->golf names, golf config) with the same randomized weights, both fp32
    in eval mode: the record's `GPT` from its own script under `env`, golf's from `spec.preset` + `overrides`."""
    from golf.model import build_model

    torch.manual_seed(0)
    module = spec.module(env)
    record = spec.build(module).float().eval()
    randomize_(record, seed=1)
    cfg = golf_config(spec.preset, [*overrides, *spec.extra_overrides])
    golf = build_model(cfg.model).float().eval()
    mapping = copy_weights(record, golf, spec.name_map, spec.transforms,
                           spec.record_state(module, record, params_only=True))
    return record, golf, mapping, cfg
