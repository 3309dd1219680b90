"""One self-contained `train_gpt.py` from a run config: the import closure of golf.submission, renamed, bundled.

The module set is derived, never listed (`closure`): start at `golf.submission`, follow every golf import found
statically (AST, module level and inside functions), except imports marked `# lazy` on their line: those are
option code a config may not use, followed only when running the config imports them. Which ones it imports is
traced by running `golf.submission.import_option_modules(cfg)` (it builds the model on the meta device, the
training hooks, the quantization scheme, the export modules and the eval mode: the same tables and branches
the run uses), with golf's sources imported afresh under a private name so nothing already imported counts.
Package `__init__` modules of every included module are included (Python runs them on import).

The modules are renamed to the private package name `PRIVATE` (never `golf`, so the file cannot pick up an
installed golf), specialised to the baked config (golf.record.specialize, golf.record.prevalidated), stripped of
golf's invariant checks (golf.record.invariants), shaken (golf.record.shake) and flattened into one namespace
(golf.record.flatten); the flat program is minified with python-minifier (docstrings removed, locals and globals
renamed) and shipped in the records' self-extracting form: a 2-line lzma or brotli + base85 `exec` wrapper
(golf.record.wrapper; records 2026-04-09 / 2026-04-27, technique #52; budget.code_text=base128 spells it in 7-bit
digits instead). `readable` holds the same program before minification, for reviewers. Modules that cannot share
one namespace (golf.record.flatten.FlattenError) are shipped packaged instead: each module minified behind a
10-line meta-path importer (`Bundle.layout` says which).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import itertools
import json
import re
import sys
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import python_minifier

from golf.errors import GolfError
from golf.record.arguments import _Program, fold_constants, split_sections
from golf.record.attributes import fold_attributes
from golf.record.cache import bundle_key, load_entry, store_entry
from golf.record.flatten import FlattenError, flatten
from golf.record.invariants import drop_invariant_checks
from golf.record.kernel_source import embed_kernel_sources
from golf.record.methods import shorten_methods
from golf.record.posonly import make_positional_only
from golf.record.prevalidated import (
    baked_delta,
    drop_post_init,
    drop_settled_checks,
    live_fields,
    prevalidated_classes,
    section_paths,
)
from golf.record.registries import fold_registries
from golf.record.shake import shake
from golf.record.specialize import simplify, specialize
from golf.record.trees import walk
from golf.record.wrapper import wrap_config
from golf.submission import ENV_OVERRIDES
from golf.train.config import TrainRunConfig

GOLF_ROOT = Path(__file__).resolve().parents[1]
PROJECT_ROOT = GOLF_ROOT.parent
ENTRY = "golf.submission"
PRIVATE = "_pg"
"""Package name the golf modules get inside the generated file."""
_FOLD_ROUNDS = 8
"""At most this many rounds of golf.record.arguments between two shakes, and of shakes (each round may expose
new constant arguments; a preset needs 5 at most)."""
_LAZY = re.compile(r"#.*\blazy\b")
_RENAME = re.compile(r"(?<![\w./-])golf(?=\.[A-Za-z_]|\s+import\b)")


class BundleError(GolfError):
    """The submission file cannot be generated (a golf module is missing, or the trace failed)."""


@dataclass
class Bundle:
    """A generated train_gpt.py: `shipped` (counted, what the record folder holds as train_gpt.py), `readable`
    (same program, unminified), the golf modules it contains and the baked config."""

    shipped: str
    readable: str
    modules: list[str]
    config: dict
    layout: str = "flat"
    """flat: the modules in one namespace (golf.record.flatten); packaged: behind a meta-path importer."""
    flat_names: dict[str, dict[str, str]] = field(default_factory=dict)
    """flat layout: module -> {top-level name it binds or imports -> its name in the flat program}."""

    @property
    def code_bytes(self) -> int:
        """Counted code bytes: the utf-8 size of `shipped`, as the official script counts itself."""
        return len(self.shipped.encode("utf-8"))


def module_path(name: str) -> Path:
    """golf.a.b -> golf/a/b.py or golf/a/b/__init__.py. Raises BundleError when neither exists."""
    base = PROJECT_ROOT.joinpath(*name.split("."))
    for p in (base / "__init__.py", base.with_suffix(".py")):
        if p.is_file():
            return p
    raise BundleError(f"golf module {name} not found under {PROJECT_ROOT}")


def is_package(name: str) -> bool:
    return module_path(name).name == "__init__.py"


def _exists(name: str) -> bool:
    try:
        module_path(name)
        return True
    except BundleError:
        return False


def golf_imports(name: str) -> tuple[set[str], set[str]]:
    """(always, lazy): golf modules `name` imports; `lazy` are imports marked `# lazy` on their line.
    `from pkg import x` counts as importing pkg.x when that is a module, else pkg."""
    source = module_path(name).read_text(encoding="utf-8")
    lines = source.splitlines()
    always: set[str] = set()
    lazy: set[str] = set()
    for node in walk(ast.parse(source)):
        targets: list[str] = []
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and node.module.split(".")[0] == "golf":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                targets.append(sub if _exists(sub) else node.module)
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names if a.name.split(".")[0] == "golf"]
        if targets:
            text = " ".join(lines[node.lineno - 1: (node.end_lineno or node.lineno)])
            (lazy if _LAZY.search(text) else always).update(targets)
    return always, lazy


def _parents(name: str) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def closure(selected: set[str], root: str = ENTRY) -> list[str]:
    """Sorted golf modules reachable from `root`: static imports always, `# lazy` ones only into `selected`
    (the modules the traced run imported), plus every traced module itself and the parent packages."""
    todo = [root, *sorted(m for m in selected if _exists(m))]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        always, lazy = golf_imports(name)
        todo.extend(always | (lazy & selected))
        todo.extend(_parents(name))
    return sorted(seen)


class _SourceImporter:
    """Meta-path importer of golf's sources under another package name (`prefix`), renamed as in the bundle."""

    def __init__(self, prefix: str):
        self.prefix = prefix

    def _golf_name(self, name: str) -> str | None:
        if name == self.prefix or name.startswith(self.prefix + "."):
            golf = "golf" + name[len(self.prefix):]
            return golf if _exists(golf) else None
        return None

    def find_spec(self, name, path=None, target=None):
        golf = self._golf_name(name)
        if golf is None:
            return None
        return importlib.util.spec_from_loader(name, self, is_package=is_package(golf))

    def create_module(self, spec):
        return None

    def exec_module(self, module) -> None:
        golf = self._golf_name(module.__name__)
        path = module_path(golf)
        module.__file__ = str(path)
        source = _RENAME.sub(self.prefix, path.read_text(encoding="utf-8"))
        exec(compile(source, str(path), "exec"), module.__dict__)


