"""experiments/recipe_table.py: an ablation read seed by seed."""

from __future__ import annotations

import json

import pytest

from tests.test_table1 import _results


def write_runs(folder, accuracies, teacher=0.8, before=None):
    for seed, accuracy in accuracies.items():
        run = folder / f"seed{seed}"
        run.mkdir(parents=True)
        results = _results(accuracy, seed=seed, teacher_accuracy=teacher, before=None if before is None else before[seed])
        (run / "results.json").write_text(json.dumps(results.to_json()), encoding="utf-8")
    return folder


def table_lines(capsys):
    return [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "---" not in line]


def test_paired_differences_are_taken_seed_by_seed(tmp_path, repo_script, capsys):
    base = write_runs(tmp_path / "base", {0: 0.70, 1: 0.80, 2: 0.75}, before={0: 0.6, 1: 0.65, 2: 0.7})
    better = write_runs(tmp_path / "better", {0: 0.72, 1: 0.81, 2: 0.78})
    table = repo_script("experiments/recipe_table.py")
    out = tmp_path / "table.md"
    assert table.main([f"base={base}", f"better={better}", f"before={base}:before", "--output", str(out)]) == 0
    header, first, second, third = table_lines(capsys)
    assert first.startswith("| base | 3 | 75.00 ± 5.00 | -5.00 | 65.00 ± 5.00 | - |")
    # Per seed +2, +1, +3: mean +2.00, though the spread of each variant alone is 5 points.
    assert "| +2.00 (+1.00..+3.00) |" in second and "0: 72.00, 1: 81.00, 2: 78.00" in second
    assert third.startswith("| before | 3 | 65.00 ± 5.00 | -15.00 |") and "-10.00 (-15.00..-5.00)" in third
    assert out.read_text(encoding="utf-8").count("\n| ") == 4


def test_only_shared_seeds_are_paired(tmp_path, repo_script, capsys):
    base = write_runs(tmp_path / "base", {0: 0.70, 1: 0.80})
    one = write_runs(tmp_path / "one", {1: 0.90, 5: 0.10})
    assert repo_script("experiments/recipe_table.py").main([f"one={one}", f"base={base}", "--reference", "base"]) == 0
    _, first, _ = table_lines(capsys)
    assert "| +10.00 (+10.00..+10.00) |" in first


@pytest.mark.parametrize("make, fragment", [
    (lambda tmp: [f"x={tmp / 'none'}"], "holds no seed<k>/results.json"),
    (lambda tmp: ["no-equals-sign"], "is not NAME=FOLDER"),
    (lambda tmp: [f"a={write_runs(tmp / 'a', {0: 0.7})}", f"b={write_runs(tmp / 'b', {0: 0.7}, teacher=0.9)}"],
     "2 teachers"),
    (lambda tmp: [f"a={write_runs(tmp / 'a', {0: 0.7})}:before"], "drop ':before'"),
    (lambda tmp: [f"a={write_runs(tmp / 'a', {0: 0.7})}", "--reference", "zz"], "is not one of the variants"),
    (lambda tmp: [f"a={tmp / 'old'}"], "is not the results.json of a run of this jaxprune version"),
])
def test_bad_variants_are_one_line_errors(tmp_path, repo_script, capsys, make, fragment):
    (tmp_path / "old" / "seed0").mkdir(parents=True)  # a run of another version: settings flat, scores at the top
    (tmp_path / "old" / "seed0" / "results.json").write_text(json.dumps(
        {"accuracy": 0.7, "teacher_accuracy": 0.8, "config": {"student": {"seed": 0, "sparsity": 0.5}}}))
    assert repo_script("experiments/recipe_table.py").main(make(tmp_path)) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: ") and fragment in line
