"""The bad inputs of `python -m golf.bench.faults`, grouped in classes: data, artifact, checkpoint, config, outputs.

`prepare_fixtures(work)` makes (once) the good inputs every case starts from: FineWeb shards prepared from the
shared 200-document sample, a 30-step tiny model (train.py) and its int8 artifact (export.py).
`build_cases(fixtures, dir)` writes one directory per case holding its bad input and returns the cases.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from golf.bench import fault_inputs as fi
from golf.bench.fault_inputs import ROOT, SHARED, TINY, Case
from golf.data.shards import read_shard

FAST = ["schedule.iterations=2", "eval.max_tokens=4096", "schedule.warmup_steps=0"]
VOCAB = 1024
TRAIN0, TRAIN1, VAL0 = "fineweb_train_000000.bin", "fineweb_train_000001.bin", "fineweb_val_000000.bin"


@dataclass
class Fixtures:
    data: Path
    run: Path
    """Trained tiny run directory: checkpoint.pt, its int8 artifact (model.int8+zlib.golf), export.json, logs."""


def _run(script: str, *args: str, data: Path) -> None:
    env = {**os.environ, "GOLF_DATA_DIR": str(data), "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, script, *args], cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"fixture {script} {' '.join(args)} failed:\n{proc.stderr[-3000:]}")


def prepare_fixtures(work: Path) -> Fixtures:
    """Shards, a tiny trained run and its artifact under ``work`` (reused when already there)."""
    from golf.data.prepare import prepare_shards

    data = work / "data"
    ds = data / "datasets" / "fineweb10B_sp1024"
    if not (ds / VAL0).is_file():
        shutil.rmtree(data, ignore_errors=True)
        (data / "tokenizers").mkdir(parents=True)
        tok = SHARED / "tokenizers" / "fineweb_1024_bpe.model"
        (data / "tokenizers" / tok.name).symlink_to(tok)
        prepare_shards(SHARED / "fineweb" / "docs_sample_200.jsonl", tok, ds, val_docs=50)
    run = work / "tiny_run"
    if not list(run.glob("model*.golf")):
        shutil.rmtree(run, ignore_errors=True)
        _run("train.py", *TINY, f"hydra.run.dir={run}", data=data)
        _run("export.py", f"run_dir={run}", "logger=none", "roundtrip_eval=false", data=data)
    return Fixtures(data, run)


def _no_marker(marker: Path):
    return lambda err: f"unpickling ran code ({marker} exists)" if marker.exists() else None


def _names(*words: str):
    return lambda err: None if all(w in err for w in words) else f"message does not name {words}"


def _holder(directory: Path, operation: str):
    """Start a process that holds `operation`'s lock on `directory`; return the function that ends it."""
    def start():
        code = ("import sys, time; from golf.io import run_lock\n"
                f"with run_lock({str(directory)!r}, {operation!r}):\n    print('held', flush=True)\n    time.sleep(900)")
        p = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        p.stdout.readline()

        def stop():
            p.kill()
            p.wait()
        return stop
    return start


def _mount_tmpfs(path: Path, size: int) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


def unmount_all(cases_dir: Path) -> None:
    for mnt in cases_dir.glob("*/mnt"):
        subprocess.run(["umount", str(mnt)], capture_output=True)


