"""CoFi-style layer distillation: hidden states, the loss, the maps in the train state, label_weight."""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxprune.training.loop as fit_lib
from jaxprune.data.batching import make_batch
from jaxprune.errors import JaxpruneError
from jaxprune.mask import Pruner
from jaxprune.models.bert import BertForSequenceClassification, init_params
from jaxprune.training import step as train_lib
from jaxprune.training.bert import BertClassification
from jaxprune.training.config import DistillationConfig, TrainConfig
from jaxprune.training.losses import distilled_layers, init_layer_maps, layer_distillation_loss
from test_pipeline import _resume_setup, keyword_task, leaves_equal, tiny_config

LAYERS = DistillationConfig(layer_weight=2.0)


def _layer_setup():
    """``_resume_setup`` (2 epochs of 3 steps, pruning, KD) with layer distillation from another teacher."""
    params, task, config, train, teacher_logits = _resume_setup()
    teacher = (init_params(task.config, jax.random.key(7)), task)
    return params, task, config.replace(distillation=LAYERS), train, teacher


def _is_identity(maps) -> bool:
    return all(np.array_equal(m["kernel"], np.eye(m["kernel"].shape[0])) and not np.any(m["bias"])
               for m in maps.values())


# --- the model's hidden states -------------------------------------------------------------------


@pytest.mark.slow  # over the fast lane's budget; the layer loss tests stay in it
def test_hidden_states_come_with_the_same_logits_for_every_layer_of_a_compacted_model():
    config = tiny_config(vocab_size=64).replace(heads_per_layer=(3, 0), intermediate_sizes=(40, 0))
    params = init_params(config, jax.random.key(0))
    model = BertForSequenceClassification(config)
    ids = jnp.asarray(np.random.default_rng(0).integers(1, 64, size=(3, 8)), jnp.int32)
    mask = jnp.ones_like(ids).at[0, 5:].set(0)

    logits = model.apply({"params": params}, ids, mask)
    with_hidden, hidden = model.apply({"params": params}, ids, mask, return_hidden=True)

    assert np.array_equal(logits, with_hidden)
    assert len(hidden) == 2 and all(h.shape == (3, 8, 32) for h in hidden)
    assert not np.array_equal(hidden[0], hidden[1])


# --- the loss ------------------------------------------------------------------------------------


def test_distilled_layers_are_four_evenly_spaced_ending_at_the_last():
    assert distilled_layers(12) == (2, 5, 8, 11)  # the outputs of layers 3, 6, 9, 12
    assert distilled_layers(6) == (0, 2, 3, 5)
    assert distilled_layers(4) == (0, 1, 2, 3)
    assert distilled_layers(2) == (0, 1)


def test_the_layer_loss_is_the_masked_weighted_mse_of_the_mapped_student():
    # One layer, B=3, T=2, H=2. Row 0: both tokens real; row 1: the second token is padding;
    # row 2 has weight 0.
    teacher = np.zeros((3, 2, 2), np.float32)
    student = teacher.copy()
    mask = np.array([[1, 1], [1, 0], [1, 1]])
    weight = np.array([1.0, 1.0, 0.0], np.float32)
    maps = init_layer_maps(1, 2)

    def loss(s, m=maps):
        return float(layer_distillation_loss([jnp.asarray(s)], [jnp.asarray(teacher)], m, jnp.asarray(mask),
                                             jnp.asarray(weight)))

    assert loss(student) == 0.0
    student[1, 1] = [5.0, 5.0]  # padding token
    student[2, 0] = [5.0, 5.0]  # weight-0 row
    assert loss(student) == 0.0
    student[0, 1] = [1.0, 3.0]  # a real token: mean over H of (1, 9) = 5, over 3 counted tokens
    assert loss(student) == pytest.approx(5.0 / 3)
    # The map applies before the error: a kernel of 2I doubles the student's states (mean of 4, 36).
    doubled = {"layer_0": {"kernel": 2 * jnp.eye(2), "bias": jnp.zeros(2)}}
    assert loss(student, doubled) == pytest.approx(20.0 / 3)


