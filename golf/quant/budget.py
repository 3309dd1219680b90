"""The submission byte budget: artifact file bytes + code bytes <= 16,000,000 (decimal, README FAQ).

Official accounting (openai/parameter-golf train_gpt.py L734, L1086-1092): model bytes = size of the compressed
model file; code bytes = ``len(Path(__file__).read_text(encoding="utf-8").encode("utf-8"))`` of the script.
golf counts the whole artifact file (``ArtifactInfo.file_bytes``) and, for code, the bytes of the one
``train_gpt.py`` that golf.record generates for the run's config, as shipped (minified, in the records'
self-extracting lzma wrapper): the caller passes that count in.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from golf.errors import GolfError
from golf.quant.artifact import ArtifactInfo
from golf.quant.compress import byte_shuffle, compress
from golf.quant.config import GROUP_NAMES
from golf.quant.config import PERGROUP_CODEC as PERGROUP
from golf.quant.int8 import QuantizedState
from golf.quant.payload import build_payload, stored_tensors


class BudgetExceededError(GolfError, RuntimeError):
    """Artifact bytes + code bytes exceed the target; the message gives total, target and overshoot in bytes."""


@dataclass
class TensorBudgetRow:
    """One state-dict tensor in the report: storage kind, bits per stored value, bytes before compression."""

    name: str
    shape: list[int]
    kind: str
    """"int8" (quantized codes, "int<bits>" for other widths) or "passthrough"."""
    bits: int
    dtype: str
    raw_bytes: int
    """Codes (bit-packed size when packed) + scales for quantized tensors, stored bytes for passthrough tensors,
    before compression."""
    group: str = ""
    """Tensor group (embed, attn, mlp, other, small)."""
    clip: str | None = None
    """Clip used for quantized tensors (e.g. "p99.99984", "rowmax", "std12.85")."""
    method: str | None = None
    """"rtn" or "gptq" for quantized tensors."""


@dataclass
class GroupBudgetRow:
    """Bytes of one tensor group: stored (before compression) and compressed ALONE with the artifact's codec,
    level and byte shuffle (an estimate of its share: the payload is compressed as one stream)."""

    group: str
    tensors: int
    params: int
    raw_bytes: int
    compressed_bytes: int


@dataclass
class BudgetReport:
    """Byte accounting of one export. total = artifact_bytes + code_bytes; fits = total <= target_bytes."""

    rows: list[TensorBudgetRow]
    scheme: str
    payload_raw_bytes: int
    compressed_payload_bytes: int
    manifest_bytes: int
    artifact_bytes: int
    code_bytes: int
    code_mode: str
    code_files: list[tuple[str, int]]
    target_bytes: int
    total_bytes: int
    headroom_bytes: int
    fits: bool
    notes: list[str] = field(default_factory=list)
    groups: list[GroupBudgetRow] = field(default_factory=list)
    codec: str = ""
    level: int | None = None
    byte_shuffle: int = 0
    codec_trials: list[dict] = field(default_factory=list)
    """codec=best: compressed bytes of every (codec, level, shuffle) tried."""
    streams: list[dict] = field(default_factory=list)
    """codec=pergroup: bytes and codec (lrzip / brotli) of every role stream, the remainder and the permutations."""

    def to_dict(self) -> dict:
        """JSON-ready dict (paths as strings)."""
        return asdict(self)


def build_budget_report(
    qstate: QuantizedState,
    artifact_info: ArtifactInfo,
    code_bytes: int,
    code_files: list[tuple[str, int]],
    target_bytes: int = 16_000_000,
    code_mode: str = "raw",
    group_compression: bool = True,
) -> BudgetReport:
    """Assemble per-tensor rows, per-group rows and totals; artifact bytes are the whole artifact file
    (``file_bytes``). ``group_compression`` compresses each group's bytes alone for the group table."""
    rows: list[TensorBudgetRow] = []
    for entry, data in stored_tensors(qstate):
        name = entry["name"]
        if entry["role"] == "scale":
            rows[-1].raw_bytes += len(data)
            continue
        meta = qstate.qmeta.get(name, {}) if entry["role"] == "quantized" else {}
        kind = f"int{entry['bits']}" if entry["role"] == "quantized" else "passthrough"
        rows.append(TensorBudgetRow(name, entry["shape"], kind, int(entry["bits"]), entry["dtype"], len(data),
                                    entry["group"] or "", meta.get("clip"), meta.get("method")))
    groups: list[GroupBudgetRow] = []
    for g in [*GROUP_NAMES, *sorted({r.group for r in rows} - set(GROUP_NAMES))]:
        members = [r for r in rows if r.group == g]
        if not members:
            continue
        packed = 0
        if group_compression:
            raw, _ = build_payload(qstate, [r.name for r in members])
            codec, level = ("brotli", 11) if artifact_info.codec == PERGROUP else (artifact_info.codec,
                                                                                    artifact_info.level)
            packed = len(compress(byte_shuffle(raw, artifact_info.byte_shuffle), codec, level))
        groups.append(GroupBudgetRow(g, len(members), sum(math.prod(r.shape) for r in members),
                                     sum(r.raw_bytes for r in members), packed))
    total = int(artifact_info.file_bytes) + int(code_bytes)
    return BudgetReport(
        rows=rows,
        scheme=qstate.scheme,
        payload_raw_bytes=int(artifact_info.payload_bytes),
        compressed_payload_bytes=int(artifact_info.compressed_bytes),
        manifest_bytes=int(artifact_info.manifest_bytes),
        artifact_bytes=int(artifact_info.file_bytes),
        code_bytes=int(code_bytes),
        code_mode=code_mode,
        code_files=[(str(p), int(n)) for p, n in code_files],
        target_bytes=int(target_bytes),
        total_bytes=total,
        headroom_bytes=int(target_bytes) - total,
        fits=total <= int(target_bytes),
        groups=groups,
        codec=artifact_info.codec,
        level=artifact_info.level,
        byte_shuffle=artifact_info.byte_shuffle,
        codec_trials=list(artifact_info.codec_trials),
        streams=list(artifact_info.streams),
    )


