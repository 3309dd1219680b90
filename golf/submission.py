"""The entry point of a record's `train_gpt.py`: train, quantize + compress, reload, evaluate (Hydra-free).

`golf.record` bakes a run's resolved config into the generated file as a dict literal and calls
`main(CONFIG, __file__)`. Run as `torchrun --standalone --nproc_per_node=8 train_gpt.py` (or plain `python`) in
the official data layout (./data/datasets/fineweb10B_sp1024, ./data/tokenizers/fineweb_1024_bpe.model):

1. the config's defaults, overridden by the official environment variables (ENV_OVERRIDES: DATA_PATH,
   TOKENIZER_PATH, RUN_ID, SEED, ITERATIONS, MAX_WALLCLOCK_SECONDS, VAL_LOSS_EVERY, TRAIN_LOG_EVERY, ...);
2. golf's Trainer (golf.train.trainer) under the wallclock cap;
3. rank 0: golf's export core (golf.export_core: the calibration and quantize-and-write steps of export.py) writes
   final_model.golf; it stops with one line `error: ...` when artifact + this file exceed 16,000,000 bytes;
4. every rank reloads the artifact and evaluates it with the config's eval mode (golf.eval.run), distributed.

Log lines (rank 0, stdout and logs/<RUN_ID>.txt) follow the official script: `model_params:N`,
`step:S/N train_loss:... step_avg:...ms`, `Serialized model <scheme>+<codec>: N bytes`, `Code size: N bytes`,
`Total submission size <scheme>+<codec>: N bytes`, `final_<scheme>_<codec>_<mode>_roundtrip_exact val_loss:...
val_bpb:...`.
"""

from __future__ import annotations

import copy
import logging
import os
import sys
import time
import uuid
from pathlib import Path

import torch
import torch.distributed as dist

from golf.errors import GolfError
from golf.eval.data import val_data_for
from golf.eval.run import EvalContext, run_evaluation
from golf.export_core import calibration, quantize_and_write
from golf.model import build_model, cast_for_device
from golf.quant.artifact import load_state_dict_from_artifact
from golf.train.config import TrainRunConfig
from golf.train.context import RunContext
from golf.train.dist import collective_errors, init_distributed, teardown
from golf.train.trainer import Trainer

log = logging.getLogger("golf.submission")

ARTIFACT_FILE = "final_model.golf"
ENV_OVERRIDES: dict[str, str] = {
    "DATA_PATH": "data.dataset_dir", "TOKENIZER_PATH": "data.tokenizer_path", "SEED": "seed",
    "ITERATIONS": "schedule.iterations", "MAX_WALLCLOCK_SECONDS": "schedule.max_wallclock_seconds",
    "VAL_LOSS_EVERY": "schedule.val_loss_every", "TRAIN_LOG_EVERY": "schedule.train_log_every",
    "WARMUP_STEPS": "schedule.warmup_steps", "WARMDOWN_ITERS": "schedule.warmdown_iters",
    "TRAIN_BATCH_TOKENS": "trainer.train_batch_tokens", "TRAIN_SEQ_LEN": "trainer.train_seq_len",
    "VAL_BATCH_SIZE": "eval.batch_tokens",
}
"""Official environment variable (openai/parameter-golf train_gpt.py Hyperparameters) -> config key."""


def apply_env(config: dict, env: dict[str, str]) -> dict:
    """A copy of the plain config with the official environment variables applied (typed like the default).

    Raises GolfError naming the variable when a value does not parse as the key's type.
    """
    out = copy.deepcopy(config)
    for var, key in ENV_OVERRIDES.items():
        if var not in env:
            continue
        *path, leaf = key.split(".")
        node = out
        for part in path:
            node = node[part]
        kind = type(node[leaf])
        try:
            node[leaf] = kind(float(env[var])) if kind is int else kind(env[var])
        except ValueError:
            raise GolfError(f"{var}={env[var]!r} is not a valid {kind.__name__} (config key {key})") from None
    return out


def _setup_logging(run_id: str, is_main: bool) -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    if not is_main:
        root.setLevel(logging.WARNING)
        return
    Path("logs").mkdir(exist_ok=True)
    fmt = logging.Formatter("%(message)s")
    for handler in (logging.StreamHandler(sys.stdout), logging.FileHandler(Path("logs") / f"{run_id}.txt")):
        handler.setFormatter(fmt)
        root.addHandler(handler)
    root.setLevel(logging.INFO)


def main(config: dict, code_file: str) -> float:
    """Run the submission; returns the final round-trip val_bpb. Exits 2 with one line on a GolfError."""
    rank = int(os.environ.get("RANK", "0"))
    run_id = os.environ.get("RUN_ID", str(uuid.uuid4()))
    _setup_logging(run_id, rank == 0)
    try:
        baked = TrainRunConfig.from_dict(config).to_dict()  # the file bakes its difference from the defaults
        return _run(TrainRunConfig.from_dict(apply_env(baked, os.environ)), Path(code_file), run_id)
    except GolfError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


