"""The training pipeline on tiny models: end to end, learning, losses, resume, compilation, bf16."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxprune.training.loop as fit_lib
from jaxprune.training import step as train_lib
from jaxprune.training.bert import BertClassification
from jaxprune.data.batching import EncodedSplit
from jaxprune.models.bert import BertForSequenceClassification, init_params
from jaxprune.models.config import BertConfig
from jaxprune.training.losses import cross_entropy, distillation_loss
from jaxprune.errors import JaxpruneError
from jaxprune.experiment import ExperimentConfig, train_and_evaluate
from jaxprune.experiment.results import RunResults
from jaxprune.models.loading import from_pretrained, load_tokenizer, save_pretrained
from jaxprune.training.config import DistillationConfig, OptimizerConfig, PruningConfig, TrainConfig

TOKENIZER_FILES = ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
# Three topics, eight Marathi headlines each: subject x event.
TOPICS = {
    "Sports": ("क्रिकेट संघाने", "फुटबॉल सामन्यात", "कुस्तीपटूने", "धावपटूने"),
    "Politics": ("मुख्यमंत्र्यांनी", "विरोधी पक्षाने", "निवडणूक आयोगाने", "आमदारांनी"),
    "Business": ("शेअर बाजाराने", "बँकेने", "कंपनीने", "व्यापाऱ्यांनी"),
}
EVENTS = ("आज मोठी घोषणा केली", "नवा विक्रम केला")


def tiny_config(vocab_size: int = 30522, labels=("LABEL_0", "LABEL_1", "LABEL_2"), dropout: float = 0.1):
    return BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        label_names=tuple(labels),
    )


def encoded_split(input_ids: np.ndarray, labels: np.ndarray, buckets: tuple[int, ...]) -> EncodedSplit:
    """An EncodedSplit from token ids (N, T) with 0 as padding; each row in the smallest bucket that fits."""
    input_ids = np.asarray(input_ids, np.int32)
    attention_mask = (input_ids != 0).astype(np.int32)
    lengths = attention_mask.sum(1)
    bucket = np.asarray(buckets, np.int32)[np.searchsorted(np.asarray(buckets), lengths)]
    return EncodedSplit(
        input_ids=input_ids,
        attention_mask=attention_mask,
        token_type_ids=np.zeros_like(input_ids),
        labels=np.asarray(labels, np.int32),
        bucket=bucket,
        buckets=buckets,
    )


def keyword_task(n: int, length: int = 8, seed: int = 0) -> EncodedSplit:
    """Rows ``[keyword, noise...]``; the keyword (token 10, 11 or 12) decides the label.

    The keyword sits where the pooler reads (position 0), so a tiny model learns it in a few steps.
    """
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    ids = rng.integers(20, 60, size=(n, length))
    ids[:, 0] = 10 + labels
    return encoded_split(ids, labels, (length,))


def two_bucket_task(n: int, seed: int = 0) -> EncodedSplit:
    """Half the rows 8 tokens long, half 16: two batch shapes."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    ids = rng.integers(20, 60, size=(n, 16))
    ids[: n // 2, 8:] = 0
    ids[:, 0] = 10 + labels
    return encoded_split(ids, labels, (8, 16))


def leaves_equal(a, b) -> bool:
    flat_a, tree_a = jax.tree_util.tree_flatten(a)
    flat_b, tree_b = jax.tree_util.tree_flatten(b)
    return tree_a == tree_b and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(flat_a, flat_b))


# --- end to end --------------------------------------------------------------------------------


