"""mask.Pruner: layout, method and schedule in one object; one optimizer over (params, scores)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxprune import mask
from jaxprune.errors import JaxpruneError


def _params():
    return {"dense": {"kernel": jnp.arange(16.0).reshape(4, 4), "bias": jnp.ones(4)}}


def _pruner(**kwargs):
    # keep everything for steps < 2, then half the blocks
    schedule = lambda step: jnp.where(jnp.asarray(step) < 2, 1.0, 0.5)  # noqa: E731
    return mask.Pruner.from_rules(_params(), [mask.BlockRule(r"kernel$", (2, 2))],
                                  keep_schedule=schedule, **kwargs)


def test_apply_follows_the_schedule_with_hand_computed_masks():
    pruner = _pruner()
    scores = pruner.init(_params())
    assert jax.tree_util.tree_map(jnp.shape, scores) == {"dense": {"kernel": (2, 2)}}
    scores = {"dense": {"kernel": jnp.array([[0.0, 3.0], [2.0, 1.0]])}}

    early = pruner.apply(_params(), scores, 1)
    np.testing.assert_array_equal(early["dense"]["kernel"], np.arange(16.0).reshape(4, 4))
    late = pruner.apply(_params(), scores, jnp.int32(5))
    # blocks (0, 1) and (1, 0) have the top scores 3 and 2
    np.testing.assert_array_equal(late["dense"]["kernel"], [[0, 0, 2, 3], [0, 0, 6, 7], [8, 9, 0, 0], [12, 13, 0, 0]])
    np.testing.assert_array_equal(late["dense"]["bias"], np.ones(4))  # not scored: untouched
    np.testing.assert_array_equal(pruner.masks(scores, 5)["dense"]["kernel"], [[0, 1], [1, 0]])
    assert float(pruner.keep_fraction(0)) == 1.0 and float(pruner.keep_fraction(9)) == 0.5


def test_the_step_compiles_once_with_the_pruner_static():
    pruner = _pruner()
    traces = []

    @jax.jit
    def masked_sum(params, scores, step):
        traces.append(1)
        return jnp.sum(pruner.apply(params, scores, step)["dense"]["kernel"])

    scores = {"dense": {"kernel": jnp.array([[0.0, 3.0], [2.0, 1.0]])}}
    totals = [float(masked_sum(_params(), scores, jnp.int32(step))) for step in range(4)]
    assert totals == [120.0, 120.0, 60.0, 60.0] and len(traces) == 1
    assert hash(pruner) == hash(pruner)  # usable as a static argument


def test_one_optimizer_equals_the_two_it_combines():
    pruner = _pruner()
    params = _params()
    scores = pruner.init(params)
    weight_tx, score_tx = optax.adamw(1e-2, weight_decay=0.1), optax.adam(0.5)
    tx = pruner.optimizer(weight_tx, score_tx)

    def loss_fn(variables, step):
        masked = pruner.apply(*variables, step)
        return jnp.sum(jnp.sin(masked["dense"]["kernel"])) + jnp.sum(masked["dense"]["bias"] ** 2)

    variables, state = (params, scores), tx.init((params, scores))
    p, s = params, scores
    weight_state, score_state = weight_tx.init(p), score_tx.init(s)
    for step in range(4):
        grads = jax.grad(loss_fn)(variables, step)
        updates, state = tx.update(grads, state, variables)
        variables = optax.apply_updates(variables, updates)

        weight_grads, score_grads = jax.grad(loss_fn)((p, s), step)
        weight_updates, weight_state = weight_tx.update(weight_grads, weight_state, p)
        score_updates, score_state = score_tx.update(score_grads, score_state, s)
        p, s = optax.apply_updates(p, weight_updates), optax.apply_updates(s, score_updates)

    for got, want in zip(jax.tree_util.tree_leaves(variables), jax.tree_util.tree_leaves((p, s))):
        np.testing.assert_array_equal(got, want)
    assert float(jnp.abs(variables[1]["dense"]["kernel"]).sum()) > 0  # the scores did move


def test_the_identity_pruner_trains_plain_params():
    params = _params()
    pruner = mask.Pruner.from_rules(params, [])
    assert not pruner.prunes and pruner.init(params) == {}
    assert pruner.apply(params, {}, 3) is params
    assert float(pruner.penalty({})) == 0.0
    tx = pruner.optimizer(optax.sgd(0.1))
    variables = (params, {})
    updates, _ = tx.update(jax.tree_util.tree_map(jnp.ones_like, variables), tx.init(variables), variables)
    new_params, new_scores = optax.apply_updates(variables, updates)
    np.testing.assert_allclose(new_params["dense"]["bias"], 0.9 * np.ones(4) + 0.0, rtol=1e-6)
    assert new_scores == {}


def test_penalty_is_the_weighted_soft_l1_and_zero_for_topk():
    params = _params()
    rules = [mask.BlockRule(r"kernel$", (2, 2))]
    soft = mask.Pruner.from_rules(params, rules, mask.MaskConfig(method="soft"), penalty_weight=0.5)
    scores = {"dense": {"kernel": jnp.array([[0.0, 1.0], [-1.0, 2.0]])}}
    expected = 0.5 * np.mean(1 / (1 + np.exp(-np.array([0.0, 1.0, -1.0, 2.0]))))
    assert float(soft.penalty(scores)) == pytest.approx(expected, rel=1e-6)
    assert float(_pruner().penalty(scores)) == 0.0
    with pytest.raises(JaxpruneError, match="method='soft' only"):
        mask.Pruner.from_rules(params, rules, penalty_weight=0.5)


def test_init_refuses_params_the_pruner_was_not_built_for():
    pruner = _pruner()
    other = {"dense": {"kernel": jnp.zeros((4, 6)), "bias": jnp.ones(4)}}
    with pytest.raises(JaxpruneError, match=r"^dense/kernel has shape \(4, 6\) but the pruner was built for \(4, 4\)"):
        pruner.init(other)
    with pytest.raises(JaxpruneError, match="params lack dense/kernel"):
        pruner.init({"dense": {"bias": jnp.ones(4)}})
    with pytest.raises(JaxpruneError, match=r"the pair \(params, scores\)"):
        pruner.optimizer(optax.sgd(0.1)).init(_params())
