"""Straight-through score gradients match the formula, and keep_fraction never recompiles."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprune import mask

M = mask.MaskConfig


def _params(seed=0):
    """A kernel tiled in 2x4 blocks plus a neuron group (up columns, up bias, down rows)."""
    rng = np.random.default_rng(seed)
    draw = lambda *shape: jnp.asarray(rng.normal(size=shape), jnp.float32)  # noqa: E731
    return {
        "attn": {"kernel": draw(4, 8), "bias": draw(8)},
        "up": {"kernel": draw(8, 6), "bias": draw(6)},
        "down": {"kernel": draw(6, 3), "bias": draw(3)},
    }


RULES = [
    mask.BlockRule(r"attn/kernel", (2, 4)),
    mask.GroupRule(
        (
            mask.GroupMember(r"up/kernel", axis=1),
            mask.GroupMember(r"up/bias", axis=0),
            mask.GroupMember(r"down/kernel", axis=0),
        ),
        name="neurons",
    ),
]


def _loss(params, x):
    """A non-linear loss of the (masked) params, so dL/dW' differs per weight."""
    h = jnp.tanh(x @ params["attn"]["kernel"] + params["attn"]["bias"])
    h = jnp.tanh(h[:, :8] @ params["up"]["kernel"] + params["up"]["bias"])
    return jnp.sum(jnp.sin(h @ params["down"]["kernel"] + params["down"]["bias"]))


def _explicit_loss(block_mask, neuron_mask, params, x):
    """The same loss with the masks spelled out with jnp.repeat, independent of jaxprune."""
    attn_mask = jnp.repeat(jnp.repeat(block_mask, 2, axis=0), 4, axis=1)
    masked = {
        "attn": {"kernel": params["attn"]["kernel"] * attn_mask, "bias": params["attn"]["bias"]},
        "up": {
            "kernel": params["up"]["kernel"] * neuron_mask[None, :],
            "bias": params["up"]["bias"] * neuron_mask,
        },
        "down": {"kernel": params["down"]["kernel"] * neuron_mask[:, None], "bias": params["down"]["bias"]},
    }
    return _loss(masked, x)


