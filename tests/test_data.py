"""Shard format, prepare (text -> shards), loaders and download errors, on real FineWeb docs + sp1024."""

from __future__ import annotations

import gzip
import json
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm
import torch

from golf.data.config import DataConfig
from golf.data.loader import (
    DistributedTokenLoader,
    NoShardsFoundError,
    TokenStream,
    ValidationTooShortError,
    load_validation_tokens,
)
from golf.data.prepare import PrepareError, check_vocab_fits_uint16, main, prepare_shards
from golf.data.shards import HEADER_BYTES, SHARD_MAGIC, ShardError, read_header, read_shard, write_shard
from golf.errors import GolfError

REPO = Path(__file__).resolve().parents[1]
SMALL_SHARD = 50_000  # small enough that the 200 docs span 13 shards and documents straddle them
SAMPLE_TOKENS_NO_BOS = 628_257  # sp1024 tokens of docs_sample_200.jsonl (shared/data/README.md)


# ---------------------------------------------------------------- helpers / fixtures

def official_shard_bytes(tokens) -> bytes:
    """Independent writer from the official facts: 256 little-endian int32 [magic, 1, n, 0...] + uint16 ids."""
    n = len(tokens)
    return struct.pack("<256i", SHARD_MAGIC, 1, n, *([0] * 253)) + np.asarray(tokens, dtype="<u2").tobytes()


def reference_export(texts: list[str], sp: spm.SentencePieceProcessor, val_docs: int, shard: int) -> dict[str, bytes]:
    """Official export_shards semantics restated: per split, the stream of [BOS]+ids documents is cut into
    consecutive shard-sized pieces (last one partial, never empty)."""
    docs = [[sp.bos_id(), *sp.encode(t)] for t in texts]
    out = {}
    for split, part in (("val", docs[:val_docs]), ("train", docs[val_docs:])):
        stream = [tok for d in part for tok in d]
        for i, start in enumerate(range(0, len(stream), shard)):
            out[f"fineweb_{split}_{i:06d}.bin"] = official_shard_bytes(stream[start : start + shard])
    return out


@pytest.fixture(scope="module")
def texts(fineweb_docs: Path) -> list[str]:
    return [json.loads(line)["text"] for line in fineweb_docs.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def sp(sp1024_model: Path) -> spm.SentencePieceProcessor:
    return spm.SentencePieceProcessor(model_file=str(sp1024_model))


@pytest.fixture(scope="module")
def small_shards(tmp_path_factory, fineweb_docs: Path, sp1024_model: Path) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("small") / "fineweb10B_sp1024"
    manifest = prepare_shards(fineweb_docs, sp1024_model, out, val_docs=50, shard_tokens=SMALL_SHARD)
    return out, manifest


def stored_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("fineweb_*.bin"))}


# ---------------------------------------------------------------- shard format

def test_shard_round_trip_and_exact_bytes(tmp_path: Path):
    tokens = np.array([0, 1, 2, 1023, 65535, 7], dtype=np.int64)
    path = tmp_path / "fineweb_train_000000.bin"
    write_shard(path, tokens)
    assert path.read_bytes() == official_shard_bytes(tokens)
    assert path.stat().st_size == HEADER_BYTES + 2 * len(tokens)
    assert read_header(path) == len(tokens)
    got = read_shard(path, vocab_size=65536)
    assert got.dtype == np.uint16 and got.tolist() == tokens.tolist()
    write_shard(tmp_path / "empty.bin", np.array([], dtype=np.uint16))
    assert read_shard(tmp_path / "empty.bin").size == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty.bin", "fineweb_train_000000.bin"]  # no temp files


@pytest.mark.parametrize("bad", [65536, -1])
def test_write_shard_refuses_ids_outside_uint16(tmp_path: Path, bad: int):
    path = tmp_path / "x.bin"
    with pytest.raises(ShardError, match=f"token id {bad}"):
        write_shard(path, [1, 2, bad])
    assert list(tmp_path.iterdir()) == []


