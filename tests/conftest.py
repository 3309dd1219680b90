"""Shared fixtures: real data from ../shared/data (never copied into the repo)."""

from __future__ import annotations

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


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
