"""Plain data configuration (no Hydra import; the Hydra schema in golf/config.py wraps it).

Default layout is the official one (openai/parameter-golf ``data/cached_challenge_fineweb.py``):
``{root}/datasets/fineweb10B_{variant}/fineweb_{train,val}_{i:06d}.bin`` and
``{root}/tokenizers/fineweb_{V}_bpe.model``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_SP_VARIANT = re.compile(r"^sp(\d+)(?:_([a-z0-9][a-z0-9_]*))?$")
TEXT_TRANSFORMS = ("identity", "caseops_v1")


def variant_vocab_size(variant: str) -> int | None:
    """Vocabulary size named by a SentencePiece variant (``"sp1024"`` -> 1024,
    ``"sp8192_lossless_caps_caseops_v1_reserved"`` -> 8192), else None (``"byte260"``)."""
    m = _SP_VARIANT.match(variant)
    return int(m.group(1)) if m else None


def _variant_suffix(variant: str) -> str:
    m = _SP_VARIANT.match(variant)
    return f"_{m.group(2)}" if m and m.group(2) else ""


@dataclass
class DataConfig:
    """Where the token shards and the tokenizer live, and the ids they use."""

    variant: str = "sp1024"
    """Dataset family: ``sp<V>`` (SentencePiece BPE with V pieces), ``sp<V>_<name>`` (a tokenizer variant
    such as the 2026-04-27 record's ``sp8192_lossless_caps_caseops_v1_reserved``) or ``byte260``."""
    root: str = "./data"
    """Data root holding ``datasets/`` and ``tokenizers/`` (the YAML fills it from $GOLF_DATA_DIR)."""
    dataset_dir: str = ""
    """Shard folder; empty means ``{root}/datasets/fineweb10B_{variant}``."""
    tokenizer_path: str = ""
    """SentencePiece ``.model``; empty means ``{root}/tokenizers/fineweb_{V}_bpe{_name}.model`` for variant
    ``sp<V>[_name]``."""
    train_pattern: str = "fineweb_train_*.bin"
    """Glob (inside the shard folder) of training shards, read in sorted order."""
    val_pattern: str = "fineweb_val_*.bin"
    """Glob (inside the shard folder) of validation shards (the first 50,000 documents officially)."""
    vocab_size: int = 1024
    """Model vocabulary size; must equal the tokenizer's vocab size."""
    bos_id: int = 1
    """Id of the BOS token that starts every document (no EOS is written)."""
    text_transform: str = "identity"
    """Text transform the shards were made with: ``identity`` (official) or ``caseops_v1`` (lossless capitals,
    2026-04-27 record / PR #1729). ``caseops_v1`` scores val_bpb on the original bytes from the byte sidecar."""
    val_bytes_pattern: str = "fineweb_val_bytes_*.bin"
    """Glob (inside the shard folder) of the per-token original-byte sidecar (used when text_transform is not
    identity; written by ``golf.data.prepare --text-transform caseops_v1``)."""

    def __post_init__(self):
        if self.text_transform not in TEXT_TRANSFORMS:
            raise ValueError(f"data.text_transform={self.text_transform!r}; allowed: {', '.join(TEXT_TRANSFORMS)}")

    @property
    def uses_byte_sidecar(self) -> bool:
        """True when val_bpb bytes come from the sidecar instead of the tokenizer's piece lengths."""
        return self.text_transform != "identity"

    def resolve_dataset_dir(self) -> Path:
        """Shard folder: ``dataset_dir`` or ``{root}/datasets/fineweb10B_{variant}``."""
        if self.dataset_dir:
            return Path(self.dataset_dir)
        return Path(self.root) / "datasets" / f"fineweb10B_{self.variant}"

    def resolve_tokenizer_path(self) -> Path:
        """Tokenizer file: ``tokenizer_path`` or ``{root}/tokenizers/fineweb_{V}_bpe.model``.

        Raises:
            ValueError: tokenizer_path is empty and the variant is not ``sp<V>``.
        """
        if self.tokenizer_path:
            return Path(self.tokenizer_path)
        vocab = variant_vocab_size(self.variant)
        if vocab is None:
            raise ValueError(f"data.variant={self.variant!r} has no default SentencePiece tokenizer; "
                             "set data.tokenizer_path")
        return Path(self.root) / "tokenizers" / f"fineweb_{vocab}_bpe{_variant_suffix(self.variant)}.model"

    def train_glob(self) -> str:
        """Glob string of the training shards."""
        return str(self.resolve_dataset_dir() / self.train_pattern)

    def val_glob(self) -> str:
        """Glob string of the validation shards."""
        return str(self.resolve_dataset_dir() / self.val_pattern)

    def val_bytes_glob(self) -> str:
        """Glob string of the validation byte-sidecar shards."""
        return str(self.resolve_dataset_dir() / self.val_bytes_pattern)
