"""The shape of the code (issue 14): imports without side effects, small files, one train step."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("datasets", "orbax", "codecarbon", "torch", "transformers", "optax")


def _run_python(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    return done.stdout.strip()


def test_importing_the_mask_pulls_in_jax_numpy_and_flax_at_most():
    code = ("import sys, json; import jaxprune.mask; "
            f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))")
    assert json.loads(_run_python(code)) == ["optax"]  # the pruner's optimizer is an optax transformation


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


def test_no_library_or_script_file_is_over_400_lines():
    long = {str(p.relative_to(ROOT)): n for p in _python_files("jaxprune", "experiments", "benchmarks")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 400}
    assert long == {}


def test_nothing_edits_sys_path():
    edits = [str(p.relative_to(ROOT)) for p in _python_files("jaxprune", "experiments", "benchmarks", "tests")
             if "sys.path." in p.read_text(encoding="utf-8") and p.name != "test_code_shape.py"]
    assert edits == []


def test_there_is_one_train_step_and_the_benchmarks_call_it():
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
    for name in ("train_step.py", "mask_overhead.py", "vocab_step.py"):
        assert "make_train_step" in (ROOT / "benchmarks" / name).read_text(encoding="utf-8"), name
