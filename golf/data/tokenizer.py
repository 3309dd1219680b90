"""Tokenizer helpers: loading a SentencePiece model with one-line errors, pinning it by sha256, and the
official byte look-up tables (openai/parameter-golf ``train_gpt.py`` ``build_sentencepiece_luts`` L180-204).

Lives in the data layer: shard preparation and val_bpb accounting (golf.eval.bpb) both build on it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import sentencepiece as spm

from golf.errors import GolfError

SPACE_MARK = "\u2581"  # '▁', SentencePiece's whitespace symbol


class TokenizerError(GolfError, ValueError):
    """A tokenizer file is missing, not a SentencePiece ``.model``, or cannot be loaded."""


class VocabMismatchError(TokenizerError):
    """The tokenizer's vocab size differs from the configured one (message names both numbers)."""


def load_tokenizer(path: str | Path, expected_vocab: int | None = None) -> spm.SentencePieceProcessor:
    """Load a SentencePiece model.

    Args:
        path: ``.model`` file (the official script requires this suffix).
        expected_vocab: if given, must equal ``sp.vocab_size()`` (official VOCAB_SIZE check).
    Raises:
        TokenizerError: missing file, wrong suffix, or unreadable model.
        VocabMismatchError: vocab size differs from expected_vocab.
    """
    path = Path(path)
    if path.suffix != ".model":
        raise TokenizerError(f"tokenizer {path}: expected a SentencePiece .model file")
    if not path.is_file():
        raise TokenizerError(f"tokenizer {path}: file not found")
    try:
        sp = spm.SentencePieceProcessor(model_file=str(path))
    except (OSError, RuntimeError) as exc:
        raise TokenizerError(f"tokenizer {path}: cannot load SentencePiece model ({exc})") from None
    vocab = int(sp.vocab_size())
    if expected_vocab is not None and vocab != expected_vocab:
        raise VocabMismatchError(f"tokenizer {path} has vocab_size={vocab} but vocab_size={expected_vocab} "
                                 "was configured")
    return sp


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file (used to pin tokenizers in manifests)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def byte_lut_arrays(sp: spm.SentencePieceProcessor, vocab_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NumPy form of the official LUTs: (base_bytes int16, has_leading_space bool, is_boundary bool),
    each of shape [max(sp.vocab_size(), vocab_size)]. Ids beyond the SentencePiece vocab are boundary
    tokens with 0 bytes."""
    sp_vocab = int(sp.vocab_size())
    size = max(sp_vocab, vocab_size)
    base_bytes = np.zeros(size, dtype=np.int16)
    has_leading_space = np.zeros(size, dtype=np.bool_)
    is_boundary = np.ones(size, dtype=np.bool_)
    for tid in range(sp_vocab):
        if sp.is_control(tid) or sp.is_unknown(tid) or sp.is_unused(tid):
            continue
        is_boundary[tid] = False
        if sp.is_byte(tid):
            base_bytes[tid] = 1
            continue
        piece = sp.id_to_piece(tid)
        if piece.startswith(SPACE_MARK):
            has_leading_space[tid] = True
            piece = piece[1:]  # only the one leading marker is the space; the rest are literal
        base_bytes[tid] = len(piece.encode("utf-8"))
    return base_bytes, has_leading_space, is_boundary
