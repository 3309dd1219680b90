"""val_bpb byte accounting against the official rules, on real FineWeb docs and the official tokenizers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import sentencepiece as spm
import torch

from golf.data.loader import load_validation_tokens
from golf.data.tokenizer import TokenizerError, VocabMismatchError, load_tokenizer
from golf.errors import GolfError
from golf.eval.bpb import (
    BpbAccumulator,
    bits_per_byte,
    build_byte_luts,
    token_bytes,
)


@pytest.fixture(scope="module")
def texts(fineweb_docs: Path) -> list[str]:
    return [json.loads(line)["text"] for line in fineweb_docs.read_text(encoding="utf-8").splitlines()]


def _check_every_document(sp: spm.SentencePieceProcessor, texts: list[str]) -> int:
    """For each doc: ids = [BOS] + encode(text); bytes credited to ids[1:] == UTF-8 length of decode(ids[1:])."""
    luts = build_byte_luts(sp, int(sp.vocab_size()))
    checked = 0
    for i, (text, ids) in enumerate(zip(texts, sp.encode(texts), strict=True)):
        seq = torch.tensor([sp.bos_id(), *ids], dtype=torch.int64)
        credited = int(token_bytes(seq[:-1], seq[1:], luts).sum())
        assert credited == len(sp.decode(seq[1:].tolist()).encode("utf-8")), f"document {i}: {text[:60]!r}"
        checked += 1
    return checked


def test_byte_accounting_matches_decoded_text_for_every_document(sp1024_model, texts):
    sp = load_tokenizer(sp1024_model, 1024)
    assert _check_every_document(sp, texts) == 200


@pytest.mark.parametrize("vocab", [4096, 8192])
def test_byte_accounting_other_official_tokenizers(shared_data, texts, vocab):
    sp = load_tokenizer(shared_data / "tokenizers" / f"fineweb_{vocab}_bpe.model", vocab)
    assert _check_every_document(sp, texts) == 200


def test_lut_entries_follow_official_rules(sp1024_model):
    sp = load_tokenizer(sp1024_model)
    luts = build_byte_luts(sp, 1100)  # larger model vocab: padding ids are boundaries with 0 bytes
    assert luts.base_bytes.shape == (1100,) and luts.base_bytes.dtype == torch.int16
    assert luts.has_leading_space.dtype == luts.is_boundary.dtype == torch.bool
    assert luts.is_boundary[:4].tolist() == [True] * 4  # <pad> <s> </s> <unk>
    assert luts.base_bytes[:4].tolist() == [0] * 4
    assert luts.is_boundary[1024:].all() and not luts.base_bytes[1024:].any() and not luts.has_leading_space[1024:].any()
    byte_ids = [i for i in range(1024) if sp.is_byte(i)]
    assert len(byte_ids) == 256 and (luts.base_bytes[byte_ids] == 1).all() and not luts.is_boundary[byte_ids].any()
    space = sp.piece_to_id("\u2581")
    assert space == 939 and luts.base_bytes[space] == 0 and luts.has_leading_space[space]
    for piece in ("\u2581the", "ing", "\u2581a"):
        tid = sp.piece_to_id(piece)
        assert sp.id_to_piece(tid) == piece
        assert luts.base_bytes[tid] == len(piece.lstrip("\u2581").encode()) and luts.has_leading_space[tid] == piece.startswith("\u2581")


def test_leading_space_not_counted_after_boundary(sp1024_model):
    sp = load_tokenizer(sp1024_model)
    luts = build_byte_luts(sp, 1024)
    the, word = sp.piece_to_id("\u2581the"), sp.piece_to_id("ing")
    prev = torch.tensor([sp.bos_id(), word, sp.eos_id(), 0])
    tgt = torch.tensor([the, the, the, the])
    assert token_bytes(prev, tgt, luts).tolist() == [3, 4, 3, 3]  # after <s>, </s>, <pad>: no space byte
    assert token_bytes(torch.tensor([word]), torch.tensor([sp.bos_id()]), luts).tolist() == [0]  # BOS target: 0


def test_bits_per_byte_formula():
    val_loss, val_bpb = bits_per_byte(2.0 * 1000, 1000, 2436)
    assert val_loss == 2.0 and val_bpb == pytest.approx(2.0 / math.log(2) * 1000 / 2436, rel=1e-15)
    # sp1024 val split scale (62,021,632 tokens, ~151.08M bytes): same operation order as official eval_val
    tokens, n_bytes, loss_sum = 62_021_632, 151_080_000, 2.07269931 * 62_021_632
    expected_loss = loss_sum / tokens
    assert bits_per_byte(loss_sum, tokens, n_bytes) == (expected_loss, expected_loss / math.log(2.0) * (tokens / n_bytes))
    for bad in ((1.0, 0, 10), (1.0, 10, 0)):
        with pytest.raises(ValueError, match="positive counts"):
            bits_per_byte(*bad)


def test_uniform_model_on_prepared_val_split(sp1024_shards, sp1024_model):
    """A uniform predictor has loss ln(1024) per token, so val_bpb = 10 * tokens / bytes; the byte
    denominator over the whole (untruncated) val stream equals the manifest's decoded-text byte count."""
    manifest = json.loads((sp1024_shards / "manifest.json").read_text())
    n_val = manifest["splits"]["val"]["tokens"]
    val = load_validation_tokens(str(sp1024_shards / "fineweb_val_*.bin"), n_val - 1).to(torch.int64)
    assert val.numel() == n_val
    luts = build_byte_luts(load_tokenizer(sp1024_model, 1024), 1024)
    acc = BpbAccumulator(luts)
    for start in range(0, n_val - 1, 4096):
        chunk = val[start : start + 4097]
        x, y = chunk[:-1], chunk[1:]
        acc.add(torch.tensor(math.log(1024.0), dtype=torch.float64) * y.numel(), x, y)
    acc.all_reduce()
    assert int(acc.byte_count) == manifest["splits"]["val"]["lut_bytes"]
    val_loss, val_bpb = acc.result()
    assert val_loss == pytest.approx(math.log(1024.0), rel=1e-12)
    assert val_bpb == pytest.approx(10.0 * (n_val - 1) / manifest["splits"]["val"]["lut_bytes"], rel=1e-12)


def test_load_tokenizer_errors(sp1024_model, tmp_path):
    with pytest.raises(VocabMismatchError) as info:
        load_tokenizer(sp1024_model, 4096)
    assert "1024" in str(info.value) and "4096" in str(info.value) and str(sp1024_model) in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, GolfError)
    with pytest.raises(TokenizerError, match="expected a SentencePiece .model file"):
        load_tokenizer(sp1024_model.with_suffix(".vocab"))
    with pytest.raises(TokenizerError, match="file not found"):
        load_tokenizer(tmp_path / "missing.model")
    junk = tmp_path / "junk.model"
    junk.write_bytes(np.arange(100, dtype=np.uint8).tobytes())
    with pytest.raises(TokenizerError, match="cannot load"):
        load_tokenizer(junk)
    assert load_tokenizer(sp1024_model, 1024).vocab_size() == 1024
