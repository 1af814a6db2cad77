"""experiments/table1.py on fakes: rows over seeds (mean, std), the folder layout and re-runs, --rows,
the printed run.py command, and the one side-by-side timing of the saved models (tiny BERTs)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import jax
import pytest

from experiments import _table1_report as report
from jaxprune.experiment.config import ExperimentConfig
from jaxprune.experiment.emissions import Emissions
from jaxprune.experiment.results import Compaction, Finetune, Metrics, RunResults, Scores, SplitMetrics, Timing, Training
from jaxprune.models.bert import init_params
from jaxprune.models.config import BertConfig
from jaxprune.models.loading import save_pretrained
from jaxprune.training.config import DistillationConfig, PruningConfig, TrainConfig

TINY = dict(vocab_size=60, hidden_size=16, num_attention_heads=4, max_position_embeddings=32,
            label_names=("a", "b", "c"))


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """A 2-layer "teacher" and a 1-layer, narrower "compacted" student, saved as run.py saves models."""
    root = tmp_path_factory.mktemp("models")
    folders = {}
    for name, layers, ffn in (("teacher", 2, 24), ("compacted", 1, 8)):
        config = BertConfig(num_hidden_layers=layers, intermediate_size=ffn, **TINY)
        save_pretrained(init_params(config, jax.random.key(0)), config, root / name)
        folders[name] = root / name
    return folders


def _results(accuracy: float, *, seed: int = 0, name: str = "s25-kd", teacher: str = "teachers/t",
             compacted: str = "c", before: float | None = None, sparsity: float = 0.25,
             vocabulary: dict | None = None, teacher_accuracy: float = 0.9) -> RunResults:
    """A run's record with made-up values (macro-F1: the accuracy less 0.1)."""
    config = ExperimentConfig(
        student=TrainConfig(seed=seed, batch_size=2, pruning=PruningConfig(sparsity=sparsity),
                            distillation=DistillationConfig() if name.endswith("-kd") else None),
        teacher=TrainConfig(seed=0, batch_size=2), max_length=8, output_dir=f"out/{name}/seed{seed}")
    finetune = None if before is None else Finetune(
        epochs=1, examples_per_epoch=8, steps=4, resumed_from_step=None, final_loss=0.5, accuracy_before=before,
        macro_f1_before=before - 0.1, transfer_logits_file=None, transfer_logits_reused=None)
    metrics = Scores(eval=SplitMetrics(teacher=Metrics(teacher_accuracy, 0.85, {}), student=Metrics(accuracy, accuracy - 0.1, {}),
                                       majority_class_accuracy=0.5), test=None, chance_accuracy=1 / 3)
    compaction = Compaction(params_nonzero=700_000, encoder_sparsity=0.25,
                            layers=[{"heads_kept": 3, "heads": 4, "neurons_kept": 10, "neurons": 24}],
                            report={"params_before": 1_000_000, "params_after": 800_000 + 1000 * seed})
    return RunResults(
        model="tiny", pooling="cls", model_folder="m", device="cpu", teacher={"source": teacher},
        data={"source": "mahanews", "split_sizes": {"train": 8, "eval": 4}, "transfer": None},
        vocabulary=vocabulary, metrics=metrics, compaction=compaction, training=Training(4, None, 0.5),
        finetune=finetune, timing=Timing(1.0, 0.1, None, None, 2.0, {}), emissions=Emissions(kg_co2=1e-3),
        pruned_dir="p", compacted_dir=compacted, config=config)