def _corrupt(path: Path, fault: str) -> None:
    raw = bytearray(official_shard_bytes([1, 5, 1000, 3]))
    if fault == "bad magic":
        raw[0:4] = struct.pack("<i", 12345)
    elif fault == "bad version":
        raw[4:8] = struct.pack("<i", 2)
    elif fault == "size mismatch":
        raw += b"\x00\x00"
    elif fault == "truncated file":
        raw = raw[:-2]
    elif fault == "truncated header":
        raw = raw[:100]
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("fault", ["bad magic", "bad version", "size mismatch", "truncated file", "truncated header"])
def test_reader_faults_name_file_and_fault(tmp_path: Path, fault: str):
    path = tmp_path / "fineweb_val_000000.bin"
    _corrupt(path, fault)
    for reader in (read_header, read_shard):
        with pytest.raises(ShardError) as info:
            reader(path)
        assert str(path) in str(info.value) and fault in str(info.value)
        assert isinstance(info.value, GolfError) and isinstance(info.value, ValueError)


def test_reader_rejects_token_at_or_above_vocab(tmp_path: Path):
    path = tmp_path / "fineweb_val_000000.bin"
    write_shard(path, [1, 5, 1000, 3])
    assert read_shard(path, vocab_size=1001).tolist() == [1, 5, 1000, 3]
    with pytest.raises(ShardError, match=r"fineweb_val_000000\.bin: token id 1000 >= vocab_size 1000 .*position 2"):
        read_shard(path, vocab_size=1000)
    with pytest.raises(ShardError, match="file not found"):
        read_shard(tmp_path / "missing.bin")


# ---------------------------------------------------------------- prepare

def test_prepare_is_byte_identical_to_official_writer(small_shards, texts, sp):
    out, manifest = small_shards
    expected = reference_export(texts, sp, val_docs=50, shard=SMALL_SHARD)
    assert stored_files(out) == expected
    # the small shard size really makes documents straddle shard boundaries
    doc_starts = set(np.cumsum([0] + [1 + len(ids) for ids in sp.encode(texts[:50])]).tolist())
    assert any(k * SMALL_SHARD not in doc_starts for k in range(1, manifest["splits"]["val"]["shards"]))
    assert manifest["splits"]["val"]["shards"] >= 3 and manifest["splits"]["train"]["shards"] >= 9


def test_default_shard_size_gives_one_shard_per_split(sp1024_shards: Path, texts, sp):
    assert stored_files(sp1024_shards) == reference_export(texts, sp, val_docs=50, shard=10**8)
    assert sorted(p.name for p in sp1024_shards.iterdir()) == [
        "fineweb_train_000000.bin", "fineweb_val_000000.bin", "manifest.json"]


def test_manifest_numbers(sp1024_shards: Path, texts, sp, shared_data: Path, sp1024_model: Path):
    m = json.loads((sp1024_shards / "manifest.json").read_text())
    encoded = sp.encode(texts)
    for split, sl in (("val", slice(0, 50)), ("train", slice(50, None))):
        s = m["splits"][split]
        assert s["documents"] == len(texts[sl])
        assert s["tokens"] == sum(len(e) + 1 for e in encoded[sl])
        assert s["bytes"] == sum(len(t.encode("utf-8")) for t in texts[sl])
        assert s["lut_bytes"] == sum(len(sp.decode(e).encode("utf-8")) for e in encoded[sl])
        assert s["shards"] == 1 and s["files"] == [f"fineweb_{split}_000000.bin"]
    assert m["splits"]["val"]["tokens"] + m["splits"]["train"]["tokens"] == SAMPLE_TOKENS_NO_BOS + 200
    assert m["stats"] == {"docs_total": 200, "docs_val": 50, "docs_train": 150, "files_total": 2, "files_val": 1,
                          "files_train": 1, "tokens_total": SAMPLE_TOKENS_NO_BOS + 200,
                          "tokens_val": m["splits"]["val"]["tokens"], "tokens_train": m["splits"]["train"]["tokens"]}
    sums = dict(line.split()[::-1] for line in (shared_data / "SHA256SUMS").read_text().splitlines() if line.strip())
    sha = next(v for k, v in sums.items() if k.endswith("fineweb_1024_bpe.model"))
    assert m["tokenizer"] == {"path": str(sp1024_model.resolve()), "sha256": sha, "vocab_size": 1024, "bos_id": 1}
    assert (m["vocab_size"], m["bos_id"], m["num_shards"], m["append_eos"]) == (1024, 1, 2, False)


