"""Tokenize local text into official-format shards.

    python -m golf.data.prepare --input DOCS.jsonl[.gz]|DOCS.txt[.gz] --tokenizer X.model --out DIR \\
        --val-docs N [--shard-tokens 100000000] [--text-field text] [--max-docs K] [--clean-text]
        [--text-transform identity|caseops_v1]

Behaviour of openai/parameter-golf ``data/download_hf_docs_and_tokenize.py`` ``export_shards``:
documents are taken in file order; each is written as ``[BOS] + sp.encode(text)`` (no EOS); the first
N documents form the validation stream, the rest the training stream; each stream is packed into shards
of exactly ``--shard-tokens`` tokens (last shard of a stream partial; a document may straddle shards;
the buffer is flushed when full and when the stream switches from val to train), named
``fineweb_val_{i:06d}.bin`` / ``fineweb_train_{i:06d}.bin`` with i counted per split from 0.

Input formats: ``.jsonl``/``.jsonl.gz`` = one JSON object per line, text in ``--text-field`` (blank lines
skipped); ``.txt``/``.txt.gz`` = one document per line (newline removed, blank lines skipped).
The official export encodes the text exactly as stored (no NUL replacement, no strip, empty documents
still emit a lone BOS). ``--clean-text`` (off by default) applies the cleaning the official script uses
only for *tokenizer training* text: NUL -> space, strip, skip empty documents.

``--text-transform caseops_v1`` (2026-04-27 record, ``prepare_caseops_data.py``; use its CaseOps tokenizer)
encodes each document with the lossless-capitals transform (``golf.data.caseops``) before tokenizing, and
writes, for the validation stream only, byte-sidecar shards ``fineweb_val_bytes_{i:06d}.bin`` parallel to
``fineweb_val_{i:06d}.bin`` (same format, one uint16 per token: the ORIGINAL UTF-8 bytes the token stands
for, BOS = 0), so val_bpb is counted on the untransformed text. The manifest records per split
``sidecar_bytes`` and ``sidecar_mismatch_docs`` (documents whose sidecar total differs from their UTF-8
length; 0 unless the tokenizer's normalizer drops characters).

Output is atomic: shards and ``manifest.json`` are written into a temporary folder next to ``--out``
and renamed into place; on any error nothing is left behind.
"""

from __future__ import annotations

import argparse
import gzip
import itertools
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from golf.data.caseops import TRANSFORMS, apply_transform, token_original_bytes
from golf.data.shards import MAX_SHARD_TOKENS, UINT16_LIMIT, umask_mode, write_shard
from golf.data.tokenizer import byte_lut_arrays, load_tokenizer, sha256_file
from golf.errors import GolfError

DEFAULT_SHARD_TOKENS = 10**8  # official SHARD_SIZE
OFFICIAL_VAL_DOCS = 50_000  # official NUM_VAL_DOCS
ENCODE_BATCH_DOCS = 1024  # official MATCHED_FINEWEB_SP_BATCH_SIZE default
MANIFEST_NAME = "manifest.json"
SPLITS = ("val", "train")


class PrepareError(GolfError, ValueError):
    """Bad input for prepare (missing/unsupported file, bad JSON line, unusable tokenizer or sizes)."""


def check_vocab_fits_uint16(vocab_size: int) -> None:
    """Shards store uint16 ids, so the vocab may hold at most 65,536 ids (official check ``> 2**16``).

    Raises:
        PrepareError: vocab_size > 65536.
    """
    if vocab_size > UINT16_LIMIT:
        raise PrepareError(f"tokenizer vocab_size={vocab_size} is too large for uint16 shards (max {UINT16_LIMIT})")


def _open_text(path: Path):
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    return path.open("r", encoding="utf-8")


def iter_documents(path: str | os.PathLike, text_field: str = "text", clean_text: bool = False) -> Iterator[str]:
    """Yield document texts from ``path`` in file order (formats in the module docstring).

    Raises:
        PrepareError: missing/unsupported file (at call time); invalid JSON or missing text field (with
            line number), non-UTF-8 or corrupt gzip input (while iterating).
    """
    path = Path(path)
    if path.name.endswith((".jsonl", ".jsonl.gz")):
        is_json = True
    elif path.name.endswith((".txt", ".txt.gz")):
        is_json = False
    else:
        raise PrepareError(f"input {path}: unsupported file type (use .jsonl, .jsonl.gz, .txt or .txt.gz)")
    if not path.is_file():
        raise PrepareError(f"input {path}: file not found")
    return _read_documents(path, is_json, text_field, clean_text)