_trace_count = itertools.count()


def trace(config: dict) -> set[str]:
    """Golf modules that golf.submission.import_option_modules(config) leaves imported, when golf's sources are
    imported afresh under a private name in this process (torch is shared; the copies are dropped afterwards)."""
    prefix = f"_golf_trace{next(_trace_count)}"
    importer = _SourceImporter(prefix)
    sys.meta_path.insert(0, importer)
    try:
        submission = importlib.import_module(f"{prefix}.submission")
        typed = importlib.import_module(f"{prefix}.train.config").TrainRunConfig.from_dict(config)
        submission.import_option_modules(typed)
        return {"golf" + m[len(prefix):] for m in sys.modules if m == prefix or m.startswith(prefix + ".")}
    except Exception as exc:
        raise BundleError(f"tracing the submission's modules failed: {type(exc).__name__}: {exc}") from None
    finally:
        sys.meta_path.remove(importer)
        for m in [m for m in sys.modules if m == prefix or m.startswith(prefix + ".")]:
            del sys.modules[m]


def rename(source: str) -> str:
    """`golf.x` / `from golf import` -> the private package name (strings such as 'golf.eval.standard' in the
    lazy-import tables included; 'model.golf', 'parameter-golf.md' and 'openai/parameter-golf' are left alone)."""
    return _RENAME.sub(PRIVATE, source)


