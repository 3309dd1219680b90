"""Dense N-bit packing of symmetric intN codes (quant.packing=bitpack).

A code q in [-qmax, qmax], qmax = 2^(N-1) - 1, is stored as the unsigned value u = q + qmax in [0, 2^N - 2];
the N low bits of u are written least-significant bit first, value after value, into a little-endian bit
stream (numpy ``packbits(bitorder="little")``), padded with zero bits to a whole byte: ceil(numel * N / 8) bytes.

The default packing (int8) instead stores each code in one int8 byte; its upper bits are then a sign extension
that a byte-oriented compressor models almost for free, whereas bit-packed codes straddle byte boundaries and
hide their entropy from the compressor. Which is smaller after compression is measured, not assumed (see the
artifact module docstring).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from golf.errors import GolfError


class PackingError(GolfError, ValueError):
    """Codes outside the N-bit range, or a packed buffer of the wrong length."""


def qmax_for(bits: int) -> int:
    """Largest code magnitude of symmetric N-bit codes: 2^(N-1) - 1 (127 for int8, 31 for int6, 15 for int5)."""
    return (1 << (bits - 1)) - 1


def packed_nbytes(numel: int, bits: int) -> int:
    """Bytes of ``numel`` bit-packed N-bit codes: ceil(numel * bits / 8)."""
    return math.ceil(numel * bits / 8)


def pack_codes(q: Tensor, bits: int) -> Tensor:
    """int8 codes (any shape) -> uint8 tensor of ``packed_nbytes(q.numel(), bits)`` bytes (row-major order).

    Raises PackingError when a code is outside [-qmax, qmax].
    """
    if not 2 <= bits <= 8:
        raise PackingError(f"bit width {bits} is not in [2, 8]")
    qmax = qmax_for(bits)
    flat = q.detach().to("cpu", torch.int16).reshape(-1).numpy()
    if flat.size and (flat.min() < -qmax or flat.max() > qmax):
        raise PackingError(f"codes span [{flat.min()}, {flat.max()}], outside [-{qmax}, {qmax}] for {bits} bits")
    u = (flat + qmax).astype(np.uint8)
    bitplanes = np.unpackbits(u[:, None], axis=1, bitorder="little")[:, :bits]
    return torch.from_numpy(np.packbits(bitplanes.reshape(-1), bitorder="little").copy())


def unpack_codes(packed: Tensor, bits: int, shape: list[int] | tuple[int, ...]) -> Tensor:
    """Inverse of ``pack_codes``: uint8 buffer -> int8 codes of ``shape``. Raises PackingError on a length
    mismatch or a stored value above 2^N - 2."""
    numel = math.prod(shape)
    buf = packed.detach().to("cpu").reshape(-1).numpy().astype(np.uint8, copy=False)
    if buf.size != packed_nbytes(numel, bits):
        raise PackingError(f"{buf.size} packed bytes for {numel} codes of {bits} bits "
                           f"(expected {packed_nbytes(numel, bits)})")
    bitstream = np.unpackbits(buf, bitorder="little")[: numel * bits].reshape(numel, bits)
    u = np.packbits(bitstream, axis=1, bitorder="little").reshape(-1).astype(np.int16)
    qmax = qmax_for(bits)
    if u.size and u.max() > 2 * qmax:
        raise PackingError(f"packed value {int(u.max())} exceeds {2 * qmax} for {bits} bits")
    return torch.from_numpy((u - qmax).astype(np.int8)).reshape(tuple(shape))
