"""golf.record.posonly: parameters no call can name become positional-only; the program behaves the same."""

from __future__ import annotations

import ast
import textwrap

from golf.record.bundle import minify_flat
from golf.record.posonly import positional_only


def _signatures(source: str) -> dict[str, tuple[list[str], list[str]]]:
    """qualified function name -> (positional-only names, other positional names)."""
    out = {}
    tree = ast.parse(source)
    for node in ast.walk(tree):
        for fn in getattr(node, "body", []):
            if isinstance(fn, ast.FunctionDef):
                prefix = f"{node.name}." if isinstance(node, ast.ClassDef) else ""
                out[prefix + fn.name] = ([a.arg for a in fn.args.posonlyargs], [a.arg for a in fn.args.args])
    return out


def _run(source: str) -> dict:
    scope: dict = {}
    exec(compile(source, "<program>", "exec"), scope)
    return scope["RESULT"]


PROGRAM = textwrap.dedent('''
    import torch
    from torch import nn

    def shard_bytes(path, header=256, *, scale=1):
        return (len(path) + header) * scale

    def window(tokens, seq_len, stride):
        return tokens * seq_len - stride

    def passed_around(values, factor):
        return [v * factor for v in values]

    class Base:
        def __init__(self, width, depth=2):
            self.width, self.depth = width, depth

        def area(self, scale, offset=0):
            return self.width * self.depth * scale + offset

    class Child(Base):
        pass

    class Config:
        def __init__(self, size):
            self.size = size

        @classmethod
        def make(cls, n):
            return cls(size=n)

    class Block(nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.fc = nn.Linear(dim, dim)

        def forward(self, x):
            return self.fc(x)

        def branch(self, x, gain):
            return self.forward(x) * gain

    apply = passed_around
    RESULT = {
        "shard": shard_bytes("abc", header=1, scale=2),
        "window": window(3, 4, stride=5),
        "passed": apply(values=[1, 2], factor=3),
        "child": Child(width=2).area(3, offset=1),
        "config": Config.make(4).size,
        "block": Block(2).branch(torch.ones(1, 2), 0.5).shape[-1],
    }
''')


def test_only_parameters_no_call_names_become_positional_only():
    sig = _signatures(positional_only(PROGRAM))
    assert sig["shard_bytes"] == (["path"], ["header"])  # header is passed by keyword; scale is keyword-only
    assert sig["window"] == (["tokens", "seq_len"], ["stride"])
    # passed as a value: any keyword of the program may reach it, and `values` and `factor` are both used so
    assert sig["passed_around"] == ([], ["values", "factor"])
    # Child(width=...) calls Base.__init__; area(.., offset=) names offset wherever it is called
    assert sig["Base.__init__"] == (["self"], ["width", "depth"])
    assert sig["Base.area"] == (["self", "scale"], ["offset"])
    # a classmethod may build the class through `cls(...)`: its __init__ is reached by every keyword
    assert sig["Config.__init__"] == (["self"], ["size"])
    # forward is nn.Module's contract; a plain method with no keyword callers is converted
    assert sig["Block.forward"] == ([], ["self", "x"])
    assert sig["Block.branch"] == (["self", "x", "gain"], [])


def test_the_converted_program_computes_the_same():
    assert _run(positional_only(PROGRAM)) == _run(PROGRAM)
    assert _run(minify_flat(PROGRAM + 'globals()["RESULT"] = RESULT\n')) == _run(PROGRAM)


def test_decorated_and_unpacked_calls_keep_their_signatures():
    source = textwrap.dedent('''
        import functools

        @functools.lru_cache
        def cached(n):
            return n + 1

        def spread(a, b):
            return a - b

        RESULT = (cached(1), spread(**{"a": 3, "b": 1}))
    ''')
    sig = _signatures(positional_only(source))
    assert sig["cached"] == ([], ["n"])
    assert sig["spread"] == ([], ["a", "b"])
    assert _run(positional_only(source)) == (2, 2)


def test_a_name_spelled_in_a_string_is_treated_as_called_from_anywhere():
    source = textwrap.dedent('''
        class Scorer:
            def score(self, nll, count):
                return nll / count

        RESULT = getattr(Scorer(), "score")(nll=4.0, count=2)
    ''')
    assert _signatures(positional_only(source))["Scorer.score"] == (["self"], ["nll", "count"])
    assert _run(positional_only(source)) == 2.0


def test_the_minifier_renames_converted_parameters_in_place():
    source = "def read_header(path_of_the_shard):\n    return path_of_the_shard + path_of_the_shard\nRESULT=read_header(2)\n"
    assert "path_of_the_shard" not in minify_flat(source)
    kept = "def read_header(path_of_the_shard):\n    return path_of_the_shard\nRESULT=read_header(path_of_the_shard=2)\n"
    assert "path_of_the_shard" in minify_flat(kept)
