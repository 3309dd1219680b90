"""golf.io: atomic writes, disk full, umask, stale temp files of killed processes, locks (issue #13)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from golf.io import (
    DiskFullError,
    LockedError,
    StagedFile,
    append_line,
    atomic_write_bytes,
    atomic_write_json,
    remove_stale_temps,
    run_lock,
    temp_path,
)
from golf.model import build_model
from golf.model.config import ModelConfig
from golf.train.checkpoint import load_checkpoint, save_checkpoint
from golf.train.config import TrainRunConfig


@pytest.fixture
def full_disk(tmp_path: Path):
    """A 64 KiB tmpfs (needs root and mount; skipped otherwise: golf.bench.faults reports the same skip)."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
                                           capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mnt
    subprocess.run(["umount", str(mnt)], check=True)


def test_disk_full_keeps_the_previous_file_and_leaves_no_temp(full_disk: Path):
    target = full_disk / "export.json"
    atomic_write_json(target, {"val_bpb": 1.5})
    before = target.read_bytes()
    with pytest.raises(DiskFullError, match=f"disk full writing big.bin in {full_disk}") as exc:
        atomic_write_bytes(full_disk / "big.bin", bytes(200_000))
    assert "\n" not in str(exc.value)
    assert target.read_bytes() == before
    assert sorted(p.name for p in full_disk.iterdir()) == ["export.json"]


def test_disk_full_checkpoint_keeps_the_previous_checkpoint(full_disk: Path, tmp_path: Path):
    small = build_model(ModelConfig(num_layers=1, model_dim=16, num_heads=2, num_kv_heads=1, vocab_size=32))
    path = save_checkpoint(full_disk / "checkpoint.pt", small, [], 1, TrainRunConfig())
    before = path.read_bytes()
    big = build_model(ModelConfig(num_layers=2, model_dim=64, num_heads=2, num_kv_heads=1, vocab_size=256))
    with pytest.raises(DiskFullError, match="checkpoint.pt"):
        save_checkpoint(path, big, [], 2, TrainRunConfig())
    assert path.read_bytes() == before and load_checkpoint(path).step == 1
    assert sorted(p.name for p in full_disk.iterdir()) == ["checkpoint.pt"]


def test_append_line_on_a_full_disk_leaves_no_partial_line(full_disk: Path):
    log = full_disk / "history.jsonl"
    append_line(log, '{"step": 1}')
    (full_disk / "filler").write_bytes(bytes(64 * 1024 - 4096 - 200))  # leave less than one line's worth
    with pytest.raises(DiskFullError):
        for i in range(1000):
            append_line(log, json.dumps({"step": i, "pad": "x" * 500}))
    assert all(line.startswith('{"step"') and line.endswith("}") for line in log.read_text().splitlines())


def test_files_get_the_users_umask(tmp_path: Path):
    old = os.umask(0o027)
    try:
        atomic_write_bytes(tmp_path / "a.bin", b"x")
        torch.save({}, tmp_path / "ref.pt")  # what a plain open() gives
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a.bin").stat().st_mode) == 0o640
    assert stat.S_IMODE((tmp_path / "a.bin").stat().st_mode) == stat.S_IMODE((tmp_path / "ref.pt").stat().st_mode)


def test_stale_temps_of_dead_processes_are_removed(tmp_path: Path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale = temp_path(tmp_path / "model.golf").with_name(
        temp_path(tmp_path / "model.golf").name.replace(f".{os.getpid()}.", f".{dead}."))
    stale.write_bytes(b"half an artifact")
    alive = StagedFile(tmp_path / "export.json")  # this process's own temp file: kept
    keep = tmp_path / "notes.tmp"
    keep.write_text("not golf's")
    with run_lock(tmp_path, "export"):
        pass
    assert not stale.exists() and alive.tmp.exists() and keep.exists()
    alive.discard()
    assert remove_stale_temps(tmp_path) == []


def test_lock_names_the_holder_and_is_released(tmp_path: Path):
    code = ("import sys, time; from golf.io import run_lock\n"
            "with run_lock(sys.argv[1], 'train'):\n    print('held', flush=True)\n    time.sleep(600)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockedError, match=rf"another train \(pid {holder.pid} on "):
            with run_lock(tmp_path, "train"):
                pass
        with run_lock(tmp_path, "export"):  # another operation in the same directory is not blocked
            pass
    finally:
        holder.kill()
        holder.wait()
    with run_lock(tmp_path, "train"):  # a killed holder's lock is free
        pass
