"""Extra embedding tables of the records: BigramHash, shared value embeddings, and the factored tied embedding.

Each module states its optimizer routing in `optim_groups` (see golf/optim/groups.py), following the record
that introduced it: tables -> "embed" (Adam at the token-embedding lr), projections -> "matrix" (Muon),
learned output scales -> "scalar" (Adam).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from golf.model.layers import CastedLinear

# Multipliers of the two record hash functions (PR #65; PR #162 and later).
MUL_HASH_PREV = 92821
XOR_HASH_CUR = 36313
XOR_HASH_PREV = 27191


def bigram_hash_mul(input_ids: Tensor, buckets: int) -> Tensor:
    """PR #65 (2026-03-19_smeargate_orthoinit_muonwd): h_t = (92821·prev_t + cur_t) mod B, prev_0 = 0.

    input_ids: [B, T] integer token ids -> bucket ids [B, T] (int64) in [0, buckets).
    """
    ids = input_ids.long()
    prev = F.pad(ids[:, :-1], (1, 0), value=0)
    return (prev * MUL_HASH_PREV + ids) % buckets


def bigram_hash_xor(input_ids: Tensor, buckets: int) -> Tensor:
    """PR #162 (2026-03-20_Int6_MLP3x_SmearGate_BigramHash_MuonWD_SWA) and later records.

    h_0 = B-1 (no previous token); h_t = (36313·cur_t XOR 27191·prev_t) mod (B-1). Computed in int64; equals the
    records' int32 arithmetic whenever 36313·id < 2^31, i.e. for every vocabulary up to 59,138 tokens.
    input_ids: [B, T] -> bucket ids [B, T] (int64) in [0, buckets).
    """
    ids = input_ids.long()
    mod = buckets - 1
    body = torch.bitwise_xor(XOR_HASH_CUR * ids[:, 1:], XOR_HASH_PREV * ids[:, :-1]) % mod
    first = torch.full_like(ids[:, :1], mod)
    return torch.cat((first, body), dim=1)


class BigramHashEmbedding(nn.Module):
    """Hashed (previous, current) token-pair embedding added to the token embedding. [B, T] ids -> [B, T, d].

    `hash="mul"` (PR #65): table N(0, 0.01²), projection always present and zero-initialized (kept zero by
    OrthoInit), no output scale. `hash="xor"` (PR #162/#374): zero table, projection only when
    dim != model_dim (constructor-zeroed but NOT protected from OrthoInit, as in the records), learned
    output scale init 0.05.
    """

    def __init__(self, buckets: int, dim: int, model_dim: int, hash_fn: str):
        super().__init__()
        if hash_fn not in ("mul", "xor"):
            raise ValueError(f"bigram hash {hash_fn!r}; allowed: mul, xor")
        self.buckets = buckets
        self.hash_fn = hash_fn
        self.table = nn.Embedding(buckets, dim)
        self.proj = CastedLinear(dim, model_dim, bias=False) if (hash_fn == "mul" or dim != model_dim) else None
        routes = {"table.weight": "embed"}
        if self.proj is not None:
            routes["proj.weight"] = "matrix"
        if hash_fn == "mul":
            nn.init.normal_(self.table.weight, std=0.01)
            self.proj._zero_init = True
            nn.init.zeros_(self.proj.weight)
            self.scale = None
        else:
            nn.init.zeros_(self.table.weight)
            if self.proj is not None:
                nn.init.zeros_(self.proj.weight)
            self.scale = nn.Parameter(torch.tensor(0.05, dtype=torch.float32))
            routes["scale"] = "scalar"
        self.optim_groups = routes

    def bucket_ids(self, input_ids: Tensor) -> Tensor:
        fn = bigram_hash_mul if self.hash_fn == "mul" else bigram_hash_xor
        return fn(input_ids, self.buckets)

    def forward(self, input_ids: Tensor) -> Tensor:
        h = self.table(self.bucket_ids(input_ids))
        if self.proj is not None:
            h = self.proj(h)
        if self.scale is not None:
            h = h * self.scale.to(h.dtype)
        return h


class ValueEmbedding(nn.Module):
    """Shared value-embedding table re-injected into the attention values of chosen layers (PR #374 "VE128",
    first merged in 2026-03-22_11L_EMA_GPTQ-lite_warmdown3500_QAT015_1.1233).

    ve = scale · proj(E[ids]) with E: V×dim N(0, 0.01²), proj: dim -> kv_dim (constructor-zeroed; OrthoInit
    pr162 overrides it as in the record), scale init 0.1. Layer `layers[i]` adds ve · layer_scales[i]
    (init 1) to its value projection before attention. `forward(ids)` -> [B, T, kv_dim].
    """

    def __init__(self, vocab_size: int, dim: int, kv_dim: int, layers: list[int]):
        super().__init__()
        self.layers = list(layers)
        self.embed = nn.Embedding(vocab_size, dim)
        nn.init.normal_(self.embed.weight, std=0.01)
        self.proj = CastedLinear(dim, kv_dim, bias=False) if dim != kv_dim else None
        if self.proj is not None:
            nn.init.zeros_(self.proj.weight)
        self.scale = nn.Parameter(torch.tensor(0.1, dtype=torch.float32))
        self.layer_scales = nn.ParameterList([nn.Parameter(torch.ones(1, dtype=torch.float32)) for _ in layers])
        routes = {"embed.weight": "embed", "scale": "scalar"}
        routes.update({f"layer_scales.{i}": "scalar" for i in range(len(layers))})
        if self.proj is not None:
            routes["proj.weight"] = "matrix"
        self.optim_groups = routes

    def forward(self, input_ids: Tensor) -> Tensor:
        h = self.embed(input_ids)
        if self.proj is not None:
            h = self.proj(h)
        return h * self.scale.to(h.dtype)

    def for_layer(self, ve: Tensor, layer: int) -> Tensor | None:
        """The value-embedding term of physical layer `layer`, or None when the layer gets none."""
        if layer not in self.layers:
            return None
        return ve * self.layer_scales[self.layers.index(layer)].to(ve.dtype)


class FactoredProjections(nn.Module):
    """Projections of the factored tied embedding (04-01/04-05 code, EMBEDDING_DIM; off in every record).

    The tied table tok_emb is V×r; `embed_proj` (r -> d) lifts looked-up rows into the residual stream and
    `head_proj` (d -> r) maps final hidden states back before the tied logits x·tok_embᵀ. Both are Muon matrices.
    """

    optim_groups = {"embed_proj.weight": "matrix", "head_proj.weight": "matrix"}

    def __init__(self, rank: int, model_dim: int):
        super().__init__()
        self.embed_proj = CastedLinear(rank, model_dim, bias=False)
        self.head_proj = CastedLinear(model_dim, rank, bias=False)
