"""The official baseline GPT (`train_gpt.py` L500-724): U-Net skips, x0 residual mixing, relu^2 MLP, tied head.

Per block: x <- m0*x + m1*x0;  x <- x + attn_scale * Attn(norm(x));  x <- x + mlp_scale * MLP(norm(x)).
The first num_layers//2 blocks push their outputs on a stack; each later block first adds
skip_weights[i] * stack.pop(). Logits are softcapped: c * tanh(z / c).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from golf.model.attention import CausalSelfAttention
from golf.model.config import ModelConfig
from golf.model.layers import CastedLinear, RMSNorm, rms_norm


class MLP(nn.Module):
    """relu^2 MLP (modded-nanogpt): proj(relu(fc(x))^2), fc: d->hidden, proj zero-initialized. [B,T,d]->[B,T,d]."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc = CastedLinear(dim, hidden, bias=False)
        self.proj = CastedLinear(hidden, dim, bias=False)
        self.proj._zero_init = True

    def forward(self, x: Tensor) -> Tensor:
        return self.proj(torch.relu(self.fc(x)).square())


class Block(nn.Module):
    """One transformer block with resid_mix (x0 mixing) and per-dimension attn/mlp output scales."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        dim = cfg.model_dim
        self.attn_norm = RMSNorm()
        self.mlp_norm = RMSNorm()
        self.attn = CausalSelfAttention(dim, cfg.num_heads, cfg.num_kv_heads, cfg.rope_base, cfg.qk_gain_init,
                                        backend=cfg.attention_backend)
        self.mlp = MLP(dim, cfg.mlp_hidden)
        self.attn_scale = nn.Parameter(torch.ones(dim, dtype=torch.float32))
        self.mlp_scale = nn.Parameter(torch.ones(dim, dtype=torch.float32))
        self.resid_mix = nn.Parameter(torch.stack((torch.ones(dim), torch.zeros(dim))).float())

    def forward(self, x: Tensor, x0: Tensor) -> Tensor:
        mix = self.resid_mix.to(x.dtype)
        x = mix[0] * x + mix[1] * x0
        x = x + self.attn_scale.to(x.dtype) * self.attn(self.attn_norm(x))
        return x + self.mlp_scale.to(x.dtype) * self.mlp(self.mlp_norm(x))


class GPT(nn.Module):
    """Decoder-only LM. Inputs are token ids [B, T] (int64).

    `forward(ids, targets)` returns the mean cross-entropy in nats (scalar, fp32), exactly as official;
    `token_losses(ids, targets)` returns per-token nats [B, T]; `logits(ids)` returns softcapped fp32 [B, T, V].
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.model_dim)
        self.num_encoder_layers = cfg.num_layers // 2
        self.num_decoder_layers = cfg.num_layers - self.num_encoder_layers
        num_skips = min(self.num_encoder_layers, self.num_decoder_layers)
        self.skip_weights = nn.Parameter(torch.ones(num_skips, cfg.model_dim, dtype=torch.float32))
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.num_layers)])
        self.final_norm = RMSNorm()
        self.lm_head = None
        if not cfg.tie_embeddings:
            self.lm_head = CastedLinear(cfg.model_dim, cfg.vocab_size, bias=False)
            self.lm_head._zero_init = True
        self._init_weights()

    def _init_weights(self) -> None:
        if self.cfg.tie_embeddings:
            nn.init.normal_(self.tok_emb.weight, mean=0.0, std=self.cfg.tied_embed_init_std)
        for module in self.modules():
            if isinstance(module, CastedLinear) and module._zero_init:
                nn.init.zeros_(module.weight)

    def hidden(self, input_ids: Tensor) -> Tensor:
        """Final-normed hidden states [B, T, d]."""
        x = rms_norm(self.tok_emb(input_ids))
        x0 = x
        skips: list[Tensor] = []
        for i in range(self.num_encoder_layers):
            x = self.blocks[i](x, x0)
            skips.append(x)
        for i in range(self.num_decoder_layers):
            if skips:
                x = x + self.skip_weights[i].to(x.dtype) * skips.pop()
            x = self.blocks[self.num_encoder_layers + i](x, x0)
        return self.final_norm(x)

    def project(self, h: Tensor) -> Tensor:
        """Softcapped logits (fp32) from hidden states [..., d] -> [..., V]."""
        z = F.linear(h, self.tok_emb.weight) if self.lm_head is None else self.lm_head(h)
        c = self.cfg.logit_softcap
        return (c * torch.tanh(z / c)).float()

    def logits(self, input_ids: Tensor) -> Tensor:
        return self.project(self.hidden(input_ids))

    def token_losses(self, input_ids: Tensor, target_ids: Tensor) -> Tensor:
        """Per-token cross-entropy in nats, shape [B, T]."""
        logits = self.logits(input_ids)
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), target_ids.reshape(-1),
                               reduction="none").view_as(target_ids)

    def forward(self, input_ids: Tensor, target_ids: Tensor) -> Tensor:
        logits = self.logits(input_ids)
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), target_ids.reshape(-1), reduction="mean")
