"""The shipped, counted form of a generated program: the records' 2-line self-extracting wrapper.

The minified program is compressed, base85-encoded (the file stays valid UTF-8, which is how the official
script counts itself: `len(code.encode("utf-8"))`) and `exec`'d at start-up. Two codecs, as the records use:

- lzma: raw LZMA2 (records 2026-04-09 / 2026-04-27; technique #52). The encoder uses preset 9 extreme with
  pb=0 (no position bits: source text has no 2/4-byte alignment), the binary-tree match finder over 2 bytes and
  nice_len 64, ~70 bytes smaller than plain preset 9e on every preset; the decoder needs none of it (an LZMA2
  stream carries its lc/lp/pb), so the wrapper is the records' own.
- brotli: quality 11, window 2^24 (records 2026-04-10 onward count their code as pyminify -> brotli-11 ->
  base85, `_compressed_code_size` in the 2026-04-27 record), ~4% smaller than lzma on golf's programs.

`budget.code_wrapper` chooses (`wrapper_codec`): auto (the default) takes brotli only when the run's
quantization codec already needs the brotli package (`codec_packages`), so a config whose artifact does not need
brotli never needs it to start either; lzma or brotli force one (brotli then joins requirements.txt).
"""

from __future__ import annotations

import base64
import lzma

LZMA_PREFIX = 'import lzma as L,base64 as B\nexec(L.decompress(B.b85decode("'
LZMA_SUFFIX = '"),format=L.FORMAT_RAW,filters=[{"id":L.FILTER_LZMA2}]))\n'
BROTLI_PREFIX = 'import brotli as L,base64 as B\nexec(L.decompress(B.b85decode("'
BROTLI_SUFFIX = '")))\n'
LZMA_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME, "lc": 3, "lp": 0, "pb": 0,
                 "mf": lzma.MF_BT2, "nice_len": 64}]
BROTLI_WINDOW_BITS = 24

CODEC_PACKAGES = {"zstd": ("zstandard",), "brotli": ("brotli",), "pergroup": ("brotli",),
                  "best": ("zstandard", "brotli")}
"""quant.codec -> the Python packages its compressor imports (zlib and lzma are standard library; pergroup's
role groups are brotli-11 streams, with the system `lrzip` binary when installed; best tries every codec)."""


def codec_packages(codec: str) -> tuple[str, ...]:
    """The third-party Python packages quant.codec `codec` needs (empty for zlib and lzma)."""
    return CODEC_PACKAGES.get(codec, ())


def wrapper_codec(codec: str, choice: str = "auto") -> str:
    """The wrapper budget.code_wrapper `choice` gives with quant.codec `codec`: "lzma" or "brotli"."""
    if choice != "auto":
        return choice
    return "brotli" if "brotli" in codec_packages(codec) else "lzma"


def run_packages(codec: str, choice: str = "auto") -> tuple[str, ...]:
    """The third-party packages the generated file imports for its codec and its wrapper."""
    extra = ("brotli",) if wrapper_codec(codec, choice) == "brotli" else ()
    return tuple(dict.fromkeys((*codec_packages(codec), *extra)))


def wrap(source: str, codec: str, choice: str = "auto") -> str:
    """`source` in the self-extracting form `wrapper_codec(codec, choice)` names."""
    data = source.encode("utf-8")
    if wrapper_codec(codec, choice) == "brotli":
        import brotli  # the config's codec or budget.code_wrapper needs it: in its requirements.txt

        blob = brotli.compress(data, quality=11, lgwin=BROTLI_WINDOW_BITS)
        return BROTLI_PREFIX + base64.b85encode(blob).decode("ascii") + BROTLI_SUFFIX
    blob = lzma.compress(data, format=lzma.FORMAT_RAW, filters=LZMA_FILTERS)
    return LZMA_PREFIX + base64.b85encode(blob).decode("ascii") + LZMA_SUFFIX


def unwrap(shipped: str) -> str:
    """The program inside a wrapped file (either form). Raises ValueError for any other text."""
    for prefix, suffix in ((LZMA_PREFIX, LZMA_SUFFIX), (BROTLI_PREFIX, BROTLI_SUFFIX)):
        if shipped.startswith(prefix) and shipped.endswith(suffix):
            blob = base64.b85decode(shipped[len(prefix):-len(suffix)])
            if prefix is LZMA_PREFIX:
                return lzma.decompress(blob, format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2}]).decode()
            import brotli

            return brotli.decompress(blob).decode("utf-8")
    raise ValueError("not a self-extracting train_gpt.py (neither the lzma nor the brotli wrapper)")
