"""Fuzzing (Hypothesis) the three file formats golf reads: shards, artifacts (manifest and payload), checkpoints.

Every generated input either loads correctly or raises golf's one-line error type (GolfError with a one-line
message); never another exception, never a hang (a per-case SIGALRM timeout), never an allocation beyond a
bound (the address space is capped for the duration of each test). CI time is bounded by max_examples
(GOLF_FUZZ_EXAMPLES, default 40 per test) with no per-example deadline (the timeout bounds each case).
"""

from __future__ import annotations

import json
import os
import resource
import signal
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from golf.bench.fault_inputs import join_artifact, shard_bytes, split_artifact
from golf.data.loader import TokenStream
from golf.data.shards import read_shard
from golf.errors import GolfError
from golf.model import build_model
from golf.model.config import ModelConfig
from golf.quant.artifact import write_artifact
from golf.quant.config import QuantConfig
from golf.quant.int8 import quantize_state_dict
from golf.train.checkpoint import FORMAT
from golf.train.config import TrainRunConfig
from golf.train.load import RUN_SECTION, load_for_eval

pytestmark = pytest.mark.usefixtures("one_thread")
EXAMPLES = int(os.environ.get("GOLF_FUZZ_EXAMPLES", "40"))
CASE_TIMEOUT_S = 10
MEMORY_BOUND = 1 << 30  # extra address space a case may map beyond what the process holds before the test
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large])
TINY = ModelConfig(num_layers=1, model_dim=32, num_heads=2, num_kv_heads=1, vocab_size=64)
RUN = TrainRunConfig(model=TINY)
TRIED: dict[str, int] = {}


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang(f"case ran over {CASE_TIMEOUT_S}s")


