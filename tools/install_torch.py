"""Install torch (the build that fits this machine) and golf into a virtual environment. Standard library only:
it runs before anything is installed (called by `make install`).

    python3 tools/install_torch.py --venv .venv            # CUDA wheels where an NVIDIA driver is present, else CPU
    TORCH_VARIANT=cu126 python3 tools/install_torch.py ...  # force a wheel variant (cpu, cu118, cu126, cu128, cu130)
    TORCH_INDEX=https://... python3 tools/install_torch.py  # force a wheel index (mirror, nightly)
    python3 tools/install_torch.py --venv .venv --system    # keep the torch the system already has (NGC, RunPod)

The CUDA variant comes from the driver version `nvidia-smi` reports: each PyTorch CUDA build needs a minimum
driver (NVIDIA's CUDA Toolkit release notes, table 3: CUDA 13.0 >= 580, 12.8 >= 570, 12.6 >= 560; CUDA 12.x builds
also run on any driver >= 525 through minor-version compatibility; 11.8 >= 450). The newest variant the driver
supports is chosen.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

TORCH_SPEC = "torch>=2.6,<2.14"
CPU_PIN = "torch==2.13.0+cpu"  # the local/offline index's CPU build (CI); falls back to the CPU wheel index
WHEEL_ROOT = "https://download.pytorch.org/whl"
# (minimum driver major version, wheel variant), newest first
DRIVER_TABLE = [(580, "cu130"), (570, "cu128"), (525, "cu126"), (450, "cu118")]


def variant_for_driver(driver: str) -> tuple[str, str]:
    """Wheel variant and the reason for an NVIDIA driver version string such as '550.54.15'."""
    m = re.match(r"\s*(\d+)", driver)
    if not m:
        return "cpu", f"unreadable NVIDIA driver version {driver!r}"
    major = int(m.group(1))
    for minimum, variant in DRIVER_TABLE:
        if major >= minimum:
            return variant, f"NVIDIA driver {driver.strip()} (>= {minimum})"
    return "cpu", f"NVIDIA driver {driver.strip()} is older than any CUDA build supports"


def detect_variant() -> tuple[str, str]:
    """(variant, reason): TORCH_VARIANT if set, else from `nvidia-smi`, else cpu."""
    forced = os.environ.get("TORCH_VARIANT", "").strip()
    if forced:
        return forced, "TORCH_VARIANT"
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return "cpu", "no NVIDIA driver (nvidia-smi not found)"
    try:
        out = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return "cpu", f"nvidia-smi failed ({exc})"
    lines = [ln for ln in out.stdout.splitlines() if ln.strip()]
    if out.returncode != 0 or not lines:
        return "cpu", f"nvidia-smi found no GPU (exit {out.returncode})"
    return variant_for_driver(lines[0])


def torch_commands(py: str, variant: str, index: str) -> list[list[str]]:
    """pip commands tried in order until one succeeds."""
    pip = [py, "-m", "pip", "install", "-q"]
    if index:
        return [pip + [TORCH_SPEC, "--index-url", index]]
    if variant == "cpu":
        return [pip + [CPU_PIN], pip + [TORCH_SPEC, "--index-url", f"{WHEEL_ROOT}/cpu"]]
    return [pip + [TORCH_SPEC, "--index-url", f"{WHEEL_ROOT}/{variant}"]]


def golf_dependencies(pyproject: Path, without: str = "torch") -> list[str]:
    """The project's dependencies (and the dev extra) minus `without`, for installing beside a system torch."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        raise SystemExit("error: SYSTEM_TORCH=1 needs Python >= 3.11 (tomllib) to read pyproject.toml") from None
    project = tomllib.loads(pyproject.read_text())["project"]
    deps = project["dependencies"] + project.get("optional-dependencies", {}).get("dev", [])
    return [d for d in deps if re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0].strip().lower() != without]


def _run(cmd: list[str]) -> bool:
    print("+ " + " ".join(cmd), flush=True)
    return subprocess.run(cmd).returncode == 0


def _torch_line(py: str) -> str:
    code = ("import torch; c = torch.cuda.is_available(); "
            "print(torch.__version__, 'cuda', torch.version.cuda, 'GPUs', torch.cuda.device_count() if c else 0)")
    out = subprocess.run([py, "-c", code], capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else ""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--venv", default=".venv")
    ap.add_argument("--system", action="store_true", help="reuse the system torch (venv has system site packages)")
    ap.add_argument("--print-variant", action="store_true", help="print the chosen variant and reason, install nothing")
    args = ap.parse_args(argv)
    repo = Path(__file__).resolve().parents[1]
    py = str(Path(args.venv) / "bin" / "python")
    if args.print_variant:
        variant, reason = detect_variant()
        print(f"{variant}\t{reason}")
        return 0
    if not _run([py, "-m", "pip", "install", "-q", "--upgrade", "pip"]):
        print("install: warning: could not upgrade pip (offline?); continuing", flush=True)
    if args.system:
        have = _torch_line(py)
        if not have:
            print("error: SYSTEM_TORCH=1 but the system python has no importable torch; drop SYSTEM_TORCH", file=sys.stderr)
            return 2
        print(f"install: reusing the system torch {have}", flush=True)
        ok = _run([py, "-m", "pip", "install", "-q", *golf_dependencies(repo / "pyproject.toml")]) and \
            _run([py, "-m", "pip", "install", "-q", "--no-deps", "-e", str(repo)])
        return 0 if ok else 1
    variant, reason = detect_variant()
    index = os.environ.get("TORCH_INDEX", "").strip()
    print(f"install: torch {variant} build ({reason}){'; index ' + index if index else ''}"
          f" - override with TORCH_VARIANT=cpu|cu118|cu126|cu128|cu130 or TORCH_INDEX=<url>", flush=True)
    if not any(_run(cmd) for cmd in torch_commands(py, variant, index)):
        print(f"error: could not install torch ({variant}); set TORCH_INDEX= or TORCH_VARIANT=", file=sys.stderr)
        return 1
    if not _run([py, "-m", "pip", "install", "-q", "-e", f"{repo}[dev]"]):
        return 1
    have = _torch_line(py)
    print(f"install: torch {have}", flush=True)
    if variant != "cpu" and " GPUs 0" in f" {have}":
        print("install: warning: a CUDA build is installed but torch sees no GPU; check the driver", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
