"""Route every trainable parameter to exactly one optimizer group and build the optimizers.

Routing rules (first match wins). Rules 2-5 are the official baseline train_gpt.py L846-893
(shared/reference/parameter-golf.md §1.3); rules 1 and 6 are golf's safety net for new components:

1. Declared route: a module may define a class attribute ``optim_groups: dict[str, str]`` mapping its own
   local parameter names (e.g. ``"proj.weight"``) to one of ``"embed"``, ``"head"``, ``"matrix"``,
   ``"scalar"``. Records route extras by hand and not always the same way (bigram ``proj`` went to Muon in
   some records, to scalar Adam in others), so a component states its choice next to its code.
   A declared name that is not a trainable parameter of that module raises (catches typos).
2. ``tok_emb.weight`` → "embed" (Adam, TIED_EMBED_LR if tied else EMBED_LR).
3. ``lm_head.weight`` → "head" (Adam, HEAD_LR; only exists when embeddings are untied).
4. Under ``blocks.``: 2-D and no control pattern in the name → "matrix" (Muon); ndim < 2 or a control
   pattern → "scalar" (Adam). ndim > 2 (e.g. banked weights) is unroutable until Muon supports it.
5. Outside ``blocks``: ndim < 2 or a control-pattern name (official: ``skip_weights``) → "scalar".
6. Anything else (e.g. a 2-D table or projection outside ``blocks`` with no declared route) raises
   ``ParamRoutingError`` naming the parameter, so a new architecture option can never go silently untrained.

Zero-element parameters are skipped (official: ``skip_weights`` is only added when ``numel() > 0``);
parameters with ``requires_grad=False`` are not trainable and are skipped. Within each group, ``blocks``
parameters come first in registration order, then the others (the official order: block scalars, then
``skip_weights``); Muon's round-robin rank assignment depends on this order being identical on all ranks.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn

from golf.errors import GolfError
from golf.optim.config import OptimConfig
from golf.optim.muon import NS_COEFFICIENTS, Muon, compiled_zeropower

GROUP_NAMES: tuple[str, ...] = ("embed", "head", "matrix", "scalar")
OPTIM_GROUPS_ATTR = "optim_groups"
BLOCKS_PREFIX = "blocks."
NamedParams = list[tuple[str, nn.Parameter]]


class ParamRoutingError(GolfError, ValueError):
    """A parameter cannot be assigned to an optimizer group, or a declared route is invalid."""


def is_control_tensor(name: str, patterns: Iterable[str]) -> bool:
    """True when any pattern is a substring of the parameter name (official rule, train_gpt.py L846-858)."""
    return any(pattern in name for pattern in patterns)


def _declared_routes(model: nn.Module) -> dict[str, str]:
    """Full parameter name → group from every module's ``optim_groups`` declaration (rule 1)."""
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    routes: dict[str, str] = {}
    for module_name, module in model.named_modules():
        declared = getattr(module, OPTIM_GROUPS_ATTR, None)
        if not declared:
            continue
        for local_name, group in declared.items():
            full_name = f"{module_name}.{local_name}" if module_name else local_name
            if group not in GROUP_NAMES:
                raise ParamRoutingError(
                    f"{type(module).__name__}.{OPTIM_GROUPS_ATTR}[{local_name!r}]={group!r} "
                    f"must be one of {list(GROUP_NAMES)}"
                )
            if full_name not in trainable:
                raise ParamRoutingError(
                    f"{type(module).__name__}.{OPTIM_GROUPS_ATTR} names {local_name!r} but {full_name!r} "
                    "is not a trainable parameter of the model"
                )
            routes[full_name] = group
    return routes


def _route(name: str, p: nn.Parameter, declared: dict[str, str], patterns: Sequence[str]) -> str | None:
    """Group for one parameter by the module-docstring rules, or None when no rule applies."""
    if name in declared:
        return declared[name]
    if name == "tok_emb.weight":
        return "embed"
    if name == "lm_head.weight":
        return "head"
    control = is_control_tensor(name, patterns)
    if name.startswith(BLOCKS_PREFIX):
        if p.ndim < 2 or control:
            return "scalar"
        return "matrix" if p.ndim == 2 else None
    if p.ndim < 2 or control:
        return "scalar"
    return None


def split_params(model: nn.Module, cfg: OptimConfig) -> dict[str, NamedParams]:
    """Split the model's trainable parameters into the official optimizer groups.

    Args:
        model: the un-wrapped model (not DDP / torch.compile wrappers, whose names carry prefixes).
        cfg: supplies `control_tensor_patterns`.

    Returns:
        {"embed", "head", "matrix", "scalar"} → list of (name, parameter); "head" is empty when tied.

    Raises:
        ParamRoutingError: a parameter matches no rule (named in the message), a parameter is routed to
            "matrix" but is not 2-D, or a module's ``optim_groups`` declaration is invalid.
    """
    declared = _declared_routes(model)
    groups: dict[str, NamedParams] = {g: [] for g in GROUP_NAMES}
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad and p.numel() > 0]
    ordered = [np_ for np_ in named if np_[0].startswith(BLOCKS_PREFIX)]
    ordered += [np_ for np_ in named if not np_[0].startswith(BLOCKS_PREFIX)]
    unroutable = []
    for name, p in ordered:
        group = _route(name, p, declared, cfg.control_tensor_patterns)
        if group is None:
            unroutable.append(f"{name} {tuple(p.shape)}")
            continue
        if group == "matrix" and p.ndim != 2:
            raise ParamRoutingError(f"parameter {name!r} with shape {tuple(p.shape)} routed to Muon must be 2-D")
        groups[group].append((name, p))
    if unroutable:
        raise ParamRoutingError(
            f"no optimizer group for parameter(s) {', '.join(unroutable)}; declare "
            f"`{OPTIM_GROUPS_ATTR} = {{'<local name>': 'embed'|'matrix'|'scalar'}}` on the owning module "
            "(see golf/optim/groups.py)"
        )
    return groups


