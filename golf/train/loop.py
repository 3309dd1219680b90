"""The training run: official `train_gpt.py` semantics, driven by a typed `TrainRunConfig`.

Order of work: join the process group -> load tokenizer, byte LUTs and val tokens -> build model and optimizers
-> priming steps (rolled back) -> timed loop with the wallclock-aware warmdown -> final validation ->
metrics.json + checkpoint (rank 0). Evaluation time is excluded from the training clock.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from golf.data.loader import DistributedTokenLoader
from golf.data.samplers import build_train_loader
from golf.data.tokenizer import load_tokenizer
from golf.device import autocast_for
from golf.errors import ConfigError
from golf.eval.data import load_val_data
from golf.eval.standard import evaluate_standard
from golf.model import build_model, cast_for_device, count_params
from golf.optim import apply_lr_scale, build_optimizers, lr_multiplier, muon_momentum_at, set_muon_momentum
from golf.train.checkpoint import CHECKPOINT_NAME, save_checkpoint
from golf.train.dist import DistContext, all_reduce_max, init_distributed, teardown
from golf.train.techniques import build_hooks
from golf.train.tracking import METRICS_NAME, Tracker, write_json

log = logging.getLogger("golf.train")


@dataclass
class RunInfo:
    """What the entrypoint knows about the run besides the config."""

    run_dir: Path
    name: str
    group: str
    tags: list[str]
    config: dict
    """Resolved config as plain containers (logged to W&B)."""
    after_train: Callable[[dict, nn.Module, Tracker], dict] | None = None
    """Called on every rank after training, before the W&B run closes: (metrics, model, tracker) -> metrics
    (golf.sweep.job: export inside the job, rank consistency check, W&B summary)."""


def grad_accum_steps_for(cfg, world_size: int) -> int:
    """grad_accum_base // world_size, validated so the global batch is the same for every world size."""
    t = cfg.trainer
    if t.grad_accum_base % world_size:
        raise ConfigError(f"trainer.grad_accum_base={t.grad_accum_base} must be divisible by world_size={world_size}")
    accum = t.grad_accum_base // world_size
    step_unit = world_size * accum * t.train_seq_len
    if t.train_batch_tokens % step_unit:
        raise ConfigError(
            f"trainer.train_batch_tokens={t.train_batch_tokens} must be divisible by world_size x grad_accum_steps x "
            f"train_seq_len = {world_size} x {accum} x {t.train_seq_len} = {step_unit}")
    return accum


def check_vocab(cfg) -> None:
    """model.vocab_size and data.vocab_size must equal the tokenizer's vocabulary (official L808-811)."""
    sp = load_tokenizer(cfg.data.resolve_tokenizer_path(), None)
    n = int(sp.vocab_size())
    for key, value in (("model.vocab_size", cfg.model.vocab_size), ("data.vocab_size", cfg.data.vocab_size)):
        if value != n:
            raise ConfigError(f"{key}={value} does not match the tokenizer's vocab_size={n} "
                              f"({cfg.data.resolve_tokenizer_path()})")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def train(cfg, info: RunInfo) -> dict:
    """Train, evaluate and save. Returns the final metrics (val_loss, val_bpb, steps, ...) on every rank."""
    ctx = init_distributed(cfg.trainer.device)
    tracker = None
    try:
        tracker = Tracker(cfg.logger, info.run_dir, job_type="train", config=info.config, name=info.name,
                          group=info.group, tags=info.tags, active=ctx.is_main)
        metrics, model = _train(cfg, info, ctx, tracker)
        tracker.summary({"val/bpb": metrics["val_bpb"], "val/loss": metrics["val_loss"], "params": metrics["params"],
                         "steps": metrics["steps"], "train_time_s": metrics["train_time_s"]})
        if info.after_train is not None:
            metrics = info.after_train(metrics, model, tracker)
        tracker.finish(0)
        teardown(barrier=True)
        return metrics
    except BaseException:
        if tracker is not None:
            tracker.finish(1)
        raise
    finally:
        teardown()


