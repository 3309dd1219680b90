"""Byte codecs for the artifact payload, looked up by name with ``get_codec`` (registered in ``CODECS``).

The official baseline compresses its serialized int8 state with ``zlib.compress(raw, level=9)``
(openai/parameter-golf train_gpt.py L1080). Later records use zstd-22 (#8, records 03-19), lzma preset 9
(#33, PR #160), brotli-11 with a stride-2 byte shuffle (#38, PR #1089). Registered codecs:

    zlib          levels -1..9, default 9 (stdlib)
    zstd          levels 1..22, default 22 (zstandard; frames carry the content size)
    lzma          presets 0..9, default 9 (stdlib, .xz container, CRC64 check)
    lzma_extreme  presets 0..9 | lzma.PRESET_EXTREME, default 9
    brotli        qualities 0..11, default 11 (default window lgwin=22)
    none          identity

zlib and none live here; zstd, lzma/lzma_extreme and brotli live in golf.quant.codec_zstd / codec_lzma /
codec_brotli (``CODEC_MODULES``), which register themselves when ``get_codec`` first asks for them, so a
generated train_gpt.py ships only the codecs its config uses (traced by golf.export_core.export_modules).

``byte_shuffle(data, k)`` is the byte transposition of #38 (bytes at offsets i mod k = 0, then 1, ...), which
puts the low and high bytes of 16-bit values (fp16 scales, passthrough) into separate runs.
``compress_best`` tries every codec (optionally with and without the shuffle) and keeps the smallest.
"""

from __future__ import annotations

import importlib
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from golf.errors import GolfError
from golf.quant.config import CODEC_LEVELS


class CodecError(GolfError, ValueError):
    """Unknown codec name, invalid level, or input that the named codec cannot decompress."""


@dataclass(frozen=True)
class Codec:
    """One named compressor: bytes -> bytes and back, with an inclusive level range."""

    name: str
    default_level: int | None
    min_level: int | None
    max_level: int | None
    compress_fn: Callable[[bytes, int | None], bytes]
    decompress_fn: Callable[[bytes], bytes]
    bounded_decompress_fn: Callable[[bytes, int], bytes] | None = None
    """``(data, max_bytes) -> bytes`` that never holds more than ~max_bytes of output and raises CodecError when
    the stream inflates beyond it (a decompression bomb); codecs without one are checked after the fact."""

    def check_level(self, level: int | None) -> int | None:
        """Return the effective level (default when None); raise CodecError when outside the codec's range."""
        if self.min_level is None or self.max_level is None:
            return None  # level-less codec: any level is ignored
        if level is None:
            return self.default_level
        if isinstance(level, bool) or not isinstance(level, int) or not self.min_level <= level <= self.max_level:
            raise CodecError(
                f"codec {self.name!r}: level {level!r} is not an int in [{self.min_level}, {self.max_level}]"
            )
        return level


CODECS: dict[str, Codec] = {}
"""The codecs registered so far (those of CODEC_MODULES once get_codec has asked for them)."""
CODEC_MODULES = {"zstd": "golf.quant.codec_zstd", "lzma": "golf.quant.codec_lzma",
                 "lzma_extreme": "golf.quant.codec_lzma", "brotli": "golf.quant.codec_brotli"}
"""Codec name -> the module that registers it on import."""


def register_codec(codec: Codec) -> Codec:
    """Add ``codec`` to ``CODECS`` under ``codec.name``; raise CodecError when the name is taken."""
    if codec.name in CODECS:
        raise CodecError(f"codec {codec.name!r} is already registered")
    CODECS[codec.name] = codec
    return codec


def get_codec(name: str) -> Codec:
    """Look up a codec by name, importing its module (CODEC_MODULES) the first time; raise CodecError listing
    the known names when unknown."""
    if name not in CODECS and name in CODEC_MODULES:
        importlib.import_module(CODEC_MODULES[name])
    try:
        return CODECS[name]
    except KeyError:
        raise CodecError(f"unknown codec {name!r}; allowed: {sorted(CODEC_LEVELS)}") from None


def compress(data: bytes, codec: str, level: int | None = None) -> bytes:
    """Compress ``data`` with the named codec at ``level`` (None = the codec's default, zlib: 9).

    Raises CodecError for an unknown codec or an out-of-range level.
    """
    c = get_codec(codec)
    return c.compress_fn(bytes(data), c.check_level(level))


