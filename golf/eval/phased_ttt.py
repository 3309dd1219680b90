"""Phased test-time training (eval mode ``phased_ttt``), the evaluation of the 2026-04-27 record (PR #1855;
phased TTT from PR #1610 -> multi-phase global SGD PR #1626 -> PR #1736; LoRA settings PR #1767).

Documents (a BOS starts one; each includes the next document's BOS as its last target) are sorted by length and
cut into batches of ``doc_batch``; batches run longest first. Each batch is one set of per-document LoRA
adapters (rank r, output scale alpha / r) on every virtual layer slot of the looped model — q, k, v (on the
attention input), an "o" adapter and an MLP adapter from the block's attention / MLP input to that branch's
output — and on the tied output head. Every document is cut into ``chunk_tokens``-target chunks; chunk i is
scored in a window of the last ``seq_len`` tokens of its document ending at the chunk, and only then is one
AdamW step (betas (beta1, beta2), weight decay) taken on it (never on a document's last chunk). Between
batches of one lane (below) B is zeroed and A is kept (warm start), the AdamW state cleared.

Phases: once ``prefix_docs * k / num_phases`` documents are scored (k = 1..num_phases), the base weights are
trained by SGD (momentum, cosine LR over 32,768-token chunks, grad clip, the last chunk skipped) on those
already-scored documents (cumulative), and every lane starts a fresh adapter set. Later documents are scored
with the updated weights: score-first throughout (golf.eval.phases plans documents, batches and phases).

Ranks (issue #12). The record shares the batches out through a file-based work counter: each GPU keeps its own
warm-started adapter set and claims the next batch when it finishes one; a phase starts when the scored-prefix
counter reaches the boundary (every rank finishes its batch in flight, then all meet at a barrier and train on
the same documents, gradients all-reduced). Golf fixes that assignment so the score is deterministic: batch q
(processing order) runs on lane q % ``lanes``, lane l on rank l % world_size, and phase k follows exactly the
batch that reaches its boundary (every batch before it, on every rank, is scored first; none after it). Every
rank computes the same global SGD update (or its documents' share with ``global_split``) and the weights are
broadcast from rank 0. Losses, bytes and targets are summed in float64 and all-reduced; ``rank_tokens`` holds
each rank's targets.

Order dependence: a lane's warm-started A carries from one batch to the next, so the score depends on
``lanes`` (8 = the record's 8 GPUs, 1 = its single-process routine, proven equal to it in
tests/test_phased_ttt_record.py) but not on the number of ranks: with the same ``lanes`` any world size <= lanes
gives the single-process score (the same float operations; only the order of the float64 sums differs). With
``global_split`` the summed gradients differ from one process in float rounding, which the adapters' AdamW
(beta1 0, eps 1e-10: nearly sign-of-gradient first steps) can amplify in later documents.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from golf.device import autocast_for
from golf.eval.bpb import ByteLUTs, bits_per_byte, token_bytes
from golf.eval.config import PhasedTTTConfig
from golf.eval.phases import batch_order, chunk_window, find_documents, global_sgd, plan_phases
from golf.eval.standard import EvalResult
from golf.eval.windows import EvalModeError

__all__ = ["SlotLoRA", "batch_order", "chunk_window", "evaluate_phased_ttt", "find_documents", "score"]


class SlotLoRA(nn.Module):
    """Per-document (batch row) LoRA adapters on every virtual layer slot of a golf GPT, attached by hooks.

    A [bsz, r, in] ~ U(-1/sqrt(in), 1/sqrt(in)), B [bsz, out, r] = 0, delta = (x A^T) B^T * alpha / r.
    A is drawn from `gen` in the record's BatchedTTTLoRA order (head, then q, v, k, mlp, o over the slots), so
    with `gen` seeded like the record's global RNG the adapters are the record's, draw for draw.
    """

    KINDS = ("q", "k", "v", "o", "mlp")
    DRAW_ORDER = ("q", "v", "k", "mlp", "o")

    def __init__(self, model: nn.Module, bsz: int, rank: int, alpha: float, gen: torch.Generator):
        super().__init__()
        self._model = (model,)  # not a submodule: the adapters' optimizer must see the adapters only
        self.scale, self.enabled = alpha / rank, True
        schedule = model.schedule
        layers = list(schedule.encoder) + list(schedule.decoder)
        self.slots_of = {i: [s for s, layer in enumerate(layers) if layer == i] for i in set(layers)}
        dim, dev = model.cfg.model_dim, model.tok_emb.weight.device
        kv = model.cfg.num_kv_heads * (dim // model.cfg.num_heads)
        outs = {"q": dim, "k": kv, "v": kv, "o": dim, "mlp": dim}
        self.A, self.B = nn.ParameterDict(), nn.ParameterDict()
        self._add("head", bsz, model.tok_emb.embedding_dim, model.cfg.vocab_size, rank, dev, gen)
        for kind in self.DRAW_ORDER:  # the record's BatchedTTTLoRA module order: one RNG stream, same draws
            for s in range(len(layers)):
                self._add(f"{kind}{s}", bsz, dim, outs[kind], rank, dev, gen)
        self.calls: dict[int, int] = {}
        self.handles = []
        for i, block in enumerate(model.blocks):
            attn = block.attn
            for kind, mod in (("q", attn.c_q), ("k", attn.c_k), ("v", attn.c_v), ("o", attn), ("mlp", block.mlp)):
                self.handles.append(mod.register_forward_hook(self._hook(i, kind)))

    @property
    def model(self) -> nn.Module:
        return self._model[0]

    def _add(self, key, bsz, fan_in, fan_out, rank, dev, gen) -> None:
        bound = 1.0 / math.sqrt(fan_in)
        a = torch.empty(bsz, rank, fan_in).uniform_(-bound, bound, generator=gen)
        self.A[key] = nn.Parameter(a.to(dev))
        self.B[key] = nn.Parameter(torch.zeros(bsz, fan_out, rank, device=dev))

    def delta(self, key: str, x: Tensor) -> Tensor:
        a, b = self.A[key].to(x.dtype), self.B[key].to(x.dtype)
        return torch.bmm(torch.bmm(x, a.transpose(1, 2)), b.transpose(1, 2)) * self.scale

    def _hook(self, layer: int, kind: str):
        def add(_mod, inputs, output):
            if not self.enabled:
                return output
            call = self.calls.get((layer, kind), 0)
            self.calls[(layer, kind)] = call + 1
            slot = self.slots_of[layer][call]
            return output + self.delta(f"{kind}{slot}", inputs[0]).to(output.dtype)
        return add

    def reset_b(self) -> None:
        """Zero every B (A stays: the record's warm-started A)."""
        with torch.no_grad():
            for b in self.B.values():
                b.zero_()

    def remove(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []

    def token_losses(self, x: Tensor, y: Tensor) -> Tensor:
        """Per-token CE [bsz, T] of the adapted model (head adapter on the final hidden state)."""
        self.calls = {}
        h = self.model.hidden(x)
        z = self.model.project_raw(h) + self.delta("head", h).to(h.dtype)
        c = self.model.cfg.logit_softcap
        logits = (c * torch.tanh(z / c)).float()
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), reduction="none").view_as(y)


