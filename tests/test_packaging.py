"""The core installs alone: ``jaxprune.mask`` and the model need jax, flax, optax and numpy only;
a module that needs an extra says which in one line; the scripts' folders are not installed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from tests.test_mask_readme import LINEN, example

ROOT = Path(__file__).resolve().parents[1]
# What the [train] extra installs, by import name (jaxprune/_extras.py EXTRAS["train"]).
TRAIN_IMPORTS = ("transformers", "tokenizers", "datasets", "orbax", "codecarbon", "matplotlib", "safetensors",
                 "huggingface_hub", "tqdm", "filelock")
CORE_MODULES = ("jaxprune", "jaxprune.mask", "jaxprune.models", "jaxprune.models.config", "jaxprune.models.bert",
                "jaxprune.models.bert_rules", "jaxprune.models.compaction", "jaxprune.models.activations")
NEEDS_TRAIN = ("jaxprune.data", "jaxprune.evaluation", "jaxprune.experiment", "jaxprune.training", "jaxprune.vocab",
               "jaxprune.models.loading", "jaxprune.models.sources")
NEEDS_ONNX = ("jaxprune.export", "jaxprune.export_int8", "jaxprune.onnx_graph")

# Put first on sys.path (PYTHONPATH), it makes the named libraries unimportable, as if not installed.
HIDE_LIBRARIES = '''import sys


class _NotInstalled:
    HIDDEN = frozenset({hidden!r})

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.split(".")[0] in cls.HIDDEN:
            raise ModuleNotFoundError(f"No module named {{name!r}} (hidden by the test)", name=name)
        return None


sys.meta_path.insert(0, _NotInstalled)
'''


def _python(code: str, *, hidden: tuple[str, ...] = (), tmp_path: Path | None = None,
            args: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    if hidden:
        site = tmp_path / "hide"
        site.mkdir(exist_ok=True)
        (site / "sitecustomize.py").write_text(HIDE_LIBRARIES.format(hidden=sorted(hidden)), encoding="utf-8")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    command = [sys.executable, *(["-c", code] if code else []), *args]
    return subprocess.run(command, cwd=tmp_path or ROOT, env=env, capture_output=True, text=True, timeout=300)


IMPORT_REPORT = '''import importlib, json, sys
seen = {{}}
for name in {modules!r}:
    try:
        importlib.import_module(name)
        seen[name] = None
    except Exception as err:
        seen[name] = [type(err).__name__, isinstance(err, ImportError), str(err)]
print(json.dumps({{"errors": seen, "loaded": sorted({{m.split(".")[0] for m in sys.modules}})}}))
'''


def _import_report(modules: tuple[str, ...], **kwargs) -> dict:
    done = _python(IMPORT_REPORT.format(modules=list(modules)), **kwargs)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.splitlines()[-1])


@pytest.mark.slow  # a fresh interpreter
def test_the_mask_and_the_model_import_no_library_of_the_train_extra():
    seen = _import_report(CORE_MODULES)
    assert seen["errors"] == dict.fromkeys(CORE_MODULES)
    assert "jax" in seen["loaded"] and "flax" in seen["loaded"]  # the report sees what was imported
    # filelock aside: jax imports it for its compilation cache when it is installed (and works without it).
    assert [name for name in TRAIN_IMPORTS if name in seen["loaded"] and name != "filelock"] == []


@pytest.mark.slow  # a fresh interpreter
def test_without_the_train_extra_the_core_works_and_the_rest_says_which_extra(tmp_path):
    seen = _import_report(CORE_MODULES + NEEDS_TRAIN, hidden=TRAIN_IMPORTS, tmp_path=tmp_path)
    for name in CORE_MODULES:
        assert seen["errors"][name] is None, (name, seen["errors"][name])
    for name in NEEDS_TRAIN:
        kind, is_import_error, message = seen["errors"][name]
        assert (kind, is_import_error) == ("MissingExtraError", True), name
        assert message.startswith(f"{name} needs the [train] extra (") and "\n" not in message, message
        assert 'pip install "jaxprune[train]"' in message


@pytest.mark.slow  # a fresh interpreter
def test_the_public_names_say_which_extra_they_need(tmp_path):
    code = ("import jaxprune\n"
            "from jaxprune import BertConfig, bert_rules, compact, init_params, mask\n"
            "try:\n    from jaxprune import fit\nexcept ImportError as err:\n    print(type(err).__name__, err)\n")
    done = _python(code, hidden=TRAIN_IMPORTS, tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("MissingExtraError jaxprune.training needs the [train] extra"), done.stdout


@pytest.mark.slow  # a fresh interpreter
def test_without_the_onnx_extra_the_export_says_so(tmp_path):
    seen = _import_report(NEEDS_ONNX, hidden=("onnx", "onnxruntime"), tmp_path=tmp_path)
    for name in NEEDS_ONNX:
        kind, _, message = seen["errors"][name]
        assert kind == "MissingExtraError" and message.startswith(f"{name} needs the [onnx] extra (onnx, onnxruntime"), \
            message


@pytest.mark.slow  # a fresh interpreter
@pytest.mark.parametrize("script, prefix", [
    # imports that need the extra: said before them
    ("experiments/run.py", "error: experiments/run.py needs the [train] extra ("),
    # imports in main: said by the scripts' error handling (experiments/cli_args.run_script)
    ("benchmarks/attention.py", "error: jaxprune.evaluation needs the [train] extra ("),
])
def test_a_script_without_the_train_extra_says_so_in_one_line(tmp_path, script, prefix):
    done = _python("", hidden=TRAIN_IMPORTS, tmp_path=tmp_path, args=(str(ROOT / script),))
    assert done.returncode == 2
    assert done.stderr.startswith(prefix) and done.stderr.count("\n") == 1, done.stderr[-2000:]


# --- a fresh virtual environment with the core alone ----------------------------------------------------


def _copy_source(destination: Path) -> Path:
    """What ``pip install .`` reads, scripts' folders included (they must stay out of the wheel)."""
    destination.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, destination / name)
    for folder in ("jaxprune", "experiments", "benchmarks"):
        shutil.copytree(ROOT / folder, destination / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return destination


@pytest.mark.slow
def test_a_fresh_venv_with_the_core_alone_runs_the_readme_mask_example(tmp_path):
    started = time.perf_counter()
    source = _copy_source(tmp_path / "source")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")

    def run(*command: str, cwd: Path = tmp_path) -> subprocess.CompletedProcess:
        env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
        return subprocess.run([python, *command], cwd=cwd, env=dict(env, JAX_PLATFORMS="cpu"),
                              capture_output=True, text=True, timeout=1200)

    built = run("-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "wheels"), str(source))
    assert built.returncode == 0, built.stderr[-3000:]
    (wheel,) = (tmp_path / "wheels").glob("jaxprune-*.whl")
    top_level = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert {name for name in top_level if not name.endswith(".dist-info")} == {"jaxprune"}  # no experiments/

    installed = run("-m", "pip", "install", "-q", str(wheel))
    assert installed.returncode == 0, installed.stderr[-3000:]
    listed = run("-m", "pip", "list", "--format=json")
    packages = {p["name"].lower().replace("_", "-") for p in json.loads(listed.stdout)}
    assert {"jax", "flax", "optax", "numpy"} <= packages
    # orbax-checkpoint is absent from this list on purpose: flax itself requires it.
    train_only = {"transformers", "tokenizers", "datasets", "codecarbon", "matplotlib", "safetensors",
                  "huggingface-hub", "tqdm", "filelock"}
    assert packages & train_only == set()

    ran = run("-c", example(*LINEN))  # the README's mask example, in tmp_path: the installed package
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert "of scored weights pruned" in ran.stdout

    missing = run("-c", "import jaxprune.experiment")
    assert missing.stderr.strip().splitlines()[-1].startswith(
        "jaxprune._extras.MissingExtraError: jaxprune.experiment needs the [train] extra (datasets, "), missing.stderr
    script = run(str(source / "experiments" / "run.py"))
    assert script.returncode == 2 and script.stderr.count("\n") == 1, script.stderr[-2000:]
    assert script.stderr.startswith("error: experiments/run.py needs the [train] extra (")
    print(f"fresh venv, core wheel built and installed, README example run: {time.perf_counter() - started:.0f} s")