def test_rows_are_mean_and_std_over_seeds_and_speedup_comes_from_the_one_timing():
    runs = {"s25-kd": {0: _results(0.80, seed=0, before=0.70), 1: _results(0.90, seed=1, before=0.74)},
            "s75": {1: _results(0.60, seed=1, name="s75")}}
    timing = {"models": {"teacher": {"median_s": 0.3}, "s25-kd": {"median_s": 0.2}, "s75": {"median_s": 0.1}}}
    teacher, kd, s75 = report.table_rows(runs, timing)

    assert (teacher["name"], teacher["teacher"], teacher["n_seeds"]) == ("teacher", True, 1)
    assert teacher["accuracy_pct"]["mean"] == pytest.approx(90.0) and teacher["accuracy_pct"]["std"] is None
    assert (teacher["speedup"], teacher["inference_ms"]) == (1.0, 300.0)

    assert (kd["seeds"], kd["n_seeds"], kd["timed_seed"]) == ([0, 1], 2, 0)
    assert kd["accuracy_pct"]["mean"] == pytest.approx(85.0)
    assert kd["accuracy_pct"]["std"] == pytest.approx(7.0710678, rel=1e-6)  # sample std of 80 and 90
    assert kd["accuracy_pct"]["per_seed"] == pytest.approx({"0": 80.0, "1": 90.0})
    assert kd["macro_f1_pct"]["mean"] == pytest.approx(75.0)
    assert kd["accuracy_before_finetune_pct"]["mean"] == pytest.approx(72.0)
    assert kd["macro_f1_before_finetune_pct"]["mean"] == pytest.approx(62.0)
    assert kd["params_m"] == pytest.approx(0.8005) and kd["params_reduction_pct"] == pytest.approx(19.95)
    assert kd["speedup"] == pytest.approx(1.5) and kd["inference_time_decrease_pct"] == pytest.approx(100 / 3)

    assert (s75["n_seeds"], s75["timed_seed"], s75["accuracy_pct"]["std"]) == (1, 1, None)
    assert s75["speedup"] == pytest.approx(3.0)
    table = report.markdown(report.table_rows(runs), runs, None, "python experiments/table1.py")
    assert "| s25-kd | all | 0.80 | 20.0 | - | - | - | 72.00 | 85.00 ± 7.07 | 75.00 ± 7.07 | 1.00e-03 | 2 |" in table
    assert "not timed" in table


def test_rows_of_another_teacher_get_their_own_teacher_row():
    runs = {"s25": {0: _results(0.8, name="s25")},
            "s25-kd-vocab": {0: _results(0.7, teacher="teachers/vocab",
                                         vocabulary={"kept_pieces": 50, "embedding_params_removed": 0})}}
    names = [(row["name"], row["vocabulary"]) for row in report.table_rows(runs)]
    assert names == [("teacher", None), ("teacher of s25-kd-vocab", 50), ("s25", None), ("s25-kd-vocab", 50)]


def test_rows_and_seeds_are_checked_in_one_line(repo_script, capsys):
    table1 = repo_script("experiments/table1.py")
    args, rows = table1.parse_args(["--rows", "s90-kd", "s25", "--sparsities", "0.25", "0.9"])
    assert [row.name for row in rows] == ["s25", "s90-kd"]  # the table's order, not the flag's
    assert [row.name for row in table1.grid([0.25, 0.9], [0.75], prune_vocab=True)] == [
        "s25", "s25-kd", "s90", "s90-kd", "s75-kd-vocab"]
    for argv, fragment in ((["--rows", "s25", "s95"], "--rows: no row named s95; the rows are s25 s25-kd"),
                           (["--seeds", "0", "0"], "repeats a seed"),
                           (["--layer-weight", "2"], "--layer-weight needs --distill-layers")):
        with pytest.raises(SystemExit) as exit_:
            table1.main(argv)
        lines = capsys.readouterr().err.splitlines()
        assert exit_.value.code == 2 and len(lines) == 1 and fragment in lines[0], lines


COMMON = ["--data-dir", "data", "--pooling", "cls", "--epochs", "2", "--batch-size", "4", "--precision", "fp32"]


