"""zstd codec (zstandard; levels 1..22, default 22; records 03-19 onward, #8). Registered in
golf.quant.compress.CODECS on import, which get_codec does on first use: a generated train_gpt.py ships this
module only when its config compresses or reads with zstd."""

from __future__ import annotations

from golf.quant.compress import Codec, inflation_error, register_codec


def _compress(data: bytes, level: int | None) -> bytes:
    import zstandard

    return zstandard.ZstdCompressor(level=22 if level is None else level, write_content_size=True).compress(data)


def _decompress(data: bytes) -> bytes:
    import zstandard

    # One frame with its content size recorded (golf always writes it); anything else is rejected by zstandard.
    return zstandard.ZstdDecompressor().decompress(data)


def _decompress_bounded(data: bytes, max_bytes: int) -> bytes:
    import zstandard

    declared = zstandard.frame_content_size(data)  # from the frame header, before anything is allocated
    if declared > max_bytes:
        raise inflation_error("zstd", max_bytes)
    return zstandard.ZstdDecompressor().decompress(data, max_output_size=max_bytes)


register_codec(Codec("zstd", 22, 1, 22, _compress, _decompress, _decompress_bounded))
