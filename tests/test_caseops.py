"""CaseOps data (2026-04-27 record, PR #1729): the lossless-capitals transform, the per-token original-byte
sidecar written by prepare, and val_bpb on the original bytes — each checked against the record's own code."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm
import torch
from conftest import CASEOPS_VARIANT
from hypothesis import given, settings
from hypothesis import strategies as st
from record_0427 import CASEOPS_TOKENIZER, load_record_module, record_hparams

from golf.data import caseops
from golf.data.config import DataConfig
from golf.data.loader import load_validation_byte_sidecar
from golf.data.prepare import PrepareError, prepare_shards
from golf.data.shards import read_shard
from golf.errors import GolfError
from golf.eval.bpb import bits_per_byte
from golf.eval.data import load_val_data
from golf.eval.standard import evaluate_standard
from golf.model import build_model
from golf.model.config import ModelConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def _docs(path: Path) -> list[str]:
    return [json.loads(line)["text"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def caseops_sp() -> spm.SentencePieceProcessor:
    load_record_module("lossless_caps")  # skips when the record folder is absent
    return spm.SentencePieceProcessor(model_file=str(CASEOPS_TOKENIZER))


def test_transform_round_trips_every_doc_and_equals_record(fineweb_docs):
    lc = load_record_module("lossless_caps")
    docs = _docs(fineweb_docs)
    assert len(docs) == 200
    changed = 0
    for text in docs:
        enc = caseops.encode(text)
        assert enc == lc.encode_lossless_caps_v2(text)
        assert caseops.decode(enc) == text
        assert lc.decode_lossless_caps_v2(enc) == text
        changed += enc != text
    assert changed > 150  # real capitals are transformed, not passed through


_ALPHABET = st.sampled_from(list("aZbYz AQ.'-0é\u00c9") + list(caseops.OPERATORS))


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=_ALPHABET, max_size=40))
def test_transform_edge_cases_match_record(text):
    lc = load_record_module("lossless_caps")
    enc = caseops.encode(text)
    assert enc == lc.encode_lossless_caps_v2(text)
    assert caseops.decode(enc) == text
    assert sum(caseops.piece_original_bytes([enc[:3], enc[3:]])) == len(text.encode("utf-8"))


@pytest.mark.parametrize("bad", ["\ue001", "a\ue002b", "\ue003", "\ue004", "\ue001\ue002ab", "\ue003A"])
def test_decode_rejects_malformed(bad):
    with pytest.raises(caseops.CaseOpsError):
        caseops.decode(bad)


def test_piece_bytes_equal_record_and_original_length(fineweb_docs, caseops_sp):
    lc = load_record_module("lossless_caps")
    for text in _docs(fineweb_docs):
        ids, nbytes = caseops.token_original_bytes(caseops_sp, caseops.encode(text))
        assert ids == caseops_sp.encode(caseops.encode(text), out_type=int)
        surfaces = [p.surface for p in caseops_sp.encode_as_proto(caseops.encode(text)).pieces]
        assert nbytes == lc.surface_piece_original_byte_counts(surfaces, text_transform_name="lossless_caps_caseops_v1")
        assert sum(nbytes) == len(text.encode("utf-8"))


def test_prepare_matches_record_prepare_byte_for_byte(caseops_data_root, fineweb_docs, tmp_path, monkeypatch):
    """golf.data.prepare --text-transform caseops_v1 writes the same token shards and sidecar as the record's
    prepare_caseops_data.py on the same documents; the sidecar sums to each doc's UTF-8 length."""
    prep = load_record_module("prepare_caseops_data")
    if not hasattr(spm.SentencePieceProcessor, "encode_as_immutable_proto"):  # renamed in sentencepiece 0.2.1+
        monkeypatch.setattr(spm.SentencePieceProcessor, "encode_as_immutable_proto",
                            spm.SentencePieceProcessor.encode_as_proto, raising=False)
    monkeypatch.setattr(sys, "argv", ["prep", "--docs", str(fineweb_docs), "--out", str(tmp_path),
                                      "--sp", str(CASEOPS_TOKENIZER), "--val-docs", "50"])
    prep.main()
    theirs = tmp_path / "datasets" / "fineweb10B_sp8192_lossless_caps_caseops_v1_reserved"
    ours = caseops_data_root / "datasets" / f"fineweb10B_{CASEOPS_VARIANT}"
    names = sorted(p.name for p in theirs.glob("*.bin"))
    assert names == ["fineweb_train_000000.bin", "fineweb_val_000000.bin", "fineweb_val_bytes_000000.bin"]
    assert sorted(p.name for p in ours.glob("*.bin")) == names
    for name in names:
        assert (ours / name).read_bytes() == (theirs / name).read_bytes(), name
    manifest = json.loads((ours / "manifest.json").read_text())
    val = manifest["splits"]["val"]
    assert manifest["text_transform"] == "caseops_v1"
    assert val["sidecar_bytes"] == val["bytes"] and val["sidecar_mismatch_docs"] == 0
    assert manifest["splits"]["train"]["sidecar_mismatch_docs"] == 0
    # per document: the sidecar entries between BOS tokens sum to that doc's UTF-8 length
    toks, nb = read_shard(ours / "fineweb_val_000000.bin"), read_shard(ours / "fineweb_val_bytes_000000.bin")
    starts = list(np.flatnonzero(toks == 1)) + [len(toks)]
    per_doc = [int(nb[a:b].sum()) for a, b in zip(starts[:-1], starts[1:], strict=True)]
    assert per_doc == [len(t.encode("utf-8")) for t in _docs(fineweb_docs)[:50]]
    assert (nb[toks == 1] == 0).all()