def test_the_layer_loss_averages_the_matched_layers_only():
    rng = np.random.default_rng(0)
    teacher = [jnp.asarray(rng.normal(size=(2, 3, 4)), jnp.float32) for _ in range(6)]
    student = [t + 1.0 for t in teacher]  # every layer off by 1 everywhere: each layer's loss is 1
    student[1] = teacher[1] + 10.0  # layer 1 is not among distilled_layers(6) = (0, 2, 3, 5)
    maps = init_layer_maps(6, 4)
    assert set(maps) == {"layer_0", "layer_2", "layer_3", "layer_5"}
    got = layer_distillation_loss(student, teacher, maps, jnp.ones((2, 3)))
    assert got.dtype == jnp.float32 and float(got) == pytest.approx(1.0)
    with pytest.raises(JaxpruneError, match="equal depth"):
        layer_distillation_loss(student[:5], teacher, maps, jnp.ones((2, 3)))


def test_gradients_reach_the_maps():
    rng = np.random.default_rng(1)
    teacher = [jnp.asarray(rng.normal(size=(2, 3, 4)), jnp.float32) for _ in range(2)]
    student = [jnp.asarray(rng.normal(size=(2, 3, 4)), jnp.float32) for _ in range(2)]
    grads = jax.grad(lambda m: layer_distillation_loss(student, teacher, m, jnp.ones((2, 3))))(init_layer_maps(2, 4))
    assert all(np.all(np.abs(np.asarray(leaf)).sum() > 0) for leaf in jax.tree_util.tree_leaves(grads))


# --- the maps in the train state -----------------------------------------------------------------


def test_the_maps_start_as_identity_in_the_state_and_are_empty_when_off():
    params, task, config, train, _ = _layer_setup()
    pruner = train_lib.make_pruner(params, task, config, 6)
    tx = train_lib.make_optimizer(config, pruner, 6)
    state = train_lib.create_train_state(params, pruner, tx, config.seed, task.layer_maps(config))
    assert set(state.maps) == {"layer_0", "layer_1"} and _is_identity(state.maps)
    assert train_lib.create_train_state(params, pruner, tx, config.seed).maps == {}

    plain = config.replace(distillation=DistillationConfig())
    assert task.layer_maps(plain) == {}


@pytest.mark.slow  # training runs (fit)
def test_a_short_fit_moves_the_maps_and_returns_only_the_model_params(monkeypatch):
    params, task, config, train, teacher = _layer_setup()
    traces = []
    real_train_step = train_lib.train_step

    def counting_train_step(state, batch, *args, **kwargs):
        traces.append(batch["input_ids"].shape)  # runs only while jit traces
        return real_train_step(state, batch, *args, **kwargs)

    monkeypatch.setattr(train_lib, "train_step", counting_train_step)
    result = fit_lib.fit(params, task, config, train, teacher=teacher)

    assert len(result.history) == 6 and traces == [(8, 8)]  # six steps, one trace
    assert all(row["layer"] > 0 for row in result.history)
    assert result.history[-1]["layer"] < result.history[0]["layer"]
    assert set(result.state.maps) == {"layer_0", "layer_1"} and not _is_identity(result.state.maps)
    assert jax.tree_util.tree_structure(result.params) == jax.tree_util.tree_structure(params)
    assert jax.tree_util.tree_map(np.shape, result.params) == jax.tree_util.tree_map(np.shape, params)
    loss = [LAYERS.alpha_ce * r["ce"] + LAYERS.alpha_kd * r["kd"] + LAYERS.layer_weight * r["layer"]
            for r in result.history]
    np.testing.assert_allclose([r["loss"] for r in result.history], loss, rtol=1e-6)


@pytest.mark.slow  # training runs (fit)
def test_a_compacted_student_distils_from_the_full_teacher():
    params, task, config, train, teacher = _layer_setup()
    student_config = task.config.replace(heads_per_layer=(3, 1), intermediate_sizes=(40, 8))
    student, student_task = init_params(student_config, jax.random.key(3)), BertClassification(student_config)
    config = config.replace(epochs=1, pruning=None)
    result = fit_lib.fit(student, student_task, config, train, teacher=teacher)
    assert len(result.history) == 3 and result.history[0]["layer"] > 0
    with pytest.raises(JaxpruneError, match="pass teacher="):
        fit_lib.fit(student, student_task, config, train, teacher_logits=np.zeros((len(train), 3), np.float32))
    shallow = BertClassification(task.config.replace(num_hidden_layers=1))
    with pytest.raises(JaxpruneError, match="teacher has 1 layers of 32, the student 2 of 32"):
        fit_lib.fit(student, student_task, config, train, teacher=(teacher[0], shallow))


