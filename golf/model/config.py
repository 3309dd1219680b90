"""Model schema: a plain dataclass, so the model can be built and tested without Hydra.

Every architecture option of the records is a field here and is OFF by default: `ModelConfig()` is the
official baseline (`train_gpt.py`, 17,059,912 parameters) and builds bit-identically to it. Sources of each
option are named in its docstring (record folder under records/track_10min_16mb/ or PR number).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from golf.errors import GolfError

# Official CONTROL_TENSOR_NAME_PATTERNS (train_gpt.py L288-295): parameter-name substrings routed to the scalar
# Adam group and kept fp32 in the int8 export (INT8_KEEP_FLOAT_FP32_NAME_PATTERNS defaults to the same list).
OFFICIAL_CONTROL_TENSOR_PATTERNS: tuple[str, ...] = (
    "attn_scale", "attn_scales", "mlp_scale", "mlp_scales", "resid_mix", "resid_mixes", "q_gain",
    "skip_weight", "skip_weights",
)

ATTENTION_BACKENDS = ("auto", "sdpa", "fa2", "fa3")
SMEAR_GATES = ("none", "v1", "v2")
BIGRAM_HASHES = ("mul", "xor")
ORTHO_INITS = ("none", "pr65", "pr162")
MLP_ACTIVATIONS = ("relu2", "leaky_relu2")
FUSED_MLP_KERNELS = ("matmul", "activation")
ATTN_GATES = ("none", "out", "sparse", "dense")
SKIP_PLACEMENTS = ("before", "after")
PARALLEL_FINAL_LANES = ("mean", "mlp", "attn")


class ModelConfigError(GolfError, ValueError):
    """A `model.<key>` value is outside its allowed range or breaks a cross-field rule."""


@dataclass
class ModelConfig:
    """Architecture of the GPT family. Defaults are the official baseline (`train_gpt.py`, 17,059,912 params)."""

    name: str = "gpt"
    """Model registry name (see `golf.model.MODELS`)."""
    vocab_size: int = 1024
    """Vocabulary size in tokens; must equal the tokenizer's."""
    num_layers: int = 9
    """Number of physical transformer blocks (unique weights)."""
    model_dim: int = 512
    """Residual stream width d."""
    num_heads: int = 8
    """Query heads; head_dim = model_dim / num_heads."""
    num_kv_heads: int = 4
    """Key/value heads (GQA when fewer than num_heads)."""
    mlp_mult: float = 2.0
    """MLP hidden width as a multiple of model_dim (hidden = int(mlp_mult * model_dim))."""
    tie_embeddings: bool = True
    """Share the token embedding with the output head."""
    tied_embed_init_std: float = 0.005
    """Normal init std of the tied embedding."""
    logit_softcap: float = 30.0
    """Logits become softcap * tanh(z / softcap); must be > 0."""
    rope_base: float = 10000.0
    """RoPE base frequency."""
    rope_train_seq_len: int = 0
    """NTK-aware RoPE (0 = off): sequences longer than this use base·(T/L)^(rd/(rd-2)) (layers.ntk_base).
    Records 03-21/03-22/03-23 hard-code L = 1024 and train at 2048 (16 rotated dims at base ≈ 22,081);
    04-09 ROPE_TRAIN_SEQ_LEN = 2048."""
    qk_gain_init: float = 1.5
    """Init of the per-head learnable query gain (attention temperature after QK RMS-norm; records: 4.0-5.25)."""
    attention_backend: str = "auto"
    """Attention kernel: auto (FA3 -> FA2 -> PyTorch SDPA), sdpa, fa2 or fa3."""
    attn_doc_mask: bool = False
    """Document-masked attention: a token attends only within its document (segments start at every bos_id and
    every row start; FlashAttention varlen on CUDA, exact per-segment SDPA otherwise). 2026-04-27 record /
    PR #1530 VarLen attention (golf.model.varlen)."""
    attn_doc_mask_max_len: int = 0
    """attn_doc_mask: documents longer than this split into segments of this length (0 = never; the record
    uses its train/eval sequence length, 2048)."""

    # --- embedding-side options -------------------------------------------------------------------------------
    smear_gate: str = "none"
    """none | v1 (per-dim learned blend with the previous token, PR #65) | v2 (input-dependent, BOS-masked, PR #1667/#1851)."""
    smear_gate_init: float = 3.0
    """v1: init logit θ of the current-token weight σ(θ) (PR #65: 3.0 -> 0.95; PR #162/#374 form: 0.0 -> 0.5)."""
    smear_gate_after_norm: bool = False
    """v1: apply after the embedding RMSNorm (PR #162/#374) instead of before it (PR #65)."""
    smear_gate_before_bigram: bool = False
    """v1: smear the token embedding before BigramHash is added (seed 001 `_trunk`) instead of after (PR #65)."""
    smear_gate_width: int = 12
    """v2: number of leading embedding dims feeding the gate projection (GATE_WINDOW, 04-16/04-27)."""
    bos_id: int = 1
    """Document-boundary token id; v2 never mixes the token before a BOS into it (PR #1851)."""
    bigram_buckets: int = 0
    """BigramHash table rows (0 = off; PR #65: 4096, PR #374: 2048)."""
    bigram_dim: int = 128
    """BigramHash table width, projected to model_dim."""
    bigram_hash: str = "mul"
    """mul: (92821·prev + cur) mod B, N(0,0.01) table (PR #65) | xor: 36313·cur ⊕ 27191·prev, zero table, scale 0.05 (PR #162)."""
    value_embed_dim: int = 0
    """Value-embedding table width (0 = off; PR #374: 128); added to attention values at value_embed_layers."""
    value_embed_layers: list[int] = field(default_factory=list)
    """Physical layer indices that receive the shared value embedding (PR #374: [9, 10])."""
    embed_dim: int = 0
    """Factored tied embedding rank r (0 = off): tok_emb V×r, embed_proj r→d, head_proj d→r (04-01 EMBEDDING_DIM)."""

    # --- init and MLP -----------------------------------------------------------------------------------------
    ortho_init: str = "none"
    """none | pr65 (orthogonal_ for every non-zero-init linear) | pr162 (only dims >= 64; *.proj scaled 1/√(2L))."""
    mlp_activation: str = "relu2"
    """relu2 (baseline) | leaky_relu2: leaky_relu(x, mlp_leaky_slope)² (PR #493)."""
    mlp_leaky_slope: float = 0.5
    """Negative slope of leaky_relu2."""
    fused_mlp: bool = False
    """leaky_relu2 MLP through fused Triton kernels on CUDA (PR #1530 fused LeakyReLU² MLP, record 04-27), the
    kind chosen by fused_mlp_kernel; exact PyTorch formula elsewhere (golf.model.kernels)."""
    fused_mlp_kernel: str = "matmul"
    """With fused_mlp: matmul (the record's: fc matmul with LeakyReLU² in its epilogue, backward's proj-grad matmul
    with the activation derivative; training forward only, as the record, and only while fc/proj carry no forward
    hooks (LoRA, calibration); else the activation kernel) | activation (activation kernel, matmuls on cuBLAS)."""
    fused_ce: bool = False
    """Training loss through the fused softcapped cross-entropy Triton kernel on CUDA (PR #1787 FUSED_CE_ENABLED;
    training forward only, as the record; exact PyTorch formula elsewhere; golf.model.kernels)."""

    # --- attention options ------------------------------------------------------------------------------------
    rope_dims: int = 0
    """Rotate only the first k of head_dim dims (0 = all; partial RoPE, PR #315: 16)."""
    ln_scale: bool = False
    """Scale the normed attention/MLP inputs by 1/√(layer+1), layer = physical index (PR #315)."""
    xsa_last_n: int = 0
    """Exclusive self attention on the last N physical layers (0 = off; PR #265/#287)."""
    attn_gate: str = "none"
    """none | out (2σ(W·x[:w]) per head, PR #1667) | sparse (σ(s·W·x[:w]), PR #1787) | dense (σ(W·x), PR #1736)."""
    attn_gate_width: int = 12
    """out/sparse gates: number of leading input dims feeding the gate."""
    attn_gate_scale: float = 1.0
    """sparse gate: logit scale s (SPARSE_ATTN_GATE_SCALE; top record 0.5)."""
    attn_gate_init_std: float = 0.01
    """dense gate: normal init std of W (GATED_ATTN_INIT_STD)."""

    # --- depth: U-Net skips, recurrence, parallel lanes -------------------------------------------------------
    skip_gates: bool = False
    """Sigmoid-gated U-Net skips: x <- lerp(w·skip, x, σ(g)), g init 0 (PR #1089)."""
    skip_placement: str = "before"
    """before: add the skip before each decoder block (baseline) | after: after it (seed 001 depth-recurrent GPT)."""
    block_repeats: int = 1
    """Loop the whole stack of num_layers unique blocks this many times (seed 001: 3 blocks × 3 = 9 layers)."""
    num_loops: int = 0
    """Extra passes over physical layers [loop_start, loop_end] (0 = off; records 04-05+: 2)."""
    loop_start: int = 0
    """First physical layer of the looped range."""
    loop_end: int = 0
    """Last physical layer (inclusive) of the looped range."""
    enable_looping_at: float = 0.0
    """Training fraction in [0, 1) from which the loop runs (0 = always; 04-05: 0.5, 04-09+: 0.35)."""
    parallel_start_layer: int = 0
    """Two-lane parallel residuals on decoder layers with physical index >= this (0 = off; 04-27: 8)."""
    parallel_block_start: int = -1
    """GPT-J-style parallel blocks from this physical layer on (-1 = off): attention and MLP both read the mixed
    input, x <- x + attn_scale·Attn(norm(x)) + mlp_scale·MLP(norm(x)) (record 04-09 PARALLEL_RESIDUAL_START=7,
    from PR #1204/#1331)."""
    parallel_final_lane: str = "mean"
    """Hidden state read out of the lanes: mean (04-27) | mlp (03-31) | attn."""
    parallel_resid_init: float = 1.1
    """Init of the per-layer lane residual lambdas (04-27: 1.1; 03-31: √1.1)."""

    def __post_init__(self) -> None:
        self._check_core()
        self._check_embedding_options()
        self._check_block_options()
        self._check_depth_options()

    # --- validation ---------------------------------------------------------------------------------------------
    def _check_core(self) -> None:
        for key in ("vocab_size", "num_layers", "model_dim", "num_heads", "num_kv_heads"):
            _require(getattr(self, key) >= 1, f"model.{key}={getattr(self, key)} must be >= 1")
        _require(self.model_dim % self.num_heads == 0,
                 f"model.model_dim={self.model_dim} must be divisible by model.num_heads={self.num_heads}")
        _require(self.num_heads % self.num_kv_heads == 0,
                 f"model.num_heads={self.num_heads} must be divisible by model.num_kv_heads={self.num_kv_heads}")
        _require(self.head_dim % 2 == 0, f"head_dim={self.head_dim} must be even for RoPE")
        _require(self.logit_softcap > 0, f"model.logit_softcap={self.logit_softcap} must be > 0")
        _require(self.mlp_mult > 0, f"model.mlp_mult={self.mlp_mult} must be > 0")
        _require(self.rope_train_seq_len >= 0, f"model.rope_train_seq_len={self.rope_train_seq_len} must be >= 0")
        _choice("attention_backend", self.attention_backend, ATTENTION_BACKENDS)

    def _check_embedding_options(self) -> None:
        _choice("smear_gate", self.smear_gate, SMEAR_GATES)
        _require(1 <= self.smear_gate_width <= self.model_dim,
                 f"model.smear_gate_width={self.smear_gate_width} must be in [1, model_dim={self.model_dim}]")
        _require(0 <= self.bos_id < self.vocab_size,
                 f"model.bos_id={self.bos_id} must be a token id in [0, model.vocab_size={self.vocab_size})")
        if self.smear_gate_before_bigram:
            _require(self.smear_gate == "v1" and not self.smear_gate_after_norm,
                     "model.smear_gate_before_bigram=true needs model.smear_gate=v1 and smear_gate_after_norm=false")
        _require(self.bigram_buckets >= 0, f"model.bigram_buckets={self.bigram_buckets} must be >= 0 (0 = off)")
        _choice("bigram_hash", self.bigram_hash, BIGRAM_HASHES)
        _require(self.bigram_dim >= 1, f"model.bigram_dim={self.bigram_dim} must be >= 1")
        if self.bigram_hash == "xor":
            _require(self.bigram_buckets != 1, "model.bigram_buckets must be >= 2 with model.bigram_hash=xor")
        _require(self.value_embed_dim >= 0, f"model.value_embed_dim={self.value_embed_dim} must be >= 0 (0 = off)")
        layers = list(self.value_embed_layers)
        self.value_embed_layers = layers
        if self.value_embed_dim > 0:
            _require(bool(layers), "model.value_embed_layers must name at least one layer when value_embed_dim > 0")
        else:
            _require(not layers, "model.value_embed_layers is set but model.value_embed_dim=0 (off)")
        _require(len(set(layers)) == len(layers), f"model.value_embed_layers={layers} has duplicates")
        for layer in layers:
            _require(isinstance(layer, int) and 0 <= layer < self.num_layers,
                     f"model.value_embed_layers entry {layer!r} must be a layer index in [0, {self.num_layers})")
        _require(self.embed_dim >= 0, f"model.embed_dim={self.embed_dim} must be >= 0 (0 = off)")
        if self.embed_dim > 0:
            _require(self.tie_embeddings, "model.embed_dim > 0 (factored embedding) needs model.tie_embeddings=true")

    def _check_block_options(self) -> None:
        _choice("ortho_init", self.ortho_init, ORTHO_INITS)
        _choice("mlp_activation", self.mlp_activation, MLP_ACTIVATIONS)
        _require(self.mlp_leaky_slope >= 0, f"model.mlp_leaky_slope={self.mlp_leaky_slope} must be >= 0")
        _choice("fused_mlp_kernel", self.fused_mlp_kernel, FUSED_MLP_KERNELS)
        _require(self.rope_dims == 0 or (self.rope_dims % 2 == 0 and 2 <= self.rope_dims <= self.head_dim),
                 f"model.rope_dims={self.rope_dims} must be 0 (all) or even and in [2, head_dim={self.head_dim}]")
        _require(0 <= self.xsa_last_n <= self.num_layers,
                 f"model.xsa_last_n={self.xsa_last_n} must be in [0, model.num_layers={self.num_layers}]")
        _choice("attn_gate", self.attn_gate, ATTN_GATES)
        _require(1 <= self.attn_gate_width <= self.model_dim,
                 f"model.attn_gate_width={self.attn_gate_width} must be in [1, model_dim={self.model_dim}]")
        _require(self.attn_gate_init_std >= 0, f"model.attn_gate_init_std={self.attn_gate_init_std} must be >= 0")

    def _check_depth_options(self) -> None:
        _choice("skip_placement", self.skip_placement, SKIP_PLACEMENTS)
        _require(self.block_repeats >= 1, f"model.block_repeats={self.block_repeats} must be >= 1")
        _require(self.num_loops >= 0, f"model.num_loops={self.num_loops} must be >= 0 (0 = off)")
        _require(not (self.block_repeats > 1 and self.num_loops > 0),
                 "model.block_repeats > 1 and model.num_loops > 0 are two recurrence forms; choose one")
        if self.num_loops > 0:
            _require(0 <= self.loop_start <= self.loop_end < self.num_layers,
                     f"model.loop_start={self.loop_start}, model.loop_end={self.loop_end} must satisfy "
                     f"0 <= loop_start <= loop_end < model.num_layers={self.num_layers}")
        _require(0.0 <= self.enable_looping_at < 1.0,
                 f"model.enable_looping_at={self.enable_looping_at} must be in [0, 1)")
        _require(self.enable_looping_at == 0.0 or self.num_loops > 0,
                 "model.enable_looping_at > 0 needs model.num_loops > 0")
        _require(0 <= self.parallel_start_layer < self.num_layers,
                 f"model.parallel_start_layer={self.parallel_start_layer} must be in [0, {self.num_layers}) (0 = off)")
        _choice("parallel_final_lane", self.parallel_final_lane, PARALLEL_FINAL_LANES)
        _require(-1 <= self.parallel_block_start < self.num_layers,
                 f"model.parallel_block_start={self.parallel_block_start} must be -1 (off) or in [0, {self.num_layers})")
        _require(self.parallel_block_start < 0 or self.parallel_start_layer == 0,
                 "model.parallel_block_start (one-lane parallel blocks) and model.parallel_start_layer (two lanes) "
                 "are two parallel-residual forms; choose one")
        if self.parallel_start_layer > 0:
            _require(self.block_repeats == 1, "model.parallel_start_layer > 0 needs model.block_repeats=1")
            _require(self.skip_placement == "before",
                     "model.parallel_start_layer > 0 needs model.skip_placement=before (skips enter lane0)")
            _require(self.num_loops == 0 or self.parallel_start_layer > self.loop_end,
                     f"model.parallel_start_layer={self.parallel_start_layer} must be > model.loop_end="
                     f"{self.loop_end} so the lanes never re-enter a looped layer")

    # --- derived sizes ------------------------------------------------------------------------------------------
    @property
    def head_dim(self) -> int:
        return self.model_dim // self.num_heads

    @property
    def kv_dim(self) -> int:
        return self.num_kv_heads * self.head_dim

    @property
    def mlp_hidden(self) -> int:
        return int(self.mlp_mult * self.model_dim)


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise ModelConfigError(message)


def _choice(key: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ModelConfigError(f"model.{key}={value!r}; allowed: {', '.join(allowed)}")
