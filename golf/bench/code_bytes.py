"""Where a generated train_gpt.py's counted bytes go: `python -m golf.bench.record --breakdown PRESET`.

The counted form compresses the whole program at once, so a module has no size of its own. Its *marginal* bytes
are what deleting it alone from the flat program (golf.record.flatten) would save in the shipped file: the
program without the module's section, minified and wrapped exactly as shipped (golf.record.bundle.minify_flat,
golf.record.wrapper.wrap_config), subtracted from the bundle's code bytes. The same for a group of modules (a layer:
model, optim, ... ; and the config schemas of every layer together). Marginals do not add up to the total: text
that two modules share compresses once, and is saved only when both go.

It answers the competitor's question "does this option pay for its code bytes": an option module's marginal is
what the option costs, next to the artifact bytes it saves or the val_bpb it buys. A measurement, so it lives
here and not in a test (about 1 s of minification per module: ~60 s for baseline, ~150 s for record_0427_sota).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from golf.record.bundle import PRIVATE, Bundle, minify_flat
from golf.record.wrapper import wrap_config

SECTION = re.compile(r"(?m)^#@(\S+) [01]\n")
"""The line golf.record.flatten puts before each bundled module's code: `#@<private name> <is_package>`."""
TRAILER = re.compile(r"(?m)^(?:import sys as _sys, types as _types|CONFIG ?=)")
"""Where the program's tail starts: the sys.modules namespaces of the lazily imported modules, the baked config
and the call of main (golf.record.flatten._namespaces, golf.record.bundle._entry)."""
ENTRY = "(entry: namespaces, baked config, main call)"


@dataclass
class Part:
    """One module (or the entry tail, or a layer) of a flat program: `readable_bytes`, the utf-8 size of its span
    in the readable program; `marginal`, the counted bytes the shipped file would lose without it (negative when
    deleting it happens to compress worse)."""

    name: str
    readable_bytes: int
    marginal: int = 0


def sections(readable: str) -> list[tuple[str, int, int]]:
    """(golf module or ENTRY, start, end) character spans of a flat program's sections, in order; together they
    cover everything after the first marker. Raises ValueError for a program without markers (packaged layout)."""
    marks = list(SECTION.finditer(readable))
    if not marks:
        raise ValueError("no module markers: only a flat-layout bundle has a per-module breakdown")
    spans = []
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(readable)
        spans.append(["golf" + m.group(1)[len(PRIVATE):], m.start(), end])
    tail = TRAILER.search(readable, spans[-1][1])
    if tail is not None:
        spans[-1][2] = tail.start()
        spans.append([ENTRY, tail.start(), len(readable)])
    return [(name, start, end) for name, start, end in spans]


LAYERS = ("model", "optim", "quant", "eval", "data", "train")
"""The core's packages (docs/architecture: the submission is their import closure)."""


def group_of(module: str) -> str:
    """The layer a golf module belongs to for the breakdown: "config" for the typed config schemas of every
    layer (`*.config`, golf.schema), else its core package (LAYERS), else "top" (golf.submission, golf.io, ...)."""
    parts = module.split(".")
    if parts[-1] == "config" or module == "golf.schema":
        return "config"
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else "top"


def _counted(bundle: Bundle, source: str) -> int:
    return len(wrap_config(minify_flat(source), bundle.config).encode("utf-8"))


def _without(readable: str, spans: list[tuple[str, int, int]]) -> str:
    out, pos = [], 0
    for _, start, end in sorted(spans, key=lambda s: s[1]):
        out.append(readable[pos:start])
        pos = end
    return "".join(out) + readable[pos:]


def breakdown(bundle: Bundle) -> tuple[list[Part], list[Part]]:
    """(per-module parts, per-group parts), each sorted by marginal bytes, largest first. Raises ValueError for a
    packaged-layout bundle."""
    spans = sections(bundle.readable)
    total = bundle.code_bytes
    modules = [Part(name, len(bundle.readable[s:e].encode("utf-8")),
                    total - _counted(bundle, _without(bundle.readable, [(name, s, e)])))
               for name, s, e in spans]
    groups: dict[str, list[tuple[str, int, int]]] = {}
    for span in spans:
        if span[0] != ENTRY:
            groups.setdefault(group_of(span[0]), []).append(span)
    layers = [Part(g, sum(len(bundle.readable[s:e].encode("utf-8")) for _, s, e in members),
                   total - _counted(bundle, _without(bundle.readable, members)))
              for g, members in groups.items()]
    return (sorted(modules, key=lambda p: -p.marginal), sorted(layers, key=lambda p: -p.marginal))