def _new_adapters(model, bsz, cfg: PhasedTTTConfig, gen):
    lora = SlotLoRA(model, bsz, cfg.lora_rank, cfg.lora_alpha, gen)
    opt = torch.optim.AdamW(lora.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps,
                            weight_decay=cfg.weight_decay)
    return lora, opt




LANE_SEED = 1_000_003
"""Lane l's adapters are drawn from a generator seeded with seed + LANE_SEED * l (lane 0: the seed itself)."""


class _Sums:
    """This rank's float64 loss (nats), byte and target sums (the record's _accumulate_bpb)."""

    def __init__(self) -> None:
        self.loss = torch.zeros((), dtype=torch.float64)
        self.bytes = torch.zeros((), dtype=torch.float64)
        self.tokens = 0
        self.steps = 0

    def reduced(self, world_size: int) -> tuple[float, int, int, list[int]]:
        """(loss sum, targets, bytes, targets per rank) over all ranks; `steps` becomes the ranks' total."""
        t = torch.stack([self.loss, self.bytes, torch.tensor(float(self.tokens), dtype=torch.float64),
                         torch.tensor(float(self.steps), dtype=torch.float64)])
        rank_tokens = [self.tokens]
        if world_size > 1 and dist.is_available() and dist.is_initialized():
            counts = [torch.zeros((), dtype=torch.float64) for _ in range(world_size)]
            dist.all_gather(counts, t[2].clone())
            rank_tokens = [int(c.item()) for c in counts]
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        self.steps = int(t[3].item())
        return float(t[0]), int(t[2].item()), int(t[1].item()), rank_tokens


