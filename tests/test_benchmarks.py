"""benchmarks/inference.py and benchmarks/train_step.py on tiny grids: the tables they write
hold what was timed (no speed is asserted), the PyTorch and ONNX Runtime peers compute the
JAX model's logits, and the GPU-only parts (the full grid, the peak-FLOP/s lookup and MFU)
work on any machine."""

from __future__ import annotations

import json
import types

import jax
import numpy as np
import pytest

from benchmarks import _common, _inference_report, _ort_peer, _torch_peer
from jaxprune.evaluation import timing


@pytest.mark.slow  # the script end to end
def test_inference_benchmark_tiny_grid(tmp_path, repo_script):
    inference = repo_script("benchmarks/inference.py")
    payload = inference.main(["--models", "minilm", "--batch-sizes", "2", "--lengths", "16", "--dtypes", "float32",
                              "bfloat16", "--sparsities", "0.5", "--repeats", "2", "--warmup", "0",
                              "--torch-compile", "off", "--out", str(tmp_path)])
    rows = {(row["dtype"], row["variant"]): row for row in payload["rows"]}
    assert list(rows) == [("float32", "dense"), ("float32", "s50"), ("bfloat16", "dense"), ("bfloat16", "s50")]
    dense, pruned = rows["float32", "dense"], rows["float32", "s50"]
    assert (dense["heads_per_layer"], dense["intermediate_size"]) == (12, 1536)
    assert (pruned["heads_per_layer"], pruned["intermediate_size"]) == (6, 768)
    assert 0.45 < pruned["encoder_fraction_kept"] < 0.55 and pruned["encoder_params"] < dense["encoder_params"]
    fp32_dense = dense["jax"]["median_s"]
    for (dtype, variant), row in rows.items():
        assert (row["batch_size"], row["seq_length"]) == (2, 16)
        assert len(row["jax_times_s"]) == 2 and row["jax"] == timing.summarize(row["jax_times_s"], 2)
        same_dtype_dense = rows[dtype, "dense"]["jax"]["median_s"]
        assert row["jax_speedup_vs_dense"] == pytest.approx(same_dtype_dense / row["jax"]["median_s"])
        # bf16 rows are also compared with fp32 dense, timed in the same rounds.
        assert row["jax_speedup_vs_fp32_dense"] == pytest.approx(fp32_dense / row["jax"]["median_s"])
        assert row["jax_speedup_vs_torch_eager"] == pytest.approx(
            row["torch_eager"]["median_s"] / row["jax"]["median_s"])
        assert row["torch_compile"] is None
        timed = {name: row[key]["median_s"] for key, name in _inference_report.RUNTIMES.items() if row.get(key)}
        assert row["fastest"] == min(timed, key=timed.get)
        if dtype == "bfloat16":  # ONNX Runtime runs the float32 exports only
            assert row["ort"] is None and "jax_speedup_vs_ort" not in row
            continue
        assert row["ort"]["min_s"] <= row["ort"]["median_s"] <= row["ort"]["max_s"]
        assert row["jax_speedup_vs_ort"] == pytest.approx(row["ort"]["median_s"] / row["jax"]["median_s"])
        # Against ORT on transformers' own export of the dense model, timed in the same rounds.
        assert row["ort_speedup_vs_ort_dense"] == pytest.approx(
            dense["ort_dense_torch"]["median_s"] / row["ort"]["median_s"])
    assert "ort_dense_torch" in dense and "ort_dense_torch" not in pruned
    # The PyTorch and ORT peers compute the same function with the same weights.
    assert len([note for note in payload["notes"] if "max |JAX - PyTorch|" in note]) == 1
    (ort_parity,) = [note for note in payload["notes"] if "max |ORT - JAX|" in note]
    assert all(name in ort_parity for name in ("'dense-torch'", "'dense'", "'s50'"))
    (json_file,) = tmp_path.glob("inference_cpu_*.json")
    assert json.loads(json_file.read_text())["rows"][1]["variant"] == "s50"
    table = json_file.with_suffix(".md").read_text()
    assert "| minilm | 2x16 | float32 | s50 | 6/768 |" in table and payload["device"] in table
    assert "| ort ms | jax vs torch eager | jax vs ort | fastest |" in table
    assert f"| {1000 * pruned['ort']['median_s']:.1f} | {pruned['jax_speedup_vs_torch_eager']:.2f}x | " \
           f"{pruned['jax_speedup_vs_ort']:.2f}x | {pruned['fastest']} |" in table
    assert f"| minilm | 2x16 | dense | {1000 * dense['ort']['median_s']:.1f} | " \
           f"{1000 * dense['ort_dense_torch']['median_s']:.1f} | " in table
    goal = f"| minilm | 2x16 | {rows['bfloat16', 's50']['jax_speedup_vs_dense']:.2f}x | "
    assert goal + f"{pruned['jax_speedup_vs_dense']:.2f}x | " in table
    assert f"| {pruned['ort_speedup_vs_ort_dense']:.2f}x |\n" in table  # the ORT goal, last column


