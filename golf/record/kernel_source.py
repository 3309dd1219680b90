"""Triton kernels ship as their own source: `@triton.jit` reads a kernel's text, which a minified, exec'd program
does not have.

A generated train_gpt.py runs its program through `exec` of a decompressed string (golf.record.wrapper), so
`inspect.getsourcelines` finds no file behind any function, and `triton.jit` refuses such a function ("@jit
functions should be defined in a Python file", Triton 3.x; its interpreter reads the source too). python-minifier
would also break the kernel itself: it removes argument annotations (`BLOCK: tl.constexpr` is what makes a
compile-time constant) and aliases builtins at module level (`W=range`), names that Triton's code generator does
not resolve inside a kernel.

So in the shipped program each function decorated by a `triton.*` decorator (golf/model/kernels.py) is replaced,
where it stood, by a call of a small helper that registers the kernel's text in `linecache` under `<name>` and
execs it in the program's globals: the kernel is defined at the same point, with its annotations and every name
as golf wrote them, and `inspect` finds its lines. The text is python-minifier's layout only (docstring and
comments dropped, statements joined; nothing renamed, annotations kept). The names it reads from the program
(`tl`, `triton`, the other kernels, module constants) and the kernels' own names are kept by the program's
minifier (`preserve_globals`). A program without Triton kernels is unchanged.
"""

from __future__ import annotations

import ast
import builtins

import python_minifier

from golf.record.trees import walk

HELPER = "_golf_kernel_source"
_KEEP_ANNOTATIONS = python_minifier.RemoveAnnotationsOptions(
    remove_variable_annotations=False, remove_return_annotations=False, remove_argument_annotations=False,
    remove_class_attribute_annotations=False)
_HELPER_SOURCE = f'''
def {HELPER}(text, name):
    import builtins, linecache
    path = f"<{{name}}>"
    linecache.cache[path] = (len(text), None, text.splitlines(True), path)
    builtins.exec(compile(text, path, "exec"), {HELPER}.__globals__)
'''
"""Registers `text` as the lines of `<name>` (mtime None: linecache.checkcache keeps it) and runs it in the
program's globals. `exec` and the globals are reached as attributes: a bare `exec` or `globals()` makes
python-minifier rename no global of the program (it cannot know what exec'd text reads; here golf does, and keeps
those names)."""


def _decorator_root(node: ast.expr) -> str:
    """`@triton.jit` / `@triton.autotune(...)` -> 'triton'; '' for a decorator that is no attribute chain."""
    if isinstance(node, ast.Call):
        node = node.func
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else ""


def is_kernel(node: ast.AST) -> bool:
    """A function under a `triton.*` decorator."""
    return isinstance(node, ast.FunctionDef) and any(_decorator_root(d) == "triton" for d in node.decorator_list)


def _kernel_text(fn: ast.FunctionDef) -> str:
    # layout only (the docstring goes as a literal statement): no name is renamed (an aliased constexpr
    # parameter, `I=BLOCK`, is left to no compiler's judgement), annotations (tl.constexpr) stay, no builtin is
    # aliased
    return python_minifier.minify(ast.unparse(fn), remove_annotations=_KEEP_ANNOTATIONS, rename_globals=False,
                                  rename_locals=False, hoist_literals=False, remove_literal_statements=True)


def _global_reads(fn: ast.FunctionDef) -> set[str]:
    """Names `fn` (decorators and annotations included) reads from its module: not its parameters, not what it
    binds, not builtins."""
    args = fn.args
    local = {a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg) if a}
    local |= {n.id for n in walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del))}
    reads = {n.id for n in walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    return reads - local - set(dir(builtins))


class _Embed(ast.NodeTransformer):
    def __init__(self) -> None:
        self.names: set[str] = set()

    def visit_FunctionDef(self, node: ast.FunctionDef) -> ast.AST:
        if not is_kernel(node):
            return self.generic_visit(node)
        self.names.add(node.name)
        self.names.update(_global_reads(node))
        call = ast.Call(ast.Name(HELPER, ast.Load()), [ast.Constant(_kernel_text(node)), ast.Constant(node.name)], [])
        return ast.copy_location(ast.Expr(call), node)


def embed_kernel_sources(tree: ast.Module) -> set[str]:
    """Replace every Triton kernel of `tree` (a whole program or module) by the call that defines it from its
    source (module docstring), in place; add the helper after the `from __future__` imports. Returns the names
    the minifier must keep (kernels and every name their text reads); empty when the program has no kernel."""
    embed = _Embed()
    embed.visit(tree)
    if not embed.names:
        return set()
    at = 0
    while at < len(tree.body) and isinstance(tree.body[at], ast.ImportFrom) and tree.body[at].module == "__future__":
        at += 1
    tree.body[at:at] = ast.parse(_HELPER_SOURCE).body
    ast.fix_missing_locations(tree)
    return embed.names | {HELPER}
