"""Quantization, compression, the artifact file format and the 16,000,000-byte budget (no Hydra here).

Typical export::

    qstate = quantize_state_dict(model.state_dict(), QuantConfig())   # scheme="mixed": per-group intN / GPTQ
    info = write_artifact("final_model.golf", qstate, codec="zlib", level=9, config=cfg_dict)  # or codec="best"
    code_bytes, files = count_code_bytes(["golf", "train.py"], mode="raw")
    report = build_budget_report(qstate, info, code_bytes, files)
    print(format_report(report)); check_budget(report)
    model.load_state_dict(load_state_dict_from_artifact(info.path), strict=True)

Modules: config (QuantConfig / GroupQuant / GPTQConfig / QATConfig / BudgetConfig), int8 (official scheme,
registry), intn (per-row intN, scheme "mixed"), clip (clip modes), groups (tensor groups), gptq (Hessians +
solver), qat (fake quantization in training), packing (N-bit packing), compress (codecs, byte shuffle, best),
payload + artifact (file format), budget (report), fitter (bits per group under a byte target).
"""

from golf.quant.artifact import (
    ArtifactError,
    ArtifactInfo,
    load_state_dict_from_artifact,
    read_artifact,
    write_artifact,
)
from golf.quant.budget import (
    BudgetExceededError,
    BudgetReport,
    CodeCountError,
    build_budget_report,
    check_budget,
    count_code_bytes,
    format_report,
)
from golf.quant.compress import (
    CODECS,
    CodecError,
    byte_shuffle,
    byte_unshuffle,
    compress,
    compress_best,
    decompress,
    register_codec,
)
from golf.quant.config import (
    BudgetConfig,
    GPTQConfig,
    GroupQuant,
    QATConfig,
    QuantConfig,
    QuantConfigError,
    QuantGroups,
)
from golf.quant.int8 import (
    SCHEMES,
    QuantizationError,
    QuantizedState,
    dequantize_state,
    quantize_state_dict,
    quantize_state_dict_int8,
    register_scheme,
)
from golf.quant.intn import fake_quantize_rows, quantize_state_dict_mixed

__all__ = [
    "CODECS", "SCHEMES", "ArtifactError", "ArtifactInfo", "BudgetConfig", "BudgetExceededError", "BudgetReport",
    "CodeCountError", "CodecError", "GPTQConfig", "GroupQuant", "QATConfig", "QuantConfig", "QuantConfigError",
    "QuantGroups", "QuantizationError", "QuantizedState", "build_budget_report", "byte_shuffle", "byte_unshuffle",
    "check_budget", "compress", "compress_best", "count_code_bytes", "decompress", "dequantize_state",
    "fake_quantize_rows", "format_report", "load_state_dict_from_artifact", "quantize_state_dict",
    "quantize_state_dict_int8", "quantize_state_dict_mixed", "read_artifact", "register_codec", "register_scheme",
    "write_artifact",
]
