"""golf.record.kernel_source: a Triton kernel in the shipped (minified, exec'd) program keeps its source, its
constexpr annotations and its names.

Triton is not installed for `make test`, so a stand-in `triton` package checks what `triton.jit` needs (Triton
3.5 `JITCallable.__init__`: `inspect.getsourcelines(fn)`, else "@jit functions should be defined in a Python
file"; constexpr parameters from the annotations; its code generator resolves builtins by name). Under
`make test-kernels` the generated `record_0427_sota` file's own kernels run on Triton's interpreter
(tests/test_kernels.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from golf.record.bundle import minify_flat
from golf.record.wrapper import wrap

STAND_IN = textwrap.dedent('''
    import inspect

    class JITFunction:
        def __init__(self, fn):
            try:
                self.src = "".join(inspect.getsourcelines(fn)[0])
            except OSError as e:
                raise ValueError("@jit functions should be defined in a Python file") from e
            self.fn = fn
            self.constexprs = [k for k, v in fn.__annotations__.items() if "constexpr" in str(v)]

    def jit(fn):
        return JITFunction(fn)
''')

PROGRAM = textwrap.dedent('''
    from __future__ import annotations
    try:
        import triton
        import triton.language as tl
    except ImportError:
        triton = None

    if triton is not None:

        @triton.jit
        def _strided_sum(x, n, BLOCK: tl.constexpr):
            """Sum of float(i) * x over range(0, n, BLOCK)."""
            total = 0.0
            for i in range(0, n, BLOCK):
                total += float(i) * x
            return total

    def report(x):
        return _strided_sum.fn(x, 10, BLOCK=4), _strided_sum.constexprs, _strided_sum.src

    if __name__ == "__main__":
        print(repr(report(2.0)))
''')


def _run_shipped(program: str, tmp_path: Path) -> subprocess.CompletedProcess:
    (tmp_path / "triton").mkdir(exist_ok=True)
    (tmp_path / "triton" / "__init__.py").write_text(STAND_IN)
    (tmp_path / "triton" / "language.py").write_text("class constexpr:\n    pass\n")
    script = tmp_path / "train_gpt.py"
    script.write_text(wrap(program, "zlib"), encoding="utf-8")
    return subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                          env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"})


def test_a_shipped_kernel_has_its_source_its_constexprs_and_its_builtins(tmp_path: Path):
    proc = _run_shipped(minify_flat(PROGRAM), tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    value, constexprs, src = eval(proc.stdout)
    assert value == (0.0 + 4.0 + 8.0) * 2.0
    assert constexprs == ["BLOCK"]
    assert "def _strided_sum(x,n,BLOCK:tl.constexpr)" in src  # parameters and annotations as golf wrote them
    assert "range(0,n,BLOCK)" in src and "float(i)" in src  # builtins by their names, never aliased
    assert "Sum of" not in src  # the docstring is not shipped


def test_without_the_embedding_the_stand_in_refuses_as_triton_does(tmp_path: Path):
    """What the kernel source pass fixes: the program exec'd from the wrapper has no file behind it."""
    import python_minifier

    plain = python_minifier.minify(PROGRAM, rename_globals=True, rename_locals=True)
    proc = _run_shipped(plain, tmp_path)
    assert proc.returncode != 0 and "should be defined in a Python file" in proc.stderr


def test_a_program_without_kernels_is_unchanged():
    program = "def f(x):\n    return float(x)\nprint(f(1))\n"
    assert "_golf_kernel_source" not in minify_flat(program)


@pytest.mark.parametrize("name", ["record_0427_sota"])
def test_the_presets_kernels_are_embedded(name):
    from record_helpers import preset

    from golf.record import submission_bundle
    from golf.record.wrapper import unwrap

    program = unwrap(submission_bundle(preset(name)).shipped)
    for kernel in ("_tanh", "_ce_fwd", "_ce_bwd", "_lrelu2_fwd", "_lrelu2_bwd", "_mm_lrelu2"):
        assert f"def {kernel}(" in program and f"'{kernel}')" in program
    assert "BLOCK:tl.constexpr" in program