# --- label_weight --------------------------------------------------------------------------------


@pytest.mark.slow  # over the fast lane's budget; the layer loss tests stay in it
def test_rows_without_a_label_count_in_distillation_but_not_in_cross_entropy():
    model_config = tiny_config(vocab_size=64, dropout=0.0)
    params = init_params(model_config, jax.random.key(0))
    train = dataclasses.replace(keyword_task(4), labelled=np.array([True, False, True, False]))
    batch = {k: jnp.asarray(v) for k, v in make_batch(train, np.arange(4), 4).items() if k != "index"}
    assert batch["label_weight"].tolist() == [1.0, 0.0, 1.0, 0.0] and batch["weight"].tolist() == [1.0] * 4
    batch["teacher_logits"] = jnp.asarray(np.random.default_rng(0).normal(size=(4, 3)), jnp.float32)
    config = TrainConfig(batch_size=4, distillation=DistillationConfig())
    pruner = Pruner.from_rules(params, [])
    tx = train_lib.make_optimizer(config, pruner, 4)
    step_fn = train_lib.make_train_step(BertClassification(model_config).loss_fn(config), pruner, tx)

    logits = np.asarray(BertForSequenceClassification(model_config).apply(
        {"params": params}, batch["input_ids"], batch["attention_mask"], batch["token_type_ids"]), np.float64)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    labels = np.asarray(batch["labels"])
    by_hand = -log_probs[[0, 2], labels[[0, 2]]].mean()
    correct = (logits.argmax(-1) == labels)[[0, 2]].mean()

    _, metrics = step_fn(train_lib.create_train_state(params, pruner, tx, config.seed), batch)
    assert float(metrics["ce"]) == pytest.approx(by_hand, rel=1e-5)
    assert float(metrics["accuracy"]) == pytest.approx(correct)
    # The unlabelled rows' placeholder labels change nothing; their teacher logits do.
    relabelled = dict(batch, labels=batch["labels"].at[1].set(2).at[3].set(0))
    _, again = step_fn(train_lib.create_train_state(params, pruner, tx, config.seed), relabelled)
    assert float(again["ce"]) == float(metrics["ce"])
    retaught = dict(batch, teacher_logits=batch["teacher_logits"].at[1].set(9.0))
    _, taught = step_fn(train_lib.create_train_state(params, pruner, tx, config.seed), retaught)
    assert float(taught["kd"]) != float(metrics["kd"])


# --- checkpoints ---------------------------------------------------------------------------------


@pytest.mark.slow  # training runs (fit)
def test_a_checkpoint_of_the_previous_state_format_is_refused_in_one_line(tmp_path):
    params, task, config, train, teacher = _layer_setup()
    folder = tmp_path / "checkpoints"
    fit_lib.fit(params, task, config, train, teacher=teacher, checkpoint_dir=str(folder),
                fingerprint="run-a", stop_after_steps=0)
    meta_file = folder / "0" / "meta" / "metadata"
    meta = json.loads(meta_file.read_text())
    meta_file.write_text(json.dumps(dict(meta, state_format=meta["state_format"] - 1)))

    with pytest.raises(JaxpruneError) as caught:
        fit_lib.fit(params, task, config, train, teacher=teacher, checkpoint_dir=str(folder),
                    fingerprint="run-a", resume=True)
    message = str(caught.value)
    assert "\n" not in message
    assert f"(train state format {meta['state_format'] - 1}, today's is {meta['state_format']}) and cannot be " \
           "resumed" in message


@pytest.mark.slow  # training runs (fit)
def test_resume_with_layer_distillation_equals_an_uninterrupted_run(tmp_path):
    params, task, config, train, teacher = _layer_setup()
    full = fit_lib.fit(params, task, config, train, teacher=teacher)

    folder = str(tmp_path / "checkpoints")
    common = dict(teacher=teacher, checkpoint_dir=folder, fingerprint="run-a")
    first = fit_lib.fit(params, task, config, train, stop_after_steps=4, **common)
    assert int(first.state.step) == 4
    second = fit_lib.fit(params, task, config, train, resume=True, **common)

    assert second.resumed_from_step == 4 and int(second.state.step) == 6
    assert leaves_equal(second.state, full.state)
    assert not _is_identity(full.state.maps)
    assert first.history + second.history == full.history