def _read_documents(path: Path, is_json: bool, text_field: str, clean_text: bool) -> Iterator[str]:
    lineno = 0
    try:
        with _open_text(path) as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                if is_json:
                    try:
                        obj = json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise PrepareError(f"input {path}:{lineno}: invalid JSON ({exc.msg})") from None
                    if not isinstance(obj, dict) or not isinstance(obj.get(text_field), str):
                        raise PrepareError(f"input {path}:{lineno}: no string field {text_field!r}")
                    text = obj[text_field]
                else:
                    text = line.rstrip("\n")
                if clean_text:
                    text = text.replace("\x00", " ").strip()
                    if not text:
                        continue
                yield text
    except UnicodeDecodeError as exc:
        raise PrepareError(f"input {path}: not UTF-8 text after line {lineno} ({exc.reason})") from None
    except (EOFError, gzip.BadGzipFile) as exc:
        raise PrepareError(f"input {path}: corrupt gzip after line {lineno} ({exc})") from None


class _ShardPacker:
    """The official export buffer: fill shard_tokens, flush when full and on the val->train switch."""

    def __init__(self, out_dir: Path, shard_tokens: int, suffix: str = ""):
        self.out_dir = out_dir
        self.suffix = suffix
        self.buf = np.empty(shard_tokens, dtype=np.uint16)
        self.fill = 0
        self.split = "val"
        self.files: dict[str, list[str]] = {s: [] for s in SPLITS}

    def flush(self) -> None:
        if self.fill == 0:
            return
        name = f"fineweb_{self.split}{self.suffix}_{len(self.files[self.split]):06d}.bin"
        write_shard(self.out_dir / name, self.buf[: self.fill])
        self.files[self.split].append(name)
        self.fill = 0

    def add(self, split: str, toks: np.ndarray) -> None:
        if split != self.split:
            self.flush()
            self.split = split
        pos = 0
        while pos < len(toks):
            take = min(len(self.buf) - self.fill, len(toks) - pos)
            self.buf[self.fill : self.fill + take] = toks[pos : pos + take]
            self.fill += take
            pos += take
            if self.fill == len(self.buf):
                self.flush()


def _encode_caseops(sp, batch: list[str]) -> tuple[list[list[int]], list[list[int]]]:
    ids, nbytes = [], []
    for text in batch:
        i, b = token_original_bytes(sp, apply_transform("caseops_v1", text))
        ids.append(i)
        nbytes.append(b)
    return ids, nbytes