def test_prepare_rejects_unknown_transform(fineweb_docs, tmp_path):
    with pytest.raises(PrepareError, match="text-transform"):
        prepare_shards(fineweb_docs, CASEOPS_TOKENIZER, tmp_path / "x", val_docs=1, text_transform="caps")
    assert not (tmp_path / "x").exists()


def test_data_config_variants():
    cfg = DataConfig(variant=CASEOPS_VARIANT, root="/d", text_transform="caseops_v1")
    assert cfg.resolve_tokenizer_path() == Path("/d/tokenizers/fineweb_8192_bpe_lossless_caps_caseops_v1_reserved.model")
    assert cfg.resolve_dataset_dir() == Path(f"/d/datasets/fineweb10B_{CASEOPS_VARIANT}")
    assert cfg.uses_byte_sidecar and not DataConfig().uses_byte_sidecar
    with pytest.raises(ValueError, match="data.text_transform"):
        DataConfig(text_transform="upper")


def _caseops_data(root: Path) -> DataConfig:
    return DataConfig(variant=CASEOPS_VARIANT, root=str(root), vocab_size=8192, text_transform="caseops_v1")


def test_val_tokens_exclude_sidecar_and_sidecar_covers_them(caseops_data_root):
    data = _caseops_data(caseops_data_root)
    shard = read_shard(data.resolve_dataset_dir() / "fineweb_val_000000.bin")
    val = load_val_data(data, 8192, 128)
    assert torch.equal(val.tokens.to(torch.int64), torch.from_numpy(shard[: val.tokens.numel()].astype(np.int64)))
    assert val.byte_sidecar is not None and val.byte_sidecar.shape == val.tokens.shape
    full = load_validation_byte_sidecar(data.val_bytes_glob(), len(shard))
    manifest = json.loads((data.resolve_dataset_dir() / "manifest.json").read_text())
    assert int(full.sum()) == manifest["splits"]["val"]["bytes"]
    with pytest.raises(GolfError, match="fewer than"):
        load_validation_byte_sidecar(data.val_bytes_glob(), len(shard) + 1)


def test_sidecar_val_bpb_equals_record_eval_val(caseops_data_root):
    """golf's standard eval with the sidecar gives the record's eval_val numbers (same tokens, same losses)."""
    tg = load_record_module("train_gpt")
    seq = 128
    data = _caseops_data(caseops_data_root)
    val = load_val_data(data, 8192, seq, max_tokens=40 * seq)
    torch.manual_seed(0)
    model = build_model(ModelConfig(vocab_size=8192, num_layers=1, model_dim=32, num_heads=2, num_kv_heads=1,
                                    mlp_mult=1.0)).float()
    with torch.no_grad():
        model.tok_emb.weight.normal_(0, 0.5)  # a model with non-uniform predictions
    ours = evaluate_standard(model, val.tokens, val.luts, seq, 4 * seq, byte_sidecar=val.byte_sidecar)
    lut = evaluate_standard(model, val.tokens, val.luts, seq, 4 * seq)

    h = record_hparams(eval_seq_len=seq, val_batch_tokens=4 * seq, world_size=1, grad_accum_steps=1, rank=0)
    vd = type("VD", (), {"val_tokens": val.tokens, "val_bytes": val.byte_sidecar, "caseops_enabled": True})()

    def forward_logits(x, cu_seqlens=None, max_seqlen=0):  # same windows as golf's standard eval
        return model.logits(x.reshape(-1, seq)).reshape(1, -1, 8192)

    rec_loss, rec_bpb = tg.eval_val(h, torch.device("cpu"), vd, model, forward_logits_fn=forward_logits)
    assert ours.tokens == 40 * seq
    assert ours.bytes == int(val.byte_sidecar[1: 40 * seq + 1].sum())
    rec_bytes = ours.tokens * rec_loss / math.log(2.0) / rec_bpb  # the byte count the record divided by
    assert rec_bytes == pytest.approx(ours.bytes, abs=1e-6)
    # golf sums fp32 batch means, the record fp64 per-token losses: equal to fp32 rounding
    assert ours.val_loss == pytest.approx(rec_loss, rel=1e-6, abs=0)
    assert ours.val_bpb == pytest.approx(rec_bpb, rel=1e-6, abs=0)
    # on the same loss sum, token and byte counts, the record's arithmetic gives golf's numbers exactly
    loss_sum = ours.val_loss * ours.tokens
    f64 = lambda v: torch.tensor(float(v), dtype=torch.float64)  # noqa: E731
    assert tg._loss_bpb(f64(loss_sum), f64(ours.tokens), f64(ours.bytes)) == bits_per_byte(loss_sum, ours.tokens, ours.bytes)
    assert abs(lut.val_bpb - ours.val_bpb) > 1e-3  # the LUT count (transformed text) differs: the sidecar matters
