"""brotli codec (qualities 0..11, default 11, window lgwin=22; PR #1089, #38). Registered in
golf.quant.compress.CODECS on import, which get_codec does on first use: a generated train_gpt.py ships this
module only when its config compresses or reads with brotli."""

from __future__ import annotations

from golf.quant.compress import Codec, CodecError, inflation_error, register_codec


def _compress(data: bytes, level: int | None) -> bytes:
    import brotli

    return brotli.compress(data, quality=11 if level is None else level)


def _decompress(data: bytes) -> bytes:
    import brotli

    return brotli.decompress(data)


def _decompress_bounded(data: bytes, max_bytes: int) -> bytes:
    import brotli

    d = brotli.Decompressor()
    out = d.process(data, output_buffer_limit=max_bytes + 1)
    if len(out) > max_bytes or not d.can_accept_more_data():
        raise inflation_error("brotli", max_bytes)
    if not d.is_finished():
        raise CodecError(f"codec 'brotli': stream is truncated ({len(data)} bytes, no end marker)")
    return out


register_codec(Codec("brotli", 11, 0, 11, _compress, _decompress, _decompress_bounded))
