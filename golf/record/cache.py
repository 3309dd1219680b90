"""On-disk memo of generated submissions: a bundle is built once per (config, golf sources, toolchain).

Generating a train_gpt.py takes 4-6 s (trace, specialise, fold, minify), and every train.py preflight, export.py
budget report and eval.py score counts the code bytes of the run's file. Generation is deterministic, so its
result is stored under a key that names everything it depends on:

- the baked config (its canonical JSON);
- `sources_digest`: the path and bytes of every `.py` file under golf/ (the trace imports them, the bundle
  ships them);
- the Python version (`ast.unparse`, `lzma`), and the python-minifier, torch and brotli (the wrapper) versions.

Any edit to golf, or another interpreter or minifier, gives another key: nothing stale is ever returned. Entries
are JSON (never pickled), written atomically (golf.io) and checked on read: an entry that is unreadable, not
JSON, of the wrong shape or whose stored key differs is ignored and replaced. The cache is an optimisation
only: when its folder cannot be written the bundle is still returned.

Where: `$GOLF_CACHE_DIR/bundles`, else `$XDG_CACHE_HOME/golf/bundles`, else `~/.cache/golf/bundles`;
`GOLF_CACHE_DIR=off` turns it off. Other memos keep their entries beside it under their own `kind` folder, with
the same rules (golf.preflight.memo: the preflight's step-time model).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from golf.io import atomic_write_bytes

log = logging.getLogger(__name__)

OFF = "off"
"""`GOLF_CACHE_DIR=off`: no memo (every build generates)."""
FIELDS = {"key": str, "shipped": str, "readable": str, "modules": list, "config": dict, "layout": str,
          "flat_names": dict}
"""An entry: the key it was stored under, then golf.record.bundle.Bundle's fields."""
MAX_ENTRIES = 64
"""Entries kept (about 0.3-0.6 MB each); storing one more removes the least recently written."""


def cache_dir(env: dict[str, str] | None = None, kind: str = "bundles") -> Path | None:
    """The folder of `kind` entries (bundles by default), or None when `GOLF_CACHE_DIR=off` (or there is no home
    directory)."""
    env = os.environ if env is None else env
    if env.get("GOLF_CACHE_DIR"):
        return None if env["GOLF_CACHE_DIR"] == OFF else Path(env["GOLF_CACHE_DIR"]) / kind
    if env.get("XDG_CACHE_HOME"):
        return Path(env["XDG_CACHE_HOME"]) / "golf" / kind
    try:
        return Path.home() / ".cache" / "golf" / kind
    except RuntimeError:  # no home directory to be found: no memo
        return None


def sources_digest(root: Path) -> str:
    """sha256 (hex) over the relative path and bytes of every `.py` file under `root`, in path order."""
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode("utf-8") + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "absent"


@lru_cache(maxsize=4)
def toolchain(root: Path) -> str:
    """What a bundle depends on besides its config, as one string (computed once per process)."""
    return json.dumps([sources_digest(root), sys.version, _version("python-minifier"), _version("torch"),
                       _version("brotli")])


def bundle_key(config_json: str, root: Path) -> str:
    """The entry name of the bundle of `config_json` (canonical JSON) generated from the golf sources at `root`."""
    return hashlib.sha256((toolchain(root) + "\0" + config_json).encode("utf-8")).hexdigest()


def load_entry(key: str, env: dict[str, str] | None = None, kind: str = "bundles",
               fields: dict[str, type] = FIELDS) -> dict | None:
    """The stored fields of `kind` entry `key` (`fields` less `key`: name -> type), or None when there is none or
    it does not check."""
    folder = cache_dir(env, kind)
    if folder is None:
        return None
    try:
        entry = json.loads((folder / f"{key}.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not (isinstance(entry, dict) and set(entry) == set(fields) and entry["key"] == key
            and all(isinstance(entry[k], t) for k, t in fields.items())):
        log.debug("%s cache: ignoring malformed entry %s", kind, key)
        return None
    del entry["key"]
    return entry


def store_entry(key: str, fields: dict, env: dict[str, str] | None = None, kind: str = "bundles") -> Path | None:
    """Write `kind` entry `key` atomically; returns its path, or None when the cache is off or cannot be
    written."""
    folder = cache_dir(env, kind)
    if folder is None:
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        data = json.dumps({"key": key, **fields}, sort_keys=True).encode("utf-8")
        path = atomic_write_bytes(folder / f"{key}.json", data)
        _prune(folder, MAX_ENTRIES)
        return path
    except OSError as exc:  # golf.io's OutputError included: a memo that cannot be kept is no failure
        log.debug("%s cache: not stored (%s)", kind, exc)
        return None


def _prune(folder: Path, keep: int) -> None:
    """Remove all but the `keep` most recently written entries (another process may remove some first)."""
    entries = []
    for path in folder.glob("*.json"):
        try:
            entries.append((path.stat().st_mtime_ns, path))
        except FileNotFoundError:
            continue
    for _, path in sorted(entries, reverse=True)[keep:]:
        path.unlink(missing_ok=True)
