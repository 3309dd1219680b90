"""The core's shape: no Hydra/OmegaConf/wandb below the entry points, no import cycles, no upward imports,
and the name tables the config checks against equal the implementation registries."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CORE = ["golf.model", "golf.optim", "golf.quant", "golf.data", "golf.eval", "golf.train"]
# Each golf package/module and its layer: a module imports only from its own layer or below.
LAYERS = {
    "golf.errors": 0, "golf.schema": 0, "golf.device": 0, "golf.io": 0, "golf.validate": 0,
    "golf.model": 1, "golf.data": 1,
    "golf.optim": 2,
    "golf.quant": 3,
    "golf.eval": 4,
    "golf.train": 5,
    "golf.export_run": 6,
    "golf.export_core": 6,
}
ABOVE_CORE = 9  # hydra glue, orchestration, benchmarks, CLIs: anything not named above


def _layer(module: str) -> int:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in LAYERS:
            return LAYERS[".".join(parts[:n])]
    return ABOVE_CORE


def _module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _golf_imports(path: Path, modules: set[str]) -> set[str]:
    """Every golf module `path` imports, at module level or inside functions (lazy imports count);
    `from pkg import sub` counts as importing the submodule when `pkg.sub` is a module."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("golf"):
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                out.add(sub if sub in modules else node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("golf"))
    return out


def _graph() -> dict[str, set[str]]:
    paths = sorted((REPO / "golf").rglob("*.py"))
    modules = {_module_name(p) for p in paths}
    return {_module_name(p): _golf_imports(p, modules) for p in paths}


def test_core_imports_no_hydra_omegaconf_or_wandb():
    code = ("import sys\n"
            "import golf.model, golf.optim.groups, golf.optim.schedule, golf.data.loader, golf.data.prepare\n"
            "import golf.quant.int8, golf.quant.intn, golf.quant.artifact, golf.quant.gptq, golf.quant.fitter\n"
            "import golf.eval.run, golf.eval.ttt, golf.eval.sliding, golf.train.trainer, golf.train.context, golf.train.run, golf.train.resume, golf.train.load\n"
            "import golf.train.averaging, golf.train.qat, golf.train.looping, golf.export_run\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('hydra', 'omegaconf', 'wandb'))\n"
            "print(','.join(bad))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "", f"core pulled in: {out.stdout.strip()}"


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if dep not in graph:
                continue
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep):] + [dep]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node)


def test_no_import_runs_back_up_the_layers():
    upward = [f"{mod} (layer {_layer(mod)}) imports {dep} (layer {_layer(dep)})"
              for mod, deps in _graph().items() for dep in deps if _layer(dep) > _layer(mod)]
    assert not upward, "\n".join(upward)


def test_core_modules_import_no_hydra_in_source():
    offenders = []
    for pkg in CORE:
        for path in (REPO / Path(*pkg.split("."))).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                names = ([node.module] if isinstance(node, ast.ImportFrom) and node.module else
                         [a.name for a in node.names] if isinstance(node, ast.Import) else [])
                offenders += [f"{path.relative_to(REPO)}: {n}" for n in names
                              if n.split(".")[0] in ("hydra", "omegaconf", "wandb")]
    offenders = [o for o in offenders if not o.startswith("golf/train/tracking.py")]  # the W&B tracker itself
    assert not offenders, offenders


def test_config_name_tables_equal_the_registries():
    import golf.quant.intn  # noqa: F401  (registers "mixed")
    import golf.quant.passthrough  # noqa: F401  (registers "none")
    from golf.eval.config import EVAL_MODES
    from golf.eval.run import MODE_MODULES
    from golf.quant.compress import CODEC_MODULES, CODECS, get_codec
    from golf.quant.config import CODEC_LEVELS, SCHEME_NAMES
    from golf.quant.int8 import SCHEME_MODULES, SCHEMES

    assert set(SCHEME_NAMES) == set(SCHEMES) == set(SCHEME_MODULES)
    for name, (default, lo, hi) in CODEC_LEVELS.items():
        c = get_codec(name)  # imports its module (CODEC_MODULES) the first time
        assert c.name == name and (c.default_level, c.min_level, c.max_level) == (default, lo, hi), name
    assert set(CODEC_LEVELS) == set(CODECS) and set(CODEC_MODULES) <= set(CODEC_LEVELS)
    assert set(MODE_MODULES) == set(EVAL_MODES)
    import importlib

    from golf.data.loader import LOADER_MODULES
    from golf.train.config import LOADERS

    assert set(LOADER_MODULES) == set(LOADERS)
    for module in LOADER_MODULES.values():
        assert callable(importlib.import_module(module).train_loader), module
