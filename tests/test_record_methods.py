"""golf.record.methods: the flat program's own method names are shortened, never a library's, a field or a
name spelled in a string; the program computes the same."""

from __future__ import annotations

import ast
import textwrap

from golf.record.bundle import minify_flat
from golf.record.methods import method_names, rename_methods

PROGRAM = textwrap.dedent('''
    import torch
    from dataclasses import dataclass, asdict

    @dataclass
    class Window:
        start: int
        length: int

        def scored_targets(self):
            return list(range(self.start, self.start + self.length))

        @property
        def end_of_window(self):
            return self.start + self.length

    class Meter:
        def __init__(self):
            self._total = 0

        @property
        def running_total(self):
            return self._total

        @running_total.setter
        def running_total(self, value):
            self._total = value

        def add(self, n):
            self.running_total = self.running_total + n
            return self

        def looked_up(self):
            return 1

        def passed_on(self, n):
            return n * 2

    class Doubled(Meter):
        def passed_on(self, n):
            return super().passed_on(n) + 1

    meter = Meter().add(2).add(3)
    bound = Doubled().passed_on
    RESULT = {
        "targets": Window(2, 3).scored_targets(),
        "end": Window(1, 1).end_of_window,
        "fields": asdict(Window(0, 4)),
        "total": meter.running_total,
        "looked_up": getattr(meter, "looked_up")(),
        "bound": bound(4),
        "tensor": torch.ones(2).add(1).tolist(),
    }
''')


def _run(source: str) -> dict:
    scope: dict = {}
    exec(compile(source, "<program>", "exec"), scope)
    return scope["RESULT"]


def test_only_the_programs_own_method_names_are_shortened():
    names = method_names(ast.parse(PROGRAM))
    assert {"scored_targets", "end_of_window", "passed_on"} <= set(names)
    assert "add" not in names  # torch.Tensor.add: `x.add(...)` may be a library call
    assert "looked_up" not in names  # spelled in a string (getattr)
    assert "running_total" not in names  # read in the class scope (@running_total.setter)
    assert all(len(new) < len(old) for old, new in names.items())


def test_the_renamed_program_computes_the_same():
    renamed = rename_methods(PROGRAM)
    assert "scored_targets" not in renamed and "passed_on" not in renamed
    assert _run(renamed) == _run(PROGRAM)
    assert _run(minify_flat(PROGRAM + 'globals()["RESULT"] = RESULT\n')) == _run(PROGRAM)


def test_fields_and_keywords_keep_their_names():
    source = textwrap.dedent('''
        from dataclasses import dataclass

        @dataclass
        class Cfg:
            seq_len: int = 8

        class Loader:
            def seq_len(self):
                return 1

            def stride(self):
                return 2

        def windows(stride):
            return stride

        RESULT = (Cfg().seq_len, Loader().seq_len(), Loader().stride(), windows(stride=3))
    ''')
    names = method_names(ast.parse(source))
    assert "seq_len" not in names  # a dataclass field of another class
    assert "stride" not in names  # a keyword of some call
    assert _run(rename_methods(source)) == _run(source)
