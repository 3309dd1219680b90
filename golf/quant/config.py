"""Plain dataclass configs for quantization/export and the byte budget (no Hydra imports here).

Defaults reproduce the official baseline export (openai/parameter-golf ``train_gpt.py`` L280-422, L1062-1092):
int8 per-row quantization, small float tensors kept as fp16 (control tensors fp32), zlib level 9, and a
decimal 16,000,000-byte cap on artifact bytes + code bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from golf.errors import GolfError

# Official CONTROL_TENSOR_NAME_PATTERNS (train_gpt.py L288-295); INT8_KEEP_FLOAT_FP32_NAME_PATTERNS defaults to it.
OFFICIAL_CONTROL_TENSOR_PATTERNS: tuple[str, ...] = (
    "attn_scale",
    "attn_scales",
    "mlp_scale",
    "mlp_scales",
    "resid_mix",
    "resid_mixes",
    "q_gain",
    "skip_weight",
    "skip_weights",
)

FLOAT_STORE_DTYPES: tuple[str, ...] = ("float16", "bfloat16", "float32")
CODE_MODES: tuple[str, ...] = ("raw", "lzma")


class QuantConfigError(GolfError, ValueError):
    """A quantization or budget config field holds a value outside its allowed set."""


def _check_choice(owner: str, key: str, value: object, allowed: tuple[str, ...] | list[str]) -> None:
    if value not in allowed:
        raise QuantConfigError(f"{owner}.{key}={value!r} is not one of {sorted(allowed)}")


@dataclass
class QuantConfig:
    """How a trained state dict is quantized and compressed into the artifact (defaults = official baseline)."""

    scheme: str = "int8"
    """Quantization scheme name in golf.quant.int8.SCHEMES: "int8" = official per-row int8, "none" = fp passthrough."""
    codec: str = "zlib"
    """Payload compressor name in golf.quant.compress.CODECS (official: zlib)."""
    level: int = 9
    """Compression level passed to the codec (official: zlib level 9); ignored by codec "none"."""
    keep_float_max_numel: int = 65536
    """Float tensors with numel <= this are stored unquantized (official INT8_KEEP_FLOAT_MAX_NUMEL)."""
    keep_float_dtype: str = "float16"
    """Storage dtype of small fp32/bf16 passthrough tensors not matching a control pattern (official fp16)."""
    scale_dtype: str = "float16"
    """Storage dtype of per-row int8 scales (official INT8_PER_ROW_SCALE_DTYPE = fp16)."""
    clip_percentile: float = 99.99984
    """Percentile of |w| (per row for 2-D) used as the int8 clip value (official INT8_CLIP_PERCENTILE)."""
    control_tensor_patterns: list[str] = field(default_factory=lambda: list(OFFICIAL_CONTROL_TENSOR_PATTERNS))
    """Name substrings whose small float tensors are kept in fp32 (official INT8_KEEP_FLOAT_FP32_NAME_PATTERNS)."""

    def __post_init__(self) -> None:
        # Imported lazily: the registries' modules import this one.
        from golf.quant.compress import CODECS
        from golf.quant.int8 import SCHEMES

        _check_choice("QuantConfig", "scheme", self.scheme, list(SCHEMES))
        _check_choice("QuantConfig", "codec", self.codec, list(CODECS))
        _check_choice("QuantConfig", "keep_float_dtype", self.keep_float_dtype, FLOAT_STORE_DTYPES)
        _check_choice("QuantConfig", "scale_dtype", self.scale_dtype, FLOAT_STORE_DTYPES)
        CODECS[self.codec].check_level(self.level)
        if not 0.0 < float(self.clip_percentile) <= 100.0:
            raise QuantConfigError(f"QuantConfig.clip_percentile={self.clip_percentile!r} is not in (0, 100]")
        if int(self.keep_float_max_numel) < 0:
            raise QuantConfigError(f"QuantConfig.keep_float_max_numel={self.keep_float_max_numel!r} is negative")
        self.control_tensor_patterns = [str(p) for p in self.control_tensor_patterns if p]


@dataclass
class BudgetConfig:
    """The submission byte budget: artifact file bytes + counted code bytes must be <= target_bytes."""

    target_bytes: int = 16_000_000
    """Cap in bytes, decimal (README FAQ: 16,000,000, not 16 MiB)."""
    code_mode: str = "raw"
    """How code bytes are counted: "raw" = utf-8 bytes of the counted files (official); "lzma" = size of an
    lzma-9 + base85 self-extracting exec wrapper of those files (technique #52, records 04-03..04-06)."""
    code_paths: list[str] = field(default_factory=list)
    """Files/directories whose code is counted (directories: every *.py below them); the lead fills the default."""

    def __post_init__(self) -> None:
        _check_choice("BudgetConfig", "code_mode", self.code_mode, CODE_MODES)
        if int(self.target_bytes) <= 0:
            raise QuantConfigError(f"BudgetConfig.target_bytes={self.target_bytes!r} must be positive")