def _train(cfg, info: RunInfo, ctx: DistContext, tracker: Tracker) -> tuple[dict, nn.Module]:
    device, t = ctx.device, cfg.trainer
    accum = grad_accum_steps_for(cfg, ctx.world_size)
    check_vocab(cfg)
    seed_everything(cfg.seed)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    eval_seq = cfg.eval.seq_len or t.train_seq_len
    val = load_val_data(cfg.data, cfg.model.vocab_size, eval_seq, cfg.eval.max_tokens)
    val_tokens, luts = val.tokens, val.luts
    log.info(f"val_bpb:enabled tokenizer_kind=sentencepiece tokenizer_path={cfg.data.resolve_tokenizer_path()}")
    log.info(f"val_loader:shards pattern={cfg.data.val_glob()} tokens:{val_tokens.numel() - 1}")

    base_model = cast_for_device(build_model(cfg.model), device, tuple(cfg.optim.control_tensor_patterns))
    hooks = build_hooks(cfg)
    for hook in hooks:
        hook.on_model_built(base_model)
    compiled = _maybe_compile(base_model, t.compile, device)
    model: nn.Module = DDP(compiled, device_ids=[device.index] if device.type == "cuda" else None,
                           broadcast_buffers=False) if ctx.distributed else compiled
    optimizers = build_optimizers(base_model, cfg.optim, cfg.model.tie_embeddings, rank=ctx.rank,
                                  world_size=ctx.world_size)
    n_params = count_params(base_model)
    log.info(f"model_params:{n_params}")
    log.info(f"world_size:{ctx.world_size} grad_accum_steps:{accum} device:{device}")
    log.info(f"attention_mode:gqa num_heads:{cfg.model.num_heads} num_kv_heads:{cfg.model.num_kv_heads}")
    log.info(f"train_batch_tokens:{t.train_batch_tokens} train_seq_len:{t.train_seq_len} "
             f"iterations:{cfg.schedule.iterations} warmup_steps:{cfg.schedule.warmup_steps} "
             f"max_wallclock_seconds:{cfg.schedule.max_wallclock_seconds:.3f}")
    log.info(f"seed:{cfg.seed}")

    def new_loader() -> DistributedTokenLoader:  # or a sampling loader (data.loader), same next_batch
        return build_train_loader(cfg.data, ctx.rank, ctx.world_size, device, t.train_seq_len)

    def train_step(loader: DistributedTokenLoader) -> torch.Tensor:
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        total = torch.zeros((), device=device)
        for micro in range(accum):
            if ctx.distributed:
                model.require_backward_grad_sync = micro == accum - 1
            x, y = loader.next_batch(t.train_batch_tokens, t.train_seq_len, accum)
            with autocast_for(device):
                loss = model(x, y)
            total += loss.detach()
            (loss / accum).backward()
        return total / accum

    def validate():
        return evaluate_standard(model, val_tokens, luts, eval_seq, cfg.eval.batch_tokens, ctx.rank,
                                 ctx.world_size, accum, device)

    loader = new_loader()
    sched = cfg.schedule
    if sched.warmup_steps > 0:  # priming: compile/warm the kernels, then restore the true init
        init_model = {k: v.detach().clone() for k, v in base_model.state_dict().items()}
        init_opts = [copy.deepcopy(opt.state_dict()) for opt in optimizers]
        model.train()
        def priming_step() -> None:
            train_step(loader)
            for opt in optimizers:
                opt.step()

        for i in range(sched.warmup_steps):
            priming_step()
            log.info(f"warmup_step:{i + 1}/{sched.warmup_steps}")
        for hook in hooks:
            hook.prime(base_model, priming_step)
        base_model.load_state_dict(init_model, strict=True)
        for opt, state in zip(optimizers, init_opts, strict=True):
            opt.load_state_dict(state)
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        if ctx.distributed:
            model.require_backward_grad_sync = True
        loader = new_loader()

    for hook in hooks:
        hook.on_train_start(base_model, optimizers)
    # Training stops at the wallclock cap minus the GPTQ reserve (0 by default = the official cap), leaving
    # the reserve for post-training quantization inside the challenge's 600 s.
    cap_ms = sched.schedule_cap_ms
    tokens_per_step = t.train_batch_tokens
    train_ms, step, stop_after = 0.0, 0, None
    last_val = None
    _sync(device)
    t0 = time.perf_counter()
    while True:
        last_step = step == sched.iterations or (stop_after is not None and step >= stop_after)
        if last_step:
            for hook in hooks:
                hook.on_train_end(base_model)
        if last_step or (sched.val_loss_every > 0 and step % sched.val_loss_every == 0):
            _sync(device)
            train_ms += 1000.0 * (time.perf_counter() - t0)
            last_val = validate()
            log.info(f"step:{step}/{sched.iterations} val_loss:{last_val.val_loss:.4f} val_bpb:{last_val.val_bpb:.4f} "
                     f"train_time:{train_ms:.0f}ms step_avg:{train_ms / max(step, 1):.2f}ms")
            tracker.log({"val/loss": last_val.val_loss, "val/bpb": last_val.val_bpb}, step)
            _sync(device)
            t0 = time.perf_counter()
        if last_step:
            if stop_after is not None and step < sched.iterations:
                log.info(f"stopping_early: wallclock_cap train_time:{train_ms:.0f}ms step:{step}/{sched.iterations}")
            break

        elapsed = train_ms + 1000.0 * (time.perf_counter() - t0)
        scale = lr_multiplier(step, elapsed, sched)
        train_loss = train_step(loader)
        set_muon_momentum(optimizers, muon_momentum_at(step, cfg.optim))
        apply_lr_scale(optimizers, scale)
        if cfg.optim.grad_clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(base_model.parameters(), cfg.optim.grad_clip_norm)
        for opt in optimizers:
            opt.step()
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        step += 1
        hook_metrics: dict[str, float] = {}
        for hook in hooks:
            hook_metrics.update(hook.on_step_end(step, scale, base_model))
        if hook_metrics:
            tracker.log(hook_metrics, step)

        approx_ms = train_ms + 1000.0 * (time.perf_counter() - t0)
        every = sched.train_log_every
        if every > 0 and (step <= 10 or step % every == 0 or stop_after is not None):
            _log_train(step, sched, train_loss.item(), scale, approx_ms, tokens_per_step, cap_ms, tracker, optimizers)
        reached = cap_ms is not None and approx_ms >= cap_ms
        if cap_ms is not None and all_reduce_max(reached, device) and stop_after is None:
            stop_after = step

    if device.type == "cuda":
        log.info(f"peak memory allocated: {torch.cuda.max_memory_allocated() // 2**20} MiB "
                 f"reserved: {torch.cuda.max_memory_reserved() // 2**20} MiB")
    metrics = {
        "val_loss": last_val.val_loss, "val_bpb": last_val.val_bpb, "steps": step,
        "train_time_s": train_ms / 1000.0, "tokens_seen": step * tokens_per_step, "params": n_params,
        "ms_per_step": train_ms / max(step, 1), "val_tokens": last_val.tokens, "val_bytes": last_val.bytes,
        "world_size": ctx.world_size, "device": device.type,
    }
    if ctx.is_main:
        write_json(info.run_dir / METRICS_NAME, metrics)
        if t.checkpoint:
            save_checkpoint(info.run_dir / CHECKPOINT_NAME, base_model, optimizers, step, cfg)
    log.info(f"final val_loss:{metrics['val_loss']:.4f} val_bpb:{metrics['val_bpb']:.4f} steps:{step} "
             f"train_time:{train_ms:.0f}ms params:{n_params}")
    return metrics, base_model


