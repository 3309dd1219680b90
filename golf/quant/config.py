"""Plain dataclass configs for quantization/export and the byte budget (no Hydra imports here).

Defaults reproduce the official baseline export (openai/parameter-golf ``train_gpt.py`` L280-422, L1062-1119):
int8 per-row quantization, small float tensors kept as fp16 (control tensors fp32), zlib level 9, and a
decimal 16,000,000-byte cap on artifact bytes + code bytes.

Schema (Hydra keys ``quant.*``, ``budget.*``)::

    quant.scheme            int8 (official) | mixed (per tensor group rules below) | none
    quant.codec / level     zlib | zstd | lzma | lzma_extreme | brotli | none | best; level None = codec default
    quant.byte_shuffle      0 = off, k >= 2: byte-transpose the payload with stride k before compressing (#38)
    quant.packing           auto (bit-pack 2- and 4-bit codes, int8 containers otherwise) | int8 | bitpack
    quant.groups.<g>        g in embed, attn, mlp, other, small: bits, passthrough, clip mode, method (rtn|gptq)
    quant.gptq.*            calibration batches, damping, block size, act-order for method=gptq groups
    quant.qat.*             fake-quantization during training (STE), optionally enabled late
    budget.fit / fit_*      choose bits per group to land under budget.target_bytes
"""

from __future__ import annotations

from dataclasses import dataclass, field

from golf.errors import GolfError
from golf.model.config import OFFICIAL_CONTROL_TENSOR_PATTERNS

FLOAT_STORE_DTYPES: tuple[str, ...] = ("float16", "bfloat16", "float32")
GROUP_NAMES: tuple[str, ...] = ("embed", "attn", "mlp", "other", "small")
CLIP_MODES: tuple[str, ...] = ("percentile", "rowmax", "search", "std")
CLIP_SEARCH: tuple[str, ...] = ("matrix", "row")
CLIP_SEARCH_SCALES: tuple[str, ...] = ("stored", "fp32")
CLIP_SCOPES: tuple[str, ...] = ("row", "tensor")
SCALE_FLOORS: tuple[str, ...] = ("auto", "qmax", "none")
PASSTHROUGH: tuple[str, ...] = ("", "keep", *FLOAT_STORE_DTYPES)
METHODS: tuple[str, ...] = ("rtn", "gptq")
PACKINGS: tuple[str, ...] = ("auto", "int8", "bitpack")
FIT_METRICS: tuple[str, ...] = ("loss", "recon")
CODE_WRAPPERS: tuple[str, ...] = ("auto", "lzma", "brotli")
"""budget.code_wrapper: the self-extracting form of the generated train_gpt.py (golf.record.wrapper)."""
CODE_TEXTS: tuple[str, ...] = ("base85", "base128")
"""budget.code_text: how that form spells its compressed bytes (golf.record.wrapper)."""
BEST_CODEC = "best"
QAT_RULES: tuple[str, ...] = ("export", "rowmax31")
GPTQ_CLIP_SELECTION: tuple[str, ...] = ("rtn", "gptq")
SCHEME_NAMES: tuple[str, ...] = ("int8", "none", "mixed")
"""Quantization schemes (golf.quant.int8.SCHEMES registers their implementations; a test keeps both equal)."""
CODEC_LEVELS: dict[str, tuple[int | None, int | None, int | None]] = {
    "zlib": (9, -1, 9), "zstd": (22, 1, 22), "lzma": (9, 0, 9), "lzma_extreme": (9, 0, 9), "brotli": (11, 0, 11),
    "none": (None, None, None),
}
"""Codec name -> (default level, min level, max level); None = level-less. The codecs golf.quant.compress
registers (each on first use) carry the same names and levels (tests/test_layers.py), so the config checks names
and levels without importing the codec libraries."""
LQER_SUFFIXES = (".lqer_a", ".lqer_b")
LQER_METHODS = ("lqer_a", "lqer_b")
"""Names and qmeta methods of LQER factor entries (golf.quant.lqer writes them; dequantizing folds them)."""


def is_lqer_entry(name: str, meta: dict | None) -> bool:
    """True for the factor entries golf.quant.lqer.add_lqer writes (by qmeta method, else by name suffix)."""
    if meta and meta.get("method") in LQER_METHODS:
        return True
    return name.endswith(LQER_SUFFIXES)