def test_split_ending_on_shard_boundary_writes_no_empty_shard(tmp_path, fineweb_docs, sp1024_model, texts, sp):
    val_tokens = sum(len(e) + 1 for e in sp.encode(texts[:50]))
    m = prepare_shards(fineweb_docs, sp1024_model, tmp_path / "out", 50, shard_tokens=val_tokens, max_docs=60)
    assert m["splits"]["val"]["files"] == ["fineweb_val_000000.bin"]
    assert m["splits"]["train"]["documents"] == 10
    assert stored_files(tmp_path / "out") == reference_export(texts[:60], sp, 50, val_tokens)


def test_gzip_jsonl_and_txt_inputs(tmp_path, texts, sp1024_model, sp):
    gz = tmp_path / "docs.jsonl.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as f:
        f.writelines(json.dumps({"body": t}) + "\n" for t in texts[:12])
    prepare_shards(gz, sp1024_model, tmp_path / "gz", 4, text_field="body")
    assert stored_files(tmp_path / "gz") == reference_export(texts[:12], sp, 4, 10**8)
    txt = tmp_path / "docs.txt"
    txt.write_text("first doc\n\nsecond doc here\n  \nthird\n", encoding="utf-8")
    m = prepare_shards(txt, sp1024_model, tmp_path / "txt", 1)
    assert (m["splits"]["val"]["documents"], m["splits"]["train"]["documents"]) == (1, 2)
    assert stored_files(tmp_path / "txt") == reference_export(["first doc", "second doc here", "third"], sp, 1, 10**8)