@pytest.mark.parametrize("flags", [
    [],
    ["--finetune-epochs", "2", "--transfer-file", "t.txt", "--transfer-column", "text", "--learning-rate", "3e-5",
     "--teacher-seed", "2", "--temperature", "1.5", "--teacher-cache", "elsewhere"],
    ["--prune-vocab", "--vocab-corpus", "corpus.txt"],
    ["--alpha-kd", "0.8"],
    ["--distill-layers", "--layer-weight", "0.5"],
])  # fmt: skip
def test_the_printed_run_py_command_makes_the_same_config(tmp_path, repo_script, flags):
    """table1.py builds each row's config directly; it equals run.py's for the command it prints."""
    table1, run = repo_script("experiments/table1.py"), repo_script("experiments/run.py")
    args, rows = table1.parse_args([*COMMON, "--output-dir", str(tmp_path), "--vocab-corpus", "corpus.txt",
                                    "--sparsities", "0.5", "--vocab-sparsities", "0.75", *flags])
    base, distill = table1.base_config(args), table1.distillation(args)
    finished = table1.run_folder(tmp_path, rows[0], 3)
    finished.mkdir(parents=True)
    (finished / "results.json").write_text("{}")  # a finished run is resumed (skipped)
    for row in rows:
        for seed in (0, 3):
            folder = table1.run_folder(tmp_path, row, seed)
            config = table1.row_config(base, row, seed, folder, distill=distill, vocab_corpus=args.vocab_corpus)
            command = table1._command(args, config).split()
            assert command[:2] == ["python", "experiments/run.py"]
            assert config == run.build_config(run.parse_args(command[2:]))
            assert (config.student.seed, config.teacher.seed) == (seed, args.teacher_seed)
            assert config.resume == (folder == finished)
            assert config.prune_vocab == (row.name.endswith("-vocab") or args.prune_vocab)
            assert config.transfer_file == (args.transfer_file if row.distill else None)


@pytest.mark.slow  # table1.py's main end to end
def test_each_row_and_seed_has_a_folder_finished_runs_are_skipped_and_times_are_shared(
        tmp_path, repo_script, tiny_models, monkeypatch):
    import jaxprune.experiment

    table1 = repo_script("experiments/table1.py")
    out = tmp_path / "table"
    trained = []

    def fake_train_and_evaluate(config, log=print):
        folder = Path(config.output_dir)
        if (folder / "results.json").is_file():
            assert config.resume
            return RunResults.read(folder / "results.json")
        trained.append((folder.relative_to(out).as_posix(), config.resume))
        shutil.copytree(tiny_models["compacted"], folder / "compacted")
        results = _results(0.5 + 0.1 * config.student.seed, seed=config.student.seed, name=folder.parent.name,
                           teacher=str(tiny_models["teacher"]), compacted=str(folder / "compacted"),
                           sparsity=config.student.sparsity)
        results = dataclasses.replace(results, config=config)
        (folder / "results.json").write_text(json.dumps(results.to_json()))
        return results

    monkeypatch.setattr(jaxprune.experiment, "train_and_evaluate", fake_train_and_evaluate)
    argv = ["--output-dir", str(out), "--rows", "s25", "s90-kd", "--seeds", "0", "2", "--batch-size", "2",
            "--max-length", "8", "--precision", "fp32"]
    (out / "s90-kd" / "seed2" / "checkpoints").mkdir(parents=True)  # an interrupted run
    assert table1.main(argv) == 0
    assert trained == [("s25/seed0", False), ("s90-kd/seed0", False), ("s25/seed2", False), ("s90-kd/seed2", True)]

    written = json.loads((out / "table1.json").read_text())
    assert (written["seeds"], written["teacher_seed"], written["timing"]["batch_size"]) == ([0, 2], 0, 2)
    assert [(row["name"], row["n_seeds"]) for row in written["rows"]] == [("teacher", 1), ("s25", 2), ("s90-kd", 2)]
    s90 = written["rows"][2]
    assert (s90["sparsity"], s90["distill"], s90["timed_seed"]) == (0.9, True, 0)
    assert s90["accuracy_pct"]["per_seed"] == pytest.approx({"0": 50.0, "2": 70.0})
    timing = json.loads((out / report.TIMING_NAME).read_text())
    assert set(timing["models"]) == {"teacher", "s25", "s90-kd"}
    assert timing["models"]["s25"]["path"] == str(out / "s25" / "seed0" / "compacted")
    assert (timing["batch_size"], timing["seq_length"], timing["dtype"]) == (2, 8, "float32")
    assert s90["speedup"] == pytest.approx(timing["models"]["teacher"]["median_s"] / timing["models"]["s90-kd"]["median_s"])
    assert {p.name for p in out.iterdir()} >= {"table1.md", "figure3_accuracy_vs_time.png", "layer_survival.png"}

    # A re-run trains nothing and times nothing: the cached timing still holds these models.
    import benchmarks.saved_models

    monkeypatch.setattr(benchmarks.saved_models, "time_models", lambda *a, **k: pytest.fail("timed again"))
    trained.clear()
    assert table1.main(argv) == 0 and trained == []
    assert table1.main([*argv, "--report-only", "--rows", "s25"]) == 0
    assert [row["name"] for row in json.loads((out / "table1.json").read_text())["rows"]] == ["teacher", "s25"]