PERGROUP_CODEC = "pergroup"
"""Per-group lrzip/brotli of the payload with the L1 row sort (golf.quant.pergroup; 2026-04-27 record)."""
# Record 03-22 (GPTQ-lite, train_gpt.py quantize_int6_per_row): row quantiles 0.999, 0.9995, 0.9999, 0.99999, 1.0.
GPTQ_LITE_PERCENTILES: tuple[float, ...] = (99.9, 99.95, 99.99, 99.999, 100.0)


class QuantConfigError(GolfError, ValueError):
    """A quantization or budget config field holds a value outside its allowed set."""


def _check_choice(owner: str, key: str, value: object, allowed: tuple[str, ...] | list[str]) -> None:
    if value not in allowed:
        raise QuantConfigError(f"{owner}.{key}={value!r} is not one of {sorted(allowed)}")


def check_codec_level(codec: str, level: int | None, key: str = "quant.level") -> int | None:
    """The effective level of `codec` (its default when None). Raises QuantConfigError outside its range."""
    default, lo, hi = CODEC_LEVELS[codec]
    if lo is None or hi is None:
        return None
    if level is None:
        return default
    if isinstance(level, bool) or not isinstance(level, int) or not lo <= level <= hi:
        raise QuantConfigError(f"{key}={level!r} is not an int in [{lo}, {hi}] (codec {codec!r})")
    return level


def _check(ok: bool, key: str, value: object, why: str) -> None:
    if not ok:
        raise QuantConfigError(f"{key}={value!r} {why}")


@dataclass
class GroupQuant:
    """How the tensors of one group (embed / attn / mlp / other / small) are stored.

    Validated by QuantConfig (errors name ``quant.groups.<group>.<key>``).
    """

    bits: int = 8
    """Code width N in 2..8: per-row symmetric codes in [-(2^(N-1)-1), 2^(N-1)-1], scale per row."""
    passthrough: str = ""
    """"" = quantize to `bits`; float16 / bfloat16 / float32 = store unquantized in that dtype; keep = the
    official small-tensor rule (control patterns fp32, fp32/bf16 -> quant.keep_float_dtype)."""
    clip: str = "percentile"
    """Clip mode: percentile (official int8: row quantile of |w|), rowmax, search (GPTQ-lite, record 03-22: the
    candidate percentile with least ||W - dequant(quant(W))||^2), std (SDClip, record 04-05: k * row std)."""
    clip_percentile: float = 99.99984
    """Percentile of |w| per row for clip=percentile (official INT8_CLIP_PERCENTILE)."""
    clip_scope: str = "row"
    """clip=percentile: row = quantile of each row's |w| (official); tensor = one quantile of the whole matrix's
    |w| and so one scale for every row (seed 000's code `torch.quantile(w.abs().flatten(), 0.9999984)`, whose
    text says per row)."""
    clip_candidates: list[float] = field(default_factory=lambda: list(GPTQ_LITE_PERCENTILES))
    """Percentiles tried by clip=search; row max (100) is always tried first, so search is never worse."""
    clip_search: str = "matrix"
    """clip=search picks one percentile per matrix (record 03-22) or per row (seed 001)."""
    clip_search_scale: str = "stored"
    """clip=search: stored = codes and error from the stored (scale_dtype-rounded) scale (record 03-22);
    fp32 = w clamped to ±clip, codes and error from the fp32 scale, rounded to scale_dtype only when stored
    (seed 001 `quantize_float_tensor`)."""
    clip_sigmas: float = 12.85
    """k of clip=std: clip = k * std(row) (record 04-05: 12.85 matrices, 20 embeddings)."""
    scale_floor: str = "auto"
    """Lower bound of the scale: qmax = 1/qmax (official int8 / GPTQ-lite record), none = 1e-10 (SDClip),
    auto = qmax for clip=percentile (official) and none for rowmax/search/std."""
    method: str = "rtn"
    """rtn = round to nearest; gptq = full-Hessian GPTQ error feedback (2-D tensors with calibration Hessian)."""
    patterns: list[str] = field(default_factory=list)
    """Name substrings that put a tensor in this group (embed/attn/mlp); `other` and `small` ignore them."""

    def validate(self, key: str) -> None:
        """Raise QuantConfigError naming ``<key>.<field>`` for the first bad field."""
        _check(isinstance(self.bits, int) and 2 <= self.bits <= 8, f"{key}.bits", self.bits, "is not an int in [2, 8]")
        _check_choice(key, "passthrough", self.passthrough, PASSTHROUGH)
        _check_choice(key, "clip", self.clip, CLIP_MODES)
        _check_choice(key, "clip_search", self.clip_search, CLIP_SEARCH)
        _check_choice(key, "clip_scope", self.clip_scope, CLIP_SCOPES)
        _check(self.clip_scope == "row" or self.clip == "percentile", f"{key}.clip_scope", self.clip_scope,
               "needs clip=percentile (tensor scope is one quantile of the whole matrix)")
        _check_choice(key, "clip_search_scale", self.clip_search_scale, CLIP_SEARCH_SCALES)
        _check_choice(key, "scale_floor", self.scale_floor, SCALE_FLOORS)
        _check_choice(key, "method", self.method, METHODS)
        _check(0.0 < float(self.clip_percentile) <= 100.0, f"{key}.clip_percentile", self.clip_percentile,
               "is not in (0, 100]")
        _check(len(self.clip_candidates) > 0 and all(0.0 < float(p) <= 100.0 for p in self.clip_candidates),
               f"{key}.clip_candidates", self.clip_candidates, "must be a non-empty list of percentiles in (0, 100]")
        _check(float(self.clip_sigmas) > 0, f"{key}.clip_sigmas", self.clip_sigmas, "must be > 0")
        self.patterns = [str(p) for p in self.patterns if p]
        self.clip_candidates = [float(p) for p in self.clip_candidates]

    @property
    def quantized(self) -> bool:
        return self.passthrough == ""


