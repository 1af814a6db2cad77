"""bert_rules on a tiny random BERT: whole heads and neurons are zeroed and the model still runs."""

from __future__ import annotations

import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprune import mask
from jaxprune.models.bert import BertForSequenceClassification, param_shapes
from jaxprune.models.bert_rules import (
    bert_rules,
    bert_sparsity_report,
    head_param_count,
    neuron_param_count,
    surviving_units,
    surviving_units_from_masks,
)
from jaxprune.models.compaction import compact
from jaxprune.models.config import BertConfig
from jaxprune.errors import JaxpruneError

CONFIG = BertConfig(
    vocab_size=100,
    hidden_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    intermediate_size=128,
    max_position_embeddings=32,
    label_names=("a", "b", "c"),
)


def _random_params(config, seed=0):
    """Random float32 params of ``config``'s shapes (quicker than compiling ``init_params``)."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(
        lambda s: jnp.asarray(rng.normal(0, 0.1, s.shape), jnp.float32), param_shapes(config)
    )


@pytest.fixture(scope="module")
def params():
    return _random_params(CONFIG)


# Jitted once per (layout, config); eager masking would compile every small op on first use.
_apply = jax.jit(mask.apply_masks, static_argnames=("layout", "config"))
_compute_masks = jax.jit(mask.compute_masks, static_argnames=("layout", "config"))


def _random_scores(layout, seed=0):
    rng = np.random.default_rng(seed)
    return mask.scores_from_list(
        [jnp.asarray(rng.normal(size=e.score_shape), jnp.float32) for e in layout.entries], layout
    )


@functools.lru_cache(maxsize=None)
def _forward(config):
    model = BertForSequenceClassification(config)
    return jax.jit(lambda params, ids, mask_: model.apply({"params": params}, ids, mask_, deterministic=True))


def _logits(params, config=CONFIG):
    ids = jnp.asarray(np.random.default_rng(1).integers(1, 100, size=(2, 10)), jnp.int32)
    mask_ = jnp.ones_like(ids).at[1, 6:].set(0)
    return _forward(config)(params, ids, mask_)


def test_rules_score_only_the_encoder(params):
    layout = mask.build_layout(params, bert_rules(CONFIG))
    anchors = ["/".join(e.anchor) for e in layout.entries]
    assert anchors == [
        f"encoder/layer_{i}/{leaf}" for i in range(2) for leaf in ("attention/query/kernel", "intermediate/kernel")
    ]
    assert [e.score_shape for e in layout.entries] == [(4,), (128,)] * 2
    assert layout.entries[0].weights_per_block == head_param_count(CONFIG) == 3 * (64 * 16 + 16) + 16 * 64
    assert layout.entries[1].weights_per_block == neuron_param_count(CONFIG) == 2 * 64 + 1
    assert layout.entries[0].weight == 1 / head_param_count(CONFIG)
    scored = {"/".join(p) for p in layout.slot_index}
    assert not any(p.startswith(("embeddings", "pooler", "classifier")) for p in scored)
    assert len(scored) == 2 * (7 + 3)
    # Whole params dict under {'params': ...} resolves the same way.
    wrapped = mask.build_layout({"params": params}, bert_rules(CONFIG))
    assert [e.score_shape for e in wrapped.entries] == [e.score_shape for e in layout.entries]


@pytest.mark.parametrize("scope", ["local", "global"])
def test_heads_and_neurons_are_zeroed_whole_and_model_runs(params, scope):
    layout = mask.build_layout(params, bert_rules(CONFIG))
    scores = _random_scores(layout)
    config = mask.MaskConfig(scope=scope)
    masks = _compute_masks(scores, 0.5, layout, config)
    masked = _apply(params, scores, 0.5, layout, config)

    units = surviving_units(CONFIG, masked)
    for i, layer in enumerate(units):
        head_mask = np.asarray(masks["encoder"][f"layer_{i}"]["attention"]["query"]["kernel"])
        neuron_mask = np.asarray(masks["encoder"][f"layer_{i}"]["intermediate"]["kernel"])
        assert layer.heads == tuple(np.flatnonzero(head_mask))
        assert layer.neurons == tuple(np.flatnonzero(neuron_mask))
        if scope == "local":
            assert len(layer.heads) == 2 and len(layer.neurons) == 64
        attn = jax.tree.map(np.asarray, masked["encoder"][f"layer_{i}"]["attention"])
        for h in range(4):
            cols = slice(16 * h, 16 * (h + 1))
            pruned = head_mask[h] == 0
            for name in ("query", "key", "value"):
                assert np.all(attn[name]["kernel"][:, cols] == 0) == pruned
                assert np.all(attn[name]["bias"][cols] == 0) == pruned
            assert np.all(attn["output"]["kernel"][cols] == 0) == pruned
    assert units == surviving_units_from_masks(CONFIG, masks, layout, param_shapes(CONFIG))

    logits = _logits(masked)
    assert logits.shape == (2, 3) and bool(jnp.all(jnp.isfinite(logits)))
    assert not np.allclose(logits, _logits(params))

    # Compaction removes exactly the units the masks removed, and keeps the outputs.
    small, small_config, compaction = compact(masked, CONFIG)
    assert compaction.heads_kept == tuple(len(u.heads) for u in units)
    assert compaction.neurons_kept == tuple(len(u.neurons) for u in units)
    np.testing.assert_allclose(_logits(small, small_config), logits, atol=1e-5)
    report = bert_sparsity_report(CONFIG, masked, layout)
    assert report["params_after_compaction"] == compaction.params_after
    json.dumps(report)


def test_weight_budget_in_global_scope_counts_encoder_weights(params):
    layout = mask.build_layout(params, bert_rules(CONFIG))
    scores = _random_scores(layout, seed=3)
    masked = _apply(params, scores, 0.3, layout, mask.MaskConfig(scope="global"))
    report = mask.sparsity_report(masked, layout)
    kept = 1 - report.scored_zeros / report.scored_params
    assert 0.3 - head_param_count(CONFIG) / layout.num_weights < kept <= 0.3


def test_block_rules_prune_32x32_blocks_and_survivors_follow(params):
    rules = bert_rules(CONFIG, attention="blocks", block_shape=(32, 32), ffn="blocks")
    layout = mask.build_layout(params, rules)
    assert sorted({e.score_shape for e in layout.entries}) == [(2, 2), (2, 4), (4, 2)]
    scores = _random_scores(layout, seed=5)
    masked = _apply(params, scores, 0.5, layout)
    kernel = np.asarray(masked["encoder"]["layer_0"]["attention"]["query"]["kernel"])
    block_mask = np.asarray(_compute_masks(scores, 0.5, layout)["encoder"]["layer_0"]["attention"]["query"]["kernel"])
    assert block_mask.sum() == 2
    np.testing.assert_array_equal(kernel.reshape(2, 32, 2, 32).any(axis=(1, 3)), block_mask > 0)
    # Biases are not pruned by block rules.
    bias = masked["encoder"]["layer_0"]["attention"]["query"]["bias"]
    np.testing.assert_array_equal(bias, params["encoder"]["layer_0"]["attention"]["query"]["bias"])
    assert bool(jnp.all(jnp.isfinite(_logits(masked))))
    # A head survives unless all its output rows or value columns are zero.
    for layer, units in zip(("layer_0", "layer_1"), surviving_units(CONFIG, masked)):
        out = np.asarray(masked["encoder"][layer]["attention"]["output"]["kernel"]).reshape(4, 16, 64)
        value = np.asarray(masked["encoder"][layer]["attention"]["value"]["kernel"]).reshape(64, 4, 16)
        alive = ~(np.all(out == 0, axis=(1, 2)) | np.all(value == 0, axis=(0, 2)))
        assert units.heads == tuple(np.flatnonzero(alive))


def test_mixed_attention_blocks_and_neurons(params):
    layout = mask.build_layout(params, bert_rules(CONFIG, attention="blocks", block_shape=(16, 16)))
    names = {e.name for e in layout.entries}
    assert names == {"blocks", "neurons"}
    masked = _apply(params, _random_scores(layout), 0.25, layout, mask.MaskConfig(scope="global"))
    assert bool(jnp.all(jnp.isfinite(_logits(masked))))


def test_compacted_config_with_empty_layer(params):
    small_config = CONFIG.replace(heads_per_layer=(0, 3), intermediate_sizes=(128, 0))
    small = _random_params(small_config, seed=1)
    layout = mask.build_layout(small, bert_rules(small_config))
    assert [e.score_shape for e in layout.entries] == [(0,), (128,), (3,), (0,)]
    masked = _apply(small, mask.init_scores(layout), 0.5, layout)
    units = surviving_units(small_config, masked)
    assert [len(u.heads) for u in units] == [0, 2]  # round(1.5) = 2 of 3 heads
    assert [len(u.neurons) for u in units] == [64, 0]
    assert bool(jnp.all(jnp.isfinite(_logits(masked, small_config))))


def test_bad_choices_are_reported():
    with pytest.raises(JaxpruneError, match="attention"):
        bert_rules(CONFIG, attention="rows")
    with pytest.raises(JaxpruneError, match="nothing"):
        bert_rules(CONFIG, attention=None, ffn=None)
    with pytest.raises(JaxpruneError, match="encoder"):
        surviving_units(CONFIG, {"pooler": {"kernel": jnp.ones((2, 2))}})
