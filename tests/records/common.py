"""Helpers shared by the record specs: reduced scale, name maps, hyperparameter lists, record-side calls."""

from __future__ import annotations

import io
import types

import torch
from torch import Tensor, nn

from records.oracle import HParam

# Reduced width shared by the forward checks: d 128, 4 heads / 2 KV heads (head_dim 32 >= 16 rotated dims).
SMALL_ENV = {"MODEL_DIM": "128", "NUM_HEADS": "4", "NUM_KV_HEADS": "2"}
SMALL_GOLF = ["model.model_dim=128", "model.num_heads=4", "model.num_kv_heads=2"]


def _ints(csv: object) -> list[int]:
    return [int(x) for x in str(csv).split(",") if x.strip()]


def _split_meta(result: dict[str, Tensor], meta: dict[str, object]) -> dict[str, dict]:
    """The records' (result, meta) of mixed_quantize_int6 / gptq_mixed_quantize -> {name: {"q", "scale"} |
    {"passthrough"}} (a quantized tensor stores `<name>.q` and `<name>.scale`)."""
    out: dict[str, dict] = {}
    for name in meta:
        if name + ".q" in result:
            out[name] = {"q": result[name + ".q"], "scale": result[name + ".scale"]}
        else:
            out[name] = {"passthrough": result[name]}
    return out


def _quantize_0322(mod: types.ModuleType, sd: dict[str, Tensor]) -> dict[str, dict]:
    return _split_meta(*mod.mixed_quantize_int6(sd, {"mlp", "attn"}))


def _serialize_0322(mod: types.ModuleType, sd: dict[str, Tensor]) -> int:
    import zstandard

    result, meta = mod.mixed_quantize_int6(sd, {"mlp", "attn"})
    buf = io.BytesIO()
    torch.save({"w": result, "m": meta}, buf)
    return len(zstandard.ZstdCompressor(level=22).compress(buf.getvalue()))


PR374_NAME_MAP = [
    (r"bigram\.embed\.weight", "bigram.table.weight"),
    (r"ve_shared\.(.*)", r"value_embed.\1"),
    (r"ve_layer_scales\.(\d+)", r"value_embed.layer_scales.\1"),
]
# Record SmearGate: (1 - σ(θ')) x + σ(θ') x_prev; golf v1: σ(θ) x + (1 - σ(θ)) x_prev -> θ = -θ'.
PR374_TRANSFORMS = {"smear.gate": lambda t: -t}


def _hp_common() -> list[HParam]:
    """Hyperparameters every 03-2x record defines with the same name and meaning."""
    names = {
        "matrix_lr": "optim.matrix_lr", "scalar_lr": "optim.scalar_lr", "tied_embed_lr": "optim.tied_embed_lr",
        "tied_embed_init_std": "model.tied_embed_init_std", "muon_momentum": "optim.muon_momentum",
        "muon_momentum_warmup_start": "optim.muon_momentum_warmup_start",
        "muon_momentum_warmup_steps": "optim.muon_momentum_warmup_steps",
        "muon_backend_steps": "optim.muon_backend_steps", "beta1": "optim.beta1", "beta2": "optim.beta2",
        "adam_eps": "optim.adam_eps", "grad_clip_norm": "optim.grad_clip_norm",
        "warmdown_iters": "schedule.warmdown_iters", "warmup_steps": "schedule.warmup_steps",
        "iterations": "schedule.iterations", "max_wallclock_seconds": "schedule.max_wallclock_seconds",
        "train_batch_tokens": "trainer.train_batch_tokens", "train_seq_len": "trainer.train_seq_len",
        "eval_stride": "eval.stride", "seed": "seed", "vocab_size": "model.vocab_size",
        "num_layers": "model.num_layers", "model_dim": "model.model_dim", "num_heads": "model.num_heads",
        "num_kv_heads": "model.num_kv_heads", "mlp_mult": "model.mlp_mult", "tie_embeddings": "model.tie_embeddings",
        "rope_base": "model.rope_base", "logit_softcap": "model.logit_softcap", "qk_gain_init": "model.qk_gain_init",
    }
    return [HParam(k, v) for k, v in names.items()]


def _hp_pr374() -> list[HParam]:
    return [
        *_hp_common(),
        HParam("muon_wd", "optim.muon_wd"), HParam("eval_seq_len", "eval.seq_len|trainer.train_seq_len"),
        HParam("adam_wd", "optim.embed_wd"), HParam("adam_wd", "optim.scalar_wd"),
        HParam("bigram_vocab_size", "model.bigram_buckets"), HParam("bigram_dim", "model.bigram_dim"),
        HParam("xsa_last_n", "model.xsa_last_n"), HParam("rope_dims", "model.rope_dims"),
        HParam("ln_scale", "model.ln_scale"), HParam("ve_dim", "model.value_embed_dim"),
        HParam("ve_layers", "model.value_embed_layers", _ints),
        HParam("late_qat_threshold", "quant.qat.late_threshold"),
        HParam(r"src:Rotary\(head_dim, base=rope_base, train_seq_len=(\d+)", "model.rope_train_seq_len", int),
        HParam(r"src:ema_decay = ([0-9.]+)", "averaging.ema_decay"),
    ]


# The 03-2x logs print the token-embedding lr as embed_lr (tied_embed_lr when tied) and head_lr 0.0 when tied.
LOG_ALIASES_0320: dict[str, str | None] = {"embed_lr": "tied_embed_lr", "head_lr": None}


def _logits_forward_logits(model: nn.Module, ids: Tensor) -> Tensor:
    return model.forward_logits(ids)


class _TokenBatches:
    """Stand-in for a record's train loader in its own Hessian collection: real FineWeb sequences."""

    def __init__(self, seq_len: int = 512, vocab: int = 8192):
        from records.oracle import fineweb_tokens

        self.tokens = fineweb_tokens(vocab, 4 * seq_len)
        self.seq_len, self.i = seq_len, 0

    def next_batch(self, *_: object) -> tuple[Tensor, Tensor]:
        s = self.i * self.seq_len
        self.i = (self.i + 1) % 4
        chunk = self.tokens[s : s + self.seq_len + 1]
        return chunk[:-1][None], chunk[1:][None]


def _hessians_0409(mod: types.ModuleType, model: nn.Module) -> dict[str, Tensor]:
    return mod.collect_hessians(model, _TokenBatches(), mod.Hyperparameters(), torch.device("cpu"),
                                n_calibration_batches=2)


HESSIANS: dict[str, Tensor] = {}