def _score_batch(lora: SlotLoRA, opt: torch.optim.Optimizer, tokens: Tensor, batch: list[tuple[int, int]],
                 cfg: PhasedTTTConfig, seq_len: int, device: torch.device, sums: _Sums, luts: ByteLUTs,
                 byte_sidecar: Tensor | None, target_losses: Tensor | None, emit: Callable, bidx: int) -> int:
    """Score every chunk of the documents `batch` side by side, each followed by one AdamW step on it (not on a
    document's last chunk). Returns the number of steps."""
    bsz, chunk, steps = len(batch), cfg.chunk_tokens, 0
    pred = [n - 1 for _, n in batch]
    nch = [(p + chunk - 1) // chunk for p in pred]
    for ci in range(max(nch)):
        _, ctx, ref_off, _ = chunk_window(ci, (ci + 1) * chunk, ci + 1, chunk, seq_len)
        starts, wlen, offs, clen = (torch.zeros(bsz, dtype=torch.int64) for _ in range(4))
        for b, (ds, _) in enumerate(batch):
            if ci < nch[b]:
                ws, wl, co, cl = chunk_window(ci, pred[b], nch[b], chunk, seq_len)
                starts[b], wlen[b], offs[b], clen[b] = ds + ws, wl, co, cl
        col = torch.arange(ctx + 1)
        idx = (starts[:, None] + col[None]).clamp_(max=tokens.numel() - 1)
        valid = col[None, :ctx] < wlen[:, None]
        x = torch.where(valid, tokens[idx[:, :-1]], 0)
        y = torch.where(valid, tokens[idx[:, 1:]], 0)
        with autocast_for(device):
            ptl = lora.token_losses(x.to(device), y.to(device))
        pos = torch.arange(ctx)[None]
        mask = (clen[:, None] > 0) & (pos >= offs[:, None]) & (pos < (offs + clen)[:, None])
        with torch.no_grad():
            if byte_sidecar is not None:
                tb = byte_sidecar[idx[:, 1:].clamp(max=byte_sidecar.numel() - 1)].to(torch.float64)
            else:
                tb = token_bytes(x, y, luts.to("cpu")).to(torch.float64)
            lo = ptl.detach().double().cpu()
            sums.loss += (lo * mask).sum()
            sums.bytes += (tb * mask).sum()
            sums.tokens += int(mask.sum())
            if target_losses is not None:
                tpos = idx[:, :-1]  # target of x[b, j] sits at stream position idx[b, j] (target index)
                target_losses[tpos[mask]] = lo[mask]
        emit("scored", bidx, ci)
        train = torch.tensor([ci < n - 1 for n in nch], dtype=torch.float32, device=ptl.device)
        if bool(train.any()):
            per_doc = ptl[:, ref_off: ref_off + chunk].mean(dim=-1)
            opt.zero_grad(set_to_none=True)
            (per_doc * train).sum().backward()
            opt.step()
            steps += 1
            emit("updated", bidx, ci)
    return steps


def evaluate_phased_ttt(model: nn.Module, val_tokens: Tensor, luts: ByteLUTs, seq_len: int, cfg: PhasedTTTConfig,
                        bos_id: int, byte_sidecar: Tensor | None = None, device: torch.device | None = None,
                        rank: int = 0, world_size: int = 1, target_losses: Tensor | None = None,
                        callback: Callable[[str, int, int], None] | None = None) -> EvalResult:
    """Phased TTT score of `model` (a golf GPT; never modified: a deep copy is adapted) on `val_tokens` (1-D,
    starting with BOS), this process being `rank` of `world_size` (torch.distributed initialized when > 1).

    `byte_sidecar` [len(val_tokens)] counts original bytes (CaseOps); `target_losses` ([len - 1] fp64) receives
    the loss of each target this rank scored; `callback(kind, batch, index)` is called with kind "scored" /
    "updated" (batch, chunk) and "global" (the batch the phase follows, phase index).
    Raises EvalModeError without document structure, with fewer cfg.lanes than ranks, or with cfg.global_split
    on a model without the document attention mask.
    """
    if cfg.lanes < world_size:  # run-time: world size
        raise EvalModeError(f"eval.phased.lanes={cfg.lanes} is below the world size {world_size}: every rank "
                            "needs an adapter lane")
    if cfg.global_split and not getattr(model.cfg, "attn_doc_mask", False):
        raise EvalModeError("eval.phased.global_split=true needs model.attn_doc_mask=true (the documents of a "
                            "packed row must not attend to each other)")
    device = device or next(model.parameters()).device
    t0 = time.perf_counter()
    base = copy.deepcopy(model).to(device).eval()
    for p in base.parameters():
        p.requires_grad_(False)
    tokens = val_tokens.to(torch.int64).cpu()
    docs = find_documents(tokens, bos_id)
    order = batch_order(docs, cfg.doc_batch)
    plan = plan_phases(docs, order, cfg.prefix_docs, cfg.num_phases)
    gens = [torch.Generator().manual_seed(cfg.seed + LANE_SEED * lane) for lane in range(cfg.lanes)]
    sums, global_steps = _Sums(), 0

    def emit(kind: str, b: int, i: int) -> None:
        if callback is not None:
            callback(kind, b, i)

    for k, (first, end) in enumerate(plan.segments):
        for lane in range(rank, cfg.lanes, world_size):
            lora, opt = _new_adapters(base, cfg.doc_batch, cfg, gens[lane])  # a phase starts a fresh set
            for q in range(first + (lane - first) % cfg.lanes, end, cfg.lanes):  # this lane's batches, in order
                bidx, members = order[q]
                batch = [docs[i] for i in members]
                if len(batch) == cfg.doc_batch:  # B zeroed, A kept (warm start), AdamW state cleared
                    lora.reset_b()
                    opt.state.clear()
                    cur_lora, cur_opt = lora, opt
                else:
                    cur_lora, cur_opt = _new_adapters(base, len(batch), cfg, gens[lane])
                    lora.enabled = False
                sums.steps += _score_batch(cur_lora, cur_opt, tokens, batch, cfg, seq_len, device, sums, luts,
                                           byte_sidecar, target_losses, emit, bidx)
                if cur_lora is not lora:
                    cur_lora.remove()
                    lora.enabled = True
            lora.remove()
        if k < len(plan.phase_docs):
            chosen = plan.phase_docs[k]
            if chosen:  # a phase boundary of 0 documents trains on nothing (as the record)
                global_steps += global_sgd(base, torch.cat([tokens[s: s + n] for s, n in chosen]), cfg, seq_len,
                                           device, bos_id, rank, world_size)
            emit("global", order[end - 1][0], k)
    loss_sum, n_tok, n_bytes, rank_tokens = sums.reduced(world_size)
    val_loss, val_bpb = bits_per_byte(loss_sum, n_tok, n_bytes)
    return EvalResult("phased_ttt", val_loss, val_bpb, n_tok, n_bytes, time.perf_counter() - t0,
                      details={"documents": len(docs), "batches": len(order), "phases": len(plan.phase_docs),
                               "phase_boundaries": plan.boundaries, "lanes": cfg.lanes, "lora_steps": sums.steps,
                               "global_steps": global_steps, "chunk_tokens": cfg.chunk_tokens, "seq_len": seq_len},
                      world_size=world_size, rank_tokens=rank_tokens)


def score(model: nn.Module, val, cfg, ctx) -> EvalResult:
    """eval mode `phased_ttt` (golf.eval.run): `evaluate_phased_ttt` with cfg.phased on val (golf.eval.data.ValData,
    its byte sidecar when the data has one), sharded over ctx.rank / ctx.world_size."""
    return evaluate_phased_ttt(model, val.tokens, val.luts, val.seq_len, cfg.phased, val.bos_id, val.byte_sidecar,
                               ctx.device, ctx.rank, ctx.world_size, ctx.target_losses)
