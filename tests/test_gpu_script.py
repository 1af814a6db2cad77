"""benchmarks/gpu.sh, the script a lent GPU machine runs first, runs end to end on the CPU
with --smoke (tiny sizes, the same scripts and flags), so it cannot rot between GPU loans."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # bash runs the script and the scripts it calls

REPO = Path(__file__).resolve().parents[1]


def gpu_sh(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(REPO / "benchmarks" / "gpu.sh"), *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHON": sys.executable, **(env or {})}, timeout=900)


def test_gpu_script_smoke_run_writes_every_result(tmp_path, repo_script, e5_folder, shared_data_dir):
    prepare = repo_script("benchmarks/gpu_prepare.py")
    assert prepare.main(["--data-file", str(shared_data_dir / "SHC_Valid.csv"), "--out", str(tmp_path / "prep"),
                         "--layers", "1", "--no-wheels"]) == 0
    model_config = json.loads((tmp_path / "prep" / "model" / "config.json").read_text(encoding="utf-8"))
    assert model_config["num_hidden_layers"] == 1 and model_config["vocab_size"] < 20000
    device_out = tmp_path / "device"
    device_out.mkdir()
    done = gpu_sh("--smoke", "--prepared", str(tmp_path / "prep"), "--out", str(tmp_path / "out"),
                  env={"OUT": str(device_out)})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "all parts" in done.stdout and ", 0 failed" in done.stdout

    results = {path.name.split("_cpu_")[0]: json.loads(path.read_text(encoding="utf-8"))
               for path in (tmp_path / "out").glob("*.json")}
    assert set(results) == {"inference", "train_step", "train_precision"}
    inference = results["inference"]["rows"]
    assert {(r["dtype"], r["variant"]) for r in inference} == {
        (d, v) for d in ("float32", "bfloat16") for v in ("dense", "s75")}
    assert all(r["jax"]["median_s"] > 0 for r in inference)
    assert {r["dtype"] for r in results["train_step"]["rows"]} == {"float32", "bfloat16"}
    precision = results["train_precision"]
    assert [r["dtype"] for r in precision["rows"]] == ["float32", "bfloat16"]
    assert all(0 <= r["accuracy"] <= 1 and r["steps"] == 2 for r in precision["rows"])

    # On the device machine ($OUT set) everything comes back in one tar with the log.
    with tarfile.open(device_out / "gpu_results.tar") as tar:
        names = {Path(name).name for name in tar.getnames()}
    assert {p.name for p in (tmp_path / "out").glob("*_cpu_*")} <= names and "gpu_log.txt" in names
    assert (device_out / "gpu_log.txt").read_text(encoding="utf-8").count("== ") >= 7


def test_gpu_script_refuses_bad_arguments_in_one_line(tmp_path):
    done = gpu_sh("--fast")
    assert done.returncode == 2 and done.stderr.strip() == (
        "error: unknown argument --fast; use --smoke, --out DIR or --prepared DIR")
    done = gpu_sh("--prepared", str(tmp_path))
    assert done.returncode == 2 and "run python benchmarks/gpu_prepare.py first" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
