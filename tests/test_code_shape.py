"""The shape of the code (issue 14): imports without side effects, small files, one train step."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("datasets", "orbax", "codecarbon", "torch", "transformers", "optax")


def _run_python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    return done.stdout.strip()


@pytest.mark.slow  # a fresh interpreter
def test_importing_the_mask_pulls_in_jax_numpy_and_flax_at_most():
    code = ("import sys, json; import jaxprune.mask; "
            f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    assert json.loads(_run_python(code)) == ["optax"]  # the pruner's optimizer is an optax transformation


@pytest.mark.slow  # a fresh interpreter that imports every module
def test_importing_any_module_changes_no_environment_variable_or_logger():
    modules = sorted(
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for path in (ROOT / "jaxprune").rglob("*.py")
    )
    # The libraries jaxprune imports go first: orbax, for one, sets TF_CPP_MIN_LOG_LEVEL on import.
    third_party = ["jax", "flax", "optax", "orbax.checkpoint", "codecarbon", "datasets", "transformers",
                   "tokenizers", "safetensors", "huggingface_hub", "filelock", "tqdm", "numpy"]
    code = (
        "import json, logging, os, importlib\n"
        f"for name in {third_party!r}:\n"
        "    importlib.import_module(name)\n"
        "before = dict(os.environ)\n"
        "levels = lambda: {n: l.level for n, l in logging.root.manager.loggerDict.items() if hasattr(l, 'level')}\n"
        "levels_before = levels()\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "changed = sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k))\n"
        "print(json.dumps({'env': changed, 'levels': {n: v for n, v in levels().items() if v != levels_before.get(n, 0)}}))\n"
    )
    seen = json.loads(_run_python(code))
    assert seen["env"] == []
    assert seen["levels"] == {}, "a module set a logger's level at import"


def _python_files(*folders: str) -> list[Path]:
    return sorted(path for folder in folders for path in (ROOT / folder).rglob("*.py"))


MAX_FUNCTION_LINES = 80


def _long_functions(tree: ast.Module, limit: int) -> dict[str, int]:
    """``qualified.name: lines`` of each function (def or async def, methods and nested ones too)
    whose span from its ``def`` line to its last line is over ``limit``; a nested function's lines
    count in its own span and in its parent's."""
    long = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef) and (lines := child.end_lineno - child.lineno + 1) > limit:
                    long[name] = lines
                visit(child, f"{name}." if isinstance(child, ast.ClassDef) else f"{name}.<locals>.")
            else:
                visit(child, prefix)

    visit(tree, "")
    return long


def test_the_function_length_check_counts_methods_and_nested_functions():
    code = textwrap.dedent("""\
        def short():
            return 1
        class A:
            async def method(self):
                a = 1
                return a
        def outer():
            def inner():
                b = 2
                return b
            return inner
        """)
    assert _long_functions(ast.parse(code), limit=2) == {"A.method": 3, "outer": 5, "outer.<locals>.inner": 3}
    assert _long_functions(ast.parse(code), limit=4) == {"outer": 5}
    assert _long_functions(ast.parse(code), limit=5) == {}


def test_no_function_in_the_library_or_the_scripts_is_over_80_lines():
    long = {f"{p.relative_to(ROOT)}:{name}": lines for p in _python_files("jaxprune", "experiments")
            for name, lines in _long_functions(ast.parse(p.read_text(encoding="utf-8")), MAX_FUNCTION_LINES).items()}
    assert long == {}


def test_no_library_or_script_file_is_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in _python_files("jaxprune", "experiments", "benchmarks")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 400}
    assert long == {}


def _is_sys_path(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "path" and isinstance(node.value, ast.Name)
            and node.value.id == "sys")