def build_cases(fx: Fixtures, cases_dir: Path) -> tuple[list[Case], list[str]]:
    """Write every case's inputs under ``cases_dir`` (replacing old ones); return (cases, skipped reasons)."""
    unmount_all(cases_dir)
    shutil.rmtree(cases_dir, ignore_errors=True)
    cases: list[Case] = []
    skipped: list[str] = []
    tokens = fi.read_train_tokens(fx.data)[:60_000]
    val_tokens = read_shard(fx.data / "datasets" / "fineweb10B_sp1024" / VAL0)
    good = fi.shard_bytes(tokens)
    ckpt, artifact = fx.run / "checkpoint.pt", sorted(fx.run.glob("model*.golf"))[0]

    def cdir(cls: str, name: str) -> Path:
        d = cases_dir / f"{cls}_{name}"
        d.mkdir(parents=True)
        return d

    # ---------------------------------------------------------------- data: train.py on broken shards
    def data_case(name: str, train=None, val=None, check=None):
        d = cdir("data", name)
        root = fi.data_root_with(fx.data, d / "data", train=train, val=val)
        cases.append(Case("data", name, "train.py", [*TINY, *FAST, f"hydra.run.dir={d / 'run'}"], root, [d], check))

    big = tokens.copy()
    big[1234] = VOCAB + 7
    bad_val = val_tokens.copy()
    bad_val[99] = VOCAB + 3
    data_case("train_shard_0_tokens", {TRAIN0: fi.shard_bytes([])}, check=_names("0 tokens"))
    data_case("second_train_shard_0_tokens", {TRAIN0: good, TRAIN1: fi.shard_bytes([])}, check=_names(TRAIN1))
    data_case("train_token_ge_vocab", {TRAIN0: fi.shard_bytes(big)}, check=_names("vocab_size"))
    data_case("second_train_shard_bad_magic", {TRAIN0: good, TRAIN1: fi.shard_bytes(tokens, magic=7)},
              check=_names(TRAIN1, "magic"))
    data_case("second_train_shard_truncated", {TRAIN0: good, TRAIN1: good[:-100]}, check=_names(TRAIN1))
    data_case("directory_named_like_shard", {TRAIN0: good, TRAIN1: None}, check=_names(TRAIN1))
    data_case("no_train_shards", {})
    data_case("train_shard_trailing_bytes", {TRAIN0: good + b"xyz"})
    data_case("train_shard_bad_version", {TRAIN0: fi.shard_bytes(tokens, version=3)})
    data_case("train_shard_negative_count", {TRAIN0: fi.shard_bytes(tokens, count=-5)})
    data_case("train_shard_header_truncated", {TRAIN0: good[:500]})
    data_case("val_token_ge_vocab", val={VAL0: fi.shard_bytes(bad_val)}, check=_names("vocab_size"))
    data_case("val_shard_truncated", val={VAL0: fi.shard_bytes(val_tokens)[:700]})
    data_case("val_directory_named_like_shard", val={"fineweb_val_000001.bin": None})

    # ------------------------------------------------------------ artifact: eval.py on broken artifacts
    manifest, raw = fi.split_artifact(artifact.read_bytes())
    first = manifest["tensors"][0]["name"]

    def art_case(name: str, write, check=None):
        d = cdir("artifact", name)
        write(d / "model.golf")
        cases.append(Case("artifact", name, "eval.py", [f"path={d / 'model.golf'}", "logger=none",
                                                        "eval.max_tokens=4096"], fx.data, [d], check))

    def edit_model(fn):
        def mutate(m, r):
            fn(m["extra"]["run"]["model"])
            return m, r
        return lambda p: fi.mutate_artifact(artifact, p, mutate)

    def edit(fn):
        return lambda p: fi.mutate_artifact(artifact, p, fn)

    blob = artifact.read_bytes()
    flipped = bytearray(blob)
    flipped[-10] ^= 0xFF
    art_case("truncated", lambda p: fi.write_raw(p, blob[: len(blob) // 2]))
    art_case("bad_magic", lambda p: fi.write_raw(p, b"NOTGOLF!" + blob[8:]))
    art_case("corrupt_payload_byte", lambda p: fi.write_raw(p, bytes(flipped)), _names("checksum"))
    art_case("unknown_model_key", edit_model(lambda m: m.update(future_option=1)), _names("future_option"))
    art_case("wrong_type_model_key", edit_model(lambda m: m.update(model_dim="128")), _names("model_dim"))
    art_case("missing_model_key", edit_model(lambda m: m.pop("num_heads")), _names("num_heads"))
    art_case("shape_mismatch", edit_model(lambda m: m.update(model_dim=256)), _names("shape"))
    art_case("missing_tensor", edit(lambda m, r: fi.drop_tensor(m, r, first)), _names(first))
    art_case("extra_tensor", edit(lambda m, r: fi.add_tensor(m, r, "blocks.99.w", np.zeros(4))), _names("blocks.99.w"))
    art_case("nesting_too_deep", edit(lambda m, r: (m["extra"].update(note=fi.deep(200)) or m, r)),
             _names("deep"))
    art_case("model_section_nested_deep", edit_model(lambda m: m.update(value_embed_layers=fi.deep(40))))
    art_case("decompression_bomb_1_5GB", lambda p: fi.bomb_artifact(artifact, p), _names("inflates"))
    art_case("payload_bytes_unused", edit(lambda m, r: (m, r + bytes(64))), _names("no tensor"))
    art_case("huge_layer_count", edit_model(lambda m: m.update(num_layers=1_000_000)), _names("limit"))
    art_case("huge_model_dim", edit_model(lambda m: m.update(model_dim=2**20, num_heads=8, num_kv_heads=4)),
             _names("limit"))

    def huge_raw(p):
        m = json.loads(json.dumps(manifest))
        m["raw_payload_bytes"] = 10**12
        fi.write_raw(p, fi.join_artifact(m, raw, fix_sizes=False))
    art_case("declared_raw_size_1TB", huge_raw, _names("limit"))

    def overlap(m, r):
        a, b = m["tensors"][0], m["tensors"][1]
        b["offset"] = a["offset"]
        return m, r
    art_case("overlapping_tensors", edit(overlap))
    art_case("entry_shape_not_list", edit(lambda m, r: (m["tensors"][0].update(shape="abc") or m, r)))
    art_case("entry_dtype_unhashable", edit(lambda m, r: (m["tensors"][0].update(dtype=["x"]) or m, r)))

    # --------------------------------------------------------- checkpoint: eval.py / export.py on broken ones
    def ckpt_case(name: str, write, check=None, script="eval.py"):
        d = cdir("checkpoint", name)
        write(d / "checkpoint.pt")
        args = ([f"path={d / 'checkpoint.pt'}", "eval.max_tokens=4096"] if script == "eval.py"
                else [f"run_dir={d}", "roundtrip_eval=false"])
        cases.append(Case("checkpoint", name, script, [*args, "logger=none"], fx.data, [d], check))

    def payload_edit(fn):
        def mutate(p):
            fn(p)
            return p
        return lambda path: fi.mutate_checkpoint(ckpt, path, mutate)

    def cfg_edit(fn):
        return lambda path: fi.mutate_checkpoint(ckpt, path, lambda p: fi.with_config(p, fn))

    raw_ckpt = ckpt.read_bytes()
    for script in ("eval.py", "export.py"):
        marker = cases_dir / f"PWNED_{script}"
        ckpt_case(f"malicious_pickle_{script.removesuffix('.py')}",
                  lambda p, marker=marker: fi.malicious_checkpoint(ckpt, p, marker),
                  lambda err, marker=marker: _no_marker(marker)(err) or (
                      "weights_only hint shown" if "weights_only" in err else None), script=script)
    ckpt_case("truncated", lambda p: fi.write_raw(p, raw_ckpt[: len(raw_ckpt) // 2]))
    ckpt_case("random_bytes", lambda p: fi.write_raw(p, np.random.default_rng(0).bytes(5000)))
    ckpt_case("not_a_dict", lambda p: torch.save([1, 2, 3], p))
    ckpt_case("unknown_model_key", cfg_edit(lambda c: c["model"].update(future_option=1)), _names("future_option"))
    ckpt_case("trainer_wrong_type", cfg_edit(lambda c: c["trainer"].update(train_seq_len="128")),
              _names("train_seq_len"))
    ckpt_case("trainer_unknown_key", cfg_edit(lambda c: c["trainer"].update(newer_golf_option=True)),
              _names("newer_golf_option"))
    ckpt_case("missing_trainer_section", cfg_edit(lambda c: c.pop("trainer")), _names("trainer"))
    ckpt_case("missing_tensor", payload_edit(lambda p: p["model"].pop(first)), _names(first))
    ckpt_case("shape_mismatch", payload_edit(lambda p: p["model"].update({first: torch.zeros(3, 3)})),
              _names("shape"))
    ckpt_case("step_wrong_type", payload_edit(lambda p: p.update(step="x")), _names("step"))
    ckpt_case("config_nested_deep", cfg_edit(lambda c: c.update(note=fi.deep(200))), _names("depth"))
    ckpt_case("config_not_json", payload_edit(lambda p: p.update(config_json="{nope")), _names("JSON"))
    ckpt_case("missing_tensor_export", payload_edit(lambda p: p["model"].pop(first)), _names(first), "export.py")

    # ------------------------------------------------------------------ config: the command line itself
    def cli_case(name: str, script: str, args: list[str], check=None, watch_run: bool = True):
        d = cdir("config", name)
        extra = [f"hydra.run.dir={d / 'run'}"] if script == "train.py" and watch_run else []
        cases.append(Case("config", name, script, [*args, *extra, "logger=none"], fx.data, [d], check))

    cli_case("eval_without_path", "eval.py", [], _names("path"))
    cli_case("export_without_run_dir", "export.py", [], _names("run_dir"))
    cli_case("type_error", "train.py", ["model.num_layers=abc"], _names("model.num_layers"))
    cli_case("missing_preset", "train.py", ["model=nonexistent"], _names("model/nonexistent"))
    cli_case("override_parse_error", "train.py", ["model.num_layers=[1"])
    cli_case("unknown_key", "train.py", ["+model.foo=1"], _names("model.foo"))
    cli_case("bad_value", "train.py", ["model.num_layers=0"], _names("num_layers"))
    cli_case("eval_missing_file", "eval.py", ["path=/nonexistent/model.golf"])
    if not torch.cuda.is_available():
        cli_case("train_device_cuda_without_gpu", "train.py", [*TINY, "trainer.device=cuda"], _names("cuda"))
        d = cdir("config", "export_device_cuda_without_gpu")
        shutil.copy(ckpt, d / "checkpoint.pt")
        cases.append(Case("config", "export_device_cuda_without_gpu", "export.py",
                          [f"run_dir={d}", "device=cuda", "logger=none"], fx.data, [d], _names("cuda")))
    else:
        skipped.append("config/*_device_cuda_without_gpu: this machine has a GPU")
    d = cdir("config", "bad_config_rerun_into_finished_run")
    shutil.copytree(fx.run, d / "run")
    cases.append(Case("config", "bad_config_rerun_into_finished_run", "train.py",
                      [*TINY, "model.num_layers=0", f"hydra.run.dir={d / 'run'}"], fx.data, [d]))

    # ------------------------------------------------- outputs: what earlier runs wrote must survive
    d = cdir("outputs", "over_budget_export_keeps_previous")
    shutil.copytree(fx.run, d / "run")
    cases.append(Case("outputs", "over_budget_export_keeps_previous", "export.py",
                      [f"run_dir={d / 'run'}", "budget.target_bytes=100000", "roundtrip_eval=false", "logger=none"],
                      fx.data, [d], _names("100,000")))
    d = cdir("outputs", "failed_eval_keeps_previous_log")
    (d / "eval.log").write_text("[earlier eval] val_bpb:3.21\n")
    (d / "eval.json").write_text('{"val_bpb": 3.21}\n')
    fi.write_raw(d / "bad.golf", blob[:100])
    cases.append(Case("outputs", "failed_eval_keeps_previous_log", "eval.py",
                      [f"path={d / 'bad.golf'}", "logger=none"], fx.data, [d]))
    d = cdir("outputs", "second_export_while_locked")
    shutil.copytree(fx.run, d / "run")
    cases.append(Case("outputs", "second_export_while_locked", "export.py",
                      [f"run_dir={d / 'run'}", "roundtrip_eval=false", "logger=none"], fx.data, [d],
                      _names("pid"), around=_holder(d / "run", "export")))
    d = cdir("outputs", "second_training_while_locked")
    (d / "run").mkdir()
    cases.append(Case("outputs", "second_training_while_locked", "train.py",
                      [*TINY, *FAST, f"hydra.run.dir={d / 'run'}"], fx.data, [d], _names("pid"),
                      around=_holder(d / "run", "train")))
    d = cdir("outputs", "export_out_unwritable")
    shutil.copytree(fx.run, d / "run")
    (d / "a_file").write_text("x")
    cases.append(Case("outputs", "export_out_unwritable", "export.py",
                      [f"run_dir={d / 'run'}", f"out={d / 'a_file' / 'm.golf'}", "roundtrip_eval=false",
                       "logger=none"], fx.data, [d]))

    ckpt_bytes = ckpt.stat().st_size
    d = cdir("outputs", "disk_full_during_export")
    if _mount_tmpfs(d / "mnt", ckpt_bytes + 320 * 1024):
        (d / "mnt" / "run").mkdir()
        shutil.copy(ckpt, d / "mnt" / "run" / "checkpoint.pt")
        cases.append(Case("outputs", "disk_full_during_export", "export.py",
                          [f"run_dir={d / 'mnt' / 'run'}", "roundtrip_eval=false", "logger=none"], fx.data, [d],
                          _names("disk full")))
    else:
        skipped.append("outputs/disk_full_during_export: cannot mount a tmpfs (needs root)")
    d = cdir("outputs", "disk_full_during_training")
    if _mount_tmpfs(d / "mnt", 1024 * 1024):
        keeps = ("mnt/run", "mnt/run/train_rank0.log", "mnt/run/.hydra", "mnt/run/.hydra/*.yaml",
                 "mnt/run/history.jsonl", "mnt/run/resume.pt")  # complete files: the run can resume from them
        cases.append(Case("outputs", "disk_full_during_training", "train.py",
                          [*TINY, *FAST, f"hydra.run.dir={d / 'mnt' / 'run'}"], fx.data, [d], _names("disk full"),
                          keeps=keeps))
    else:
        skipped.append("outputs/disk_full_during_training: cannot mount a tmpfs (needs root)")
    return cases, skipped