def _tiny_model(pooling: str):
    from jaxprune.models.bert import init_params
    from jaxprune.models.config import BertConfig

    config = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, classifier_pooling=pooling)
    params = init_params(config, jax.random.key(0))
    return types.SimpleNamespace(name="tiny", config=config, variants={"dense": (params, config, 0.0)})


@pytest.mark.slow  # a benchmark's PyTorch peer
def test_the_torch_peer_of_a_mean_pooling_model_averages_over_the_mask():
    from jaxprune.models.bert import BertForSequenceClassification

    torch = _torch_peer.import_torch()
    if torch is None:
        pytest.skip("torch is not installed")
    model = _tiny_model("mean")
    params, config, _ = model.variants["dense"]
    torch_model = _torch_peer.build_torch_model(torch, params, config, "float32")
    ids = np.arange(2 * 8).reshape(2, 8) % config.vocab_size
    mask = np.ones_like(ids)
    mask[1, 5:] = 0  # padding: the mean covers the first five tokens only
    with torch.inference_mode():
        logits = torch_model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).logits
    expected = BertForSequenceClassification(config).apply({"params": params}, ids, mask)
    np.testing.assert_allclose(logits.numpy(), np.asarray(expected), atol=1e-5)


@pytest.mark.slow  # a benchmark's ONNX Runtime peer
def test_the_ort_peer_refuses_to_time_a_graph_with_other_logits():
    if _ort_peer.import_ort() is None:
        pytest.skip("onnxruntime or onnx is not installed")
    model = _tiny_model("cls")

    class Session:  # a session of another model: logits off by 1e-3
        def run(self, names, feeds):
            params, config, _ = model.variants["dense"]
            from jaxprune.models.bert import BertForSequenceClassification

            logits = BertForSequenceClassification(config).apply({"params": params}, feeds["input_ids"])
            return [np.asarray(logits) + 1e-3]

    notes = []
    with pytest.raises(RuntimeError, match="differ from JAX by more than 0.0001"):
        _ort_peer.ort_parity(model, {"dense": Session()}, notes)
    assert "max |ORT - JAX|" in notes[0]


def test_inference_grid_on_a_gpu_is_the_full_product(repo_script):
    inference = repo_script("benchmarks/inference.py")
    cells = inference.grid(inference.parse_args([]), on_gpu=True)
    assert len(cells) == 2 * len(inference.GPU_BATCH_SIZES) * len(inference.GPU_LENGTHS)
    assert {(batch, length) for _, batch, length, _, _ in cells} == {(1, 128), (1, 512), (32, 128), (32, 512),
                                                                     (128, 128), (128, 512)}
    assert all(dtypes == ("float32", "bfloat16") for *_, dtypes, _ in cells)
    # torch.compile (auto) only where the GPU goals are set.
    assert {(batch, length) for _, batch, length, _, compile_cell in cells if compile_cell} == {(32, 128)}
    assert [inference.resolve_compile("auto", True, c) for c in (True, False)] == ["dense", "off"]
    assert inference.grid(inference.parse_args([]), on_gpu=False) == list(inference.CPU_CELLS)
    narrowed = inference.grid(inference.parse_args(["--models", "minilm", "--lengths", "64"]), on_gpu=False)
    assert [(model, length) for model, _, length, _, _ in narrowed] == [("minilm", 64)] * len(inference.GPU_BATCH_SIZES)