def _code_words(report: BudgetReport) -> str:
    if report.code_mode == "shipped":
        return "code = bytes of the train_gpt.py generated for this run's config, as shipped (golf.record)"
    return f"code = raw utf-8 bytes of {len(report.code_files)} file(s)"


def format_report(report: BudgetReport, show_tensors: bool = True, show_files: bool = True) -> str:
    """Readable multi-line table: per-tensor rows (show_tensors), per-group rows, totals and what counts as code
    and model bytes (each code file with show_files)."""
    lines: list[str] = []
    if show_tensors:
        width = max([len(r.name) for r in report.rows] + [6])
        lines.append(f"{'tensor':<{width}}  {'group':<6} {'shape':<14} {'kind':<11} {'bits':>4} {'raw bytes':>12}"
                     f"  clip / method")
        for r in report.rows:
            shape = "x".join(map(str, r.shape)) or "scalar"
            how = f"  {r.clip} / {r.method}" if r.clip is not None else ""
            lines.append(f"{r.name:<{width}}  {r.group:<6} {shape:<14} {r.kind:<11} {r.bits:>4} {r.raw_bytes:>12,}{how}")
        lines.append("")
    if report.groups:
        lines.append(f"{'group':<6} {'tensors':>7} {'params':>11} {'raw bytes':>12} {'compressed alone':>17}")
        for g in report.groups:
            lines.append(f"{g.group:<6} {g.tensors:>7} {g.params:>11,} {g.raw_bytes:>12,} {g.compressed_bytes:>17,}")
        lines.append("")
    for t in report.codec_trials:
        mark = " <- kept" if (t["codec"], t["level"], t["shuffle"]) == (report.codec, report.level,
                                                                         report.byte_shuffle) else ""
        lines.append(f"codec {t['codec']:<12} level {t['level']!s:>4} shuffle {t['shuffle']:>2}: "
                     f"{t['compressed_bytes']:>12,} payload bytes{mark}")
    for st in report.streams:
        lines.append(f"pergroup {st['name']:<18} {st['codec']:<7} {st['raw_bytes']:>12,} raw -> "
                     f"{st['compressed_bytes']:>12,} bytes")
    codec = f"{report.codec}-{report.level}" + (f" after byte shuffle {report.byte_shuffle}"
                                                  if report.byte_shuffle > 1 else "")
    lines += [
        f"scheme {report.scheme}: payload {report.payload_raw_bytes:,} raw bytes -> "
        f"{report.compressed_payload_bytes:,} compressed with {codec} (+ {report.manifest_bytes:,} manifest bytes)",
        f"artifact file  {report.artifact_bytes:>12,} bytes  (model = whole file: header + manifest + payload)",
        f"code           {report.code_bytes:>12,} bytes  ({_code_words(report)})",
    ]
    for path, n in report.code_files if show_files else []:
        lines.append(f"    {n:>10,}  {path}")
    verdict = "fits" if report.fits else "OVER BUDGET"
    lines += [
        f"total          {report.total_bytes:>12,} bytes",
        f"target         {report.target_bytes:>12,} bytes",
        f"headroom       {report.headroom_bytes:>12,} bytes  -> {verdict}",
    ]
    lines += report.notes
    return "\n".join(lines)


def check_budget(report: BudgetReport) -> None:
    """Raise BudgetExceededError when ``report.total_bytes > report.target_bytes``."""
    check_total(report.artifact_bytes, report.code_bytes, report.target_bytes)


def check_total(artifact_bytes: int, code_bytes: int, target_bytes: int) -> None:
    """Raise BudgetExceededError (total, parts, target and overshoot, in bytes) when artifact + code > target."""
    total = artifact_bytes + code_bytes
    if total > target_bytes:
        raise BudgetExceededError(
            f"submission is {total:,} bytes (artifact {artifact_bytes:,} + code {code_bytes:,}), over the "
            f"{target_bytes:,}-byte target by {total - target_bytes:,} bytes"
        )