def _log_train(step, sched, loss, scale, approx_ms, tokens_per_step, cap_ms, tracker, optimizers) -> None:
    ms_per_step = approx_ms / step
    tok_s = tokens_per_step / (ms_per_step / 1000.0)
    remaining_steps_ms = (sched.iterations - step) * ms_per_step
    eta_ms = min(remaining_steps_ms, cap_ms - approx_ms) if cap_ms is not None else remaining_steps_ms
    lr = next((o.param_groups[0]["lr"] for o in optimizers if type(o).__name__ == "Muon"),
              optimizers[0].param_groups[0]["lr"])
    log.info(f"step:{step}/{sched.iterations} train_loss:{loss:.4f} lr:{lr:.4g} lr_scale:{scale:.4f} "
             f"train_time:{approx_ms:.0f}ms step_avg:{ms_per_step:.2f}ms tok/s:{tok_s:,.0f} "
             f"eta:{max(eta_ms, 0) / 1000:.0f}s")
    if not math.isfinite(loss):
        raise FloatingPointError(f"train_loss is {loss} at step {step}; lower the learning rates")
    tracker.log({"train/loss": loss, "train/lr": lr, "train/lr_scale": scale, "train/tokens_per_s": tok_s,
                 "train/ms_per_step": ms_per_step}, step)


def _maybe_compile(model: nn.Module, switch: str, device: torch.device) -> nn.Module:
    if switch == "on" or (switch == "auto" and device.type == "cuda"):
        return torch.compile(model, dynamic=False, fullgraph=True)
    return model


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
