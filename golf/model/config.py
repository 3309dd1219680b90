"""Model schema: a plain dataclass, so the model can be built and tested without Hydra."""

from __future__ import annotations

from dataclasses import dataclass

ATTENTION_BACKENDS = ("auto", "sdpa", "fa2", "fa3")


@dataclass
class ModelConfig:
    """Architecture of the GPT family. Defaults are the official baseline (`train_gpt.py`, 17,059,912 params)."""

    name: str = "gpt"
    """Model registry name (see `golf.model.MODELS`)."""
    vocab_size: int = 1024
    """Vocabulary size in tokens; must equal the tokenizer's."""
    num_layers: int = 9
    """Number of transformer blocks."""
    model_dim: int = 512
    """Residual stream width d."""
    num_heads: int = 8
    """Query heads; head_dim = model_dim / num_heads."""
    num_kv_heads: int = 4
    """Key/value heads (GQA when fewer than num_heads)."""
    mlp_mult: float = 2.0
    """MLP hidden width as a multiple of model_dim (hidden = int(mlp_mult * model_dim))."""
    tie_embeddings: bool = True
    """Share the token embedding with the output head."""
    tied_embed_init_std: float = 0.005
    """Normal init std of the tied embedding."""
    logit_softcap: float = 30.0
    """Logits become softcap * tanh(z / softcap); must be > 0."""
    rope_base: float = 10000.0
    """RoPE base frequency."""
    qk_gain_init: float = 1.5
    """Init of the per-head learnable query gain (attention temperature after QK RMS-norm)."""
    attention_backend: str = "auto"
    """Attention kernel: auto (FA3 -> FA2 -> PyTorch SDPA), sdpa, fa2 or fa3."""

    def __post_init__(self) -> None:
        for key in ("vocab_size", "num_layers", "model_dim", "num_heads", "num_kv_heads"):
            if getattr(self, key) < 1:
                raise ValueError(f"model.{key}={getattr(self, key)} must be >= 1")
        if self.model_dim % self.num_heads != 0:
            raise ValueError(
                f"model.model_dim={self.model_dim} must be divisible by model.num_heads={self.num_heads}"
            )
        if self.num_heads % self.num_kv_heads != 0:
            raise ValueError(
                f"model.num_heads={self.num_heads} must be divisible by model.num_kv_heads={self.num_kv_heads}"
            )
        if (self.model_dim // self.num_heads) % 2 != 0:
            raise ValueError(f"head_dim={self.model_dim // self.num_heads} must be even for RoPE")
        if self.logit_softcap <= 0:
            raise ValueError(f"model.logit_softcap={self.logit_softcap} must be > 0")
        if self.mlp_mult <= 0:
            raise ValueError(f"model.mlp_mult={self.mlp_mult} must be > 0")
        if self.attention_backend not in ATTENTION_BACKENDS:
            raise ValueError(
                f"model.attention_backend={self.attention_backend!r}; allowed: {', '.join(ATTENTION_BACKENDS)}"
            )

    @property
    def head_dim(self) -> int:
        return self.model_dim // self.num_heads

    @property
    def mlp_hidden(self) -> int:
        return int(self.mlp_mult * self.model_dim)
