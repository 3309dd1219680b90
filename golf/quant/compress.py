"""Byte codecs for the artifact payload, looked up by name in ``CODECS``.

The official baseline compresses its serialized int8 state with ``zlib.compress(raw, level=9)``
(openai/parameter-golf train_gpt.py L1080). Later records use zstd-22 (#8, records 03-19), lzma preset 9
(#33, PR #160), brotli-11 with a stride-2 byte shuffle (#38, PR #1089). Registered codecs:

    zlib          levels -1..9, default 9 (stdlib)
    zstd          levels 1..22, default 22 (zstandard; frames carry the content size)
    lzma          presets 0..9, default 9 (stdlib, .xz container, CRC64 check)
    lzma_extreme  presets 0..9 | lzma.PRESET_EXTREME, default 9
    brotli        qualities 0..11, default 11 (default window lgwin=22)
    none          identity

``byte_shuffle(data, k)`` is the byte transposition of #38 (bytes at offsets i mod k = 0, then 1, ...), which
puts the low and high bytes of 16-bit values (fp16 scales, passthrough) into separate runs.
``compress_best`` tries every codec (optionally with and without the shuffle) and keeps the smallest.
"""

from __future__ import annotations

import lzma
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from golf.errors import GolfError


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


def register_codec(codec: Codec) -> Codec:
    """Add ``codec`` to ``CODECS`` under ``codec.name``; raise CodecError when the name is taken."""
    if codec.name in CODECS:
        raise CodecError(f"codec {codec.name!r} is already registered")
    CODECS[codec.name] = codec
    return codec


def get_codec(name: str) -> Codec:
    """Look up a codec by name; raise CodecError listing the registered names when unknown."""
    try:
        return CODECS[name]
    except KeyError:
        raise CodecError(f"unknown codec {name!r}; allowed: {sorted(CODECS)}") from None


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
            raise _too_big(codec, max_bytes)
        return out
    except CodecError:
        raise
    except Exception as exc:  # each library raises its own error type for corrupt input
        raise CodecError(f"codec {codec!r}: cannot decompress {len(data)} bytes: {exc}") from exc


def _too_big(codec: str, max_bytes: int) -> CodecError:
    return CodecError(f"codec {codec!r}: stream inflates beyond the declared {max_bytes:,} bytes")


def _zlib_decompress(data: bytes, max_bytes: int | None = None) -> bytes:
    d = zlib.decompressobj()
    if max_bytes is None:
        out = d.decompress(data) + d.flush()
    else:
        out = d.decompress(data, max_bytes + 1)
        if len(out) > max_bytes or d.unconsumed_tail:
            raise _too_big("zlib", max_bytes)
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
def _zstd_compress(data: bytes, level: int | None) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor(level=22 if level is None else level, write_content_size=True).compress(data)


def _zstd_decompress(data: bytes) -> bytes:
    import zstandard

    # One frame with its content size recorded (golf always writes it); anything else is rejected by zstandard.
    return zstandard.ZstdDecompressor().decompress(data)


def _zstd_decompress_bounded(data: bytes, max_bytes: int) -> bytes:
    import zstandard

    declared = zstandard.frame_content_size(data)  # from the frame header, before anything is allocated
    if declared > max_bytes:
        raise _too_big("zstd", max_bytes)
    return zstandard.ZstdDecompressor().decompress(data, max_output_size=max_bytes)


def _lzma_decompress(data: bytes, max_bytes: int | None = None) -> bytes:
    d = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    out = d.decompress(data, -1 if max_bytes is None else max_bytes + 1)
    if max_bytes is not None and (len(out) > max_bytes or (not d.eof and not d.needs_input)):
        raise _too_big("lzma", max_bytes)
    if not d.eof:
        raise CodecError(f"codec 'lzma': stream is truncated ({len(data)} bytes, no end marker)")
    if d.unused_data:
        raise CodecError(f"codec 'lzma': {len(d.unused_data)} trailing bytes after the end of the stream")
    return out


def _brotli_compress(data: bytes, level: int | None) -> bytes:
    import brotli

    return brotli.compress(data, quality=11 if level is None else level)


def _brotli_decompress(data: bytes) -> bytes:
    import brotli

    return brotli.decompress(data)


def _brotli_decompress_bounded(data: bytes, max_bytes: int) -> bytes:
    import brotli

    d = brotli.Decompressor()
    out = d.process(data, output_buffer_limit=max_bytes + 1)
    if len(out) > max_bytes or not d.can_accept_more_data():
        raise _too_big("brotli", max_bytes)
    if not d.is_finished():
        raise CodecError(f"codec 'brotli': stream is truncated ({len(data)} bytes, no end marker)")
    return out


register_codec(Codec("zstd", 22, 1, 22, _zstd_compress, _zstd_decompress, _zstd_decompress_bounded))
register_codec(Codec("lzma", 9, 0, 9, lambda data, level: lzma.compress(data, preset=level), _lzma_decompress,
                     _lzma_decompress))
register_codec(Codec("lzma_extreme", 9, 0, 9, lambda data, level: lzma.compress(data, preset=level | lzma.PRESET_EXTREME),
                     _lzma_decompress, _lzma_decompress))
register_codec(Codec("brotli", 11, 0, 11, _brotli_compress, _brotli_decompress, _brotli_decompress_bounded))
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
    names = [n for n in CODECS if n != "none"]
    return [(n, CODECS[n].default_level, s) for n in names for s in strides]


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