@pytest.fixture(scope="module", autouse=True)
def bounded_memory():
    """Cap the address space at (current + 1 GiB) for the module; an over-allocation fails the case."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    vm = int(Path("/proc/self/statm").read_text().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    resource.setrlimit(resource.RLIMIT_AS, (vm + MEMORY_BOUND, hard))
    yield
    resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    report = os.environ.get("GOLF_FUZZ_REPORT")
    if report:
        Path(report).write_text(json.dumps(TRIED, indent=2) + "\n")


def loads_or_one_line(kind: str, fn) -> object | None:
    """Run fn(); a GolfError must be one line. Any other exception or a hang fails the test."""
    TRIED[kind] = TRIED.get(kind, 0) + 1
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, CASE_TIMEOUT_S)
    try:
        return fn()
    except GolfError as exc:
        msg = str(exc)
        assert msg and "\n" not in msg, f"multi-line GolfError: {msg!r}"
        assert "weights_only" not in msg
        return None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


# ---------------------------------------------------------------------------------------------- shards
header_fields = st.tuples(st.sampled_from([20240520] * 4 + [0, -1, 2**31 - 1]),
                          st.sampled_from([1] * 4 + [0, 2, -7]),
                          st.one_of(st.just(0), st.just(0), st.just(0), st.integers(-3, 3), st.just(2**31 - 1),
                                    st.integers(-(2**31), 2**31 - 1)))


@FUZZ
@given(header=header_fields, ids=st.lists(st.integers(0, 1023), max_size=300), cut=st.integers(-40, 40),
       junk=st.binary(max_size=8), bad_id=st.one_of(st.none(), st.none(), st.integers(1024, 65535)))
def test_fuzz_shards(tmp_path_factory, header, ids, cut, junk, bad_id):
    """Valid shards (about half the cases) and near misses: wrong magic/version, a token count off by a few or
    wildly wrong, ids >= vocab, truncated or trailing bytes."""
    magic, version, delta = header
    if bad_id is not None:
        ids = [*ids, bad_id]
    count = len(ids) + delta if abs(delta) <= 3 else delta
    data = shard_bytes(np.array(ids, dtype=np.uint16), magic=magic, version=version, count=count)
    data = data[:cut] if cut < -30 else data + junk if cut > 30 else data
    d = tmp_path_factory.mktemp("shard")
    (d / "fineweb_train_000000.bin").write_bytes(data)
    tokens = loads_or_one_line("shard", lambda: read_shard(d / "fineweb_train_000000.bin", vocab_size=1024))
    if tokens is not None:
        assert tokens.size == count and int(tokens.max(initial=0)) < 1024
        TRIED["shard_loaded"] = TRIED.get("shard_loaded", 0) + 1
    stream = loads_or_one_line("shard", lambda: TokenStream(str(d / "fineweb_train_*.bin"), vocab_size=1024))
    if stream is not None:  # a loadable stream always makes progress
        assert loads_or_one_line("shard", lambda: stream.take(3 * count + 1)).numel() == 3 * count + 1


# ------------------------------------------------------------------------------------------- artifacts
@pytest.fixture(scope="module")
def tiny_artifact(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = build_model(TINY)
    q = quantize_state_dict({k: v.detach() for k, v in model.state_dict().items()},
                            QuantConfig(keep_float_max_numel=256))
    path = tmp_path_factory.mktemp("art") / "model.golf"
    write_artifact(path, q, codec="zlib", level=9, extra={RUN_SECTION: RUN.to_dict()})
    return path


json_values = st.recursive(st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False)
                           | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                       max_size=3),
                           max_leaves=12)


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:4]):
            yield from _paths(v, (*prefix, i))


def _set(obj, path, value):
    for k in path[:-1]:
        obj = obj[k]
    if value is _DELETE:
        del obj[path[-1]]
    else:
        obj[path[-1]] = value


_DELETE = object()


def _load(path: Path):
    return load_for_eval(path, torch.device("cpu"))


@FUZZ
@given(data=st.data())
def test_fuzz_artifact_manifest(tiny_artifact, tmp_path_factory, data):
    """A manifest field replaced or deleted (checksums recomputed, so every deeper check is reached)."""
    manifest, raw = split_artifact(tiny_artifact.read_bytes())
    paths = [p for p in _paths(manifest) if p]
    path = data.draw(st.sampled_from(paths))
    value = data.draw(st.one_of(json_values, st.just(_DELETE)))
    _set(manifest, path, value)
    out = tmp_path_factory.mktemp("m") / "model.golf"
    try:
        out.write_bytes(join_artifact(manifest, raw))
    except (TypeError, ValueError, KeyError, OverflowError):
        return  # the mutation made the manifest unwritable by the format's own encoder: not an input
    loaded = loads_or_one_line("artifact", lambda: _load(out))
    if loaded is not None:
        assert loaded.kind == "artifact"
        TRIED["artifact_loaded"] = TRIED.get("artifact_loaded", 0) + 1


@FUZZ
@given(pos=st.integers(0, 10**6), what=st.sampled_from(["flip", "cut", "insert", "raw_flip", "raw_grow"]),
       junk=st.binary(min_size=1, max_size=64))
def test_fuzz_artifact_bytes(tiny_artifact, tmp_path_factory, pos, what, junk):
    """File bytes flipped, cut or inserted; payload bytes changed with the checksums made valid again."""
    blob = tiny_artifact.read_bytes()
    if what in ("flip", "cut", "insert"):
        i = pos % len(blob)
        blob = {"flip": blob[:i] + bytes([blob[i] ^ 0x5A]) + blob[i + 1:], "cut": blob[:i],
                "insert": blob[:i] + junk + blob[i:]}[what]
    else:
        manifest, raw = split_artifact(blob)
        i = pos % len(raw)
        raw = raw[:i] + bytes([raw[i] ^ 0xFF]) + raw[i + 1:] if what == "raw_flip" else raw + junk
        blob = join_artifact(manifest, raw)
    out = tmp_path_factory.mktemp("b") / "model.golf"
    out.write_bytes(blob)
    loads_or_one_line("artifact", lambda: _load(out))


def test_header_claims_more_manifest_than_the_file_has(tiny_artifact, tmp_path):
    blob = bytearray(tiny_artifact.read_bytes())
    struct.pack_into("<Q", blob, 12, 2**62)
    (tmp_path / "m.golf").write_bytes(bytes(blob))
    with pytest.raises(GolfError, match="truncated"):
        load_for_eval(tmp_path / "m.golf", torch.device("cpu"))


# ----------------------------------------------------------------------------------------- checkpoints
@pytest.fixture(scope="module")
def tiny_payload() -> dict:
    torch.manual_seed(0)
    model = build_model(TINY)
    cfg = RUN.to_dict()
    return {"format": FORMAT, "model": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "optimizers": [], "step": 3, "config_json": json.dumps(cfg)}


tensors = st.builds(lambda shape, dt: torch.zeros(shape, dtype=dt),
                    st.lists(st.integers(0, 70), max_size=3).map(tuple),
                    st.sampled_from([torch.float32, torch.bfloat16, torch.int64, torch.bool]))
leaf = st.one_of(json_values, tensors)


@FUZZ
@given(data=st.data())
def test_fuzz_checkpoint_dict(tiny_payload, tmp_path_factory, data):
    """A checkpoint payload (or its stored config) with one entry replaced or deleted, saved by torch.save."""
    payload = {**tiny_payload, "model": dict(tiny_payload["model"])}
    if data.draw(st.booleans()):
        cfg = json.loads(payload["config_json"])
        path = data.draw(st.sampled_from([p for p in _paths(cfg) if p]))
        _set(cfg, path, data.draw(st.one_of(json_values, st.just(_DELETE))))
        payload["config_json"] = json.dumps(cfg)
    else:
        top = data.draw(st.sampled_from(["format", "model", "optimizers", "step", "config_json", "__tensor__"]))
        if top == "__tensor__":
            name = data.draw(st.sampled_from([*payload["model"], "blocks.9.extra"]))
            value = data.draw(st.one_of(tensors, st.just(_DELETE)))
            if value is _DELETE:
                payload["model"].pop(name, None)
            else:
                payload["model"][name] = value
        else:
            value = data.draw(st.one_of(leaf, st.just(_DELETE)))
            _set(payload, (top,), value)
    out = tmp_path_factory.mktemp("c") / "checkpoint.pt"
    torch.save(payload, out)
    loaded = loads_or_one_line("checkpoint", lambda: load_for_eval(out, torch.device("cpu")))
    if loaded is not None:
        assert loaded.kind == "checkpoint"
        TRIED["checkpoint_loaded"] = TRIED.get("checkpoint_loaded", 0) + 1


@FUZZ
@given(pos=st.integers(0, 10**6), what=st.sampled_from(["flip", "cut"]))
def test_fuzz_checkpoint_bytes(tiny_payload, tmp_path_factory, pos, what):
    buf = tmp_path_factory.mktemp("cb") / "checkpoint.pt"
    torch.save(tiny_payload, buf)
    blob = buf.read_bytes()
    i = pos % len(blob)
    blob = blob[:i] + bytes([blob[i] ^ 0x33]) + blob[i + 1:] if what == "flip" else blob[:i]
    buf.write_bytes(blob)
    loads_or_one_line("checkpoint", lambda: load_for_eval(buf, torch.device("cpu")))