def _is_main_guard(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and ast.unparse(node.test) in {"__name__ == '__main__'", "'__main__' == __name__"}


def _outside_main_guards(tree: ast.AST):
    """Every node of ``tree`` but those under ``if __name__ == "__main__":`` (run as a script, not on import)."""
    for child in ast.iter_child_nodes(tree):
        if _is_main_guard(child):
            for node in child.orelse:
                yield node
                yield from _outside_main_guards(node)
        else:
            yield child
            yield from _outside_main_guards(child)


def _sys_path_edits(tree: ast.AST) -> list[int]:
    """Lines that change ``sys.path`` on import: a call of one of its methods that edit it, or an
    assignment to it or into it (``sys.path = ...``, ``sys.path[:0] = ...``, ``sys.path += ...``,
    ``del sys.path[0]``), outside ``if __name__ == "__main__":``."""
    edits = []
    for node in _outside_main_guards(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and _is_sys_path(node.func.value)
                and node.func.attr in {"insert", "append", "extend", "remove", "pop", "clear"}):
            edits.append(node.lineno)
        targets = (node.targets if isinstance(node, (ast.Assign, ast.Delete)) else
                   [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else [])
        for target in targets:
            if _is_sys_path(target.value if isinstance(target, ast.Subscript) else target):
                edits.append(node.lineno)
    return sorted(edits)


def test_the_sys_path_check_sees_code_not_text():
    edits = "import sys\nsys.path.insert(0, 'a')\nsys.path[:0] = ['b']\nsys.path += ['c']\nsys.path = []\ndel sys.path[0]\n"
    assert _sys_path_edits(ast.parse(edits)) == [2, 3, 4, 5, 6]
    reads = "import sys\n# sys.path.insert(0, 'a') in a comment\nx = 'sys.path.append'\nprint(sys.path[0])\n"
    assert _sys_path_edits(ast.parse(reads)) == []
    as_a_script = "import sys\nif __name__ == '__main__':\n    sys.path.insert(0, 'a')\nelse:\n    sys.path.pop()\n"
    assert _sys_path_edits(ast.parse(as_a_script)) == [5]
    in_a_function = "import sys\ndef f():\n    if __name__ == 'x':\n        sys.path.append('a')\n"
    assert _sys_path_edits(ast.parse(in_a_function)) == [4]


def test_nothing_edits_sys_path_on_import():
    edits = {str(p.relative_to(ROOT)): lines for p in _python_files("jaxprune", "experiments", "benchmarks", "tests")
             if (lines := _sys_path_edits(ast.parse(p.read_text(encoding="utf-8"))))}
    assert edits == {}


def test_only_the_librarys_train_step_takes_gradients():
    """Only the library's train_step takes gradients: benchmarks and scripts time and call it."""
    differentiating = []
    for path in _python_files("jaxprune", "experiments", "benchmarks"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in tree.body:  # module-level functions and the methods of module-level classes
            functions = [node] if isinstance(node, ast.FunctionDef) else (
                [n for n in node.body if isinstance(n, ast.FunctionDef)] if isinstance(node, ast.ClassDef) else [])
            for function in functions:
                calls = {ast.unparse(n.func) for n in ast.walk(function) if isinstance(n, ast.Call)}
                if calls & {"jax.value_and_grad", "jax.grad", "value_and_grad"} and any(
                        c.endswith(".update") for c in calls):
                    differentiating.append(f"{path.relative_to(ROOT)}:{function.name}")
    assert differentiating == ["jaxprune/training/step.py:train_step"]


def _called_from(module: ast.Module, within: ast.AST | None = None) -> set[str]:
    """``package.name`` of each function called in ``within`` (default: the whole module) that
    ``module`` imported by ``from package import name``."""
    imported = {alias.asname or alias.name: f"{node.module}.{alias.name}" for node in ast.walk(module)
                if isinstance(node, ast.ImportFrom) for alias in node.names}
    called = {node.func.id for node in ast.walk(within or module)
              if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    return {imported[name] for name in called if name in imported}


def test_the_step_benchmarks_compile_the_librarys_train_step():
    """Each step benchmark calls the shared compiler of benchmarks/_train_steps.py, which calls
    jaxprune's make_train_step: calls in the code, not names in a docstring."""
    def parse(name: str) -> ast.Module:
        return ast.parse((ROOT / "benchmarks" / name).read_text(encoding="utf-8"))

    shared = parse("_train_steps.py")
    (compiler,) = [node for node in shared.body if isinstance(node, ast.FunctionDef)
                   and node.name == "compiled_train_step"]
    assert "jaxprune.training.step.make_train_step" in _called_from(shared, within=compiler)
    for name in ("train_step.py", "mask_overhead.py", "vocab_step.py"):
        assert "benchmarks._train_steps.compiled_train_step" in _called_from(parse(name)), name
