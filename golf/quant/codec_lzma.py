"""lzma codecs (stdlib, .xz container with a CRC64 check; presets 0..9, default 9; PR #160, #33): `lzma` and
`lzma_extreme` (preset | PRESET_EXTREME). Registered in golf.quant.compress.CODECS on import, which get_codec
does on first use: a generated train_gpt.py ships this module only when its config uses one of them."""

from __future__ import annotations

import lzma

from golf.quant.compress import Codec, CodecError, inflation_error, register_codec


def _decompress(data: bytes, max_bytes: int | None = None) -> bytes:
    d = lzma.LZMADecompressor(format=lzma.FORMAT_XZ)
    out = d.decompress(data, -1 if max_bytes is None else max_bytes + 1)
    if max_bytes is not None and (len(out) > max_bytes or (not d.eof and not d.needs_input)):
        raise inflation_error("lzma", max_bytes)
    if not d.eof:
        raise CodecError(f"codec 'lzma': stream is truncated ({len(data)} bytes, no end marker)")
    if d.unused_data:
        raise CodecError(f"codec 'lzma': {len(d.unused_data)} trailing bytes after the end of the stream")
    return out


register_codec(Codec("lzma", 9, 0, 9, lambda data, level: lzma.compress(data, preset=level), _decompress,
                     _decompress))
register_codec(Codec("lzma_extreme", 9, 0, 9,
                     lambda data, level: lzma.compress(data, preset=level | lzma.PRESET_EXTREME),
                     _decompress, _decompress))
