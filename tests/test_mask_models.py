"""jaxprune.mask end to end on a Flax Linen MLP and a Flax NNX module, model code untouched."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxprune import mask

HIDDEN = 16
# Jitted once per (layout, config): eager masking would compile each small op on first use.
_apply = jax.jit(mask.apply_masks, static_argnames=("layout", "config"))
_compute_masks = jax.jit(mask.compute_masks, static_argnames=("layout", "config"))


def _data():
    x = jax.random.normal(jax.random.key(0), (32, 8))
    y = (x[:, 0] > 0).astype(jnp.int32) + 2 * (x[:, 1] > 0).astype(jnp.int32)
    return x, y


def _neuron_rule(up: str, down: str) -> mask.GroupRule:
    return mask.GroupRule(
        (
            mask.GroupMember(rf"{up}/kernel$", axis=1),
            mask.GroupMember(rf"{up}/bias$", axis=0),
            mask.GroupMember(rf"{down}/kernel$", axis=0),
        ),
        name="neurons",
    )


def _train(loss_fn, params, layout, config, keep_fraction, steps=4):
    """A few Adam steps on params and scores; returns final params, scores and all score grads."""
    scores = mask.init_scores(layout)
    optimizer = optax.adam(1e-2)
    opt_state = optimizer.init((params, scores))
    traces = []

    @jax.jit
    def train_step(params, scores, opt_state, keep):
        traces.append(1)
        loss, grads = jax.value_and_grad(loss_fn, argnums=(0, 1))(params, scores, keep)
        updates, opt_state = optimizer.update(grads, opt_state)
        params, scores = optax.apply_updates((params, scores), updates)
        return params, scores, opt_state, loss, grads[1]

    score_grads = []
    for step in range(steps):
        keep = jnp.float32(1.0 if step < steps // 2 else keep_fraction)
        params, scores, opt_state, loss, grads = train_step(params, scores, opt_state, keep)
        assert np.isfinite(float(loss))
        score_grads.append(grads)
    assert len(traces) == 1
    return params, scores, score_grads


def test_linen_mlp_end_to_end():
    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.relu(nn.Dense(HIDDEN, name="inp")(x))
            x = nn.relu(nn.Dense(HIDDEN, name="up")(x))
            return nn.Dense(4, name="down")(x)

    model = MLP()
    x, y = _data()
    params = jax.jit(model.init)(jax.random.key(1), x)["params"]
    rules = [mask.BlockRule(r"inp/kernel$", (4, 4)), _neuron_rule("up", "down")]
    layout = mask.build_layout(params, rules)
    config = mask.MaskConfig(scope="global")

    def loss_fn(params, scores, keep):
        logits = model.apply({"params": mask.apply_masks(params, scores, keep, layout, config)}, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    params, scores, score_grads = _train(loss_fn, params, layout, config, keep_fraction=0.5)
    for grads in score_grads:
        assert all(float(jnp.abs(g).sum()) > 0 for g in jax.tree.leaves(grads))
    assert all(float(jnp.abs(s).sum()) > 0 for s in jax.tree.leaves(scores))

    masks = _compute_masks(scores, 0.5, layout, config)
    masked = _apply(params, scores, 0.5, layout, config)
    kept = mask.kept_fraction(masks, layout)
    assert 0.5 - 16 / layout.num_weights < float(kept) <= 0.5
    report = mask.sparsity_report(masked, layout)
    assert report.scored_params == layout.num_weights
    assert report.scored_zeros >= round((1 - float(kept)) * layout.num_weights)
    (neurons,) = report.groups
    neuron_mask = np.asarray(masks["up"]["kernel"])
    assert neurons.removed == tuple(np.flatnonzero(neuron_mask == 0))
    np.testing.assert_array_equal(masked["down"]["bias"], params["down"]["bias"])


def test_nnx_module_end_to_end():
    class MLP(nnx.Module):
        def __init__(self, rngs: nnx.Rngs):
            self.up = nnx.Linear(8, HIDDEN, rngs=rngs)
            self.down = nnx.Linear(HIDDEN, 4, rngs=rngs)
            self.norm = nnx.BatchNorm(HIDDEN, rngs=rngs)

        def __call__(self, x):
            return self.down(self.norm(nnx.relu(self.up(x))))

    model = MLP(nnx.Rngs(0))
    model.eval()  # BatchNorm reads its running stats, so nothing but Params changes
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    layout = mask.build_layout(params, [_neuron_rule("up", "down")])
    assert [e.anchor for e in layout.entries] == [("up", "kernel")]
    x, y = _data()
    config = mask.MaskConfig()

    def loss_fn(params, scores, keep):
        masked_model = nnx.merge(graphdef, mask.apply_masks(params, scores, keep, layout, config), rest)
        return optax.softmax_cross_entropy_with_integer_labels(masked_model(x), y).mean()

    trained, scores, score_grads = _train(loss_fn, params, layout, config, keep_fraction=0.25)
    assert all(float(jnp.abs(g["up"]["kernel"]).sum()) > 0 for g in score_grads)
    assert isinstance(trained, nnx.State)

    masked = _apply(trained, scores, 0.25, layout, config)
    assert isinstance(masked, nnx.State) and isinstance(masked["up"]["kernel"], nnx.Param)
    kernel = np.asarray(masked["up"]["kernel"][...])
    dead = np.all(kernel == 0, axis=0)
    assert dead.sum() == HIDDEN * 3 // 4
    np.testing.assert_array_equal(np.asarray(masked["down"]["kernel"][...])[dead], 0)
    np.testing.assert_array_equal(np.asarray(masked["up"]["bias"][...])[dead], 0)

    # The masked state drops back into the model with nnx.update, and the model runs.
    nnx.update(model, masked)
    np.testing.assert_array_equal(np.asarray(model.up.kernel[...]), kernel)
    assert model(x).shape == (32, 4)
    report = mask.sparsity_report(masked, layout)
    assert len(report.groups[0].removed) == HIDDEN * 3 // 4
