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

`budget.code_text` chooses how the compressed bytes are spelled in the file:

- base85 (the default, the records' form): 5 ASCII characters per 4 bytes, 6.41 bits per file byte.
- base128 (golf's, ~4.9% fewer counted bytes on every preset): the bytes as a bit string cut into 7-bit digits,
  one character each: the digit's own ASCII character, except the 5 that cannot stand raw in a one-line "..."
  literal (NUL, LF, CR, '"', backslash), which are spelled U+0100 + digit (2 UTF-8 bytes); the decoder keeps
  `ord(c) & 127`. 1.19 file bytes per byte against base85's 1.25. The file is still valid UTF-8 with no CR, so
  the official `len(code.encode("utf-8"))` of its `read_text` is its size on disk, and still 2 lines with no
  NUL (git keeps it text), but it holds ASCII control characters, which some editors show or strip.
"""

from __future__ import annotations

import base64
import lzma
import re

from golf.quant.config import CODE_TEXTS

IMPORTS = {"lzma": "import lzma as L", "brotli": "import brotli as L"}
"""The wrapper's first line per compressor (base85 adds `,base64 as B`)."""
CLOSINGS = {"lzma": ',format=L.FORMAT_RAW,filters=[{"id":L.FILTER_LZMA2}]))\n', "brotli": "))\n"}
"""What follows the decompressor's argument: an LZMA2 stream is raw (no .xz header), so its filter is named."""
LZMA_PREFIX = 'import lzma as L,base64 as B\nexec(L.decompress(B.b85decode("'
BROTLI_PREFIX = 'import brotli as L,base64 as B\nexec(L.decompress(B.b85decode("'
LZMA_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9 | lzma.PRESET_EXTREME, "lc": 3, "lp": 0, "pb": 0,
                 "mf": lzma.MF_BT2, "nice_len": 64}]
BROTLI_WINDOW_BITS = 24
B128_ESCAPED = frozenset(b'\0\n\r"\\')
"""7-bit digits spelled U+0100 + digit: NUL and CR cannot stand in Python source, LF and '"' would end the
one-line literal, a backslash would start an escape."""
B128_DECODE = 'int("".join(f"{ord(c)&127:07b}"for c in"'
B128_DECODE_END = '"),2).to_bytes({n},"big")'

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


def b128encode(blob: bytes) -> str:
    """`blob` as base128 text (module docstring): ceil(8·len/7) characters, zero bits padded at the front so
    that `int(bits, 2).to_bytes(len(blob), "big")` gives it back."""
    bits = "0" * (-8 * len(blob) % 7) + "".join(f"{b:08b}" for b in blob)
    digits = (int(bits[i:i + 7], 2) for i in range(0, len(bits), 7))
    return "".join(chr(0x100 + d) if d in B128_ESCAPED else chr(d) for d in digits)


def b128decode(text: str, size: int) -> bytes:
    """The `size` bytes `text` (from `b128encode`) spells: what the shipped decoder computes."""
    return int("".join(f"{ord(c) & 127:07b}" for c in text), 2).to_bytes(size, "big") if text else b""


def _spell(blob: bytes, text: str) -> str:
    """The decompressor's argument: the literal of `blob` and its decoder."""
    if text == "base128":
        return B128_DECODE + b128encode(blob) + B128_DECODE_END.format(n=len(blob))
    return 'B.b85decode("' + base64.b85encode(blob).decode("ascii") + '")'


def _opening(compressor: str, text: str) -> str:
    return IMPORTS[compressor] + (",base64 as B" if text == "base85" else "") + "\nexec(L.decompress("


def wrap(source: str, codec: str, choice: str = "auto", text: str = "base85") -> str:
    """`source` in the self-extracting form `wrapper_codec(codec, choice)` names, its compressed bytes spelled
    `text` (base85 | base128). Raises ValueError for another `text`."""
    if text not in CODE_TEXTS:
        raise ValueError(f"budget.code_text={text!r} must be one of {list(CODE_TEXTS)}")
    data = source.encode("utf-8")
    compressor = wrapper_codec(codec, choice)
    if compressor == "brotli":
        import brotli  # the config's codec or budget.code_wrapper needs it: in its requirements.txt

        blob = brotli.compress(data, quality=11, lgwin=BROTLI_WINDOW_BITS)
    else:
        blob = lzma.compress(data, format=lzma.FORMAT_RAW, filters=LZMA_FILTERS)
    return _opening(compressor, text) + _spell(blob, text) + CLOSINGS[compressor]


def wrap_config(source: str, config: dict) -> str:
    """`source` in the form the plain run `config` asks for (quant.codec, budget.code_wrapper, budget.code_text):
    what golf.record ships and golf.bench.code_bytes counts."""
    budget = config["budget"]
    return wrap(source, config["quant"]["codec"], budget["code_wrapper"], budget["code_text"])


B85_LITERAL = re.compile(re.escape('B.b85decode("') + r'([^"]*)' + re.escape('")') + r"\Z")
_END_HEAD, _END_TAIL = B128_DECODE_END.split("{n}")
B128_LITERAL = re.compile(re.escape(B128_DECODE) + r'([^"]*)' + re.escape(_END_HEAD) + r"(\d+)" + re.escape(_END_TAIL)
                          + r"\Z")
"""The decompressor's argument in each text form (what `_spell` writes), literal and byte count as groups."""


def unwrap(shipped: str) -> str:
    """The program inside a wrapped file (any compressor, any text form). Raises ValueError for any other text."""
    for compressor, closing in CLOSINGS.items():
        for text in CODE_TEXTS:
            opening = _opening(compressor, text)
            if not (shipped.startswith(opening) and shipped.endswith(closing)):
                continue
            argument = shipped[len(opening):-len(closing)]
            if text == "base85" and (literal := B85_LITERAL.match(argument)):
                blob = base64.b85decode(literal.group(1))
            elif text == "base128" and (literal := B128_LITERAL.match(argument)):
                blob = b128decode(literal.group(1), int(literal.group(2)))
            else:
                continue
            if compressor == "lzma":
                return lzma.decompress(blob, format=lzma.FORMAT_RAW, filters=[{"id": lzma.FILTER_LZMA2}]).decode()
            import brotli

            return brotli.decompress(blob).decode("utf-8")
    raise ValueError("not a self-extracting train_gpt.py (neither the lzma nor the brotli wrapper)")
