"""Measured fidelity table of every record preset (README "Record presets" table).

    python tests/records/fidelity_table.py [--steps 20] [--keys 0322,0409] [--out table.md]

Per spec (tests/records/specs.py): oracle folder; full-scale parameters (golf vs the log's model_params);
forward max |Δ| of logits on real FineWeb tokens at the reduced width (fp32, same weights); hyperparameters
equal / deliberate / different; quantizer codes, scales and passthrough equal per tensor; and artifact bytes of
golf's writer vs the record's own serializer on the same weights, trained for --steps Adam steps at the quantizer
scale (full width, 2 layers) on FineWeb so the codes are not those of random noise.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from golf.model import count_params_for  # noqa: E402
from golf.quant.artifact import write_artifact  # noqa: E402
from golf.quant.int8 import quantize_state_dict  # noqa: E402
from records import specs  # noqa: E402
from records.oracle import (  # noqa: E402
    compare_quantizers,
    fineweb_tokens,
    golf_config,
    hparam_rows,
    log_values,
    max_rel_diff,
    paired_models,
)


def forward_delta(spec) -> tuple[float, float]:
    record, golf, _, _ = paired_models(spec, spec.small_env, spec.small_overrides)
    record, golf = record.to(spec.forward_dtype), golf.to(spec.forward_dtype)
    tokens = fineweb_tokens(spec.vocab, spec.seq_len)
    x = tokens[:-1][None]
    with torch.no_grad():
        return max_rel_diff(golf.logits(x), spec.logits(record, x).float())


def train_briefly(golf, vocab: int, steps: int, seq_len: int = 256, batch: int = 4) -> None:
    """`steps` Adam steps (lr 3e-3) of golf's model on consecutive FineWeb sequences."""
    tokens = fineweb_tokens(vocab, steps * batch * seq_len + 1)
    opt = torch.optim.Adam(golf.parameters(), lr=3e-3)
    golf.train()
    for i in range(steps):
        chunk = tokens[i * batch * seq_len: (i + 1) * batch * seq_len + 1]
        loss = golf(chunk[:-1].reshape(batch, seq_len), chunk[1:].reshape(batch, seq_len))
        opt.zero_grad()
        loss.backward()
        opt.step()
    golf.eval()


def quant_and_bytes(spec, steps: int) -> tuple[str, int, int]:
    record, golf, mapping, cfg = paired_models(spec, spec.quant_env, spec.quant_overrides)
    if steps:
        train_briefly(golf, spec.vocab, steps)
        golf_params = dict(golf.named_parameters())
        module = spec.module(spec.quant_env)
        with torch.no_grad():  # back into the record model (every transform is its own inverse)
            flat = {}
            for name in spec.record_state(module, record, params_only=True):
                target = mapping[name]
                value = golf_params[target].detach().clone()
                flat[name] = spec.transforms[target](value) if target in spec.transforms else value
            if spec.rebank is not None:
                flat = spec.rebank(module, flat, record.state_dict())
            record.load_state_dict(flat, strict=False)
    module = spec.module(spec.quant_env)
    hessians = None
    if spec.hessians is not None:
        specs.HESSIANS.clear()
        specs.HESSIANS.update(spec.hessians(module, record))
        hessians = {mapping.get(k, k): v for k, v in specs.HESSIANS.items()}
    sd = {k: v.detach().clone() for k, v in spec.record_state(module, record).items()}
    expected = spec.quantize(module, sd)
    qstate = quantize_state_dict({k: v.detach().clone() for k, v in golf.state_dict().items()}, cfg.quant, hessians)
    problems = compare_quantizers(expected, qstate, mapping, spec.transforms)
    with tempfile.TemporaryDirectory() as tmp:
        info = write_artifact(Path(tmp) / "m.golf", qstate, codec=cfg.quant.codec, level=cfg.quant.level,
                              byte_shuffle=cfg.quant.byte_shuffle)
    record_bytes = spec.serialize(module, sd)
    verdict = "yes" if not problems else f"no ({len(problems)} tensors differ)"
    return verdict, info.file_bytes, record_bytes


def row(spec, steps: int) -> str:
    logged = int(log_values(spec.folder, spec.log)["model_params"])
    ours = count_params_for(golf_config(spec.preset, []).model)
    delta, rel = forward_delta(spec)
    rows = hparam_rows(spec)
    equal = sum(r[4] == "equal" for r in rows)
    deliberate = [r[0].removeprefix("src:")[:24] for r in rows if r[4] == "deliberate"]
    different = [r[0] for r in rows if r[4] == "DIFFERENT"]
    hp = f"{equal}/{len(rows)} equal" + (f"; deliberate: {', '.join(deliberate)}" if deliberate else "")
    hp += f"; DIFFERENT: {', '.join(different)}" if different else ""
    codes, golf_bytes, record_bytes = quant_and_bytes(spec, steps)
    return (f"| `{spec.preset}` | {spec.folder} | {ours:,} / {logged:,} | {delta:.2e} ({rel:.1e} rel) | {hp} | "
            f"{codes} | {golf_bytes:,} / {record_bytes:,} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--keys", default=",".join(specs.SPECS))
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    lines = ["| preset | oracle folder | full-scale params golf / log | forward max abs Δ (rel) | hyperparameters | "
             "quantizer codes equal | artifact bytes golf / record serializer |",
             "|---|---|---:|---:|---|---|---:|"]
    for key in args.keys.split(","):
        lines.append(row(specs.SPECS[key], args.steps))
        print(lines[-1], flush=True)
    text = "\n".join(lines) + "\n"
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
