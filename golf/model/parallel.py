"""Two-lane parallel residuals (records 2026-03-31_ParallelResiduals_MiniDepthRecurrence, PR #1204, from
modded-nanogpt PR #230; this is the 2026-04-27 / PR #1529 form).

From physical layer `start` on, the decoder carries two residual lanes. Per layer ℓ, with attention reading
lane0 (mixed with x0 by the block's resid_mix) and the MLP reading lane1, both from the layer input:
    a = attn_scale ⊙ Attn(norm(mix(lane0, x0)) · ln),   m = mlp_scale ⊙ MLP(norm(lane1) · ln)
    lane0 <- r[ℓ,0] · lane0 + P[ℓ,0,0] · a + P[ℓ,1,0] · m
    lane1 <- r[ℓ,1] · lane1 + P[ℓ,0,1] · a + P[ℓ,1,1] · m
P (post lambdas, learned routing) init 1, r (residual lambdas) init `resid_init` (1.1; 03-31 used √1.1).
U-Net skips enter lane0 only. The read-out is the mean of the lanes (04-27), the MLP lane (03-31) or the
attention lane. (03-31 ran attention then MLP sequentially inside a layer; golf implements the 04-27 form.)
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ParallelLanes(nn.Module):
    """Routing parameters and the per-layer update of the two-lane decoder. Lanes are [B, T, d]."""

    optim_groups = {"post_lambdas": "scalar", "resid_lambdas": "scalar"}

    def __init__(self, num_layers: int, start_layer: int, final_lane: str, resid_init: float):
        super().__init__()
        self.start_layer = start_layer
        self.final_lane = final_lane
        self.post_lambdas = nn.Parameter(torch.ones(num_layers, 2, 2, dtype=torch.float32))
        self.resid_lambdas = nn.Parameter(torch.full((num_layers, 2), float(resid_init), dtype=torch.float32))

    def active(self, layer: int) -> bool:
        """Whether physical layer `layer` (in the decoder) runs as a two-lane layer."""
        return layer >= self.start_layer

    def step(self, block: nn.Module, layer: int, lane0: Tensor, lane1: Tensor, x0: Tensor,
             v_embed: Tensor | None, segments=None) -> tuple[Tensor, Tensor]:
        """One two-lane layer with the weights of `block` (a gpt.Block) at physical index `layer`;
        `segments` (golf.model.varlen.Segments) keeps attention inside documents."""
        attn_out = block.attn_branch(block.mix(lane0, x0), v_embed, segments)
        mlp_out = block.mlp_branch(lane1)
        r = self.resid_lambdas[layer].to(lane0.dtype)
        post = self.post_lambdas[layer].to(lane0.dtype)
        new0 = r[0] * lane0 + post[0, 0] * attn_out + post[1, 0] * mlp_out
        new1 = r[1] * lane1 + post[0, 1] * attn_out + post[1, 1] * mlp_out
        return new0, new1

    def readout(self, lane0: Tensor, lane1: Tensor) -> Tensor:
        if self.final_lane == "mlp":
            return lane1
        if self.final_lane == "attn":
            return lane0
        return 0.5 * (lane0 + lane1)