@pytest.mark.slow  # the script end to end
def test_train_step_benchmark_reports_mfu_where_the_peak_is_known(tmp_path, repo_script, monkeypatch):
    train_step = repo_script("benchmarks/train_step.py")
    args = ["--quick", "--repeats", "2", "--warmup", "0", "--dtypes", "float32", "--out", str(tmp_path / "cpu")]
    payload = train_step.main(args)
    rows = {row["variant"]: row for row in payload["rows"]}
    assert set(rows) == {"dense", "masked"} and rows["dense"]["slowdown_vs_dense"] == 1.0
    assert all(row["mfu"] is None for row in rows.values())  # no known peak on a CPU
    tokens = payload["batch_size"] * payload["seq_length"]
    assert rows["dense"]["model_flops_per_step"] > 6 * payload["non_embedding_params"] * tokens

    # As on a GPU: a known peak gives model-FLOPs utilisation = FLOPs / time / peak.
    monkeypatch.setattr(_common, "peak_flops_per_s", lambda dtype, device=None: 1e12)
    payload = train_step.main([*args[:-1], str(tmp_path / "gpu")])
    for row in payload["rows"]:
        assert row["mfu"] == pytest.approx(row["model_flops_per_step"] / row["step"]["median_s"] / 1e12)
    table = next((tmp_path / "gpu").glob("train_step_*.md")).read_text()
    assert f"{100 * payload['rows'][0]['mfu']:.1f}%" in table


def _device(platform: str, kind: str):
    return types.SimpleNamespace(platform=platform, device_kind=kind)


def test_peak_flops_and_device_names_of_gpus():
    h100 = _device("gpu", "NVIDIA H100 80GB HBM3")
    assert _common.peak_flops_per_s("bfloat16", h100) == _common.PEAK_FLOPS["h100"]["bfloat16"]
    assert _common.peak_flops_per_s("float32", h100) == _common.PEAK_FLOPS["h100"]["float32"]
    assert _common.peak_flops_per_s("float16", h100) is None  # no figure for that dtype
    assert _common.device_slug(h100) == "h100" and timing.device_description(h100) == "gpu: NVIDIA H100 80GB HBM3"
    other = _device("gpu", "NVIDIA RTX 9000 (Ada)")
    assert _common.peak_flops_per_s("bfloat16", other) is None
    assert _common.device_slug(other) == "nvidia-rtx-9000--ada"
    assert _common.peak_flops_per_s("float32", _device("cpu", "cpu")) is None


@pytest.mark.slow  # the script end to end
def test_inference_benchmark_keeps_the_cells_timed_before_it_stopped(tmp_path, repo_script, monkeypatch):
    inference = repo_script("benchmarks/inference.py")
    real_time_cell = inference.Model.time_cell
    calls = []

    def time_cell(self, *args):
        calls.append(args[:2])
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_time_cell(self, *args)

    monkeypatch.setattr(inference.Model, "time_cell", time_cell)
    with pytest.raises(KeyboardInterrupt):
        inference.main(["--models", "minilm", "--batch-sizes", "1", "2", "--lengths", "8", "--dtypes", "float32",
                        "--sparsities", "0.5", "--repeats", "1", "--warmup", "0", "--torch", "off",
                        "--ort", "off", "--out", str(tmp_path)])
    assert calls == [(1, 8), (2, 8)]
    (json_file,) = tmp_path.glob("inference_cpu_*.json")
    written = json.loads(json_file.read_text())
    assert [(row["batch_size"], row["variant"]) for row in written["rows"]] == [(1, "dense"), (1, "s50")]
    assert "partial: 1 of 2 cells timed so far" in written["notes"]
    assert "| minilm | 1x8 | float32 | s50 |" in json_file.with_suffix(".md").read_text()


@pytest.mark.slow  # the script end to end
def test_vocab_step_benchmark_times_both_vocabularies(tmp_path, repo_script):
    vocab_step = repo_script("benchmarks/vocab_step.py")
    payload = vocab_step.main(["--model", "minilm", "--batch-size", "2", "--lengths", "16", "24", "--repeats", "2",
                               "--warmup", "0", "--out", str(tmp_path)])
    rows = {(row["seq_length"], row["variant"]): row for row in payload["rows"]}
    assert list(rows) == [(16, "full vocabulary"), (16, "pruned vocabulary"), (24, "full vocabulary"),
                          (24, "pruned vocabulary")]
    kept = payload["vocabulary"]["kept_pieces"]
    assert 0 < kept < payload["vocabulary"]["original_pieces"] == 30522
    for (length, variant), row in rows.items():
        full = rows[length, "full vocabulary"]
        assert row["params"] == full["params"] - (30522 - kept) * 384 * (variant == "pruned vocabulary")
        assert len(row["times_s"]) == 2
        assert row["speedup_vs_full"] == pytest.approx(full["step"]["median_s"] / row["step"]["median_s"])
    assert payload["train_texts"] == 240  # the embedded corpus's training split, nothing else
    (markdown,) = tmp_path.glob("vocab_step_cpu_*.md")
    assert "| 24 | pruned vocabulary |" in markdown.read_text()
