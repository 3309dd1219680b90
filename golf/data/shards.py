"""Token shard files in the official Parameter Golf format.

Format (openai/parameter-golf ``train_gpt.py`` ``load_data_shard`` and
``data/download_hf_docs_and_tokenize.py`` ``write_datafile``):

* header: 256 little-endian int32 words (1024 bytes) = ``[20240520, 1, num_tokens, 0, ...]``
* body: ``num_tokens`` little-endian uint16 token ids
* the file size is exactly ``1024 + 2 * num_tokens`` bytes.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import numpy as np

from golf.errors import GolfError

SHARD_MAGIC = 20240520
SHARD_VERSION = 1
HEADER_INTS = 256
HEADER_BYTES = HEADER_INTS * 4
TOKEN_BYTES = 2
MAX_SHARD_TOKENS = 2**31 - 1  # header[2] is an int32
UINT16_LIMIT = 2**16

_HEADER_DTYPE = np.dtype("<i4")
_TOKEN_DTYPE = np.dtype("<u2")


def umask_mode(directory: bool = False) -> int:
    """Permission bits a plain open()/mkdir() would give under the current umask (mkstemp/mkdtemp use 0600/0700)."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


class ShardError(GolfError, ValueError):
    """A shard file is missing, malformed or holds out-of-range token ids (message names file and fault)."""


def _fail(path: Path, fault: str) -> ShardError:
    return ShardError(f"shard {path}: {fault}")


def read_header(path: str | os.PathLike) -> int:
    """Validate a shard's header and size; return its token count.

    Args:
        path: shard file.
    Returns:
        num_tokens (tokens, not bytes).
    Raises:
        ShardError: file missing, unreadable or not a regular file, truncated header, bad magic, bad version,
            negative count,
            or file size != 1024 + 2 * num_tokens bytes (truncated file or trailing bytes).
    """
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise _fail(path, "file not found") from None
    except OSError as exc:
        raise _fail(path, f"cannot read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(st.st_mode):
        raise _fail(path, "not a regular file (a directory or device named like a shard)")
    size = st.st_size
    if size < HEADER_BYTES:
        raise _fail(path, f"truncated header ({size} bytes, need {HEADER_BYTES})")
    try:
        header = np.fromfile(path, dtype=_HEADER_DTYPE, count=HEADER_INTS)
    except OSError as exc:
        raise _fail(path, f"cannot read ({exc.strerror or exc})") from None
    if header.size != HEADER_INTS:
        raise _fail(path, f"truncated header ({header.size} of {HEADER_INTS} int32 words)")
    if int(header[0]) != SHARD_MAGIC:
        raise _fail(path, f"bad magic {int(header[0])} (expected {SHARD_MAGIC})")
    if int(header[1]) != SHARD_VERSION:
        raise _fail(path, f"bad version {int(header[1])} (expected {SHARD_VERSION})")
    num_tokens = int(header[2])
    if num_tokens < 0:
        raise _fail(path, f"bad token count {num_tokens} in header")
    expected = HEADER_BYTES + TOKEN_BYTES * num_tokens
    if size < expected:
        raise _fail(path, f"truncated file: size mismatch, header says {num_tokens} tokens "
                          f"({expected} bytes) but file has {size} bytes")
    if size > expected:
        raise _fail(path, f"size mismatch: header says {num_tokens} tokens ({expected} bytes) "
                          f"but file has {size} bytes")
    return num_tokens


def read_shard(path: str | os.PathLike, vocab_size: int | None = None) -> np.ndarray:
    """Read and validate one shard.

    Args:
        path: shard file.
        vocab_size: if given, every token id must be < vocab_size.
    Returns:
        np.ndarray uint16 of shape [num_tokens] (token ids).
    Raises:
        ShardError: any fault listed in ``read_header``, a short read, or a token id >= vocab_size.
    """
    path = Path(path)
    num_tokens = read_header(path)
    try:
        tokens = np.fromfile(path, dtype=_TOKEN_DTYPE, count=num_tokens, offset=HEADER_BYTES)
    except OSError as exc:
        raise _fail(path, f"cannot read ({exc.strerror or exc})") from None
    if tokens.size != num_tokens:  # file shrank between stat and read
        raise _fail(path, f"truncated file: read {tokens.size} of {num_tokens} tokens")
    tokens = tokens.astype(np.uint16, copy=False)
    if vocab_size is not None and tokens.size:
        top = int(tokens.max())
        if top >= vocab_size:
            pos = int(np.argmax(tokens >= vocab_size))
            raise _fail(path, f"token id {top} >= vocab_size {vocab_size} (first bad id at position {pos})")
    return tokens


def write_shard(path: str | os.PathLike, tokens) -> None:
    """Write ``tokens`` as a shard, atomically (temp file in the same folder, then os.replace).

    Args:
        path: destination file; its folder must exist.
        tokens: 1-D array-like of integer token ids, each in [0, 65535].
    Raises:
        ShardError: ids outside [0, 65535], non-integer or non-1-D input, or too many tokens.
    """
    path = Path(path)
    arr = np.asarray(tokens)
    if arr.ndim != 1:
        raise _fail(path, f"refusing to write {arr.ndim}-D tokens (need 1-D)")
    if arr.size and arr.dtype != np.uint16:
        if not np.issubdtype(arr.dtype, np.integer):
            raise _fail(path, f"refusing to write non-integer tokens of dtype {arr.dtype}")
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= UINT16_LIMIT:
            bad = lo if lo < 0 else hi
            raise _fail(path, f"refusing to write token id {bad}: outside uint16 range [0, {UINT16_LIMIT - 1}]")
    if arr.size > MAX_SHARD_TOKENS:
        raise _fail(path, f"refusing to write {arr.size} tokens (int32 header limit {MAX_SHARD_TOKENS})")
    header = np.zeros(HEADER_INTS, dtype=_HEADER_DTYPE)
    header[0], header[1], header[2] = SHARD_MAGIC, SHARD_VERSION, arr.size
    body = arr.astype(_TOKEN_DTYPE, copy=False)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(header.tobytes())
            f.write(body.tobytes())
        os.chmod(tmp, umask_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