@dataclass
class QuantGroups:
    """One GroupQuant per tensor group. Membership (golf.quant.groups.tensor_group): non-float tensors are
    always exact; float tensors with numel <= quant.keep_float_max_numel -> small; else the first of embed,
    attn, mlp whose patterns match the name; else other. Defaults reproduce the official int8 export."""

    embed: GroupQuant = field(default_factory=lambda: GroupQuant(patterns=["tok_emb", "lm_head", "embed"]))
    attn: GroupQuant = field(default_factory=lambda: GroupQuant(patterns=[".attn."]))
    mlp: GroupQuant = field(default_factory=lambda: GroupQuant(patterns=[".mlp."]))
    other: GroupQuant = field(default_factory=GroupQuant)
    small: GroupQuant = field(default_factory=lambda: GroupQuant(passthrough="keep"))

    def get(self, group: str) -> GroupQuant:
        return getattr(self, group)


@dataclass
class GPTQConfig:
    """Full-Hessian GPTQ (Frantar et al. 2023; records 03-25/03-29/04-05) for groups with method=gptq."""

    calib_batches: int = 16
    """Training batches whose linear-layer inputs form the Hessians H = X^T X (record 04-14: 16)."""
    calib_batch_tokens: int = 0
    """Tokens per calibration batch; 0 = the run's trainer.train_batch_tokens."""
    calib_seq_len: int = 0
    """Sequence length of calibration batches; 0 = the run's trainer.train_seq_len."""
    damp: float = 0.01
    """Damping added to diag(H): damp * mean(diag H)."""
    block_size: int = 128
    """Columns quantized per block before the lazy error update of the remaining columns."""
    act_order: bool = True
    """Quantize columns in descending diag(H) order (act-order)."""
    select_clip_by: str = "rtn"
    """clip=search groups: rtn = the candidate with the least round-to-nearest error sets the scales and GPTQ runs
    once (records 04-05+); gptq = GPTQ runs with every candidate's scales and the least mean ||W - Q·s||²
    wins (record 03-29 `gptq_quantize_weight`)."""
    calibrate_in_training: bool = True
    """The training process collects the Hessians right after training (inside schedule.gptq_reserve_seconds,
    as the 2026-04-27 record) and saves run_dir/hessians.pt; export then reads no training data
    (golf.train.calibration). false skips it: the export must then calibrate after training, a non-record run
    (--non-record)."""


