"""Shared fixtures: real data from ../shared/data (never copied into the repo)."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def bundle_cache(tmp_path_factory):
    """One fresh on-disk bundle memo (golf.record.cache) for the session and its subprocesses: nothing from an
    earlier session is reused and nothing is written under the user's ~/.cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GOLF_CACHE_DIR", str(tmp_path_factory.mktemp("golf_cache")))
        yield


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Path to the shared real-data folder; fails (never skips) when it is missing."""
    if not (SHARED_DATA / "README.md").is_file():
        pytest.fail(f"shared real data not found at {SHARED_DATA} (expected ../shared/data beside the repo)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def sp1024_model(shared_data: Path) -> Path:
    """The official sp1024 SentencePiece model."""
    return shared_data / "tokenizers" / "fineweb_1024_bpe.model"


@pytest.fixture(scope="session")
def fineweb_docs(shared_data: Path) -> Path:
    """200 real FineWeb documents, one {"text": ...} per line."""
    return shared_data / "fineweb" / "docs_sample_200.jsonl"


@pytest.fixture(scope="session")
def sp1024_shards(tmp_path_factory, sp1024_model: Path, fineweb_docs: Path) -> Path:
    """Shard folder made by prepare from the 200 FineWeb docs with sp1024: first 50 docs -> val, the rest
    -> train, official 100M-token shard size (so fineweb_val_000000.bin + fineweb_train_000000.bin) and
    manifest.json. Read-only for tests."""
    from golf.data.prepare import prepare_shards

    out = tmp_path_factory.mktemp("sp1024") / "fineweb10B_sp1024"
    prepare_shards(fineweb_docs, sp1024_model, out, val_docs=50)
    return out


REPO = Path(__file__).resolve().parents[1]
# A tiny configuration of the baseline architecture that trains in seconds on this CPU.
TINY_OVERRIDES = [
    "experiment=smoke", "logger=none", "model.num_layers=2", "model.model_dim=128", "model.num_heads=4",
    "model.num_kv_heads=2", "trainer.train_seq_len=128", "trainer.train_batch_tokens=8192",
    "schedule.iterations=30", "schedule.warmup_steps=1", "schedule.warmdown_iters=10",
    "eval.batch_tokens=16384", "eval.max_tokens=16384",
]


@pytest.fixture(scope="session")
def data_root(tmp_path_factory, sp1024_shards: Path, sp1024_model: Path) -> Path:
    """A GOLF_DATA_DIR in the official layout (datasets/fineweb10B_sp1024, tokenizers/) over `sp1024_shards`.

    The tokenizer is symlinked, never copied."""
    root = tmp_path_factory.mktemp("data_root")
    (root / "datasets").mkdir()
    (root / "datasets" / "fineweb10B_sp1024").symlink_to(sp1024_shards, target_is_directory=True)
    (root / "tokenizers").mkdir()
    (root / "tokenizers" / sp1024_model.name).symlink_to(sp1024_model)
    return root


def run_golf(script: str, *overrides: str, data_root: Path, cwd: Path = REPO, env: dict | None = None,
             check: bool = True, timeout: int = 600):
    """Run train.py / export.py / eval.py as a user would (subprocess), with GOLF_DATA_DIR set."""
    import os
    import subprocess
    import sys

    full_env = {**os.environ, "GOLF_DATA_DIR": str(data_root), "WANDB_MODE": "offline", **(env or {})}
    proc = subprocess.run([sys.executable, script, *overrides], cwd=cwd, env=full_env, capture_output=True,
                          text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} {' '.join(overrides)} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, data_root: Path) -> Path:
    """Run directory of a tiny baseline-architecture model trained 30 steps on the FineWeb sample.

    Holds checkpoint.pt, metrics.json, history.jsonl, config.json-equivalents (.hydra/). Read-only for tests:
    copy it (shutil.copytree) before exporting into it."""
    run_dir = tmp_path_factory.mktemp("tiny_run") / "run"
    run_golf("train.py", *TINY_OVERRIDES, f"hydra.run.dir={run_dir}", data_root=data_root)
    return run_dir


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run as fast on one intra-op thread, and two oversubscribe a busy 2-core machine (~20x slower).

    Use with `pytestmark = pytest.mark.usefixtures("one_thread")`; the thread count is restored afterwards."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


CASEOPS_VARIANT = "sp8192_lossless_caps_caseops_v1_reserved"


@pytest.fixture(scope="session")
def caseops_data_root(tmp_path_factory, fineweb_docs: Path) -> Path:
    """A GOLF_DATA_DIR with the 200 FineWeb docs prepared with CaseOps (2026-04-27 record): tokenizer from the
    record folder (symlinked), shards + val byte sidecar under datasets/fineweb10B_<CASEOPS_VARIANT>, first 50
    docs -> val, 10M-token shards as the record's prepare_caseops_data.py. Skips if the record is absent."""
    from record_0427 import CASEOPS_TOKENIZER, require_record

    from golf.data.prepare import prepare_shards

    require_record()
    root = tmp_path_factory.mktemp("caseops_root")
    (root / "tokenizers").mkdir()
    tok = root / "tokenizers" / CASEOPS_TOKENIZER.name
    tok.symlink_to(CASEOPS_TOKENIZER)
    prepare_shards(fineweb_docs, tok, root / "datasets" / f"fineweb10B_{CASEOPS_VARIANT}", val_docs=50,
                   shard_tokens=10_000_000, text_transform="caseops_v1")
    return root


def random_tiny_gpt():
    """A 2-layer d64 GPT (4/2 heads) with random matrices (output projections included, normal std 0.08, seed 0),
    so every token's loss depends on its context; in eval mode. For eval-mode tests."""
    import torch

    from golf.model import ModelConfig, build_model

    torch.manual_seed(0)
    m = build_model(ModelConfig(num_layers=2, model_dim=64, num_heads=4, num_kv_heads=2))
    with torch.no_grad():
        for p in m.parameters():
            if p.ndim == 2:
                p.normal_(0.0, 0.08)
    return m.eval()