def test_empty_document_is_a_lone_bos_unless_clean_text(tmp_path, sp1024_model, sp):
    src = tmp_path / "d.jsonl"
    src.write_text("\n".join(json.dumps({"text": t}) for t in ["a b", "", "\x00 c "]) + "\n", encoding="utf-8")
    raw = prepare_shards(src, sp1024_model, tmp_path / "raw", 0)["splits"]["train"]
    # official export: text encoded as stored, the empty document kept as a lone BOS
    assert (raw["documents"], raw["tokens"]) == (3, 3 + len(sp.encode("a b")) + len(sp.encode("\x00 c ")))
    clean = prepare_shards(src, sp1024_model, tmp_path / "clean", 0, clean_text=True)["splits"]["train"]
    assert (clean["documents"], clean["tokens"]) == (2, 2 + len(sp.encode("a b")) + len(sp.encode("c")))


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_prepare_cli_errors_are_one_line_and_leave_nothing(tmp_path, capsys, fineweb_docs, sp1024_model, shared_data):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "ok"}\n{"text": "fine"}\n{"text": broken\n', encoding="utf-8")
    cases = [
        (["--input", str(bad)], f"{bad}:3: invalid JSON"),
        (["--input", str(tmp_path / "nope.jsonl")], "file not found"),
        (["--input", str(fineweb_docs), "--val-docs", "500"], "--val-docs 500 exceeds the 200 documents"),
        (["--input", str(fineweb_docs), "--tokenizer", str(shared_data / "tokenizers/fineweb_1024_bpe.vocab")],
         "expected a SentencePiece .model file"),
    ]
    for extra, message in cases:
        argv = ["--tokenizer", str(sp1024_model), "--out", str(tmp_path / "out"), "--val-docs", "1",
                "--no-progress", *extra]
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err
        assert not (tmp_path / "out").exists() and _leftovers(tmp_path) == []
    check_vocab_fits_uint16(65536)
    with pytest.raises(PrepareError, match="vocab_size=65537 is too large"):
        check_vocab_fits_uint16(65537)


def test_prepare_replaces_its_own_output_only(tmp_path, fineweb_docs, sp1024_model):
    out = tmp_path / "out"
    prepare_shards(fineweb_docs, sp1024_model, out, 50, shard_tokens=SMALL_SHARD, max_docs=100)
    prepare_shards(fineweb_docs, sp1024_model, out, 50, max_docs=100)
    assert sorted(p.name for p in out.iterdir()) == ["fineweb_train_000000.bin", "fineweb_val_000000.bin",
                                                     "manifest.json"]
    assert _leftovers(tmp_path) == []
    (out / "notes.txt").write_text("mine")
    with pytest.raises(PrepareError, match="refusing to replace"):
        prepare_shards(fineweb_docs, sp1024_model, out, 50, max_docs=100)
    assert (out / "notes.txt").exists()


# ---------------------------------------------------------------- loaders

def _train_tokens(folder: Path) -> torch.Tensor:
    return torch.cat([torch.from_numpy(read_shard(p)) for p in sorted(folder.glob("fineweb_train_*.bin"))])


def test_token_stream_reads_in_order_and_wraps(small_shards):
    out, _ = small_shards
    everything = _train_tokens(out)
    stream = TokenStream(str(out / "fineweb_train_*.bin"))
    first = stream.take(everything.numel() + 1234)
    assert first.dtype == torch.uint16
    assert torch.equal(first, torch.cat([everything, everything[:1234]]))
    state = stream.resume_state()
    ahead = stream.take(70_001)  # crosses a shard boundary
    assert torch.equal(ahead, everything[1234 : 1234 + 70_001])
    stream.restore(state)
    assert torch.equal(stream.take(70_001), ahead)


def test_distributed_loader_ranks_take_contiguous_slices(small_shards):
    out, _ = small_shards
    pattern = str(out / "fineweb_train_*.bin")
    seq, world, accum, global_tokens = 64, 2, 1, 2 * 8 * 64
    local = global_tokens // (world * accum)
    ranks = [DistributedTokenLoader(pattern, r, world, torch.device("cpu")) for r in range(world)]
    reference = TokenStream(pattern)
    for _ in range(120):  # 120 steps x 1026 tokens crosses the first 50k-token shard boundary
        chunk = reference.take((local + 1) * world).to(torch.int64)
        for r, loader in enumerate(ranks):
            x, y = loader.next_batch(global_tokens, seq, accum)
            span = chunk[r * (local + 1) : (r + 1) * (local + 1)]
            assert x.dtype == y.dtype == torch.int64 and x.shape == (local // seq, seq)
            assert torch.equal(x, span[:-1].view(-1, seq)) and torch.equal(y, span[1:].view(-1, seq))


def test_world_size_does_not_change_the_data(small_shards):
    """W ranks x accumulation A see exactly the tokens of 1 rank x accumulation W*A (official 8 // W rule).
    Not the same as 1 rank x accumulation A: each rank's span ends with a token used only as a target."""
    out, _ = small_shards
    pattern = str(out / "fineweb_train_*.bin")
    seq, global_tokens, cpu = 32, 4 * 32, torch.device("cpu")
    two = [DistributedTokenLoader(pattern, r, 2, cpu) for r in range(2)]
    single = DistributedTokenLoader(pattern, 0, 1, cpu)
    for _ in range(5):
        parts = [loader.next_batch(global_tokens, seq, 1) for loader in two]
        micro = [single.next_batch(global_tokens, seq, 2) for _ in range(2)]
        for (x2, y2), (x1, y1) in zip(parts, micro, strict=True):
            assert torch.equal(x2, x1) and torch.equal(y2, y1)
    fresh = TokenStream(pattern).take(2 * 65).to(torch.int64)
    x_one = DistributedTokenLoader(pattern, 0, 1, cpu).next_batch(128, 64, 1)[0].flatten()
    x_two = [DistributedTokenLoader(pattern, r, 2, cpu).next_batch(128, 64, 1)[0].flatten() for r in range(2)]
    assert torch.equal(x_one, fresh[:128])
    assert torch.equal(x_two[0], fresh[:64]) and torch.equal(x_two[1], fresh[65:129])  # token 64: target only


def test_loader_errors(small_shards, tmp_path):
    out, _ = small_shards
    loader = DistributedTokenLoader(str(out / "fineweb_train_*.bin"), 0, 2, torch.device("cpu"))
    with pytest.raises(ValueError, match="not a positive multiple of seq_len=64"):
        loader.next_batch(1000, 64, 1)
    pattern = str(tmp_path / "fineweb_train_*.bin")
    with pytest.raises(NoShardsFoundError, match=re.escape(f"No files found for pattern: {pattern}")):
        TokenStream(pattern)
    with pytest.raises(ShardError, match="token id .* >= vocab_size 500"):
        TokenStream(str(out / "fineweb_train_*.bin"), vocab_size=500)


def test_validation_tokens_truncated_to_whole_windows(small_shards):
    out, manifest = small_shards
    pattern = str(out / "fineweb_val_*.bin")
    n = manifest["splits"]["val"]["tokens"]
    full = torch.cat([torch.from_numpy(read_shard(p)) for p in sorted(out.glob("fineweb_val_*.bin"))])
    assert full.numel() == n and manifest["splits"]["val"]["shards"] > 1
    for seq in (1024, 2048, n - 1):
        val = load_validation_tokens(pattern, seq, vocab_size=1024)
        assert val.numel() == ((n - 1) // seq) * seq + 1 and (val.numel() - 1) % seq == 0
        assert val.dtype == torch.uint16 and torch.equal(val, full[: val.numel()])
    with pytest.raises(ValidationTooShortError, match=f"need at least {n + 1}"):
        load_validation_tokens(pattern, n)


def test_data_config_paths():
    cfg = DataConfig(root="/d")
    assert cfg.resolve_dataset_dir() == Path("/d/datasets/fineweb10B_sp1024")
    assert cfg.resolve_tokenizer_path() == Path("/d/tokenizers/fineweb_1024_bpe.model")
    assert cfg.train_glob() == "/d/datasets/fineweb10B_sp1024/fineweb_train_*.bin"
    assert cfg.val_glob() == "/d/datasets/fineweb10B_sp1024/fineweb_val_*.bin"
    assert DataConfig(variant="sp8192", root="r").resolve_tokenizer_path() == Path("r/tokenizers/fineweb_8192_bpe.model")
    custom = DataConfig(variant="byte260", dataset_dir="/x", tokenizer_path="/t.model")
    assert (custom.resolve_dataset_dir(), custom.resolve_tokenizer_path()) == (Path("/x"), Path("/t.model"))
    with pytest.raises(ValueError, match="set data.tokenizer_path"):
        DataConfig(variant="byte260").resolve_tokenizer_path()


# ---------------------------------------------------------------- download

def test_download_offline_is_one_line_with_prepare_hint(tmp_path, sp1024_model):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "GOLF_DATA_DIR": str(tmp_path / "d")}
    proc = subprocess.run([sys.executable, "-m", "golf.data.download", "--variant", "sp1024", "--train-shards", "1"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: Hugging Face hub unreachable"), proc.stderr
    assert (f"python -m golf.data.prepare --input {sp1024_model.parent.parent / 'fineweb/docs_sample_200.jsonl'} "
            f"--tokenizer {sp1024_model} --out {tmp_path / 'd/datasets/fineweb10B_sp1024'} --val-docs 50") in proc.stderr
    assert not (tmp_path / "d").exists() or not any((tmp_path / "d").rglob("*.bin"))


def test_download_follows_manifest_with_files_already_present(tmp_path, sp1024_shards, sp1024_model):
    """Manifest-driven layout and checks, without network: every file exists, so nothing is fetched."""
    from golf.data.download import DownloadError, download

    root = tmp_path / "data"
    ds = root / "datasets" / "fineweb10B_sp1024"
    ds.mkdir(parents=True)
    for shard in sp1024_shards.glob("fineweb_*.bin"):
        (ds / shard.name).symlink_to(shard)
    (root / "tokenizers").mkdir()
    for suffix in (".model", ".vocab"):
        (root / "tokenizers" / f"fineweb_1024_bpe{suffix}").symlink_to(sp1024_model.with_suffix(suffix))
    manifest = {"datasets": [{"name": "fineweb10B_sp1024", "tokenizer_name": "sp_bpe_1024",
                              "stats": {"files_train": 1, "files_val": 1}}],
                "tokenizers": [{"name": "sp_bpe_1024", "model_path": "tokenizers/fineweb_1024_bpe.model",
                                "vocab_path": "tokenizers/fineweb_1024_bpe.vocab"}]}
    (root / "manifest.json").write_text(json.dumps(manifest))
    done = download("sp1024", 1, str(root), skip_manifest=True)
    assert (done["dataset_dir"], done["val_shards"], done["train_shards"]) == (str(ds), 1, 1)
    assert done["tokenizer_files"] == [str(root / "tokenizers/fineweb_1024_bpe.model"),
                                       str(root / "tokenizers/fineweb_1024_bpe.vocab")]
    with pytest.raises(DownloadError, match="sp1024 has only 1 training shards .* requested 2"):
        download("sp1024", 2, str(root), skip_manifest=True)
    with pytest.raises(DownloadError, match="dataset fineweb10B_sp4096 not found in"):
        download("sp4096", 1, str(root), skip_manifest=True)
    (ds / "fineweb_train_000000.bin").unlink()
    (ds / "fineweb_train_000000.bin").write_bytes(b"\x00" * 10)
    with pytest.raises(ShardError, match="truncated header"):
        download("sp1024", 1, str(root), skip_manifest=True)