@dataclass
class LQERConfig:
    """LQER: low-rank correction of the quantization error E = W - dequant(codes) on the top_k matrices with the
    largest ||E||_F, stored in the artifact and added back at load (2026-04-27 record / PR #1797, from PR #1530).

    E ~= A B from the rank-`rank` SVD (A = U_r S_r [rows, r], B = V_r^T [r, cols]). asym=true (the record): A as
    int2 codes in [-2, 1] with one fp16 scale |A|max / 1.5; B as int4 codes in [-8, 7] with one fp16 scale
    |B_g|max / 7.5 per group of `asym_group` consecutive elements of the flattened B. asym=false: A and B per-row
    symmetric `factor_bits` codes. Matrices whose B does not split into whole groups use the symmetric form."""

    enabled: bool = False
    """Add the correction (quant.scheme=mixed only)."""
    rank: int = 4
    """Rank r of the correction (record LQER_RANK=4)."""
    top_k: int = 3
    """Matrices corrected: the top_k quantized 2-D tensors by ||W - dequant||_F (record LQER_TOP_K=3)."""
    factor_bits: int = 4
    """Bits of the symmetric factor codes (asym=false or B not divisible into groups; record LQER_FACTOR_BITS)."""
    asym: bool = True
    """int2 A / group-wise int4 B (record LQER_ASYM_ENABLED=1)."""
    asym_group: int = 64
    """Group size of B's int4 scales (record LQER_ASYM_GROUP=64)."""


@dataclass
class QATConfig:
    """Quantization-aware training: CastedLinear weights are fake-quantized in the forward pass with the export
    rule of their group (straight-through estimator), records 03-19 (#6) and 03-21/03-22 late QAT (#23)."""

    enabled: bool = False
    """Install fake-quantization on every CastedLinear whose weight is quantized by the export rule."""
    late_threshold: float = 0.0
    """0 = fake-quantize from step 0; > 0 = switch on once the lr multiplier falls below it (record 03-22: 0.15)."""
    rule: str = "export"
    """Fake-quantization rule: export = the export rule of the weight's group (what the artifact will hold);
    rowmax31 = the CastedLinear rule of records 03-21/03-22/03-23: s = max(row max / 31, 1/31) in fp32 (no fp16
    rounding), codes clamp(round(w / s), -32, 31)."""
    folded_flag: bool = False
    """Reproduce records 03-21/03-22 (README of 03-21, "Note on Late QAT"): torch.compile constant-folded their
    class-attribute QAT flag at the first trace, so late QAT never switched on and the published numbers were
    trained without it. true = late QAT stays off (golf.quant.qat.install_qat folds the flag off, logged);
    false = it switches on as configured."""


