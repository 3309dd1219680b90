"""Download the official pre-tokenized FineWeb shards and tokenizer from the Hugging Face hub.

    python -m golf.data.download --variant sp1024 --train-shards 80 [--root DIR] \\
        [--repo-id willdepueoai/parameter-golf] [--remote-root datasets] [--with-docs] [--skip-manifest]

Behaviour of openai/parameter-golf ``data/cached_challenge_fineweb.py``: the remote
``{remote_root}/manifest.json`` (kept locally as ``{root}/manifest.json`` and reused while it exists;
delete it when switching repos) names the dataset ``fineweb10B_{variant}`` with ``stats.files_val`` /
``stats.files_train`` and its tokenizer entry (``model_path``/``vocab_path``/``path``). All validation
shards and the first N training shards are fetched with ``hf_hub_download`` and hard-linked (or copied)
from the hub cache into::

    {root}/datasets/fineweb10B_{variant}/fineweb_{val,train}_{i:06d}.bin
    {root}/tokenizers/fineweb_{V}_bpe.{model,vocab}
    {root}/docs_selected.jsonl (+ .source_manifest.json)      with --with-docs

Files already present are kept. Root: ``--root``, else ``$GOLF_DATA_DIR``, else ``./data``.
Every shard's header and size are checked after download (golf addition).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path, PurePosixPath

from golf.data.config import variant_vocab_size
from golf.data.shards import read_header
from golf.errors import GolfError

DEFAULT_REPO_ID = os.environ.get("MATCHED_FINEWEB_REPO_ID", "willdepueoai/parameter-golf")
DEFAULT_REMOTE_ROOT = os.environ.get("MATCHED_FINEWEB_REMOTE_ROOT_PREFIX", "datasets")
DEFAULT_TRAIN_SHARDS = 80
DOCS_FILE = "docs_selected.jsonl"
DOCS_SIDECAR = "docs_selected.source_manifest.json"
# Shared real data beside the project checkout (see the project README), used in the offline hint.
_SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


class DownloadError(GolfError, RuntimeError):
    """A download cannot proceed: bad manifest, missing remote file, too many shards requested."""


class HubUnreachableError(DownloadError):
    """The Hugging Face hub cannot be reached (offline, DNS/connection failure, HF_HUB_OFFLINE=1)."""


def resolve_root(root: str | None) -> Path:
    """Data root: ``root``, else $GOLF_DATA_DIR, else ``./data``."""
    return Path(root or os.environ.get("GOLF_DATA_DIR") or "./data")


def _safe_relative(rel: str, where: str) -> PurePosixPath:
    p = PurePosixPath(rel)
    if p.is_absolute() or not p.parts or ".." in p.parts:
        raise DownloadError(f"{where}: unsafe path {rel!r} (must be relative, without '..')")
    return p


def _unreachable_types() -> tuple[type[BaseException], ...]:
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    types: list[type[BaseException]] = [LocalEntryNotFoundError, OfflineModeIsEnabled, ConnectionError, TimeoutError]
    for mod, name in (("httpx", "TransportError"), ("requests.exceptions", "ConnectionError"),
                      ("requests.exceptions", "Timeout")):
        try:
            types.append(getattr(__import__(mod, fromlist=[name]), name))
        except (ImportError, AttributeError):
            pass
    return tuple(types)


def fetch(repo_id: str, remote_root: str, rel: str, root: Path, *, optional: bool = False) -> Path | None:
    """Fetch ``{remote_root}/{rel}`` of dataset repo ``repo_id`` to ``root/rel`` unless it exists.

    Returns the local path (None if ``optional`` and the remote file does not exist).
    Raises:
        HubUnreachableError: offline. DownloadError: file/repo not found or other hub error.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        HfHubHTTPError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    rel_path = _safe_relative(rel, "download")
    dest = root.joinpath(*rel_path.parts)
    if dest.exists():
        return dest
    remote = PurePosixPath(remote_root) / rel_path if remote_root else rel_path
    subfolder = None if str(remote.parent) == "." else str(remote.parent)
    try:
        cached = hf_hub_download(repo_id=repo_id, filename=remote.name, subfolder=subfolder, repo_type="dataset")
    except _unreachable_types() as exc:  # LocalEntryNotFoundError subclasses EntryNotFoundError: test first
        raise HubUnreachableError(f"Hugging Face hub unreachable while fetching {remote} from {repo_id} "
                                  f"({type(exc).__name__})") from None
    except (EntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError, GatedRepoError):
        if optional:
            return None
        raise DownloadError(f"{remote} not found in Hugging Face dataset repo {repo_id}") from None
    except HfHubHTTPError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DownloadError(f"Hugging Face hub error fetching {remote} from {repo_id}: {first}") from None
    source = Path(cached).resolve(strict=True)  # hub cache entries are symlinks to blobs
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp-{os.getpid()}")
    try:
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copy2(source, tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def _dataset_entries(manifest: dict, manifest_path: Path, variant: str) -> tuple[dict, dict]:
    name = f"fineweb10B_{variant}"
    dataset = next((d for d in manifest.get("datasets", []) if d.get("name") == name), None)
    if dataset is None:
        raise DownloadError(f"dataset {name} not found in {manifest_path}")
    tok_name = dataset.get("tokenizer_name")
    tokenizer = next((t for t in manifest.get("tokenizers", []) if t.get("name") == tok_name), None)
    if tokenizer is None:
        raise DownloadError(f"tokenizer {tok_name} of dataset {name} not found in {manifest_path}")
    return dataset, tokenizer


def download(variant: str = "sp1024", train_shards: int = DEFAULT_TRAIN_SHARDS, root: str | None = None,
             repo_id: str = DEFAULT_REPO_ID, remote_root: str = DEFAULT_REMOTE_ROOT, with_docs: bool = False,
             skip_manifest: bool = False) -> dict:
    """Fetch the val shards, ``train_shards`` train shards and the tokenizer into the official layout.

    Returns:
        ``{"root", "dataset_dir", "val_shards", "train_shards", "tokenizer_files"}`` (paths as str).
    Raises:
        HubUnreachableError, DownloadError, golf.data.shards.ShardError (corrupt download).
    """
    if train_shards < 0:
        raise DownloadError(f"--train-shards must be >= 0, got {train_shards}")
    data_root = resolve_root(root)
    manifest_path = data_root / "manifest.json"
    if not manifest_path.is_file():
        if skip_manifest:
            raise DownloadError(f"--skip-manifest given but {manifest_path} is missing")
        fetch(repo_id, remote_root, "manifest.json", data_root)
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DownloadError(f"{manifest_path}: not valid JSON ({exc})") from None
    dataset, tokenizer = _dataset_entries(manifest, manifest_path, variant)
    stats = dataset.get("stats") or {}
    try:
        max_train, n_val = int(stats["files_train"]), int(stats["files_val"])
    except (KeyError, TypeError, ValueError):
        raise DownloadError(f"{manifest_path}: dataset {dataset['name']} lacks stats.files_train/files_val") from None
    if train_shards > max_train:
        raise DownloadError(f"{variant} has only {max_train} training shards on {repo_id}, requested {train_shards}")
    prefix = f"datasets/{dataset['name']}"
    val = [f"{prefix}/fineweb_val_{i:06d}.bin" for i in range(n_val)]
    train = [f"{prefix}/fineweb_train_{i:06d}.bin" for i in range(train_shards)]
    for rel in val + train:
        read_header(fetch(repo_id, remote_root, rel, data_root))
    tok_files = [str(tokenizer[k]) for k in ("model_path", "vocab_path", "path") if tokenizer.get(k)]
    if not tok_files:
        raise DownloadError(f"{manifest_path}: tokenizer {tokenizer.get('name')} lists no files")
    for rel in tok_files:
        fetch(repo_id, remote_root, rel, data_root)
    if with_docs:
        fetch(repo_id, remote_root, DOCS_FILE, data_root)
        fetch(repo_id, remote_root, DOCS_SIDECAR, data_root, optional=True)
    return {"root": str(data_root), "dataset_dir": str(data_root / prefix), "val_shards": len(val),
            "train_shards": len(train), "tokenizer_files": [str(data_root / r) for r in tok_files]}


def offline_hint(variant: str, root: Path) -> str:
    """The prepare command that builds shards from local text (shared tokenizer/docs when present)."""
    vocab = variant_vocab_size(variant)
    tok_name = f"fineweb_{vocab}_bpe.model" if vocab else "TOKENIZER.model"
    shared_tok = _SHARED_DATA / "tokenizers" / tok_name
    tokenizer = shared_tok if shared_tok.is_file() else root / "tokenizers" / tok_name
    shared_docs = _SHARED_DATA / "fineweb" / "docs_sample_200.jsonl"
    docs, val_docs = (shared_docs, 50) if shared_docs.is_file() else ("DOCS.jsonl", 50_000)
    return (f"python -m golf.data.prepare --input {docs} --tokenizer {tokenizer} "
            f"--out {root / 'datasets' / f'fineweb10B_{variant}'} --val-docs {val_docs}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m golf.data.download", description=__doc__.split("\n\n")[0])
    p.add_argument("train_shards_positional", nargs="?", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--variant", default="sp1024", help="sp<V> (e.g. sp1024, sp4096) or byte260")
    p.add_argument("--train-shards", type=int, default=DEFAULT_TRAIN_SHARDS,
                   help="training shards to fetch (100M tokens each)")
    p.add_argument("--root", default=None, help="data root (default $GOLF_DATA_DIR or ./data)")
    p.add_argument("--repo-id", default=DEFAULT_REPO_ID, help="Hugging Face dataset repo")
    p.add_argument("--remote-root", default=DEFAULT_REMOTE_ROOT, help="folder inside the repo holding manifest.json")
    p.add_argument("--with-docs", action="store_true", help="also fetch docs_selected.jsonl (+ sidecar)")
    p.add_argument("--skip-manifest", action="store_true", help="require an existing local manifest.json")
    p.add_argument("--offline-ok", action="store_true",
                   help="hub unreachable is not an error: print a notice and exit 3 (the caller has a fallback)")
    return p


OFFLINE_EXIT = 3  # --offline-ok: the hub is unreachable (not an error for a caller with a local fallback)


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status (errors: one line on stderr, status 1; with --offline-ok an
    unreachable hub is a notice and status 3)."""
    args = build_parser().parse_args(argv)
    if not (args.variant == "byte260" or variant_vocab_size(args.variant)):
        print(f"error: --variant {args.variant!r} must be sp<V> or byte260", file=sys.stderr)
        return 1
    from huggingface_hub.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # keep failures to one line (no per-retry warnings)
    train_shards = args.train_shards if args.train_shards_positional is None else args.train_shards_positional
    print(f"download: {args.variant} from {args.repo_id} (network errors are retried by huggingface_hub; "
          "set HF_HUB_OFFLINE=1 to skip)", flush=True)  # progress on stdout: stderr is the one error line
    try:
        done = download(args.variant, train_shards, args.root, args.repo_id, args.remote_root,
                        args.with_docs, args.skip_manifest)
    except HubUnreachableError as exc:
        if args.offline_ok:
            print(f"data: notice: {exc}; using the local fallback", file=sys.stderr)
            return OFFLINE_EXIT
        hint = offline_hint(args.variant, resolve_root(args.root))
        print(f"error: {exc}; to prepare shards from local text instead run: {hint}", file=sys.stderr)
        return 1
    except (GolfError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{done['dataset_dir']}: {done['val_shards']} val + {done['train_shards']} train shards; "
          f"tokenizer {', '.join(done['tokenizer_files'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
