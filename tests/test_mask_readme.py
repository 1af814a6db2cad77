"""The README's "Block pruning in your own Flax model" examples run, and the README quotes them verbatim."""

from __future__ import annotations

import pathlib
import textwrap

import pytest

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"
SECTION = "## Block pruning in your own Flax model"

LINEN_EXAMPLE = textwrap.dedent(
    '''
    import flax.linen as nn
    import jax
    import optax

    from jaxprune import mask


    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            x = nn.relu(nn.Dense(64, name="inp")(x))
            x = nn.relu(nn.Dense(128, name="up")(x))
            return nn.Dense(4, name="down")(x)


    model = MLP()
    x = jax.random.normal(jax.random.key(0), (64, 16))
    y = jax.random.randint(jax.random.key(1), (64,), 0, 4)
    params = model.init(jax.random.key(2), x)["params"]

    # What to prune: 8x8 blocks of inp/kernel, and whole hidden neurons of up/down
    # (column j of up/kernel, entry j of up/bias and row j of down/kernel share one score).
    rules = [
        mask.BlockRule(r"inp/kernel$", block_shape=(8, 8)),
        mask.GroupRule(
            (
                mask.GroupMember(r"up/kernel$", axis=1),
                mask.GroupMember(r"up/bias$", axis=0),
                mask.GroupMember(r"down/kernel$", axis=0),
            ),
            name="neurons",
        ),
    ]
    layout = mask.build_layout(params, rules)  # static: resolved once, outside jit
    scores = mask.init_scores(layout)  # {"inp": {"kernel": (2, 8)}, "up": {"kernel": (128,)}}
    config = mask.MaskConfig(method="topk", scope="global")  # blocks and neurons compete
    keep_schedule = mask.cubic_keep_schedule(
        total_steps=60, final_keep_fraction=0.3, initial_warmup_steps=10, final_warmup_steps=10
    )

    weight_tx, score_tx = optax.adam(1e-3), optax.adam(1e-2)
    state = (params, scores, weight_tx.init(params), score_tx.init(scores))


    def loss_fn(params, scores, keep_fraction):
        masked = mask.apply_masks(params, scores, keep_fraction, layout, config)
        logits = model.apply({"params": masked}, x)  # the model's code is unchanged
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


    @jax.jit
    def train_step(state, step):
        params, scores, weight_state, score_state = state
        keep_fraction = keep_schedule(step)  # traced: no recompilation as it changes
        loss, (weight_grads, score_grads) = jax.value_and_grad(loss_fn, argnums=(0, 1))(
            params, scores, keep_fraction
        )
        updates, weight_state = weight_tx.update(weight_grads, weight_state)
        score_updates, score_state = score_tx.update(score_grads, score_state)
        params = optax.apply_updates(params, updates)
        scores = optax.apply_updates(scores, score_updates)
        return (params, scores, weight_state, score_state), loss


    for step in range(60):
        state, loss = train_step(state, step)

    params, scores = state[:2]
    pruned = mask.apply_masks(params, scores, keep_schedule(60), layout, config)  # exact zeros
    report = mask.sparsity_report(pruned, layout)
    print(f"{report.scored_zeros / report.scored_params:.2f} of scored weights pruned")
    print("neurons removed:", len(report.groups[0].removed), "of", report.groups[0].units)
    '''
).strip()

NNX_EXAMPLE = textwrap.dedent(
    '''
    import jax
    import optax
    from flax import nnx

    from jaxprune import mask

    model = nnx.Sequential(
        nnx.Linear(16, 128, rngs=nnx.Rngs(0)), nnx.relu, nnx.Linear(128, 4, rngs=nnx.Rngs(1))
    )
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)  # paths: layers/0/kernel, ...
    neurons = mask.GroupRule(
        (
            mask.GroupMember(r"layers/0/kernel$", axis=1),
            mask.GroupMember(r"layers/0/bias$", axis=0),
            mask.GroupMember(r"layers/2/kernel$", axis=0),
        ),
        name="neurons",
    )
    layout = mask.build_layout(params, [neurons])
    scores = mask.init_scores(layout)
    x = jax.random.normal(jax.random.key(0), (64, 16))
    y = jax.random.randint(jax.random.key(1), (64,), 0, 4)


    def loss_fn(params, scores, keep_fraction):
        masked = mask.apply_masks(params, scores, keep_fraction, layout)
        logits = nnx.merge(graphdef, masked, rest)(x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


    score_grads = jax.jit(jax.grad(loss_fn, argnums=1))(params, scores, 0.5)
    nnx.update(model, mask.apply_masks(params, scores, 0.5, layout))  # bake the mask in
    '''
).strip()


def _run(code: str) -> dict:
    namespace: dict = {"__name__": "readme_example"}
    exec(compile(code, "<readme example>", "exec"), namespace)
    return namespace


def test_linen_example_runs_and_prunes(capsys):
    namespace = _run(LINEN_EXAMPLE)
    report, layout = namespace["report"], namespace["layout"]
    pruned_fraction = report.scored_zeros / report.scored_params
    largest_block = max(e.weights_per_block for e in layout.entries)
    assert 0.7 <= pruned_fraction < 0.7 + largest_block / layout.num_weights + 1e-6
    assert "of scored weights pruned" in capsys.readouterr().out
    assert namespace["train_step"]._cache_size() == 1


def test_nnx_example_runs():
    import jax.numpy as jnp

    namespace = _run(NNX_EXAMPLE)
    grads = namespace["score_grads"]["layers"]["0"]["kernel"]
    assert grads.shape == (128,) and float(jnp.abs(grads).sum()) > 0
    kernel = namespace["model"].layers[0].kernel[...]
    assert int((jnp.abs(kernel).sum(axis=0) == 0).sum()) == 64


def test_readme_quotes_the_examples():
    if not README.is_file() or SECTION not in README.read_text(encoding="utf-8"):
        pytest.skip(f"README.md has no '{SECTION}' section yet")
    text = README.read_text(encoding="utf-8")
    for example in (LINEN_EXAMPLE, NNX_EXAMPLE):
        assert example in text, "README example drifted from tests/test_mask_readme.py; copy it back"