def _run(cfg: TrainRunConfig, code_file: Path, run_id: str) -> float:
    code_bytes = len(code_file.read_text(encoding="utf-8").encode("utf-8"))
    # The plain Trainer: no W&B, checkpoint, resume points or metrics files (golf's train.py adds those with
    # ResumableTrainer); only hessians.pt goes to run_dir, when GPTQ calibrates inside training.
    run_dir = Path("logs") / f"{run_id}.run"
    ctx = init_distributed(cfg.trainer.device, cfg.dist.timeout_s)
    try:
        if ctx.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
        trainer = Trainer(cfg, RunContext(run_dir=run_dir, name=run_id, group=cfg.experiment_name, tags=[],
                                          config=cfg.to_dict()))
        with collective_errors(ctx.rank, ctx.world_size, cfg.dist.timeout_s):
            trainer.run()
        bpb = _export_and_evaluate(cfg, trainer.model, run_dir, code_bytes, ctx.rank, ctx.world_size)
        teardown(barrier=True)
        return bpb
    finally:
        teardown()


def _export_and_evaluate(cfg: TrainRunConfig, model: torch.nn.Module, run_dir: Path, code_bytes: int, rank: int,
                         world: int) -> float:
    """Rank 0 quantizes + compresses + writes the artifact (or every rank stops with its one-line error); then
    every rank reloads it and evaluates with the config's eval mode. Returns the round-trip val_bpb."""
    device = next(model.parameters()).device
    artifact = Path(ARTIFACT_FILE)
    failure: list[str | None] = [None]
    codec = cfg.quant.codec
    if rank == 0:
        try:
            state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
            timings: dict = {}
            hessians, loss_fn, _ = calibration(lambda: model, cfg, cfg.quant, cfg.budget, device, state, timings,
                                               run_dir, False, 0, 1)
            written, staged = quantize_and_write(state, cfg.quant, cfg.budget, hessians, loss_fn, timings,
                                                    artifact, cfg, code_bytes)
            staged.commit()  # the artifact fits: rename it into place before every rank reloads it
            codec = written["codec"]
        except GolfError as exc:
            failure[0] = str(exc)
    if world > 1:
        dist.broadcast_object_list(failure, src=0)
    if failure[0] is not None:
        raise GolfError(failure[0])
    val = val_data_for(cfg)
    t0 = time.perf_counter()
    post = run_evaluation(reload(artifact, cfg, device), val, cfg.eval, EvalContext(device, rank, world))
    tag = f"{cfg.quant.scheme}_{codec}_{post.mode}"
    log.info(f"final_{tag}_roundtrip val_loss:{post.val_loss:.4f} val_bpb:{post.val_bpb:.4f} "
             f"eval_time:{1000 * (time.perf_counter() - t0):.0f}ms")
    log.info(f"final_{tag}_roundtrip_exact val_loss:{post.val_loss:.8f} val_bpb:{post.val_bpb:.8f}")
    return post.val_bpb


def reload(artifact: Path, cfg: TrainRunConfig, device: torch.device) -> torch.nn.Module:
    """The artifact's dequantized weights in the run's architecture, cast for `device` (as the official script
    reloads its own file into its own hyperparameters; golf.train.load.load_for_eval builds the same model from
    the manifest's copy of the config). The file is the one rank 0 has just written: its payload sha256 is checked,
    the header, size and structural checks golf runs on artifacts from elsewhere are not shipped (read_artifact's
    verify=False).
    Raises golf.quant.artifact.ArtifactError (one line)."""
    model = build_model(cfg.model)
    model.load_state_dict(load_state_dict_from_artifact(artifact, verify=False), strict=True)
    return cast_for_device(model, device, ())


def import_option_modules(cfg: TrainRunConfig) -> None:
    """Import every golf module that running `cfg` selects at run time, without training (golf.record traces
    the modules this leaves in sys.modules): the model's option modules (built on the meta device), the
    training hooks, the quantization scheme, the export's calibration/fitter modules and the eval mode."""
    import importlib

    from golf.data.loader import LOADER_MODULES
    from golf.eval.run import MODE_MODULES
    from golf.export_core import export_modules
    from golf.quant.int8 import SCHEME_MODULES
    from golf.train.techniques import build_hooks

    with torch.device("meta"):
        build_model(cfg.model)
    build_hooks(cfg)
    importlib.import_module(SCHEME_MODULES[cfg.quant.scheme])
    export_modules(cfg.quant, cfg.budget)
    importlib.import_module(MODE_MODULES[cfg.eval.mode])
    importlib.import_module(LOADER_MODULES[cfg.trainer.loader])