def decompress(data: bytes, codec: str, max_bytes: int | None = None) -> bytes:
    """Invert ``compress``; raise CodecError naming the codec when ``data`` is corrupt or truncated, or when it
    inflates to more than ``max_bytes`` (checked while decompressing: a small bomb never allocates its output)."""
    c = get_codec(codec)
    try:
        if max_bytes is None:
            return c.decompress_fn(bytes(data))
        out = (c.bounded_decompress_fn(bytes(data), max_bytes) if c.bounded_decompress_fn is not None
               else c.decompress_fn(bytes(data)))
        if len(out) > max_bytes:
            raise inflation_error(codec, max_bytes)
        return out
    except CodecError:
        raise
    except Exception as exc:  # each library raises its own error type for corrupt input
        raise CodecError(f"codec {codec!r}: cannot decompress {len(data)} bytes: {exc}") from exc


def inflation_error(codec: str, max_bytes: int) -> CodecError:
    """The error of a stream that inflates beyond `max_bytes` (a decompression bomb), naming the codec."""
    return CodecError(f"codec {codec!r}: stream inflates beyond the declared {max_bytes:,} bytes")


def _zlib_decompress(data: bytes, max_bytes: int | None = None) -> bytes:
    d = zlib.decompressobj()
    if max_bytes is None:
        out = d.decompress(data) + d.flush()
    else:
        out = d.decompress(data, max_bytes + 1)
        if len(out) > max_bytes or d.unconsumed_tail:
            raise inflation_error("zlib", max_bytes)
    # zlib.decompress accepts trailing garbage silently in some paths; a short stream must not pass as complete.
    if not d.eof:
        raise CodecError(f"codec 'zlib': stream is truncated ({len(data)} bytes, no end marker)")
    if d.unused_data:
        raise CodecError(f"codec 'zlib': {len(d.unused_data)} trailing bytes after the end of the stream")
    return out


register_codec(
    Codec(
        name="zlib",
        default_level=9,
        min_level=-1,
        max_level=9,
        compress_fn=lambda data, level: zlib.compress(data, level=9 if level is None else level),
        decompress_fn=_zlib_decompress,
        bounded_decompress_fn=_zlib_decompress,
    )
)
register_codec(
    Codec(
        name="none",
        default_level=None,
        min_level=None,
        max_level=None,
        compress_fn=lambda data, level: data,
        decompress_fn=lambda data: data,
    )
)


def byte_shuffle(data: bytes, stride: int) -> bytes:
    """Byte transposition (#38): all bytes at offsets ``i % stride == 0``, then ``== 1``, ...; same length.

    ``stride`` <= 1 returns ``data`` unchanged. Inverse: ``byte_unshuffle(out, stride)``.
    """
    if stride <= 1 or len(data) < 2:
        return bytes(data)
    src = np.frombuffer(data, dtype=np.uint8)
    return b"".join(src[k::stride].tobytes() for k in range(stride))


def byte_unshuffle(data: bytes, stride: int) -> bytes:
    """Inverse of ``byte_shuffle``."""
    if stride <= 1 or len(data) < 2:
        return bytes(data)
    src = np.frombuffer(data, dtype=np.uint8)
    out = np.empty_like(src)
    start = 0
    for k in range(stride):
        n = len(range(k, len(src), stride))
        out[k::stride] = src[start:start + n]
        start += n
    return out.tobytes()


@dataclass
class CodecTrial:
    """Compressed size of one (codec, level, shuffle stride) candidate, in bytes."""

    codec: str
    level: int | None
    shuffle: int
    compressed_bytes: int


def best_candidates(shuffle: int) -> list[tuple[str, int | None, int]]:
    """(codec, level, shuffle) tried by codec=best: every real codec at its default (max) level, each with the
    configured shuffle stride and, when that is off, also with the stride-2 shuffle of #38."""
    strides = sorted({shuffle, 2}) if shuffle <= 1 else [shuffle]
    names = [n for n in CODEC_LEVELS if n != "none"]
    return [(n, get_codec(n).default_level, s) for n in names for s in strides]


def compress_best(data: bytes, candidates: list[tuple[str, int | None, int]]) -> tuple[bytes, CodecTrial, list[CodecTrial]]:
    """Compress ``data`` with each (codec, level, shuffle) and return (smallest blob, its trial, all trials).

    Ties keep the earlier candidate. Raises CodecError for an unknown codec or bad level.
    """
    best: tuple[bytes, CodecTrial] | None = None
    trials: list[CodecTrial] = []
    for name, level, stride in candidates:
        blob = compress(byte_shuffle(data, stride), name, level)
        trial = CodecTrial(name, get_codec(name).check_level(level), stride, len(blob))
        trials.append(trial)
        if best is None or len(blob) < len(best[0]):
            best = (blob, trial)
    if best is None:
        raise CodecError("compress_best: no candidate codecs")
    return best[0], best[1], trials