def save_tiny_model(folder: Path, minilm_folder: str) -> Path:
    """A tiny_config() BERT with random weights and MiniLM's tokenizer, saved in ``folder``."""
    config = tiny_config()
    save_pretrained(init_params(config, jax.random.key(0)), config, folder)
    for name in TOKENIZER_FILES:
        shutil.copy(Path(minilm_folder) / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def tiny_model_folder(tmp_path_factory, minilm_folder) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny-bert"), minilm_folder)


@pytest.fixture(scope="module")
def tiny_data_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-data")
    with open(folder / "SHC_Valid.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["Text", "Label"])
        for label, subjects in TOPICS.items():
            writer.writerows((f"{subject} {event}", label) for subject in subjects for event in EVENTS)
    return folder


def _logits(folder: Path, input_ids: np.ndarray) -> np.ndarray:
    params, config = from_pretrained(folder)
    mask = (input_ids != 0).astype(np.int32)
    return np.asarray(BertForSequenceClassification(config).apply({"params": params}, input_ids, mask))


@pytest.mark.slow  # trains through the pipeline or the scripts
def test_train_and_evaluate_end_to_end(tmp_path, tiny_model_folder, tiny_data_dir, repo_script):
    config = ExperimentConfig(
        student=TrainConfig(epochs=1, batch_size=8, optimizer=OptimizerConfig(learning_rate=1e-3),
                            pruning=PruningConfig(sparsity=0.5), distillation=DistillationConfig()),
        teacher=TrainConfig(epochs=1, batch_size=8, optimizer=OptimizerConfig(learning_rate=1e-3)),
        model=str(tiny_model_folder),
        dataset="mahanews",
        data_dir=str(tiny_data_dir),
        max_length=32,
        output_dir=str(tmp_path / "run"),
        teacher_cache=str(tmp_path / "teachers"),
        speed_repeats=2,
    )
    returned = train_and_evaluate(config, log=lambda message: None)

    written = json.loads((tmp_path / "run" / "results.json").read_text(encoding="utf-8"))
    assert written == returned.to_json() and RunResults.from_json(written).to_json() == written
    assert written["config"]["student"]["pruning"]["sparsity"] == 0.5 and written["config"]["student"]["distillation"]
    results, compaction, timing = returned, returned.compaction, returned.timing
    assert abs(compaction.encoder_sparsity - 0.5) < 0.1
    assert 0 < compaction.params_nonzero < compaction.params_before
    scores = results.metrics.eval
    for value in (scores.teacher.accuracy, scores.student.accuracy, scores.student.macro_f1):
        assert 0.0 <= value <= 1.0
    assert results.metrics.test is None and results.data["split_sizes"] == {"train": 18, "eval": 6}
    assert results.training.steps >= 3 and math.isfinite(results.training.final_loss)  # 18 examples, batch 8
    # Each part is timed inside the whole run; no fine-tuning was asked, so it has no time.
    parts = (timing.train_seconds, timing.teacher_logits_seconds)
    assert all(math.isfinite(seconds) and seconds >= 0 for seconds in parts)
    assert sum(parts) < timing.run_seconds and timing.finetune_seconds is timing.transfer_logits_seconds is None
    emissions = results.emissions
    for value in (emissions.kg_co2, emissions.energy_kwh):  # None only when CodeCarbon failed, with the reason
        assert value is None and emissions.error or value >= 0
    assert compaction.params_after < compaction.params_before
    inference = timing.inference  # the speedup is the ratio of the two medians it timed
    assert inference["speedup"] == pytest.approx(inference["dense_median_s"] / inference["compacted_median_s"])
    assert inference["repeats"] == 2
    assert (tmp_path / "teachers").is_dir()

    # The compacted model is smaller and computes what the pruned model computes.
    compacted, pruned = Path(results.compacted_dir), Path(results.pruned_dir)
    compact_config = BertConfig.load(compacted)
    assert not compact_config.is_uniform
    assert compact_config.label_names == ("Business", "Politics", "Sports")
    tokenizer = load_tokenizer(compacted)
    texts = ["क्रिकेट संघाने नवा विक्रम केला", "बँकेने आज मोठी घोषणा केली"]
    input_ids = tokenizer(texts, padding="max_length", truncation=True, max_length=16, return_tensors="np")["input_ids"]
    np.testing.assert_allclose(_logits(compacted, input_ids), _logits(pruned, input_ids), atol=1e-5)

    # Both export to ONNX, and ONNX Runtime computes their logits (the script checks, within 1e-4).
    export = repo_script("experiments/export_onnx.py")
    for folder in (pruned, compacted):
        assert export.main(["--model", str(folder), "--output", str(tmp_path / "onnx" / folder.name / "model.onnx"),
                            "--check-file", str(tiny_data_dir / "SHC_Valid.csv"), "--max-length", "32"]) == 0

    # benchmarks/saved_models.py re-times the finished run: compacted vs its pruned model.
    saved_models = repo_script("benchmarks/saved_models.py")
    timed = saved_models.main([str(tmp_path / "run"), str(tmp_path / "not-a-run"), "--batch-size", "2",
                               "--length", "16", "--repeats", "2", "--out", str(tmp_path / "bench")])
    (row,) = timed["rows"]
    assert row["compacted_params"] == compaction.params_after < row["dense_params"]
    assert row["speedup"] == pytest.approx(row["dense_median_s"] / row["compacted_median_s"])
    assert timed["skipped"] == [str(tmp_path / "not-a-run")]
    assert len(list((tmp_path / "bench").glob("saved_models_cpu_*.md"))) == 1
    with pytest.raises(JaxpruneError, match="has a compacted/ folder"):
        saved_models.main([str(tmp_path / "not-a-run")])

    # A finished run is not redone, and not overwritten.
    assert train_and_evaluate(dataclass_replace(config, resume=True), log=lambda m: None).to_json() == written
    with pytest.raises(JaxpruneError, match="already holds a finished run"):
        train_and_evaluate(config, log=lambda message: None)
    # --resume with other settings does not pass the old run off as the new one.
    other = dataclass_replace(config, resume=True, speed_repeats=3,
                              student=config.student.replace(pruning=PruningConfig(sparsity=0.75)))
    with pytest.raises(JaxpruneError, match=r"other settings \(student.pruning.sparsity: 0.5 -> 0.75\)"):
        train_and_evaluate(other, log=lambda message: None)


def dataclass_replace(config, **changes):
    import dataclasses

    return dataclasses.replace(config, **changes)


# --- learning ------------------------------------------------------------------------------------


@pytest.mark.slow  # training runs (fit)
def test_fit_loss_decreases_on_a_learnable_task():
    model_config = tiny_config(vocab_size=64, dropout=0.0)
    params = init_params(model_config, jax.random.key(1))
    train = keyword_task(32)
    config = TrainConfig(epochs=8, batch_size=8, optimizer=OptimizerConfig(learning_rate=3e-3, warmup_fraction=0.0))
    result = fit_lib.fit(params, BertClassification(model_config), config, train)

    losses = np.array([row["loss"] for row in result.history])
    assert len(losses) == 32 == result.total_steps
    assert np.all(np.isfinite(losses))
    assert losses[-4:].mean() < 0.5 * losses[:4].mean()
    assert np.mean([row["accuracy"] for row in result.history[-4:]]) > 0.9


# --- losses --------------------------------------------------------------------------------------


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_distillation_loss_matches_the_formula():
    student = np.array([[1.0, -0.5, 2.0], [0.3, 0.2, -1.0]], np.float32)
    teacher = np.array([[2.0, 0.0, -1.0], [-0.4, 1.5, 0.5]], np.float32)
    temperature = 2.5
    p_teacher = _softmax(teacher.astype(np.float64) / temperature)
    p_student = _softmax(student.astype(np.float64) / temperature)
    kl = np.sum(p_teacher * np.log(p_teacher / p_student), axis=-1)

    got = distillation_loss(jnp.asarray(student), jnp.asarray(teacher), temperature)
    np.testing.assert_allclose(float(got), temperature**2 * kl.mean(), rtol=1e-5)
    weighted = distillation_loss(jnp.asarray(student), jnp.asarray(teacher), temperature, jnp.array([0.0, 1.0]))
    np.testing.assert_allclose(float(weighted), temperature**2 * kl[1], rtol=1e-5)
    assert float(distillation_loss(jnp.asarray(teacher), jnp.asarray(teacher), temperature)) == pytest.approx(0, abs=1e-6)
    assert got.dtype == jnp.float32
    # bfloat16 logits are upcast: the loss stays float32.
    assert distillation_loss(jnp.asarray(student, jnp.bfloat16), jnp.asarray(teacher), temperature).dtype == jnp.float32


def test_cross_entropy_ignores_weight_zero_rows():
    logits = np.array([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [5.0, -5.0, 0.0]], np.float32)
    labels = np.array([0, 2, 1])
    by_hand = -np.log(_softmax(logits.astype(np.float64))[np.arange(3), labels])
    weight = jnp.array([1.0, 1.0, 0.0])

    got = cross_entropy(jnp.asarray(logits), jnp.asarray(labels), weight)
    np.testing.assert_allclose(float(got), by_hand[:2].mean(), rtol=1e-6)
    np.testing.assert_allclose(float(cross_entropy(jnp.asarray(logits), jnp.asarray(labels))), by_hand.mean(), rtol=1e-6)
    changed = logits.copy()
    changed[2] = [-9.0, 9.0, 0.0]
    assert float(cross_entropy(jnp.asarray(changed), jnp.asarray([0, 2, 0]), weight)) == float(got)


# --- checkpoints and resume ----------------------------------------------------------------------


def _resume_setup():
    model_config = tiny_config(vocab_size=64)
    params = init_params(model_config, jax.random.key(2))
    train = keyword_task(24, seed=3)  # 3 batches of 8 per epoch
    teacher_logits = np.random.default_rng(4).normal(size=(24, 3)).astype(np.float32)
    config = TrainConfig(epochs=2, batch_size=8, optimizer=OptimizerConfig(learning_rate=1e-3),
                         pruning=PruningConfig(sparsity=0.5, warmup_fraction=0.0, cooldown_fraction=0.0),
                         distillation=DistillationConfig())
    return params, BertClassification(model_config), config, train, teacher_logits


@pytest.mark.slow  # training runs (fit)
def test_resume_after_a_stop_equals_an_uninterrupted_run(tmp_path):
    params, task, config, train, teacher_logits = _resume_setup()
    common = dict(teacher_logits=teacher_logits, fingerprint="run-a")
    full = fit_lib.fit(params, task, config, train, teacher_logits=teacher_logits)

    folder = str(tmp_path / "checkpoints")
    first = fit_lib.fit(params, task, config, train, checkpoint_dir=folder, stop_after_steps=4, **common)
    assert int(first.state.step) == 4 and len(first.history) == 4  # stopped mid-epoch 2
    second = fit_lib.fit(params, task, config, train, checkpoint_dir=folder, resume=True, **common)

    assert second.resumed_from_step == 4 and int(second.state.step) == full.total_steps == 6
    assert leaves_equal(second.state.params, full.state.params)
    assert leaves_equal(second.state.scores, full.state.scores)
    assert leaves_equal(second.state.opt_state, full.state.opt_state)
    assert first.history + second.history == full.history
    # Pruning and distillation were really on.
    assert full.history[-1]["keep_fraction"] < 0.6 and full.history[-1]["kd"] > 0
    assert not leaves_equal(full.state.params, params)


@pytest.mark.slow  # a training run (fit)
def test_resume_refuses_other_settings_and_a_used_folder(tmp_path):
    params, task, config, train, teacher_logits = _resume_setup()
    folder = str(tmp_path / "checkpoints")
    fit_lib.fit(params, task, config, train, teacher_logits=teacher_logits, checkpoint_dir=folder,
        fingerprint="run-a", stop_after_steps=0)  # a checkpoint of the initial state, nothing compiled

    with pytest.raises(JaxpruneError, match="other settings"):
        fit_lib.fit(params, task, config, train, teacher_logits=teacher_logits, checkpoint_dir=folder,
            fingerprint="run-b", resume=True)
    with pytest.raises(JaxpruneError, match="`resume=True`"):
        fit_lib.fit(params, task, config, train, teacher_logits=teacher_logits, checkpoint_dir=folder,
            fingerprint="run-a")


def test_experiment_fingerprint_ignores_where_and_whether_it_resumes():
    base = ExperimentConfig(output_dir="a")
    assert base.fingerprint() == dataclass_replace(base, output_dir="b", resume=True).fingerprint()
    assert base.fingerprint() != dataclass_replace(base, student=TrainConfig(pruning=PruningConfig(sparsity=0.5))).fingerprint()


# --- schedule and compilation --------------------------------------------------------------------


@pytest.mark.slow  # training runs (fit)
def test_keep_fraction_follows_the_schedule_and_the_step_compiles_once_per_shape(monkeypatch):
    traces = []
    real_train_step = train_lib.train_step

    def counting_train_step(state, batch, *args, **kwargs):
        traces.append(batch["input_ids"].shape)  # runs only while jit traces
        return real_train_step(state, batch, *args, **kwargs)

    monkeypatch.setattr(train_lib, "train_step", counting_train_step)
    step_fns = []
    real_make_train_step = fit_lib.make_train_step

    def keeping_make_train_step(*args, **kwargs):
        step_fns.append(real_make_train_step(*args, **kwargs))
        return step_fns[-1]

    monkeypatch.setattr(fit_lib, "make_train_step", keeping_make_train_step)
    model_config = tiny_config(vocab_size=64)
    train = two_bucket_task(32)  # 16 rows of each length: 2 batches of 8 per bucket
    config = TrainConfig(epochs=3, batch_size=8,
                         pruning=PruningConfig(sparsity=0.75, warmup_fraction=0.25, cooldown_fraction=0.25))
    params = init_params(model_config, jax.random.key(0))
    result = fit_lib.fit(params, BertClassification(model_config), config, train)

    total = result.total_steps
    assert total == 12
    assert sorted(traces) == [(8, 8), (8, 16)]  # one trace per batch shape, none per step
    if hasattr(step_fns[0], "_cache_size"):  # jax's own count of compiled versions
        assert step_fns[0]._cache_size() == 2
    keep = np.array([row["keep_fraction"] for row in result.history])
    t_i, t_f = int(0.25 * total), int(0.25 * total)
    progress = np.clip((np.arange(total) - t_i) / (total - t_i - t_f), 0, 1)
    np.testing.assert_allclose(keep, 0.25 + 0.75 * (1 - progress) ** 3, rtol=1e-6)
    assert keep[0] == 1.0 and keep[-1] == pytest.approx(0.25) and len(np.unique(keep)) > 4


def _full_batch(train: EncodedSplit) -> dict:
    from jaxprune.data.batching import make_batch

    batch = make_batch(train, np.arange(len(train)), len(train))
    return {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids", "labels", "weight")}


# --- precision -----------------------------------------------------------------------------------


@pytest.mark.slow  # fast-lane budget: bf16 stays covered there by test_dtypes
def test_bfloat16_step_keeps_float32_state():
    model_config = tiny_config(vocab_size=64)
    train = keyword_task(8)
    config = TrainConfig(epochs=4, batch_size=8, compute_dtype="bfloat16",
                         pruning=PruningConfig(sparsity=0.5, warmup_fraction=0.0, cooldown_fraction=0.0),
                         distillation=DistillationConfig())
    params = init_params(model_config, jax.random.key(0))
    task = BertClassification(model_config)
    pruner = train_lib.make_pruner(params, task, config, 4)
    tx = train_lib.make_optimizer(config, pruner, 4)
    state = train_lib.create_train_state(params, pruner, tx, config.seed)
    step_fn = train_lib.make_train_step(task.loss_fn(config), pruner, tx)
    batch = dict(_full_batch(train), teacher_logits=jnp.zeros((8, 3), jnp.bfloat16))
    for _ in range(2):  # the first step's learning rate is 0 (warm-up)
        state, metrics = step_fn(state, batch)

    assert int(state.step) == 2
    for tree in (state.params, state.scores, state.opt_state):
        floats = [leaf.dtype for leaf in jax.tree_util.tree_leaves(tree) if jnp.issubdtype(leaf.dtype, jnp.floating)]
        assert floats and set(floats) == {jnp.dtype(jnp.float32)}
    for name, value in metrics.items():
        assert value.dtype == jnp.float32, name
        assert np.isfinite(float(value)), name
    assert not leaves_equal(state.params, params)


@pytest.mark.slow  # trains through the pipeline or the scripts
def test_teacher_script_then_a_run_reuse_one_mean_pooled_teacher(tmp_path, tiny_model_folder, tiny_data_dir,
                                                                  repo_script, capsys):
    """experiments/teacher.py fine-tunes and evaluates the teacher alone; run.py with the same
    settings reuses it, and the exported models keep the mean pooling."""
    # No fine-tuning after compaction (the experiment preset's default): compacted/ must compute what pruned/ does.
    flags = ["--model", str(tiny_model_folder), "--data-dir", str(tiny_data_dir), "--teacher-epochs", "1",
             "--epochs", "1", "--batch-size", "8", "--max-length", "32", "--pooling", "mean",
             "--teacher-cache", str(tmp_path / "teachers"), "--finetune-epochs", "0"]
    assert repo_script("experiments/teacher.py").main([*flags, "--output-dir", str(tmp_path / "t")]) == 0
    baseline = json.loads((tmp_path / "t" / "teacher.json").read_text(encoding="utf-8"))
    assert baseline["pooling"] == "mean" and baseline["teacher"]["reused"] is False
    assert baseline["chance_accuracy"] == pytest.approx(1 / 3) and 0 <= baseline["accuracy"] <= 1
    assert baseline["majority_class_accuracy"] == pytest.approx(2 / 6)  # 2 of each topic in the 6 eval texts
    assert baseline["data"]["overlap"] == {"eval": 0} and baseline["data"]["split_sizes"] == {"train": 18, "eval": 6}
    assert "accuracy" in capsys.readouterr().out

    assert repo_script("experiments/run.py").main([*flags, "--sparsity", "0.5", "--output-dir",
                                                   str(tmp_path / "run"), "--export-onnx"]) == 0
    assert "onnx: " + str(tmp_path / "run" / "onnx" / "model.onnx") in capsys.readouterr().out
    assert (tmp_path / "run" / "onnx" / "tokenizer.json").is_file()
    results = json.loads((tmp_path / "run" / "results.json").read_text(encoding="utf-8"))
    assert results["teacher"]["reused"] is True and results["pooling"] == "mean"
    assert results["metrics"]["eval"]["teacher"]["accuracy"] == baseline["accuracy"]
    ids = np.array([[10, 25, 31, 0, 0, 0, 0, 0], [12, 40, 22, 51, 33, 0, 0, 0]])
    for name in ("pruned", "compacted"):
        _, config = from_pretrained(tmp_path / "run" / name)
        assert config.classifier_pooling == "mean"
    np.testing.assert_allclose(_logits(tmp_path / "run" / "compacted", ids), _logits(tmp_path / "run" / "pruned", ids),
                               atol=1e-5)


@pytest.mark.slow  # trains through the pipeline or the scripts
def test_run_with_a_pruned_vocabulary_exports_it(tmp_path, tiny_model_folder, tiny_data_dir, repo_script, capsys):
    """run.py --prune-vocab: the vocabulary comes from the training split (+ --vocab-corpus)
    before the teacher is fine-tuned; results.json says what it did; pruned/ loads in
    transformers, compacted/ in jaxprune, both with the small vocabulary and the same outputs."""
    torch = pytest.importorskip("torch")
    from transformers import AutoTokenizer, BertForSequenceClassification as TorchBert

    extra = tmp_path / "unlabelled.txt"
    extra.write_text("zebra crossing\n\nquantum\n", encoding="utf-8")
    flags = ["--model", str(tiny_model_folder), "--data-dir", str(tiny_data_dir), "--teacher-epochs", "1",
             "--epochs", "1", "--batch-size", "8", "--max-length", "32", "--sparsity", "0.5", "--distill",
             "--teacher-cache", str(tmp_path / "teachers"), "--output-dir", str(tmp_path / "run"),
             "--prune-vocab", "--vocab-corpus", str(extra), "--finetune-epochs", "0"]  # compacted/ == pruned/
    assert repo_script("experiments/run.py").main(flags) == 0
    out = capsys.readouterr().out
    results = RunResults.read(tmp_path / "run" / "results.json")
    vocabulary = results.vocabulary
    assert vocabulary is not None and results.config.prune_vocab is True
    assert vocabulary["corpus_texts"] == results.data["split_sizes"]["train"] + 2  # training split + 2 lines
    assert vocabulary["kept_pieces"] < 30522
    hidden = BertConfig.load(tiny_model_folder).hidden_size
    assert (results.params_original - results.compaction.params_before
            == (30522 - vocabulary["kept_pieces"]) * hidden)
    assert results.compaction.params_before > results.compaction.params_after
    fallback = vocabulary["eval_fallback"]["texts_changed_fraction"]
    assert 0.0 <= fallback <= 1.0 and "vocabulary" in out and "pieces kept" in out
    teacher_folder = Path(results.teacher["source"])
    assert BertConfig.load(teacher_folder).vocab_size == vocabulary["kept_pieces"]  # fine-tuned small

    texts = ["क्रिकेट संघाने नवा विक्रम केला", "zebra quantum बँकेने"]
    for name in ("pruned", "compacted"):
        tokenizer = AutoTokenizer.from_pretrained(tmp_path / "run" / name)
        assert len(tokenizer) == vocabulary["kept_pieces"] and "zebra" in tokenizer.get_vocab()
        assert BertConfig.load(tmp_path / "run" / name).vocab_size == vocabulary["kept_pieces"]
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "run" / "pruned")
    batch = tokenizer(texts, padding="max_length", truncation=True, max_length=16, return_tensors="np")
    model = TorchBert.from_pretrained(tmp_path / "run" / "pruned").eval()
    with torch.no_grad():
        torch_logits = model(input_ids=torch.from_numpy(batch["input_ids"]),
                             attention_mask=torch.from_numpy(batch["attention_mask"])).logits.numpy()
    np.testing.assert_allclose(_logits(tmp_path / "run" / "pruned", batch["input_ids"]), torch_logits, atol=1e-4)
    np.testing.assert_allclose(_logits(tmp_path / "run" / "compacted", batch["input_ids"]), torch_logits, atol=1e-4)


@pytest.mark.slow  # trains through the pipeline or the scripts
def test_a_ready_classifier_keeps_its_head_through_vocabulary_pruning(tmp_path, minilm_folder, tiny_data_dir):
    """The paper's path (a model that is already a classifier, not fine-tuned again) with
    --prune-vocab: the pruned folder keeps the trained head and its labels, and on the
    training texts the pruned teacher gives the original's logits."""
    labels = ("Business", "Politics", "Sports")
    classifier = tmp_path / "classifier"
    config = tiny_config(labels=labels)
    save_pretrained(init_params(config, jax.random.key(5)), config, classifier)
    for name in TOKENIZER_FILES:
        shutil.copy(Path(minilm_folder) / name, classifier / name)
    experiment = ExperimentConfig(
        student=TrainConfig(epochs=1, batch_size=8, pruning=PruningConfig(sparsity=0.5)),
        model=str(classifier), dataset="mahanews", data_dir=str(tiny_data_dir), max_length=32,
        output_dir=str(tmp_path / "run"), teacher_cache=str(tmp_path / "teachers"), speed_repeats=2,
        prune_vocab=True,
    )
    results = train_and_evaluate(experiment, log=lambda message: None)
    assert results.teacher["fine_tuned"] is False
    pruned_folder = Path(results.teacher["source"])
    assert pruned_folder.parent == tmp_path / "teachers" and pruned_folder.name.startswith("vocab-")
    assert BertConfig.load(pruned_folder).label_names == labels
    assert results.vocabulary["kept_pieces"] == BertConfig.load(pruned_folder).vocab_size < 30522

    texts = [f"{subject} {event}" for subjects in TOPICS.values() for subject in subjects for event in EVENTS]
    logits = {}
    for name, folder in (("original", classifier), ("pruned", pruned_folder)):
        batch = load_tokenizer(folder)(texts, padding="max_length", truncation=True, max_length=32,
                                       return_tensors="np")
        params, model_config = from_pretrained(folder)
        logits[name] = np.asarray(BertForSequenceClassification(model_config).apply(
            {"params": params}, batch["input_ids"], batch["attention_mask"]))
    np.testing.assert_allclose(logits["pruned"], logits["original"], atol=1e-6, rtol=0)
