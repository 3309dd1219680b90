"""Phased test-time training (eval mode ``phased_ttt``), the evaluation of the 2026-04-27 record (PR #1855;
phased TTT from PR #1610 -> multi-phase global SGD PR #1626 -> PR #1736; LoRA settings PR #1767).

Documents (a BOS starts one; each includes the next document's BOS as its last target) are sorted by length and
cut into batches of ``doc_batch``; batches run longest first. Each batch is one set of per-document LoRA
adapters (rank r, output scale alpha / r) on every virtual layer slot of the looped model — q, k, v (on the
attention input), an "o" adapter and an MLP adapter from the block's attention / MLP input to that branch's
output — and on the tied output head. Every document is cut into ``chunk_tokens``-target chunks; chunk i is
scored in a window of the last ``seq_len`` tokens of its document ending at the chunk, and only then is one
AdamW step (betas (beta1, beta2), weight decay) taken on it (never on a document's last chunk). Between
batches B is zeroed and A is kept (warm start), the AdamW state cleared.

Phases: once ``prefix_docs * k / num_phases`` documents are scored (k = 1..num_phases), the base weights are
trained by SGD (momentum, cosine LR over 32,768-token chunks, grad clip, the last chunk skipped) on those
already-scored documents (cumulative), and a fresh adapter set starts. Later documents are scored with the
updated weights: score-first throughout. Runs in one process (every rank computes the same result).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from golf.device import autocast_for
from golf.eval.bpb import ByteLUTs, bits_per_byte, token_bytes
from golf.eval.config import PhasedTTTConfig
from golf.eval.standard import EvalResult
from golf.eval.windows import EvalModeError


def find_documents(tokens: Tensor, bos_id: int) -> list[tuple[int, int]]:
    """(start, length) per document of a token stream starting with BOS; length counts the next BOS too."""
    bos = (tokens == bos_id).nonzero(as_tuple=True)[0].tolist()
    if not bos or bos[0] != 0:
        raise EvalModeError("phased_ttt needs a token stream that starts with a BOS (document-structured data)")
    ends = [b + 1 for b in bos[1:]] + [tokens.numel()]
    return [(s, e - s) for s, e in zip(bos, ends, strict=True) if e - s >= 2]


def batch_order(docs: list[tuple[int, int]], size: int) -> list[tuple[int, list[int]]]:
    """(length-sorted batch index, doc indices) per batch: docs by ascending length in batches of `size`,
    batches ordered by descending longest document (the record's _build_ttt_global_batches)."""
    by_len = sorted(range(len(docs)), key=lambda i: docs[i][1])
    batches = [by_len[i: i + size] for i in range(0, len(by_len), size)]
    indexed = list(enumerate(batches))
    indexed.sort(key=lambda ib: -max(docs[i][1] for i in ib[1]))
    return indexed


def chunk_window(ci: int, pred_len: int, num_chunks: int, chunk: int, seq_len: int) -> tuple[int, int, int, int]:
    """(window start, window length, chunk offset in the window, chunk length) of chunk ci of a document with
    pred_len targets: the window is the last seq_len tokens ending at the chunk's end."""
    end = pred_len if ci == num_chunks - 1 else (ci + 1) * chunk
    start = max(0, end - seq_len)
    return start, end - start, ci * chunk - start, end - ci * chunk


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
        self.model, self.scale, self.enabled = model, alpha / rank, True
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


def global_sgd(model: nn.Module, tokens: Tensor, cfg: PhasedTTTConfig, seq_len: int, device: torch.device) -> int:
    """SGD on already-scored document tokens (the record's train_val_ttt_global_sgd_distributed): chunks of
    global_chunk_tokens, cosine LR, batches of global_batch_seqs windows as one packed row, last chunk skipped.
    Returns the number of optimizer steps."""
    params = list(model.parameters())
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.SGD(params, lr=cfg.global_lr, momentum=cfg.global_momentum)
    total = tokens.numel() - 1
    n_chunks = (total + cfg.global_chunk_tokens - 1) // cfg.global_chunk_tokens
    steps = 0
    model.train()
    for ci in range(n_chunks - 1):  # the last chunk is never trained on
        start, end = ci * cfg.global_chunk_tokens, min((ci + 1) * cfg.global_chunk_tokens, total)
        seqs = (end - start) // seq_len
        lr = cfg.global_lr * 0.5 * (1.0 + math.cos(math.pi * ci / max(n_chunks - 1, 1)))
        for g in opt.param_groups:
            g["lr"] = lr
        for _ in range(cfg.global_epochs):
            for bs in range(0, seqs, cfg.global_batch_seqs):
                be = min(bs + cfg.global_batch_seqs, seqs)
                local = tokens[start + bs * seq_len: start + be * seq_len + 1].to(device, torch.int64)
                opt.zero_grad(set_to_none=True)
                with torch.enable_grad(), autocast_for(device):
                    loss = model(local[None, :-1], local[None, 1:])
                loss.backward()
                if cfg.global_grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(params, cfg.global_grad_clip)
                opt.step()
                steps += 1
    model.eval()
    for p in params:
        p.requires_grad_(False)
    return steps


def evaluate_phased_ttt(model: nn.Module, val_tokens: Tensor, luts: ByteLUTs, seq_len: int, cfg: PhasedTTTConfig,
                        bos_id: int, byte_sidecar: Tensor | None = None, device: torch.device | None = None,
                        target_losses: Tensor | None = None, callback: Callable[[str, int, int], None] | None = None,
                        **_) -> EvalResult:
    """Phased TTT score of `model` (a golf GPT; never modified: a deep copy is adapted) on `val_tokens` (1-D,
    starting with BOS). `byte_sidecar` [len(val_tokens)] counts original bytes (CaseOps); `target_losses`
    ([len - 1] fp64) receives each target's scored loss; `callback(kind, batch, chunk)` is called with
    kind "scored" / "updated" / "global". Raises EvalModeError without document structure.
    """
    device = device or next(model.parameters()).device
    t0 = time.perf_counter()
    base = copy.deepcopy(model).to(device).eval()
    for p in base.parameters():
        p.requires_grad_(False)
    tokens = val_tokens.to(torch.int64).cpu()
    docs = find_documents(tokens, bos_id)
    order = batch_order(docs, cfg.doc_batch)
    prefix = min(cfg.prefix_docs, len(docs))
    bounds = [prefix * (k + 1) // cfg.num_phases for k in range(cfg.num_phases)]
    gen = torch.Generator().manual_seed(cfg.seed)
    lora, opt = _new_adapters(base, cfg.doc_batch, cfg, gen)
    loss_sum = torch.zeros((), dtype=torch.float64)
    byte_sum = torch.zeros((), dtype=torch.float64)
    n_tok, phase, scored, global_steps, lora_steps = 0, 0, [], 0, 0
    chunk = cfg.chunk_tokens
    for bidx, members in order:
        batch = [docs[i] for i in members]
        bsz = len(batch)
        if bsz == cfg.doc_batch:
            lora.reset_b()
            opt.state.clear()
            cur_lora, cur_opt = lora, opt
        else:
            cur_lora, cur_opt = _new_adapters(base, bsz, cfg, gen)
            lora.enabled = False
        pred = [n - 1 for _, n in batch]
        nch = [(p + chunk - 1) // chunk for p in pred]
        for ci in range(max(nch)):
            _, ctx, ref_off, _ = chunk_window(ci, (ci + 1) * chunk, ci + 1, chunk, seq_len)
            starts = torch.zeros(bsz, dtype=torch.int64)
            wlen, offs, clen = (torch.zeros(bsz, dtype=torch.int64) for _ in range(3))
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
                ptl = cur_lora.token_losses(x.to(device), y.to(device))
            pos = torch.arange(ctx)[None]
            mask = (clen[:, None] > 0) & (pos >= offs[:, None]) & (pos < (offs + clen)[:, None])
            with torch.no_grad():
                if byte_sidecar is not None:
                    tb = byte_sidecar[idx[:, 1:].clamp(max=byte_sidecar.numel() - 1)].to(torch.float64)
                else:
                    tb = token_bytes(x, y, luts.to("cpu")).to(torch.float64)
                lo = ptl.detach().double().cpu()
                loss_sum += (lo * mask).sum()
                byte_sum += (tb * mask).sum()
                n_tok += int(mask.sum())
                if target_losses is not None:
                    tpos = idx[:, :-1]  # target of x[b, j] sits at stream position idx[b, j] (target index)
                    target_losses[tpos[mask]] = lo[mask]
            if callback is not None:
                callback("scored", bidx, ci)
            train = torch.tensor([ci < n - 1 for n in nch], dtype=torch.float32, device=ptl.device)
            if bool(train.any()):
                per_doc = ptl[:, ref_off: ref_off + chunk].mean(dim=-1)
                cur_opt.zero_grad(set_to_none=True)
                (per_doc * train).sum().backward()
                cur_opt.step()
                lora_steps += 1
                if callback is not None:
                    callback("updated", bidx, ci)
        if cur_lora is not lora:
            cur_lora.remove()
            lora.enabled = True
        if phase < cfg.num_phases and prefix > 0:
            scored.extend((bidx, pos, ds, n) for pos, (ds, n) in enumerate(batch))
            if len(scored) >= bounds[phase]:
                chosen = sorted(scored, key=lambda s: (s[0], s[1]))[: bounds[phase]]
                lora.remove()
                if chosen:  # a phase boundary of 0 documents trains on nothing (as the record)
                    global_steps += global_sgd(base, torch.cat([tokens[s: s + n] for _, _, s, n in chosen]), cfg,
                                               seq_len, device)
                if callback is not None:
                    callback("global", bidx, phase)
                lora, opt = _new_adapters(base, cfg.doc_batch, cfg, gen)
                phase += 1
    lora.remove()
    val_loss, val_bpb = bits_per_byte(float(loss_sum), n_tok, int(byte_sum.item()))
    return EvalResult("phased_ttt", val_loss, val_bpb, n_tok, int(byte_sum.item()), time.perf_counter() - t0,
                      details={"documents": len(docs), "batches": len(order), "phases": phase,
                               "phase_boundaries": bounds, "lora_steps": lora_steps, "global_steps": global_steps,
                               "chunk_tokens": chunk, "seq_len": seq_len})


def score(model: nn.Module, val, cfg, ctx) -> EvalResult:
    """eval mode `phased_ttt` (golf.eval.run): `evaluate_phased_ttt` with cfg.phased on val (golf.eval.data.ValData,
    its byte sidecar when the data has one)."""
    return evaluate_phased_ttt(model, val.tokens, val.luts, val.seq_len, cfg.phased, val.bos_id, val.byte_sidecar,
                               device=ctx.device)