@dataclass
class QuantConfig:
    """How a trained state dict is quantized and compressed into the artifact (defaults = official baseline)."""

    scheme: str = "int8"
    """int8 = official per-row int8; mixed = per-group rules in quant.groups; none = exact fp passthrough."""
    codec: str = "zlib"
    """Payload compressor (golf.quant.compress.CODECS), "best" = try every codec, keep the smallest, or
    "pergroup" = per-role lrzip (ZPAQ) + brotli with the L1 row sort (golf.quant.pergroup, 2026-04-27 record)."""
    level: int | None = None
    """Compression level; None = the codec's default (zlib 9, zstd 22, lzma 9, brotli 11)."""
    byte_shuffle: int = 0
    """0 = off; k >= 2 = byte-transpose the raw payload with stride k before compressing (#38: stride 2)."""
    packing: str = "auto"
    """Storage of N<8-bit codes: int8 = one int8 per code; bitpack = N bits per code, densely packed; auto =
    bitpack for N in {2, 4} (byte-aligned, compresses smaller) and int8 otherwise (measured, see artifact.py)."""
    keep_float_max_numel: int = 65536
    """Float tensors with numel <= this are the `small` group (official INT8_KEEP_FLOAT_MAX_NUMEL)."""
    keep_float_dtype: str = "float16"
    """Storage dtype of small fp32/bf16 passthrough tensors not matching a control pattern (official fp16)."""
    scale_dtype: str = "float16"
    """Storage dtype of per-row scales (official INT8_PER_ROW_SCALE_DTYPE = fp16)."""
    clip_percentile: float = 99.99984
    """scheme=int8: percentile of |w| (per row for 2-D) used as the clip value (official INT8_CLIP_PERCENTILE)."""
    control_tensor_patterns: list[str] = field(default_factory=lambda: list(OFFICIAL_CONTROL_TENSOR_PATTERNS))
    """Name substrings whose small float tensors are kept in fp32 (official INT8_KEEP_FLOAT_FP32_NAME_PATTERNS)."""
    groups: QuantGroups = field(default_factory=QuantGroups)
    """Per tensor group rules (scheme=mixed)."""
    gptq: GPTQConfig = field(default_factory=GPTQConfig)
    """Calibration and solver settings for groups with method=gptq."""
    qat: QATConfig = field(default_factory=QATConfig)
    """Fake-quantization during training (read by train.py through golf.train.hooks.build_hooks)."""
    lqer: LQERConfig = field(default_factory=LQERConfig)
    """Low-rank quantization-error correction on the worst matrices (scheme=mixed; golf.quant.lqer)."""
    gate_int8: bool = False
    """"Quant gate": store attention-gate weights (names ending in one of `gate_patterns`, 32..8192 elements)
    as per-row int8 codes with fp16 scales |w_row|max / 127 instead of float passthrough (scheme=mixed;
    2026-04-27 record GATED_ATTN_QUANT_GATE=1, from PR #1736)."""
    gate_patterns: list[str] = field(default_factory=lambda: [".attn.gate.weight"])
    """Name suffixes of the attention-gate weights that gate_int8 stores as int8."""

    def __post_init__(self) -> None:
        _check_choice("quant", "scheme", self.scheme, list(SCHEME_NAMES))
        _check_choice("quant", "codec", self.codec, [*CODEC_LEVELS, BEST_CODEC, PERGROUP_CODEC])
        _check_choice("quant", "keep_float_dtype", self.keep_float_dtype, FLOAT_STORE_DTYPES)
        _check_choice("quant", "scale_dtype", self.scale_dtype, FLOAT_STORE_DTYPES)
        _check_choice("quant", "packing", self.packing, PACKINGS)
        if self.codec not in (BEST_CODEC, PERGROUP_CODEC):
            check_codec_level(self.codec, self.level)
        _check(0.0 < float(self.clip_percentile) <= 100.0, "quant.clip_percentile", self.clip_percentile,
               "is not in (0, 100]")
        _check(int(self.keep_float_max_numel) >= 0, "quant.keep_float_max_numel", self.keep_float_max_numel,
               "is negative")
        _check(isinstance(self.byte_shuffle, int) and 0 <= self.byte_shuffle <= 16, "quant.byte_shuffle",
               self.byte_shuffle, "is not an int in [0, 16]")
        self.control_tensor_patterns = [str(p) for p in self.control_tensor_patterns if p]
        for name in GROUP_NAMES:
            self.groups.get(name).validate(f"quant.groups.{name}")
        g = self.gptq
        _check(g.calib_batches >= 1, "quant.gptq.calib_batches", g.calib_batches, "must be >= 1")
        _check(g.calib_batch_tokens >= 0, "quant.gptq.calib_batch_tokens", g.calib_batch_tokens, "must be >= 0")
        _check(g.calib_seq_len >= 0, "quant.gptq.calib_seq_len", g.calib_seq_len, "must be >= 0")
        _check(0.0 <= float(g.damp) < 1.0, "quant.gptq.damp", g.damp, "is not in [0, 1)")
        _check(g.block_size >= 1, "quant.gptq.block_size", g.block_size, "must be >= 1")
        _check_choice("quant.gptq", "select_clip_by", g.select_clip_by, GPTQ_CLIP_SELECTION)
        _check(0.0 <= float(self.qat.late_threshold) <= 1.0, "quant.qat.late_threshold", self.qat.late_threshold,
               "is not in [0, 1]")
        _check_choice("quant.qat", "rule", self.qat.rule, QAT_RULES)
        lq = self.lqer
        _check(lq.rank >= 1, "quant.lqer.rank", lq.rank, "must be >= 1")
        _check(lq.top_k >= 1, "quant.lqer.top_k", lq.top_k, "must be >= 1")
        _check(2 <= lq.factor_bits <= 8, "quant.lqer.factor_bits", lq.factor_bits, "is not in [2, 8]")
        _check(lq.asym_group >= 1, "quant.lqer.asym_group", lq.asym_group, "must be >= 1")
        _check(not lq.enabled or self.scheme == "mixed", "quant.lqer.enabled", lq.enabled,
               f"needs quant.scheme=mixed (got {self.scheme})")
        _check(not self.gate_int8 or self.scheme == "mixed", "quant.gate_int8", self.gate_int8,
               f"needs quant.scheme=mixed (got {self.scheme})")

    def uses_gptq(self) -> bool:
        """True when scheme=mixed and some quantized group has method=gptq (export then needs calibration)."""
        return self.scheme == "mixed" and any(
            self.groups.get(g).quantized and self.groups.get(g).method == "gptq" for g in GROUP_NAMES)


