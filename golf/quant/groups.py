"""Tensor groups for mixed precision: which rule (bits, clip, passthrough) applies to which state-dict tensor.

Groups (records 03-19 #6, 03-20 #16, 04-05 #46 quantize embeddings, attention and MLP differently):

    small   float tensors with numel <= quant.keep_float_max_numel (control tensors, norms, gates) and
            non-float tensors (those are always stored exactly)
    embed   names containing a quant.groups.embed pattern (tok_emb, lm_head, embed)
    attn    names containing a quant.groups.attn pattern (.attn.)
    mlp     names containing a quant.groups.mlp pattern (.mlp.)
    other   every other large float tensor
"""

from __future__ import annotations

from dataclasses import replace

from torch import Tensor

from golf.quant.config import GROUP_NAMES, GroupQuant, QuantConfig

__all__ = ["GROUP_NAMES", "tensor_group", "rule_for", "official_int8_rule"]


def tensor_group(name: str, t: Tensor, cfg: QuantConfig) -> str:
    """Group of one state-dict tensor (see module docstring); first matching of embed, attn, mlp wins."""
    if not t.is_floating_point() or t.numel() <= cfg.keep_float_max_numel:
        return "small"
    for group in ("embed", "attn", "mlp"):
        if any(p in name for p in cfg.groups.get(group).patterns):
            return group
    return "other"


def official_int8_rule(cfg: QuantConfig) -> GroupQuant:
    """The rule of the official int8 export expressed as a GroupQuant (percentile clip, scale floor 1/127)."""
    return GroupQuant(bits=8, clip="percentile", clip_percentile=cfg.clip_percentile, scale_floor="qmax")


def rule_for(name: str, t: Tensor, cfg: QuantConfig) -> GroupQuant | None:
    """The storage rule export applies to tensor ``name`` under ``cfg``; None = stored exactly (scheme none or
    a non-float tensor). scheme=int8 gives the official rule (small tensors: passthrough "keep")."""
    if cfg.scheme == "none" or not t.is_floating_point():
        return None
    group = tensor_group(name, t, cfg)
    if cfg.scheme == "int8":
        return replace(GroupQuant(), passthrough="keep") if group == "small" else official_int8_rule(cfg)
    return cfg.groups.get(group)
