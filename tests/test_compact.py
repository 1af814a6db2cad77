"""Compaction must give a smaller dense BERT whose logits equal the pruned model's."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxprune.models.compaction as compact_lib
from jaxprune.models.activations import activation, host_activation
from jaxprune.models.bert import BertForSequenceClassification, count_params, init_params, param_shapes
from jaxprune.models.config import BertConfig
from jaxprune.errors import JaxpruneError

HIDDEN, HEADS, FFN, LAYERS = 64, 4, 128, 3
HEAD_DIM = HIDDEN // HEADS
# Parameters owned by one head (Q, K, V columns and biases, output rows) and by one neuron.
HEAD_PARAMS = 3 * (HIDDEN * HEAD_DIM + HEAD_DIM) + HEAD_DIM * HIDDEN
NEURON_PARAMS = HIDDEN + 1 + HIDDEN
TOLERANCE = 1e-5


def _config(hidden_act: str = "gelu", pooling: str = "cls") -> BertConfig:
    return BertConfig(
        classifier_pooling=pooling,
        vocab_size=100,
        hidden_size=HIDDEN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        intermediate_size=FFN,
        hidden_act=hidden_act,
        max_position_embeddings=32,
        label_names=tuple(f"L{i}" for i in range(5)),
    )


def _random_params(config: BertConfig, seed: int = 0) -> dict:
    """Params with every leaf random (init gives zero biases, which would hide folding bugs).

    Kernels have std 1/sqrt(fan_in) so the logits are O(1) and a missed fold shows.
    """
    rng = np.random.default_rng(seed)
    shapes = param_shapes(config)

    def draw(path, leaf):
        name = path[-1].key
        if name == "kernel":
            return rng.normal(0, 1 / np.sqrt(leaf.shape[0]), leaf.shape).astype(np.float32)
        if name == "scale":
            return (1 + 0.2 * rng.normal(size=leaf.shape)).astype(np.float32)
        if name == "bias":
            return (0.5 * rng.normal(size=leaf.shape)).astype(np.float32)
        return rng.normal(0, 1, leaf.shape).astype(np.float32)  # embeddings

    return jax.tree_util.tree_map_with_path(draw, shapes)


@functools.lru_cache(maxsize=None)
def _forward(config: BertConfig):
    model = BertForSequenceClassification(config, dtype=jnp.float32)
    return jax.jit(lambda params, ids, mask, types: model.apply(
        {"params": params}, ids, mask, token_type_ids=types, deterministic=True))


def _batch(vocab: int = 100):
    """A padded batch of mixed lengths (one sequence of length 1)."""
    rng = np.random.default_rng(1)
    lengths = np.array([12, 7, 3, 1])
    mask = (np.arange(12)[None, :] < lengths[:, None]).astype(np.int32)
    ids = rng.integers(1, vocab, size=mask.shape).astype(np.int32) * mask
    types = (rng.integers(0, 2, size=mask.shape) * mask).astype(np.int32)
    return ids, mask, types


def _logits(params, config) -> np.ndarray:
    return np.asarray(_forward(config)(params, *_batch()))


def _mutable(params) -> dict:
    return jax.tree.map(lambda x: np.array(x, copy=True), params)


def _rows(head: int) -> slice:
    return slice(head * HEAD_DIM, (head + 1) * HEAD_DIM)


def _compact_and_check(params, config):
    """Compact, then check exactness, shapes and the parameter count; return the results."""
    new_params, new_config, report = compact_lib.compact(params, config)
    assert jax.tree.structure(new_params) == jax.tree.structure(param_shapes(new_config))
    for got, want in zip(jax.tree.leaves(new_params), jax.tree.leaves(param_shapes(new_config))):
        assert got.shape == want.shape and got.dtype == want.dtype
    removed_heads = sum(config.layer_heads(i) - new_config.layer_heads(i) for i in range(LAYERS))
    removed_neurons = sum(
        config.layer_intermediate(i) - new_config.layer_intermediate(i) for i in range(LAYERS)
    )
    removed = removed_heads * HEAD_PARAMS + removed_neurons * NEURON_PARAMS
    assert report.params_before == count_params(params)
    assert report.params_after == count_params(new_params) == report.params_before - removed
    assert report.encoder_params_before - report.encoder_params_after == removed
    assert report.heads_kept == new_config.heads_per_layer
    assert report.neurons_kept == new_config.intermediate_sizes
    diff = np.max(np.abs(_logits(new_params, new_config) - _logits(params, config)))
    assert diff <= TOLERANCE, f"compacted logits differ by {diff}"
    return new_params, new_config, report


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_dead_heads_and_neurons_are_removed(pooling):
    config = _config(pooling=pooling)
    params = _mutable(_random_params(config))
    rng = np.random.default_rng(2)
    dead_heads = {0: [1, 3], 1: [0], 2: []}
    dead_neurons = {i: rng.choice(FFN, size=size, replace=False) for i, size in enumerate([40, 0, 127])}
    for i in range(LAYERS):
        layer = params["encoder"][f"layer_{i}"]
        for h in dead_heads[i]:
            layer["attention"]["output"]["kernel"][_rows(h)] = 0
        layer["output"]["kernel"][dead_neurons[i]] = 0

    _, new_config, report = _compact_and_check(params, config)
    assert new_config.classifier_pooling == pooling
    assert new_config.heads_per_layer == (2, 3, 4)
    assert new_config.intermediate_sizes == (88, 128, 1)
    assert report.heads_folded == (0, 0, 0) and report.neurons_folded == (0, 0, 0)


def test_zero_value_columns_fold_the_value_bias():
    config = _config()
    params = _mutable(_random_params(config))
    attention = params["encoder"]["layer_1"]["attention"]
    for h in (0, 2):
        attention["value"]["kernel"][:, _rows(h)] = 0
    new_params, new_config, report = _compact_and_check(params, config)
    assert new_config.heads_per_layer == (4, 2, 4)
    assert report.heads_folded == (0, 2, 0)
    old_bias = params["encoder"]["layer_1"]["attention"]["output"]["bias"]
    new_bias = np.asarray(new_params["encoder"]["layer_1"]["attention"]["output"]["bias"])
    assert np.max(np.abs(new_bias - old_bias)) > 1e-2  # the fold is not a no-op here


@pytest.mark.parametrize("hidden_act", ["gelu", "gelu_new", "relu"])
def test_zero_intermediate_columns_fold_the_activation_of_the_bias(hidden_act):
    config = _config(hidden_act)
    params = _mutable(_random_params(config))
    columns = np.random.default_rng(3).choice(FFN, size=50, replace=False)
    params["encoder"]["layer_0"]["intermediate"]["kernel"][:, columns] = 0
    params["encoder"]["layer_2"]["intermediate"]["kernel"][:, columns[:5]] = 0
    _, new_config, report = _compact_and_check(params, config)
    assert new_config.intermediate_sizes == (FFN - 50, FFN, FFN - 5)
    assert report.neurons_folded == (50, 0, 5)


def test_fully_emptied_layers_still_run():
    config = _config()
    params = _mutable(_random_params(config))
    dead = params["encoder"]["layer_0"]  # emptied through zero outputs
    dead["attention"]["output"]["kernel"][:] = 0
    dead["output"]["kernel"][:] = 0
    folded = params["encoder"]["layer_2"]  # emptied through folding into the biases
    folded["attention"]["value"]["kernel"][:] = 0
    folded["intermediate"]["kernel"][:] = 0
    new_params, new_config, _ = _compact_and_check(params, config)
    assert new_config.heads_per_layer == (0, 4, 0)
    assert new_config.intermediate_sizes == (0, FFN, 0)
    for i in (0, 2):
        layer = new_params["encoder"][f"layer_{i}"]
        assert layer["attention"]["query"]["kernel"].shape == (HIDDEN, 0)
        assert layer["attention"]["output"]["kernel"].shape == (0, HIDDEN)
        assert layer["intermediate"]["kernel"].shape == (HIDDEN, 0)


def test_unstructured_zeros_remove_nothing():
    config = _config()
    params = _mutable(_random_params(config))
    rng = np.random.default_rng(4)
    for layer in params["encoder"].values():
        for leaf in jax.tree.leaves(layer):
            if leaf.ndim == 2:
                leaf[rng.random(leaf.shape) < 0.5] = 0
    new_params, new_config, _ = _compact_and_check(params, config)
    assert new_config.heads_per_layer == (HEADS,) * LAYERS
    assert new_config.intermediate_sizes == (FFN,) * LAYERS
    for got, want in zip(jax.tree.leaves(new_params), jax.tree.leaves(params)):
        np.testing.assert_array_equal(np.asarray(got), want)


def test_zero_query_and_key_keep_the_head():
    config = _config()
    params = _mutable(_random_params(config))
    attention = params["encoder"]["layer_0"]["attention"]
    for name in ("query", "key"):
        attention[name]["kernel"][:, _rows(1)] = 0
        attention[name]["bias"][_rows(1)] = 0
    _, new_config, _ = _compact_and_check(params, config)
    assert new_config.heads_per_layer == (HEADS,) * LAYERS


def test_compacting_twice_removes_nothing_more():
    config = _config()
    params = _mutable(_random_params(config))
    params["encoder"]["layer_1"]["attention"]["output"]["kernel"][_rows(2)] = 0
    params["encoder"]["layer_1"]["intermediate"]["kernel"][:, :10] = 0
    params["encoder"]["layer_0"]["attention"]["output"]["kernel"][:] = 0  # zero-size input next time
    params["encoder"]["layer_0"]["output"]["kernel"][:] = 0
    once_params, once_config, _ = compact_lib.compact(params, config)
    twice_params, twice_config, report = compact_lib.compact(once_params, once_config)
    assert once_config.heads_per_layer == (0, 3, 4)
    assert twice_config == once_config
    assert report.params_after == report.params_before
    for got, want in zip(jax.tree.leaves(twice_params), jax.tree.leaves(once_params)):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


@pytest.mark.parametrize("hidden_act", ["gelu", "gelu_new", "gelu_pytorch_tanh", "relu"])
def test_fold_activation_matches_the_model(hidden_act):
    x = np.linspace(-6, 6, 101, dtype=np.float32)
    want = np.asarray(activation(hidden_act)(jnp.asarray(x)))
    np.testing.assert_allclose(host_activation(hidden_act, x), want, rtol=1e-5, atol=1e-6)


def test_bad_inputs_raise_jaxprune_error():
    config = _config()
    params = init_params(config, jax.random.key(0))
    with pytest.raises(JaxpruneError, match="encoder"):
        compact_lib.compact({"params": params}, config)
    with pytest.raises(JaxpruneError, match="shape"):
        compact_lib.compact(params, config.replace(intermediate_size=64))
    with pytest.raises(JaxpruneError, match="hidden_act"):
        compact_lib.compact(params, config.replace(hidden_act="swish"))


def test_report_lists_every_layer():
    config = _config()
    params = _mutable(_random_params(config))
    params["encoder"]["layer_2"]["output"]["kernel"][:3] = 0
    _, _, report = compact_lib.compact(params, config)
    assert report.neurons_kept == (FFN, FFN, FFN - 3)
    assert report.to_dict()["neurons_kept"] == [FFN, FFN, FFN - 3]
    assert "layer 2: heads 4/4 (folded 0), neurons 125/128" in report.summary()


def test_save_and_reload_a_compacted_model(tmp_path):
    loading = pytest.importorskip("jaxprune.models.loading")
    config = _config()
    params = _mutable(_random_params(config))
    params["encoder"]["layer_0"]["attention"]["value"]["kernel"][:] = 0
    params["encoder"]["layer_0"]["output"]["kernel"][:] = 0
    params["encoder"]["layer_1"]["attention"]["output"]["kernel"][_rows(3)] = 0
    params["encoder"]["layer_2"]["intermediate"]["kernel"][:, 7:30] = 0
    new_params, new_config, _ = compact_lib.compact(params, config)
    loading.save_pretrained(new_params, new_config, tmp_path)
    loaded_params, loaded_config = loading.from_pretrained(tmp_path)
    assert loaded_config == new_config
    np.testing.assert_array_equal(
        _logits(loaded_params, loaded_config), _logits(new_params, new_config)
    )