@dataclass
class BudgetConfig:
    """The submission byte budget: artifact file bytes + counted code bytes must be <= target_bytes."""

    target_bytes: int = 16_000_000
    """Cap in bytes, decimal (README FAQ: 16,000,000, not 16 MiB)."""
    fit: bool = False
    """Choose bits / passthrough per group (quant.scheme becomes mixed) to land under target_bytes."""
    fit_bits: list[int] = field(default_factory=lambda: [16, 8, 7, 6, 5, 4])
    """Options the fitter tries per group: 2..8 = intN codes, 16 = float16 passthrough."""
    fit_groups: list[str] = field(default_factory=lambda: ["embed", "attn", "mlp", "other"])
    """Groups whose storage the fitter chooses; the rest keep their quant.groups rule."""
    fit_metric: str = "loss"
    """Predicted damage: loss = calibration-loss increase (nats) with only that group quantized;
    recon = sum over tensors of ||W - W_hat||^2 / ||W||^2."""
    fit_batches: int = 2
    """Training batches used by fit_metric=loss."""
    fit_codec: str = ""
    """Codec used to predict group sizes; empty = quant.codec (zstd when quant.codec=best)."""
    code_wrapper: str = "auto"
    """Self-extracting form of the generated train_gpt.py, whose bytes are the counted code: auto = brotli-11 +
    base85 when quant.codec already needs the brotli package, else raw LZMA2 + base85 (the records' 2 lines);
    brotli = always brotli (~1.1 KB smaller; adds brotli to requirements.txt, as records 04-10 onward list it);
    lzma = always lzma."""
    code_text: str = "base85"
    """How the wrapper spells the compressed program: base85 (the records' form) | base128 (golf's: 7-bit digits,
    ~4.9% fewer counted bytes; still valid UTF-8 with no CR or NUL, but with ASCII control characters in it)."""

    def __post_init__(self) -> None:
        _check(int(self.target_bytes) > 0, "budget.target_bytes", self.target_bytes, "must be positive")
        _check_choice("budget", "fit_metric", self.fit_metric, FIT_METRICS)
        _check(len(self.fit_bits) > 0 and all(b == 16 or 2 <= int(b) <= 8 for b in self.fit_bits),
               "budget.fit_bits", self.fit_bits, "must be a non-empty list of 2..8 or 16")
        for g in self.fit_groups:
            _check_choice("budget", "fit_groups", g, [x for x in GROUP_NAMES if x != "small"])
        _check(self.fit_batches >= 1, "budget.fit_batches", self.fit_batches, "must be >= 1")
        if self.fit_codec:
            _check_choice("budget", "fit_codec", self.fit_codec, list(CODEC_LEVELS))
        _check_choice("budget", "code_wrapper", self.code_wrapper, CODE_WRAPPERS)
        _check_choice("budget", "code_text", self.code_text, CODE_TEXTS)


def calibrates(quant: QuantConfig, budget: BudgetConfig) -> bool:
    """Whether exporting with (quant, budget) needs GPTQ Hessians from training data: a quantizing scheme with
    method=gptq groups, or a fitted budget (which may choose GPTQ bits)."""
    return quant.scheme != "none" and (quant.uses_gptq() or budget.fit)
