"""Byte codecs for the artifact payload, looked up by name in ``CODECS``.

The official baseline compresses its serialized int8 state with ``zlib.compress(raw, level=9)``
(openai/parameter-golf train_gpt.py L1080). Later records use zstd-22, lzma-9 (PR #160), brotli-11 and
byte shuffling; each slots in as one more ``Codec`` passed to ``register_codec`` without touching callers.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass

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


def decompress(data: bytes, codec: str) -> bytes:
    """Invert ``compress``; raise CodecError naming the codec when ``data`` is corrupt or truncated."""
    c = get_codec(codec)
    try:
        return c.decompress_fn(bytes(data))
    except CodecError:
        raise
    except Exception as exc:  # each library raises its own error type for corrupt input
        raise CodecError(f"codec {codec!r}: cannot decompress {len(data)} bytes: {exc}") from exc


def _zlib_decompress(data: bytes) -> bytes:
    d = zlib.decompressobj()
    out = d.decompress(data) + d.flush()
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