@lru_cache(maxsize=512)
def minify(source: str, name: str) -> str:
    """python-minifier with docstrings removed and locals renamed; globals keep their names (imported across
    modules), class attribute annotations stay (dataclass fields), Triton kernels ship as their own source
    (golf.record.kernel_source)."""
    tree = ast.parse(source)
    if embed_kernel_sources(tree):  # module globals are not renamed here: the kernels' names stay as they are
        source = ast.unparse(tree)
    return python_minifier.minify(source, filename=name, remove_literal_statements=True, rename_globals=False,
                                  rename_locals=True, hoist_literals=False)


_MARK = "\n#@"


def _table(modules: dict[str, tuple[bool, str]]) -> str:
    """The module sources as one raw string `S`, each after a line `#@<name> <is_package>`: verbatim (readable,
    and ~5% smaller compressed than repr-escaped strings). Falls back to a repr'd dict `M` when a source holds
    the marker or `'''`."""
    blob = "".join(f"{_MARK}{name} {int(pkg)}\n{src}" for name, (pkg, src) in modules.items()) + "\n"
    if _MARK not in "".join(src for _, src in modules.values()) and "'''" not in blob:
        program = f"S=r'''{blob}'''\n"
        if ast.literal_eval(program[2:]) == blob:
            return (program + "M={}\nfor c in S.split(" + repr(_MARK) + ")[1:]:\n"
                    " h,_,b=c.partition('\\n');n,k=h.split(' ');M[n]=(int(k),b)\n")
    return "M={" + ",\n".join(f"{name!r}:({int(pkg)},{src!r})" for name, (pkg, src) in modules.items()) + "}\n"


def minify_flat(source: str) -> str:
    """python-minifier on the flattened program, globals renamed too, except names also spelled as strings
    (`type(opt).__name__ == "Muon"`, getattr tables): docstrings removed, class attribute annotations kept.
    Parameters no call names by keyword are made positional-only first (golf.record.posonly), so they are
    renamed where they stand instead of aliased, and the program's own method names are shortened
    (golf.record.methods). Triton kernels are shipped as their own source, which the minifier keeps
    (golf.record.kernel_source)."""
    tree = ast.parse(source)
    kept = embed_kernel_sources(tree)
    make_positional_only(tree)
    shorten_methods(tree)
    source = ast.unparse(tree)
    spelled = {n.value for n in walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
               and n.value.isidentifier()}
    return python_minifier.minify(source, remove_literal_statements=True, rename_globals=True,
                                  preserve_globals=sorted(spelled | kept), rename_locals=True, hoist_literals=False)


def _flat_program(sources: dict[str, str], config: dict) -> tuple[str, dict[str, dict[str, str]]]:
    """The flattened program (golf.record.flatten) with the baked config and the entry point, and its names.
    Raises FlattenError."""
    source, names = flatten(sources, PRIVATE)
    main = names[_private(ENTRY)]["main"]
    return fold_program(source + _entry(config, main), main), names


def fold_program(source: str, main: str) -> str:
    """The flat program with its constant arguments (golf.record.arguments), constant instance attributes
    (golf.record.attributes) and registry lookups (golf.record.registries) folded and simplified until nothing
    changes, then shaken; again while shaking exposes more. Each changed `#@module` section is re-emitted; the
    others are untouched."""
    for _ in range(_FOLD_ROUNDS):
        sections = split_sections(source)
        trees = [ast.parse(s) for s in sections]
        dirty: set[int] = set()
        for _ in range(_FOLD_ROUNDS):
            program = _Program(trees)  # one index per round: the folds after the first keep it conservative
            changed = fold_constants(trees, program) | fold_attributes(trees) | fold_registries(trees, program)
            for i in changed:
                trees[i] = ast.fix_missing_locations(simplify(trees[i]))
            dirty |= changed
            if not changed:
                break
        if not dirty:
            break
        for i in dirty:
            head = sections[i].partition("\n")[0] + "\n" if sections[i].startswith("#@") else ""
            sections[i] = head + ast.unparse(trees[i]) + "\n"
        source = shake({"flat": "".join(sections)}, PRIVATE, {main})["flat"]
    return source