@pytest.mark.parametrize("case", ["one-seed layout", "transfer without fine-tuning"])
def test_settings_it_cannot_run_are_refused_in_one_line(tmp_path, repo_script, capsys, case):
    (tmp_path / "s25").mkdir()
    if case == "one-seed layout":
        (tmp_path / "s25" / "results.json").write_text("{}")  # results.json in the row's folder, no seed<k>/
    flags = ["--transfer-file", "t.txt"] if case == "transfer without fine-tuning" else []
    table1 = repo_script("experiments/table1.py")
    assert table1.main(["--output-dir", str(tmp_path), "--rows", "s25", "--report-only", *flags]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert {"one-seed layout": "one-seed layout", "transfer without fine-tuning": "add --finetune-epochs"}[case] in line
    assert "--output-dir" in line or case != "one-seed layout"


@pytest.mark.slow  # times saved models side by side
def test_saved_models_are_timed_side_by_side_and_the_timing_is_cached(tmp_path, tiny_models, monkeypatch):
    from benchmarks.saved_models import time_models

    timing = time_models({"a": tiny_models["teacher"], "b": tiny_models["compacted"]}, batch_size=2, seq_length=8,
                         repeats=3, warmup=1, log=lambda message: None)
    assert (timing["batch_size"], timing["seq_length"], timing["dtype"], timing["repeats"]) == (2, 8, "float32", 3)
    a, b = timing["models"]["a"], timing["models"]["b"]
    assert len(a["times_s"]) == len(b["times_s"]) == 3 and a["params"] > b["params"] > 0
    assert a["min_s"] <= a["median_s"] <= a["max_s"]

    runs = {"s25": {0: _results(0.8, name="s25", teacher=str(tiny_models["teacher"]),
                                compacted=str(tiny_models["compacted"]))}}
    quiet = dict(log=lambda message: None)
    assert report.shared_timing(tmp_path, runs, time_now=False, **quiet) is None  # nothing cached, nothing timed
    first = report.shared_timing(tmp_path, runs, time_now=True, **quiet)
    assert set(first["models"]) == {"teacher", "s25"}
    import benchmarks.saved_models

    monkeypatch.setattr(benchmarks.saved_models, "time_models", lambda *a, **k: pytest.fail("timed again"))
    assert report.shared_timing(tmp_path, runs, time_now=True, **quiet) == first
    # Another row joins: without timing, the cache still gives the models it has.
    runs["s75"] = {0: _results(0.6, name="s75", teacher=str(tiny_models["teacher"]), compacted=str(tmp_path / "x"))}
    assert set(report.shared_timing(tmp_path, runs, time_now=False, **quiet)["models"]) == {"teacher", "s25"}