def _export(docs: Iterator[str], sp, out_dir: Path, val_docs: int, shard_tokens: int,
            max_docs: int | None, progress: bool, label: str, text_transform: str = "identity") -> dict:
    vocab_size, bos_id = int(sp.vocab_size()), int(sp.bos_id())
    base, lead, boundary = byte_lut_arrays(sp, vocab_size)
    base = base.astype(np.int64)
    packer = _ShardPacker(out_dir, shard_tokens)
    sidecar = _ShardPacker(out_dir, shard_tokens, suffix="_bytes") if text_transform != "identity" else None
    counts = {s: {"documents": 0, "tokens": 0, "bytes": 0, "lut_bytes": 0} for s in SPLITS}
    if sidecar is not None:
        for c in counts.values():
            c.update(sidecar_bytes=0, sidecar_mismatch_docs=0)
    threads = os.cpu_count() or 1
    n_docs = 0
    bar = tqdm(total=max_docs, unit="doc", desc=f"prepare {label}", disable=not progress)
    batch: list[str] = []

    def encode_batch() -> None:
        nonlocal n_docs
        if sidecar is None:
            encoded, doc_bytes = sp.encode(batch, out_type=int, num_threads=threads), [None] * len(batch)
        else:
            encoded, doc_bytes = _encode_caseops(sp, batch)
        for text, ids, nb in zip(batch, encoded, doc_bytes, strict=True):
            split = "val" if n_docs < val_docs else "train"
            toks = np.empty(len(ids) + 1, dtype=np.int64)
            toks[0] = bos_id
            toks[1:] = ids
            if toks.size > 1 and (toks.min() < 0 or toks.max() >= vocab_size):
                raise PrepareError(f"document {n_docs}: token id outside [0, {vocab_size}) from the tokenizer")
            c = counts[split]
            c["documents"] += 1
            c["tokens"] += toks.size
            c["bytes"] += len(text.encode("utf-8"))
            if nb is not None:
                c["sidecar_bytes"] += sum(nb)
                c["sidecar_mismatch_docs"] += int(sum(nb) != len(text.encode("utf-8")))
                if split == "val":
                    if max(nb, default=0) >= UINT16_LIMIT:
                        raise PrepareError(f"document {n_docs}: a token stands for more than {UINT16_LIMIT - 1} "
                                           "bytes (uint16 sidecar)")
                    sidecar.add("val", np.asarray([0, *nb], dtype=np.uint16))
            tgt, prev = toks[1:], toks[:-1]
            c["lut_bytes"] += int(base[tgt].sum() + (lead[tgt] & ~boundary[prev]).sum())
            packer.add(split, toks.astype(np.uint16))
            n_docs += 1
        bar.update(len(batch))
        bar.set_postfix(tokens=counts["val"]["tokens"] + counts["train"]["tokens"], refresh=False)
        batch.clear()

    try:
        for text in docs if max_docs is None else itertools.islice(docs, max_docs):
            batch.append(text)
            if len(batch) == ENCODE_BATCH_DOCS:
                encode_batch()
        if batch:
            encode_batch()
        packer.flush()
        if sidecar is not None:
            sidecar.flush()
    finally:
        bar.close()
    if n_docs < val_docs:
        raise PrepareError(f"--val-docs {val_docs} exceeds the {n_docs} documents read")
    splits = {s: {**counts[s], "shards": len(packer.files[s]), "files": packer.files[s]} for s in SPLITS}
    if sidecar is not None:
        splits["val"]["sidecar_files"] = sidecar.files["val"]
    stats = {"docs_total": n_docs, "files_total": sum(len(f) for f in packer.files.values()),
             "tokens_total": sum(c["tokens"] for c in counts.values())}
    for s in SPLITS:
        stats.update({f"docs_{s}": counts[s]["documents"], f"files_{s}": len(packer.files[s]),
                      f"tokens_{s}": counts[s]["tokens"]})
    return {"splits": splits, "stats": stats, "num_shards": stats["files_total"]}