def _entry(config: dict, main: str) -> str:
    """The baked config (its delta from the defaults) and the call of the submission's `main`."""
    return f"CONFIG={baked_delta(config)!r}\nif __name__=='__main__':{main}(CONFIG,__file__)\n"


def _program(modules: dict[str, tuple[bool, str]], config: dict) -> str:
    return (
        "import sys,importlib.util as U\n"
        + _table(modules) +
        "class _I:\n"
        " def find_spec(s,n,p=None,t=None):\n"
        "  if n in M:return U.spec_from_loader(n,s,is_package=bool(M[n][0]))\n"
        " def create_module(s,spec):return None\n"
        " def exec_module(s,m):m.__file__=__file__;exec(compile(M[m.__name__][1],m.__name__,'exec'),m.__dict__)\n"
        "sys.meta_path.insert(0,_I())\n"
        f"from {PRIVATE}.submission import main\n"
        + _entry(config, "main"))


def reachable(sources: dict[str, str], root: str) -> set[str]:
    """The modules of `sources` that running `root` can import after shaking: through import statements
    anywhere in a module, or a string naming the module (the lazy-import tables), plus parent packages."""
    seen: set[str] = set()
    todo = [root]
    while todo:
        name = todo.pop()
        if name in seen or name not in sources:
            continue
        seen.add(name)
        todo.extend(_parents(name))
        for node in walk(ast.parse(sources[name])):
            if isinstance(node, ast.ImportFrom) and node.module:
                todo.extend([node.module, *(f"{node.module}.{a.name}" for a in node.names)])
            elif isinstance(node, ast.Import):
                todo.extend(a.name for a in node.names)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in sources:
                todo.append(node.value)
    return seen


def _private(name: str) -> str:
    return PRIVATE + name[len("golf"):]


@lru_cache(maxsize=128)  # a test session builds ~60 configs, several more than once
def _build(config_json: str) -> Bundle:
    """The bundle of `config_json`: from the on-disk memo (golf.record.cache) when it holds it, else generated
    and stored there."""
    key = bundle_key(config_json, GOLF_ROOT)
    stored = load_entry(key)
    if stored is not None:
        return Bundle(**stored)
    bundle = _generate(config_json)
    store_entry(key, asdict(bundle))
    return bundle


def _generate(config_json: str) -> Bundle:
    config = json.loads(config_json)
    names = closure(trace(config))
    renamed = {_private(n): rename(module_path(n).read_text(encoding="utf-8")) for n in names}
    overrides = set(ENV_OVERRIDES.values())
    root = TrainRunConfig.from_dict(config)
    renamed = drop_invariant_checks(renamed, PRIVATE)  # before specialisation re-emits modules without comments
    specialised = specialize(renamed, config, overrides, section_paths(), root, PRIVATE)
    checked = drop_post_init(specialised, prevalidated_classes(overrides), PRIVATE)
    checked = drop_settled_checks(checked, live_fields(overrides), PRIVATE)
    sources = shake(checked, PRIVATE, {"main"})
    kept = reachable(sources, _private(ENTRY))
    names = [n for n in names if _private(n) in kept]
    try:
        flat, flat_names = _flat_program({_private(n): sources[_private(n)] for n in names}, config)
        return Bundle(shipped=wrap_config(minify_flat(flat), config), readable=flat, modules=names, config=config,
                      layout="flat", flat_names=flat_names)
    except FlattenError:
        pass  # the packaged form below always works; golf.bench.record reports which one a preset got
    readable: dict[str, tuple[bool, str]] = {}
    small: dict[str, tuple[bool, str]] = {}
    for name in names:
        src = sources[_private(name)]
        readable[_private(name)] = (is_package(name), src)
        small[_private(name)] = (is_package(name), minify(src, name))
    return Bundle(shipped=wrap_config(_program(small, config), config), readable=_program(readable, config), modules=names,
                  config=config, layout="packaged")


def build(config: dict) -> Bundle:
    """The generated train_gpt.py for a baked plain config (see golf.record.submission_config). Deterministic:
    the same config gives the same bytes (so it is memoised per process and on disk, golf.record.cache).
    Raises BundleError."""
    return _build(json.dumps(config, sort_keys=True))