@pytest.mark.parametrize(
    "config", [M(scope="local"), M(scope="global"), M(scope="global", budget="blocks"), M(method="soft", threshold=0.5)]
)
def test_score_gradient_is_sum_of_grad_times_weight(config):
    params = _params()
    x = jnp.asarray(np.random.default_rng(1).normal(size=(5, 4)), jnp.float32)
    layout = mask.build_layout(params, RULES)
    scores = mask.scores_from_list(
        [jnp.asarray(np.random.default_rng(2).normal(size=e.score_shape), jnp.float32) for e in layout.entries],
        layout,
    )
    keep = 0.5

    def loss_of(params, scores):
        return _loss(mask.apply_masks(params, scores, keep, layout, config), x)

    param_grad, score_grad = jax.grad(loss_of, argnums=(0, 1))(params, scores)

    masks = mask.compute_masks(scores, keep, layout, config)
    block_mask = masks["attn"]["kernel"]
    neuron_mask = masks["up"]["kernel"]
    assert 0 < float(neuron_mask.sum()) < 6  # some units pruned, so the test sees the mask
    expected_block, expected_neuron = jax.grad(_explicit_loss, argnums=(0, 1))(
        jax.lax.stop_gradient(block_mask), jax.lax.stop_gradient(neuron_mask), params, x
    )
    np.testing.assert_allclose(score_grad["attn"]["kernel"], expected_block, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(score_grad["up"]["kernel"], expected_neuron, rtol=1e-5, atol=1e-6)
    # A pruned block of a kernel still gets gradient (dL/dW' is not zero there). A pruned
    # neuron does not: its column and its row are both zero, so dL/dW' vanishes on them.
    assert float(jnp.abs(score_grad["attn"]["kernel"]).min()) > 0

    # dL/dW = dL/dW' * M: pruned weights receive no gradient.
    masked = mask.apply_masks(params, scores, keep, layout, config)
    dense_grad = jax.grad(_loss)(masked, x)
    np.testing.assert_allclose(
        param_grad["up"]["kernel"], dense_grad["up"]["kernel"] * neuron_mask[None, :], rtol=1e-6
    )
    np.testing.assert_allclose(
        param_grad["attn"]["kernel"],
        dense_grad["attn"]["kernel"] * jnp.repeat(jnp.repeat(block_mask, 2, 0), 4, 1),
        rtol=1e-6,
    )


def test_group_gradient_sums_over_member_leaves():
    """dL/dS_unit = sum over every member slice of dL/dW' * W, written out by hand."""
    params = _params(3)
    x = jnp.asarray(np.random.default_rng(4).normal(size=(5, 4)), jnp.float32)
    layout = mask.build_layout(params, RULES)
    scores = mask.init_scores(layout)
    score_grad = jax.grad(lambda s: _loss(mask.apply_masks(params, s, 1.0, layout), x))(scores)
    g = jax.grad(_loss)(params, x)  # keep 1.0: W' = W
    expected = (
        jnp.sum(g["up"]["kernel"] * params["up"]["kernel"], axis=0)
        + g["up"]["bias"] * params["up"]["bias"]
        + jnp.sum(g["down"]["kernel"] * params["down"]["kernel"], axis=1)
    )
    np.testing.assert_allclose(score_grad["up"]["kernel"], expected, rtol=1e-5, atol=1e-6)
    blocks = (g["attn"]["kernel"] * params["attn"]["kernel"]).reshape(2, 2, 2, 4).sum(axis=(1, 3))
    np.testing.assert_allclose(score_grad["attn"]["kernel"], blocks, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("config", [M(scope="local"), M(scope="global")])
def test_changing_keep_fraction_does_not_recompile(config):
    params = _params()
    layout = mask.build_layout(params, RULES)
    scores = mask.scores_from_list(
        [jnp.asarray(np.random.default_rng(5).normal(size=e.score_shape), jnp.float32) for e in layout.entries],
        layout,
    )
    traces = []

    @jax.jit
    def step(params, scores, keep_fraction):
        traces.append(1)
        masked = mask.apply_masks(params, scores, keep_fraction, layout, config)
        grads = jax.grad(lambda s: _loss(mask.apply_masks(params, s, keep_fraction, layout, config), jnp.ones((2, 4))))(scores)
        return mask.kept_fraction(mask.compute_masks(scores, keep_fraction, layout, config), layout), masked, grads

    kept = []
    for keep in (1.0, 0.9, 0.6, 0.3, 0.0):
        fraction, _, _ = step(params, scores, jnp.float32(keep))
        kept.append(float(fraction))
    assert len(traces) == 1
    assert step._cache_size() == 1
    assert kept[0] == 1.0 and kept[-1] == 0.0
    assert all(a > b for a, b in zip(kept, kept[1:]))


def test_schedule_drives_masks_inside_jit_without_recompiling():
    params = _params()
    layout = mask.build_layout(params, RULES)
    scores = mask.init_scores(layout, jax.nn.initializers.normal(1.0), rng=jax.random.key(0))
    schedule = mask.cubic_keep_schedule(total_steps=10, final_keep_fraction=0.25, initial_warmup_steps=2)
    traces = []

    @functools.partial(jax.jit, static_argnames="layout")
    def kept_at(step, scores, layout):
        traces.append(1)
        masks = mask.compute_masks(scores, schedule(step), layout)
        return mask.kept_fraction(masks, layout, "blocks")

    values = [float(kept_at(jnp.int32(step), scores, layout)) for step in range(11)]
    assert len(traces) == 1
    assert values[0] == 1.0 and values[-1] == pytest.approx(0.25, abs=0.1)
    assert all(a >= b for a, b in zip(values, values[1:]))
