"""The train step data-parallel and sharded over simulated CPU devices: the same numbers as one device.

Each run is a subprocess (``tests/parallel_run.py``) because XLA's host device count
(``--xla_force_host_platform_device_count``) is fixed when JAX starts. The runs prune (global
top-k, heads and neurons) and distill for 8 steps at batch 8.

Tolerance: the devices each sum their rows' gradients and XLA adds the partial sums across devices,
so a sum differs from one device's by float32 reduction order, a few ulps (float32 eps is 1.2e-7).
Eight Adam steps at learning rate 1e-3 carry that into the weights: differences of up to 1.3e-7 were
measured (values of order 0.02-1). Losses must agree within 2e-6 relative, weights within 1e-6
absolute, and the masks exactly (the same weights pruned): a wrong global mean (a loss averaged
per device, padding counted) or a mask computed per shard is off by orders of magnitude more.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from test_pipeline import tiny_data_dir, tiny_model_folder  # noqa: F401  (fixtures)

pytestmark = pytest.mark.slow  # every run is a subprocess

RUNNER = Path(__file__).resolve().parent / "parallel_run.py"


def _run(tmp_path: Path, name: str, *flags: str) -> tuple[dict, dict]:
    out = tmp_path / f"{name}.npz"
    done = subprocess.run([sys.executable, str(RUNNER), str(out), *flags], capture_output=True, text=True,
                          cwd=RUNNER.parent, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), dict(np.load(out))


def _assert_same(a: tuple[dict, dict], b: tuple[dict, dict]) -> None:
    (info_a, params_a), (info_b, params_b) = a, b
    np.testing.assert_allclose(info_b["losses"], info_a["losses"], rtol=2e-6, atol=0)
    assert info_b["keep"] == info_a["keep"]
    assert sorted(params_a) == sorted(params_b)
    for name in params_a:
        np.testing.assert_array_equal(params_b[name] == 0, params_a[name] == 0, err_msg=name)  # the same masks
        np.testing.assert_allclose(params_b[name], params_a[name], rtol=0, atol=1e-6, err_msg=name)


@pytest.fixture(scope="module")
def one_device(tmp_path_factory):
    return _run(tmp_path_factory.mktemp("one"), "one", "--devices", "1")


@pytest.mark.parametrize("flags", [("--devices", "2"), ("--devices", "8"), ("--devices", "2", "--shard-params"),
                                   ("--devices", "8", "--shard-params")], ids=" ".join)
def test_more_devices_give_the_same_losses_and_params(tmp_path, one_device, flags):
    run = _run(tmp_path, "many", *flags)
    _assert_same(one_device, run)
    assert one_device[0]["step"] == run[0]["step"] == 8
    if "--shard-params" in flags:  # the kernels really were split across the devices
        assert "P('data', None)" in run[0]["shardings"] and "P()" in run[0]["shardings"]
    else:
        assert run[0]["shardings"] == ["P()"]


def test_a_batch_the_devices_do_not_divide_is_filled_with_weight_zero_rows(tmp_path):
    # 6 rows on 4 devices: each step's batch is filled to 8 rows that weigh nothing. Dropout draws its
    # bits for the filled shape, so the comparison is with one device filling to 8 rows the same way.
    filled_one = _run(tmp_path, "one", "--devices", "1", "--batch-size", "6", "--fill-to", "8")
    four = _run(tmp_path, "four", "--devices", "4", "--batch-size", "6")
    _assert_same(filled_one, four)


def test_teacher_in_step_runs_on_the_mesh(tmp_path):
    _assert_same(_run(tmp_path, "one", "--devices", "1", "--teacher-in-step"),
                 _run(tmp_path, "two", "--devices", "2", "--teacher-in-step", "--shard-params"))


def test_a_checkpoint_saved_on_8_devices_resumes_on_1_and_on_2(tmp_path, one_device):
    folder = tmp_path / "checkpoints"
    first, _ = _run(tmp_path, "first", "--devices", "8", "--shard-params", "--checkpoint-dir", str(folder),
                    "--stop-after", "3")
    assert first["step"] == 3
    for devices in ("1", "2"):
        copy = tmp_path / f"checkpoints-{devices}"
        subprocess.run(["cp", "-r", str(folder), str(copy)], check=True)
        resumed = _run(tmp_path, f"resumed-{devices}", "--devices", devices, "--checkpoint-dir", str(copy),
                       "--resume")
        assert resumed[0]["resumed_from"] == 3 and resumed[0]["step"] == 8
        _assert_same(({**one_device[0], "losses": one_device[0]["losses"][3:], "keep": one_device[0]["keep"][3:]},
                      one_device[1]), resumed)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _launch_two(command: list[str], cwd: Path) -> list[tuple[str, str]]:
    """``command`` as processes 0 and 1 of one run on localhost (jax.distributed, CPU collectives)."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(JAX_PLATFORMS="cpu", JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{_free_port()}", JAX_NUM_PROCESSES="2")
    workers = [subprocess.Popen(command, env={**env, "JAX_PROCESS_ID": str(i)}, cwd=cwd, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in (0, 1)]
    try:
        outputs = [worker.communicate(timeout=300) for worker in workers]
    finally:
        for worker in workers:
            worker.kill()
    for worker, (_, stderr) in zip(workers, outputs):
        assert worker.returncode == 0, stderr[-3000:]
    return outputs


def _two_processes(tmp_path: Path, *flags: str) -> list[tuple[dict, dict]]:
    """Processes 0 and 1 of one fit, 1 device each."""
    out = tmp_path / "two.npz"
    outputs = _launch_two([sys.executable, str(RUNNER), str(out), "--devices", "1", *flags], RUNNER.parent)
    files = [out, Path(f"{out}.process1.npz")]
    return [(json.loads(stdout.strip().splitlines()[-1]), dict(np.load(file)))
            for (stdout, _), file in zip(outputs, files)]


def test_two_processes_train_together_and_agree_with_one(tmp_path, one_device):
    process_0, process_1 = _two_processes(tmp_path, "--shard-params")
    assert process_0[0]["processes"] == 2
    _assert_same(one_device, process_0)
    _assert_same(process_0, process_1)  # both hold the same result


def test_a_checkpoint_written_by_two_processes_resumes_in_one(tmp_path, one_device):
    folder = tmp_path / "checkpoints"
    first, _ = _two_processes(tmp_path, "--checkpoint-dir", str(folder), "--stop-after", "3")
    assert first[0]["step"] == 3 and sorted(p.name for p in folder.iterdir() if p.name.isdigit()) == ["3"]
    resumed = _run(tmp_path, "resumed", "--devices", "1", "--checkpoint-dir", str(folder), "--resume")
    assert resumed[0]["resumed_from"] == 3
    _assert_same(({**one_device[0], "losses": one_device[0]["losses"][3:], "keep": one_device[0]["keep"][3:]},
                  one_device[1]), resumed)


def test_run_py_as_two_processes_writes_one_result_equal_to_one_process(tmp_path, tiny_model_folder, tiny_data_dir):
    root = RUNNER.parents[1]
    common = ["--model", str(tiny_model_folder), "--data-dir", str(tiny_data_dir), "--epochs", "1",
              "--teacher-epochs", "1", "--batch-size", "8", "--max-length", "32", "--sparsity", "0.5", "--distill",
              "--precision", "fp32"]
    script = [sys.executable, str(root / "experiments" / "run.py")]
    one = subprocess.run([*script, *common, "--output-dir", str(tmp_path / "one"), "--teacher-cache",
                          str(tmp_path / "teachers-one")], capture_output=True, text=True, cwd=root, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    _launch_two([*script, *common, "--shard-params", "--output-dir", str(tmp_path / "two"), "--teacher-cache",
                 str(tmp_path / "teachers-two")], root)
    single = json.loads((tmp_path / "one" / "results.json").read_text())
    pair = json.loads((tmp_path / "two" / "results.json").read_text())
    assert pair["metrics"]["eval"]["teacher"]["accuracy"] == single["metrics"]["eval"]["teacher"]["accuracy"]
    assert pair["metrics"]["eval"]["student"]["accuracy"] == single["metrics"]["eval"]["student"]["accuracy"]
    assert pair["training"]["final_loss"] == pytest.approx(single["training"]["final_loss"], rel=2e-6)
    assert pair["compaction"]["report"]["params_after"] == single["compaction"]["report"]["params_after"]
    assert sorted(p.name for p in (tmp_path / "teachers-two").iterdir()) == sorted(
        p.name for p in (tmp_path / "teachers-one").iterdir())  # one teacher, written once, same cache key
