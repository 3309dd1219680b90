"""Evaluation schema (plain dataclasses): the `eval` config group and its nested `eval.ttt` options."""

from __future__ import annotations

from dataclasses import dataclass, field

EVAL_MODES = ("standard", "sliding", "ttt", "phased_ttt")
GAP_MODES = ("mode", "standard")
TTT_PARAMS = ("full", "lora")
TTT_OPTIMIZERS = ("sgd", "adam", "adamw")
TTT_LR_SCHEDULES = ("cosine", "constant")
TTT_RESETS = ("never", "document")


def _allowed(key: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{key}={value!r}; allowed: {', '.join(allowed)}")


@dataclass
class TTTConfig:
    """Legal score-first test-time training (`eval.mode=ttt`), Issue #1017's four conditions.

    The scored stream is cut into chunks of `chunk_tokens` targets; each chunk is scored with the current
    weights, then (only then) used for `epochs` passes of updates. Defaults are the full-parameter SGD recipe
    of PR #461 / record `2026-03-23_LeakyReLU_LegalTTT_ParallelMuon` (PR #549).
    """

    params: str = "full"
    """What is trained: full (all model parameters) or lora (low-rank adapters on `lora_targets`)."""
    chunk_tokens: int = 32_768
    """Targets per chunk: a chunk is scored, then trained on (PR #549: 32,768)."""
    epochs: int = 3
    """Optimizer passes over each scored chunk; steps per chunk = epochs x ceil(chunk windows / batch_seqs)."""
    batch_seqs: int = 32
    """Training windows (of up to eval.seq_len tokens) per optimizer step, summed over ranks."""
    optimizer: str = "sgd"
    """sgd, adam or adamw."""
    lr: float = 0.002
    """Peak learning rate."""
    lr_schedule: str = "cosine"
    """cosine (lr * (1 + cos(pi * chunk / (chunks - 1))) / 2 over the chunks of the stream, PR #549; with
    reset=document over the chunks of the batch's longest document) or constant."""
    momentum: float = 0.9
    """SGD momentum."""
    beta1: float = 0.9
    """Adam/AdamW beta1."""
    beta2: float = 0.999
    """Adam/AdamW beta2."""
    eps: float = 1e-8
    """Adam/AdamW epsilon."""
    weight_decay: float = 0.0
    """Weight decay (SGD: L2 in the gradient; AdamW: decoupled)."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value; 0 = off."""
    freeze_blocks: int = 0
    """params=full: keep the first N transformer blocks fixed (PR #549 TTT_FREEZE_BLOCKS)."""
    lora_rank: int = 8
    """params=lora: adapter rank r."""
    lora_alpha: float = 0.0
    """params=lora: the adapter output is scaled by alpha / rank; 0 means alpha = rank (scale 1)."""
    lora_targets: list[str] = field(default_factory=lambda: ["c_q", "c_v"])
    """params=lora: CastedLinear modules whose name contains one of these strings get an adapter
    (e.g. c_q, c_k, c_v, attn.proj, mlp.fc, mlp.proj, lm_head)."""
    reset: str = "never"
    """never: one stream over the whole val set; document: every document is its own stream with freshly
    initialized adapters (needs params=lora and eval.doc_aware=true; records 2026-03-17_LoRA_TTT, PR #1530)."""
    doc_batch: int = 64
    """reset=document: documents adapted side by side (one adapter set each) per batch."""
    seed: int = 0
    """Seed of the adapter initialization (so repeated evaluations are identical)."""

    def __post_init__(self) -> None:
        _allowed("eval.ttt.params", self.params, TTT_PARAMS)
        _allowed("eval.ttt.optimizer", self.optimizer, TTT_OPTIMIZERS)
        _allowed("eval.ttt.lr_schedule", self.lr_schedule, TTT_LR_SCHEDULES)
        _allowed("eval.ttt.reset", self.reset, TTT_RESETS)
        for key in ("chunk_tokens", "batch_seqs", "lora_rank", "doc_batch"):
            if getattr(self, key) < 1:
                raise ValueError(f"eval.ttt.{key}={getattr(self, key)} must be >= 1")
        for key in ("epochs", "lr", "grad_clip", "freeze_blocks", "weight_decay", "lora_alpha"):
            if getattr(self, key) < 0:
                raise ValueError(f"eval.ttt.{key}={getattr(self, key)} must be >= 0")
        if not (0.0 <= self.momentum < 1.0 and 0.0 <= self.beta1 < 1.0 and 0.0 <= self.beta2 < 1.0):
            raise ValueError("eval.ttt.momentum, eval.ttt.beta1 and eval.ttt.beta2 must be in [0, 1)")
        if self.eps <= 0:
            raise ValueError(f"eval.ttt.eps={self.eps} must be > 0")
        if self.params == "lora" and not self.lora_targets:
            raise ValueError("eval.ttt.lora_targets is empty; name at least one module (e.g. [c_q, c_v])")
        if self.reset == "document" and self.params != "lora":
            raise ValueError("eval.ttt.reset=document needs eval.ttt.params=lora (per-document adapters)")


@dataclass
class PhasedTTTConfig:
    """Phased TTT (`eval.mode=phased_ttt`, golf.eval.phased_ttt), defaults = the 2026-04-27 record (PR #1855):
    per-document LoRA on every virtual layer slot and the tied head, 3 phases of global SGD on the scored prefix."""

    lora_rank: int = 80
    """Adapter rank (TTT_LORA_RANK; one of the record's greedy overrides, default 96 before)."""
    lora_alpha: float = 144.0
    """Adapter output scale alpha / rank (TTT_LORA_ALPHA, PR #1767)."""
    lr: float = 1e-4
    """AdamW learning rate of the adapters (TTT_LORA_LR)."""
    beta1: float = 0.0
    """AdamW beta1 (TTT_BETA1)."""
    beta2: float = 0.99
    """AdamW beta2 (TTT_BETA2; greedy override, 0.999 before)."""
    eps: float = 1e-10
    """AdamW epsilon."""
    weight_decay: float = 0.5
    """AdamW weight decay (TTT_WEIGHT_DECAY; greedy override, 1.0 before)."""
    chunk_tokens: int = 48
    """Targets per chunk: each is scored, then one step is taken on it (TTT_CHUNK_SIZE)."""
    doc_batch: int = 64
    """Documents adapted side by side (TTT_BATCH_SIZE)."""
    prefix_docs: int = 2500
    """Documents (in processing order) whose scoring triggers the global phases (PHASED_TTT_PREFIX_DOCS)."""
    num_phases: int = 3
    """Global SGD phases at prefix_docs * k / num_phases scored documents (PHASED_TTT_NUM_PHASES)."""
    global_lr: float = 0.001
    """Global SGD learning rate, cosine over chunks (GLOBAL_TTT_LR)."""
    global_momentum: float = 0.9
    """Global SGD momentum (GLOBAL_TTT_MOMENTUM)."""
    global_epochs: int = 1
    """Passes over each global chunk (GLOBAL_TTT_EPOCHS)."""
    global_chunk_tokens: int = 32768
    """Tokens per global-SGD chunk (GLOBAL_TTT_CHUNK_TOKENS)."""
    global_batch_seqs: int = 32
    """Windows of eval.seq_len per global-SGD step (GLOBAL_TTT_BATCH_SEQS)."""
    global_grad_clip: float = 1.0
    """Global-norm gradient clip of the global SGD (GLOBAL_TTT_GRAD_CLIP)."""
    seed: int = 0
    """Seed of the adapters' A initialization (lane l draws from seed + 1,000,003 * l)."""
    lanes: int = 8
    """Adapter lanes: the processing-order batch q runs on lane q % lanes, which keeps its own warm-started A
    within a phase; lane l runs on rank l % world_size, so the score depends on lanes, never on the number of
    ranks (at most `lanes`). 8 = the record's 8xH100 run (one adapter set per GPU; the record's ranks take batches
    from a shared counter as they finish, golf in turn); 1 = the record's single-process routine."""

    global_split: bool = False
    """On several ranks, split each global-SGD step's packed row between the ranks at document starts and sum
    the gradients (needs model.attn_doc_mask) instead of every rank computing the whole step. Equal to one rank
    up to float summation order, which the adapters' AdamW (beta1 0, eps 1e-10: nearly sign-of-gradient first
    steps) can amplify in the later documents' scores; off = every rank computes the one-process update."""

    def __post_init__(self) -> None:
        for key in ("lora_rank", "chunk_tokens", "doc_batch", "num_phases", "global_chunk_tokens",
                    "global_batch_seqs", "lanes"):
            if getattr(self, key) < 1:
                raise ValueError(f"eval.phased.{key}={getattr(self, key)} must be >= 1")
        if self.prefix_docs < 0 or self.global_epochs < 0:
            raise ValueError("eval.phased.prefix_docs and eval.phased.global_epochs must be >= 0")


@dataclass
class EvalConfig:
    """How val_bpb is computed. `standard` = non-overlapping windows of seq_len, as official `eval_val`."""

    mode: str = "standard"
    """Evaluation mode; allowed: standard, sliding, ttt. train.py and export.py score with this mode."""
    modes: list[str] = field(default_factory=list)
    """eval.py: score these modes one after another on one loaded model (empty = [mode])."""
    seq_len: int = 0
    """Window length in tokens; 0 = the training sequence length."""
    batch_tokens: int = 524_288
    """Tokens per evaluation step summed over ranks (official VAL_BATCH_SIZE)."""
    max_tokens: int = 0
    """Evaluate only the first N validation tokens (0 = all); for quick checks, never for reported scores."""
    time_budget_s: float = 600.0
    """Warn when an evaluation takes longer than this many seconds (the challenge's eval limit)."""
    stride: int = 64
    """sliding/ttt: new targets scored per window; every later window sees seq_len - stride tokens of context
    (record 2026-03-19_SlidingWindowEval: 64). stride = seq_len gives non-overlapping windows."""
    doc_aware: bool = False
    """sliding/ttt: reset the context at every BOS token, so no target attends across a document boundary
    (standard always stays official)."""
    ttt: TTTConfig = field(default_factory=TTTConfig)
    """Test-time training options (mode ttt)."""
    phased: PhasedTTTConfig = field(default_factory=PhasedTTTConfig)
    """Phased TTT options (mode phased_ttt)."""
    gap: str = "mode"
    """export.py's quantization gap; allowed: mode, standard. mode: the checkpoint and the artifact both scored
    with `mode` (two runs of it). standard: both on the official standard windows, as the records' `diagnostic
    pre-quantization` and `diagnostic quantized` lines (2026-04-27 record), and the artifact once more with
    `mode` for its val_bpb, so a TTT export runs TTT once instead of twice. The same when `mode` is standard."""

    def __post_init__(self) -> None:
        if isinstance(self.ttt, dict):  # built from plain values outside Hydra
            self.ttt = TTTConfig(**self.ttt)
        if isinstance(self.phased, dict):
            self.phased = PhasedTTTConfig(**self.phased)
        self.modes = list(self.modes)
        _allowed("eval.mode", self.mode, EVAL_MODES)
        _allowed("eval.gap", self.gap, GAP_MODES)
        for i, m in enumerate(self.modes):
            _allowed(f"eval.modes[{i}]", m, EVAL_MODES)
        if len(set(self.modes)) != len(self.modes):
            raise ValueError(f"eval.modes={self.modes} lists a mode twice")
        if self.seq_len < 0 or self.batch_tokens < 1 or self.max_tokens < 0:
            raise ValueError("eval.seq_len and eval.max_tokens must be >= 0 and eval.batch_tokens >= 1")
        if self.stride < 1:
            raise ValueError(f"eval.stride={self.stride} must be >= 1")
        if self.time_budget_s <= 0:
            raise ValueError(f"eval.time_budget_s={self.time_budget_s} must be > 0")
        if self.ttt.reset == "document" and not self.doc_aware and "ttt" in self.run_modes():
            raise ValueError("eval.ttt.reset=document needs eval.doc_aware=true")

    def run_modes(self) -> list[str]:
        """The modes eval.py scores, in order: `modes`, or [`mode`] when `modes` is empty."""
        return list(self.modes) or [self.mode]
