"""Low-rank adapters attached to a model from outside, for LoRA test-time training.

Each chosen `CastedLinear` gets a forward hook that adds `scale * (x @ A) @ B` to its output (LoRA, Hu et al.
2021; TTT use: records `2026-03-17_LoRA_TTT` and `2026-04-10_VarLenAttn`, PR #1530). The model's own modules
and parameters are left untouched; `remove()` detaches the hooks.

Adapters are batched: A is [G, in, r] and B is [G, r, out] for G independent adapter sets, and `route(groups)`
tells the hooks which set each batch row uses, so G documents can be adapted side by side in one forward
(Adam and SGD update elementwise, so the sets train independently when the loss is a sum over documents).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor, nn

from golf.eval.windows import EvalModeError
from golf.model.layers import CastedLinear


def lora_target_modules(model: nn.Module, targets: list[str]) -> list[tuple[str, CastedLinear]]:
    """(name, module) of every CastedLinear whose name contains one of `targets`.

    Raises EvalModeError naming the available modules when nothing matches.
    """
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, CastedLinear)]
    chosen = [(name, m) for name, m in linears if any(t in name for t in targets)]
    if not chosen:
        kinds = sorted({".".join(name.split(".")[-2:]) for name, _ in linears})
        raise EvalModeError(f"eval.ttt.lora_targets={list(targets)} matched no CastedLinear module; "
                            f"available: {', '.join(kinds)}")
    return chosen


class LoRAAdapters(nn.Module):
    """G sets of rank-r adapters on the matched CastedLinear modules of `model` (hooks added at init).

    Init (as the LoRA TTT records): A ~ U(-1/sqrt(in), 1/sqrt(in)), B = 0, so a fresh adapter leaves the
    model's outputs unchanged. Parameters are fp32 on the module's device.
    """

    def __init__(self, model: nn.Module, targets: list[str], rank: int, alpha: float = 0.0, groups: int = 1,
                 seed: int = 0, keys: list[int] | None = None):
        super().__init__()
        chosen = lora_target_modules(model, targets)
        self.names = [name for name, _ in chosen]
        self.scale = (alpha or rank) / rank
        self.seed = seed
        self.keys = list(keys) if keys is not None else None
        if self.keys is not None and len(self.keys) != groups:
            raise ValueError(f"LoRAAdapters: {len(self.keys)} keys for {groups} adapter sets")
        self.A = nn.ParameterList()
        self.B = nn.ParameterList()
        for _, m in chosen:
            dev = m.weight.device
            self.A.append(nn.Parameter(torch.empty(groups, m.in_features, rank, device=dev, dtype=torch.float32)))
            self.B.append(nn.Parameter(torch.zeros(groups, rank, m.out_features, device=dev, dtype=torch.float32)))
        self._rows: Tensor | None = None
        self._handles = [m.register_forward_hook(self._hook(i)) for i, (_, m) in enumerate(chosen)]
        self.reset()

    @property
    def groups(self) -> int:
        return int(self.A[0].shape[0])

    def reset(self) -> None:
        """Re-initialize every adapter set (seeded, so repeated evaluations are identical).

        Without `keys` one generator (seed) fills all sets in order. With `keys` (e.g. document indices) set g is
        drawn from its own generator seeded by (seed, keys[g]), so a document gets the same adapters whichever
        slot, batch or rank it lands in (multi-rank LoRA TTT then equals the single-process result).
        """
        with torch.no_grad():
            if self.keys is None:
                gen = torch.Generator().manual_seed(self.seed)
                for a in self.A:
                    bound = 1.0 / math.sqrt(a.shape[1])
                    a.copy_(torch.rand(a.shape, generator=gen, dtype=torch.float32).mul_(2 * bound).sub_(bound))
            else:
                for g, key in enumerate(self.keys):
                    gen = torch.Generator().manual_seed(self.seed * 1_000_003 + int(key))
                    for a in self.A:
                        bound = 1.0 / math.sqrt(a.shape[1])
                        a[g].copy_(torch.rand(a.shape[1:], generator=gen, dtype=torch.float32)
                                   .mul_(2 * bound).sub_(bound))
            for b in self.B:
                b.zero_()

    def route(self, groups: np.ndarray | Tensor) -> None:
        """Adapter set index of each row of the next forward (int array [B], values < G)."""
        rows = torch.as_tensor(np.asarray(groups), dtype=torch.int64)
        self._rows = rows.to(self.A[0].device)

    def _hook(self, i: int):
        def add_adapter(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> Tensor:
            x = inputs[0]
            a, b = self.A[i], self.B[i]
            if a.shape[0] == 1:
                delta = (x @ a[0].to(x.dtype)) @ b[0].to(x.dtype)
            else:
                if self._rows is None or self._rows.numel() != x.shape[0]:
                    raise RuntimeError("LoRAAdapters.route(groups) must name one adapter set per batch row")
                delta = torch.bmm(torch.bmm(x, a[self._rows].to(x.dtype)), b[self._rows].to(x.dtype))
            return output + (self.scale * delta).to(output.dtype)
        return add_adapter

    def remove(self) -> None:
        """Detach the hooks from the model."""
        for h in self._handles:
            h.remove()
        self._handles = []