def _check_replaceable(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise PrepareError(f"--out {out}: exists and is not a folder")
    if out.is_dir():
        for entry in out.iterdir():
            ours = entry.name == MANIFEST_NAME or (entry.name.startswith("fineweb_") and entry.name.endswith(".bin"))
            if not ours:
                raise PrepareError(f"--out {out}: refusing to replace a folder holding {entry.name!r} "
                                   "(not written by prepare)")


def _move_into_place(tmp: Path, out: Path) -> None:
    if not out.exists():
        os.replace(tmp, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    os.replace(out, old / out.name)
    os.replace(tmp, out)
    shutil.rmtree(old, ignore_errors=True)


def prepare_shards(input: str | os.PathLike, tokenizer: str | os.PathLike, out: str | os.PathLike,
                   val_docs: int, shard_tokens: int = DEFAULT_SHARD_TOKENS, *, text_field: str = "text",
                   max_docs: int | None = None, clean_text: bool = False, progress: bool = False,
                   text_transform: str = "identity") -> dict:
    """Tokenize ``input`` into shards under ``out`` and write ``out/manifest.json``.

    Args:
        input: documents file (.jsonl[.gz] or .txt[.gz]).
        tokenizer: SentencePiece ``.model``.
        out: output folder (created or replaced atomically; an existing folder may hold only
            ``fineweb_*.bin`` and ``manifest.json``).
        val_docs: number of leading documents that form the validation split (official 50,000).
        shard_tokens: tokens per shard (official 100,000,000).
        text_field: JSON field holding the text. max_docs: stop after this many documents.
        clean_text: apply the tokenizer-training cleaning (see module docstring). progress: tqdm bar.
        text_transform: ``identity`` (official) or ``caseops_v1`` (transform + val byte sidecar, see above).
    Returns:
        The manifest dict: per split documents / tokens (BOS included) / bytes (UTF-8 of the text) /
        lut_bytes (val_bpb byte denominator of all its targets) / shards / files; official-style
        ``stats``; tokenizer path, sha256, vocab_size, bos_id.
    Raises:
        PrepareError, golf.data.tokenizer.TokenizerError, golf.data.shards.ShardError, OSError.
    """
    input, tokenizer, out = Path(input), Path(tokenizer), Path(out)
    if val_docs < 0:
        raise PrepareError(f"--val-docs must be >= 0, got {val_docs}")
    if not 0 < shard_tokens <= MAX_SHARD_TOKENS:
        raise PrepareError(f"--shard-tokens must be in [1, {MAX_SHARD_TOKENS}], got {shard_tokens}")
    if max_docs is not None and max_docs < 0:
        raise PrepareError(f"--max-docs must be >= 0, got {max_docs}")
    if text_transform not in TRANSFORMS:
        raise PrepareError(f"--text-transform must be one of {', '.join(TRANSFORMS)}, got {text_transform!r}")
    sp = load_tokenizer(tokenizer)
    check_vocab_fits_uint16(int(sp.vocab_size()))
    if sp.bos_id() < 0:
        raise PrepareError(f"tokenizer {tokenizer} has no BOS id")
    docs = iter_documents(input, text_field, clean_text)
    _check_replaceable(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        os.chmod(tmp, umask_mode(directory=True))
        result = _export(docs, sp, tmp, val_docs, shard_tokens, max_docs, progress, out.name, text_transform)
        manifest = {
            "format": "golf.prepare/1",
            "input": str(input.resolve()),
            "text_field": text_field,
            "clean_text": clean_text,
            "text_transform": text_transform,
            "max_docs": max_docs,
            "tokenizer": {"path": str(tokenizer.resolve()), "sha256": sha256_file(tokenizer),
                          "vocab_size": int(sp.vocab_size()), "bos_id": int(sp.bos_id())},
            "vocab_size": int(sp.vocab_size()),
            "bos_id": int(sp.bos_id()),
            "append_eos": False,
            "num_val_docs": val_docs,
            "shard_tokens": shard_tokens,
            **result,
        }
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        _move_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m golf.data.prepare", description=__doc__.split("\n\n")[0])
    p.add_argument("--input", required=True, help="documents: .jsonl[.gz] (JSON per line) or .txt[.gz] (one per line)")
    p.add_argument("--tokenizer", required=True, help="SentencePiece .model file")
    p.add_argument("--out", required=True, help="output folder for fineweb_{val,train}_*.bin + manifest.json")
    p.add_argument("--val-docs", type=int, required=True, help=f"leading documents for validation (official {OFFICIAL_VAL_DOCS})")
    p.add_argument("--shard-tokens", type=int, default=DEFAULT_SHARD_TOKENS, help="tokens per shard")
    p.add_argument("--text-field", default="text", help="JSON field holding the document text")
    p.add_argument("--max-docs", type=int, default=None, help="stop after this many documents")
    p.add_argument("--clean-text", action="store_true", help="NUL->space, strip, skip empty (not official export)")
    p.add_argument("--text-transform", default="identity", choices=TRANSFORMS,
                   help="caseops_v1: lossless-capitals transform + val byte sidecar (2026-04-27 record)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status (errors: one line on stderr, status 1)."""
    args = build_parser().parse_args(argv)
    try:
        manifest = prepare_shards(args.input, args.tokenizer, args.out, args.val_docs, args.shard_tokens,
                                  text_field=args.text_field, max_docs=args.max_docs,
                                  clean_text=args.clean_text, progress=not args.no_progress,
                                  text_transform=args.text_transform)
    except (GolfError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    s = manifest["splits"]
    print(f"wrote {manifest['num_shards']} shards to {args.out}: val {s['val']['documents']} docs "
          f"{s['val']['tokens']} tokens, train {s['train']['documents']} docs {s['train']['tokens']} tokens")
    return 0


if __name__ == "__main__":
    sys.exit(main())
