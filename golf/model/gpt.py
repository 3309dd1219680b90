"""The official baseline GPT (`train_gpt.py` L500-724) with the records' architecture options (all off by default).

Per block: x <- m0*x + m1*x0;  x <- x + attn_scale * Attn(norm(x));  x <- x + mlp_scale * MLP(norm(x)).
The encoder half of the (virtual) layers pushes its outputs on a stack; each decoder layer first adds
skip_weights[i] * stack.pop(). Logits are softcapped: c * tanh(z / c).

Options and where they live: embedding side (BigramHash, SmearGate v1/v2, value embeddings, factored
embedding) in embeddings.py / gates.py; attention (partial RoPE, XSA, output gates) in attention.py; depth
schedules (block repeats, looped range with a runtime switch) in recurrence.py; two-lane parallel residuals in
parallel.py; OrthoInit in init.py. See ModelConfig for the sources.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from golf.model.attention import CausalSelfAttention
from golf.model.config import ModelConfig
from golf.model.init import init_weights
from golf.model.layers import CastedLinear, RMSNorm, rms_norm
from golf.model.recurrence import LayerSchedule, layer_schedules

if TYPE_CHECKING:
    from golf.model.varlen import Segments  # lazy: annotations only


class MLP(nn.Module):
    """proj(act(fc(x))), fc: d->hidden, proj zero-initialized. [B,T,d]->[B,T,d].

    act = relu(x)² (modded-nanogpt, baseline) or leaky_relu(x, slope)² (PR #493, records 03-23 onward).
    fused (leaky_relu2 only): "none" | "activation" (Triton activation kernel) | "matmul" (PR #1530: the fc
    matmul and the activation in one Triton kernel while training, as the record; the activation kernel in eval
    or while fc/proj carry forward hooks, which the fused path would bypass). Exact PyTorch on CPU.
    """

    def __init__(self, dim: int, hidden: int, activation: str = "relu2", leaky_slope: float = 0.5,
                 fused: str = "none"):
        super().__init__()
        self.fused = fused
        if fused != "none":
            from golf.model.kernels import (  # lazy: only model.fused_mlp ships the Triton kernels
                fused_leaky_relu2_mlp,
                leaky_relu2,
                triton_available,
            )

            self.fused_act = leaky_relu2
            self.fused_mlp = fused_leaky_relu2_mlp
            self.kernels_run = triton_available
        self.fc = CastedLinear(dim, hidden, bias=False)
        self.proj = CastedLinear(hidden, dim, bias=False)
        self.proj._zero_init = True
        self.activation = activation
        self.leaky_slope = leaky_slope

    def _hooked(self) -> bool:
        return any(m._forward_hooks or m._forward_pre_hooks for m in (self.fc, self.proj))

    def forward(self, x: Tensor) -> Tensor:
        if self.activation == "leaky_relu2":
            if (self.fused == "matmul" and self.training and self.kernels_run(x) and not self._hooked()):
                return self.fused_mlp(x, self.fc.weight, self.proj.weight, self.leaky_slope)
            h = self.fc(x)
            if self.fused != "none":
                return self.proj(self.fused_act(h, self.leaky_slope))
            return self.proj(F.leaky_relu(h, negative_slope=self.leaky_slope).square())
        return self.proj(torch.relu(self.fc(x)).square())


class Block(nn.Module):
    """One transformer block with resid_mix (x0 mixing) and per-dimension attn/mlp output scales.

    `layer` is the physical index: it selects XSA (last `xsa_last_n` layers), the LN-scale factor
    1/√(layer+1) applied to the normed attention and MLP inputs (PR #315) and GPT-J parallel branches
    (layer >= `parallel_block_start`, record 04-09).
    """

    def __init__(self, cfg: ModelConfig, layer: int = 0):
        super().__init__()
        dim = cfg.model_dim
        self.attn_norm = RMSNorm()
        self.mlp_norm = RMSNorm()
        self.attn = CausalSelfAttention(
            dim, cfg.num_heads, cfg.num_kv_heads, cfg.rope_base, cfg.qk_gain_init, backend=cfg.attention_backend,
            rope_dims=cfg.rope_dims, xsa=layer >= cfg.num_layers - cfg.xsa_last_n, gate=cfg.attn_gate,
            gate_width=cfg.attn_gate_width, gate_scale=cfg.attn_gate_scale, gate_init_std=cfg.attn_gate_init_std,
            rope_train_seq_len=cfg.rope_train_seq_len, doc_mask=cfg.attn_doc_mask)
        self.mlp = MLP(dim, cfg.mlp_hidden, cfg.mlp_activation, cfg.mlp_leaky_slope,
                       cfg.fused_mlp_kernel if cfg.fused_mlp else "none")
        self.attn_scale = nn.Parameter(torch.ones(dim, dtype=torch.float32))
        self.mlp_scale = nn.Parameter(torch.ones(dim, dtype=torch.float32))
        self.resid_mix = nn.Parameter(torch.stack((torch.ones(dim), torch.zeros(dim))).float())
        self.ln_scale = 1.0 / math.sqrt(layer + 1) if cfg.ln_scale else None
        self.parallel_branches = 0 <= cfg.parallel_block_start <= layer

    def mix(self, x: Tensor, x0: Tensor) -> Tensor:
        """resid_mix: m0 ⊙ x + m1 ⊙ x0."""
        mix = self.resid_mix.to(x.dtype)
        return mix[0] * x + mix[1] * x0

    def attn_branch(self, x: Tensor, v_embed: Tensor | None = None, segments: Segments | None = None) -> Tensor:
        """attn_scale ⊙ Attn(norm(x) [· ln_scale])."""
        h = self.attn_norm(x)
        if self.ln_scale is not None:
            h = h * self.ln_scale
        return self.attn_scale.to(x.dtype) * self.attn(h, v_embed, segments)

    def mlp_branch(self, x: Tensor) -> Tensor:
        """mlp_scale ⊙ MLP(norm(x) [· ln_scale])."""
        h = self.mlp_norm(x)
        if self.ln_scale is not None:
            h = h * self.ln_scale
        return self.mlp_scale.to(x.dtype) * self.mlp(h)

    def forward(self, x: Tensor, x0: Tensor, v_embed: Tensor | None = None,
                segments: Segments | None = None) -> Tensor:
        x = self.mix(x, x0)
        if self.parallel_branches:  # GPT-J form: both branches read the same input
            return x + self.attn_branch(x, v_embed, segments) + self.mlp_branch(x)
        x = x + self.attn_branch(x, v_embed, segments)
        return x + self.mlp_branch(x)


class GPT(nn.Module):
    """Decoder-only LM. Inputs are token ids [B, T] (int64).

    `forward(ids, targets)` returns the mean cross-entropy in nats (scalar, fp32), exactly as official;
    `token_losses(ids, targets)` returns per-token nats [B, T]; `logits(ids)` returns softcapped fp32 [B, T, V].
    With `num_loops > 0` the looped schedule is active after construction (the trained architecture, used by
    eval/export); `set_looping(False)` selects the plain schedule (what runs before `enable_looping_at`).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        dim = cfg.model_dim
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.embed_dim or dim)
        # Option modules are imported only when the config uses them (`# lazy`: golf.record ships them only then).
        if cfg.fused_ce:
            from golf.model.kernels import softcapped_cross_entropy  # lazy

            self.fused_ce_loss = softcapped_cross_entropy
        self.factored = None
        if cfg.embed_dim:
            from golf.model.embeddings import FactoredProjections  # lazy

            self.factored = FactoredProjections(cfg.embed_dim, dim)
        self.bigram = None
        if cfg.bigram_buckets:
            from golf.model.embeddings import BigramHashEmbedding  # lazy

            self.bigram = BigramHashEmbedding(cfg.bigram_buckets, cfg.bigram_dim, dim, cfg.bigram_hash)
        self.smear: nn.Module | None = None
        if cfg.smear_gate == "v1":
            from golf.model.gates import SmearGateV1  # lazy

            self.smear = SmearGateV1(dim, cfg.smear_gate_init)
        elif cfg.smear_gate == "v2":
            from golf.model.gates import SmearGateV2  # lazy

            self.smear = SmearGateV2(cfg.smear_gate_width, cfg.bos_id)
        self.full_schedule, self.plain_schedule = layer_schedules(cfg)
        self.num_encoder_layers = len(self.plain_schedule.encoder)
        self.num_decoder_layers = len(self.plain_schedule.decoder)
        num_skips = self.full_schedule.num_skips
        self.skip_weights = nn.Parameter(torch.ones(num_skips, dim, dtype=torch.float32))
        self.skip_gates = nn.Parameter(torch.zeros(num_skips, dim, dtype=torch.float32)) if cfg.skip_gates else None
        self.blocks = nn.ModuleList([Block(cfg, i) for i in range(cfg.num_layers)])
        self.value_embed = None
        if cfg.value_embed_dim:
            from golf.model.embeddings import ValueEmbedding  # lazy

            self.value_embed = ValueEmbedding(cfg.vocab_size, cfg.value_embed_dim, cfg.kv_dim, cfg.value_embed_layers)
        self.parallel = None
        if cfg.parallel_start_layer:
            from golf.model.parallel import ParallelLanes  # lazy

            self.parallel = ParallelLanes(cfg.num_layers, cfg.parallel_start_layer, cfg.parallel_final_lane,
                                          cfg.parallel_resid_init)
        self.final_norm = RMSNorm()
        self.lm_head = None
        if not cfg.tie_embeddings:
            self.lm_head = CastedLinear(dim, cfg.vocab_size, bias=False)
            self.lm_head._zero_init = True
        if self.skip_gates is not None:
            self.optim_groups = {"skip_gates": "scalar"}  # 2-D, outside blocks, not an official control name
        self.looping = True
        init_weights(self, cfg, cfg.num_layers)

    # --- depth ----------------------------------------------------------------------------------------------
    def set_looping(self, enabled: bool) -> None:
        """Switch the looped range on/off (records' `looping_active`); no effect without `num_loops`.

        A Python attribute read in forward: torch.compile guards on it and recompiles on change, so the switch
        is never constant-folded (the 03-21 late-QAT bug).
        """
        self.looping = bool(enabled)

    @property
    def schedule(self) -> LayerSchedule:
        """The depth schedule the next forward will run."""
        return self.full_schedule if self.looping else self.plain_schedule

    @property
    def effective_depth(self) -> int:
        return self.schedule.depth

    def _skip(self, x: Tensor, skip: Tensor, i: int) -> Tensor:
        w = self.skip_weights[i].to(x.dtype)
        if self.skip_gates is None:
            return x + w * skip
        return torch.lerp(w * skip, x, torch.sigmoid(self.skip_gates[i].to(x.dtype)))

    def _unused_skip_anchor(self, schedule: LayerSchedule) -> Tensor | None:
        """0 · (skip parameters the plain schedule does not use), so DDP sees every parameter before looping."""
        used = schedule.num_skips
        if used >= self.skip_weights.size(0):
            return None
        anchor = self.skip_weights[used:].sum()
        if self.skip_gates is not None:
            anchor = anchor + self.skip_gates[used:].sum()
        return 0.0 * anchor

    # --- forward --------------------------------------------------------------------------------------------
    def embed(self, input_ids: Tensor) -> Tensor:
        """Normed input embedding x0 [B, T, d]: tok_emb (+ embed_proj) (+ bigram) -> SmearGate -> RMSNorm
        (SmearGate before the bigram with smear_gate_before_bigram, after the norm with smear_gate_after_norm)."""
        x = self.tok_emb(input_ids)
        if self.factored is not None:
            x = self.factored.embed_proj(x)
        before_bigram = self.cfg.smear_gate_before_bigram
        if before_bigram:
            x = self.smear(x)
        if self.bigram is not None:
            x = x + self.bigram(input_ids)
        if self.smear is not None and self.cfg.smear_gate == "v2":
            x = self.smear(x, input_ids)
        elif self.smear is not None and not self.cfg.smear_gate_after_norm and not before_bigram:
            x = self.smear(x)
        x = rms_norm(x)
        if self.smear is not None and self.cfg.smear_gate_after_norm and self.cfg.smear_gate == "v1":
            x = self.smear(x)
        return x

    def segments_for(self, input_ids: Tensor) -> Segments | None:
        """Document segments of `input_ids` when model.attn_doc_mask is on, else None."""
        if not self.cfg.attn_doc_mask:
            return None
        from golf.model.varlen import segments_from_ids  # lazy: only document-masked models ship it

        return segments_from_ids(input_ids, self.cfg.bos_id, self.cfg.attn_doc_mask_max_len)

    def hidden(self, input_ids: Tensor) -> Tensor:
        """Final-normed hidden states [B, T, d]."""
        segments = self.segments_for(input_ids)
        x = self.embed(input_ids)
        x0 = x
        ve = self.value_embed(input_ids) if self.value_embed is not None else None
        schedule = self.schedule
        skips: list[Tensor] = []
        for layer in schedule.encoder:
            x = self.blocks[layer](x, x0, self._value_embed_for(ve, layer), segments)
            skips.append(x)
        after = self.cfg.skip_placement == "after"
        lanes: tuple[Tensor, Tensor] | None = None
        for i, layer in enumerate(schedule.decoder):
            v_embed = self._value_embed_for(ve, layer)
            if self.parallel is not None and self.parallel.active(layer):
                lane0, lane1 = lanes if lanes is not None else (x, x)
                if skips:
                    lane0 = self._skip(lane0, skips.pop(), i)
                lanes = self.parallel.step(self.blocks[layer], layer, lane0, lane1, x0, v_embed, segments)
                continue
            if skips and not after:
                x = self._skip(x, skips.pop(), i)
            x = self.blocks[layer](x, x0, v_embed, segments)
            if skips and after:
                x = self._skip(x, skips.pop(), i)
        if lanes is not None:
            x = self.parallel.readout(*lanes)
        if self.cfg.num_loops > 0:  # only a switchable loop leaves skips unused (before it is enabled)
            anchor = self._unused_skip_anchor(schedule)
            if anchor is not None:
                x = x + anchor
        return self.final_norm(x)

    def _value_embed_for(self, ve: Tensor | None, layer: int) -> Tensor | None:
        return None if ve is None else self.value_embed.for_layer(ve, layer)

    def project_raw(self, h: Tensor) -> Tensor:
        """Pre-softcap logits z from hidden states [..., d] -> [..., V] (the activation dtype)."""
        if self.lm_head is not None:
            return self.lm_head(h)
        if self.factored is not None:
            h = self.factored.head_proj(h)
        return F.linear(h, self.tok_emb.weight)

    def project(self, h: Tensor) -> Tensor:
        """Softcapped logits (fp32) from hidden states [..., d] -> [..., V]."""
        z = self.project_raw(h)
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
        if self.cfg.fused_ce and self.training:
            z = self.project_raw(self.hidden(input_ids))
            return self.fused_ce_loss(z.reshape(-1, z.size(-1)), target_ids.reshape(-1), self.cfg.logit_softcap)
        logits = self.logits(input_ids)
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), target_ids.reshape(-1), reduction="mean")