def _adam(params: list[nn.Parameter], lr: float, cfg: OptimConfig, fused: bool,
          weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """Adam (official), or torch AdamW when `weight_decay` > 0: decoupled `p ← p·(1 − lr·wd)` with lr the
    scheduled group lr, as `torch.optim.AdamW(weight_decay=ADAM_WD / EMBED_WD)` in the records (#8, #41)."""
    if weight_decay > 0:
        return torch.optim.AdamW(
            [{"params": params, "lr": lr, "base_lr": lr}],
            betas=(cfg.beta1, cfg.beta2),
            eps=cfg.adam_eps,
            weight_decay=weight_decay,
            fused=fused,
        )
    return torch.optim.Adam(
        [{"params": params, "lr": lr, "base_lr": lr}],
        betas=(cfg.beta1, cfg.beta2),
        eps=cfg.adam_eps,
        fused=fused,
    )


def build_optimizers(
    model: nn.Module,
    cfg: OptimConfig,
    tie_embeddings: bool,
    rank: int | None = None,
    world_size: int | None = None,
    fused: bool | None = None,
) -> list[torch.optim.Optimizer]:
    """Build the official optimizer list [Adam(embed), Adam(head)?, Muon(matrix), Adam(scalar)].

    Official train_gpt.py L860-893: the head optimizer is inserted at index 1 only when it has parameters;
    every param group stores "base_lr" so `apply_lr_scale` can rescale it; Adam uses betas (beta1, beta2),
    eps adam_eps, no weight decay. Empty groups (e.g. a model without scalars) get no optimizer.
    Options: `embed_wd` / `head_wd` / `scalar_wd` > 0 make that group AdamW; Muon gets `muon_wd`,
    `muon_cautious_wd`, `muon_row_normalize`, `muon_ns_coeffs` and `muon_ns_norm_scale` (see golf/optim/muon.py).

    Args:
        model: un-wrapped model (see `split_params`).
        cfg: optimizer hyperparameters.
        tie_embeddings: selects TIED_EMBED_LR (True) or EMBED_LR (False) for the "embed" group.
        rank, world_size: passed to Muon; None reads torch.distributed at step time (official behaviour).
        fused: fused Adam kernels; None = True only when every parameter is on CUDA (official uses fused=True
            on GPU; CPU runs keep the default for-each kernels).

    Raises:
        ParamRoutingError: from `split_params`.
    """
    groups = split_params(model, cfg)
    all_params = [p for named in groups.values() for _, p in named]
    if fused is None:
        fused = bool(all_params) and all(p.is_cuda for p in all_params)

    def params_of(group: str) -> list[nn.Parameter]:
        return [p for _, p in groups[group]]

    optimizers: list[torch.optim.Optimizer] = []
    token_lr = cfg.tied_embed_lr if tie_embeddings else cfg.embed_lr
    if groups["embed"]:
        optimizers.append(_adam(params_of("embed"), token_lr, cfg, fused, cfg.embed_wd))
    if groups["head"]:
        optimizers.append(_adam(params_of("head"), cfg.head_lr, cfg, fused, cfg.head_wd))
    if groups["matrix"]:
        muon = Muon(
            params_of("matrix"),
            lr=cfg.matrix_lr,
            momentum=cfg.muon_momentum,
            backend_steps=cfg.muon_backend_steps,
            nesterov=cfg.muon_nesterov,
            rank=rank,
            world_size=world_size,
            compute_dtype=_muon_dtype(cfg.muon_dtype, params_of("matrix")),
            coeffs=NS_COEFFICIENTS[cfg.muon_ns_coeffs],
            weight_decay=cfg.muon_wd,
            cautious_wd=cfg.muon_cautious_wd,
            row_normalize=cfg.muon_row_normalize,
            norm_scale=cfg.muon_ns_norm_scale,
            zeropower_fn=_zeropower_fn(cfg.muon_compile, params_of("matrix")),
        )
        for group in muon.param_groups:
            group["base_lr"] = cfg.matrix_lr
        optimizers.append(muon)
    if groups["scalar"]:
        optimizers.append(_adam(params_of("scalar"), cfg.scalar_lr, cfg, fused, cfg.scalar_wd))
    return optimizers


def _zeropower_fn(mode: str, params: list[nn.Parameter]):
    """optim.muon_compile: auto -> compiled Newton–Schulz when the matrices live on CUDA (official), else eager."""
    if mode == "on" or (mode == "auto" and params and params[0].is_cuda):
        return compiled_zeropower()
    return None


def _muon_dtype(name: str, params: list[nn.Parameter]) -> torch.dtype:
    """auto -> bf16 when the matrices live on CUDA (official), fp32 on CPU (bf16 matmul is ~35x slower there)."""
    if name == "auto":
        return torch.bfloat16 if params and params[0].is_cuda else torch.float32
    return getattr(torch, name)


def apply_lr_scale(optimizers: Iterable[torch.optim.Optimizer], scale: float) -> None:
    """Set every group's lr to base_lr · scale (official L1026-1028).

    Raises:
        KeyError: a param group has no "base_lr" (it was not built by `build_optimizers`).
    """
    for opt in optimizers:
        for group in opt.param_groups:
            if "base_lr" not in group:
                raise KeyError(f"{type(opt).__name__} param group has no 'base_lr'; build it with build_optimizers")
            group["lr"] = group["base_lr"] * scale
