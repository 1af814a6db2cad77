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
    pruner = mask.Pruner.from_rules(  # static: the rules are resolved once, outside jit
        params,
        rules,
        mask.MaskConfig(method="topk", scope="global"),  # blocks and neurons compete
        keep_schedule=mask.cubic_keep_schedule(
            total_steps=60, final_keep_fraction=0.3, initial_warmup_steps=10, final_warmup_steps=10
        ),
    )
    variables = (params, pruner.init(params))  # scores: {"inp": {"kernel": (2, 8)}, "up": {"kernel": (128,)}}
    tx = pruner.optimizer(optax.adam(1e-3), optax.adam(1e-2))  # weights and scores: one optimizer
    opt_state = tx.init(variables)


    def loss_fn(variables, step):
        masked = pruner.apply(*variables, step)  # W * expand(M(S)) at the schedule's keep fraction
        logits = model.apply({"params": masked}, x)  # the model's code is unchanged
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


    @jax.jit
    def train_step(variables, opt_state, step):  # step is traced: no recompilation as it changes
        loss, grads = jax.value_and_grad(loss_fn)(variables, step)
        updates, opt_state = tx.update(grads, opt_state, variables)  # one update call
        return optax.apply_updates(variables, updates), opt_state, loss


    for step in range(60):
        variables, opt_state, loss = train_step(variables, opt_state, step)

    pruned = pruner.apply(*variables, 60)  # exact zeros
    report = mask.sparsity_report(pruned, pruner.layout)
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
    pruner = mask.Pruner.from_rules(params, [neurons], keep_schedule=lambda step: 0.5)  # half the neurons
    variables = (params, pruner.init(params))
    tx = pruner.optimizer(optax.adam(1e-3))  # the scores get Adam at 1e-2 unless told otherwise
    opt_state = tx.init(variables)
    x = jax.random.normal(jax.random.key(0), (64, 16))
    y = jax.random.randint(jax.random.key(1), (64,), 0, 4)


    def loss_fn(variables, step):
        logits = nnx.merge(graphdef, pruner.apply(*variables, step), rest)(x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


    @jax.jit
    def train_step(variables, opt_state, step):
        loss, grads = jax.value_and_grad(loss_fn)(variables, step)
        updates, opt_state = tx.update(grads, opt_state, variables)
        return optax.apply_updates(variables, updates), opt_state, loss


    for step in range(20):
        variables, opt_state, loss = train_step(variables, opt_state, step)
    nnx.update(model, pruner.apply(*variables, 20))  # bake the mask in
    '''
).strip()


def _run(code: str) -> dict:
    namespace: dict = {"__name__": "readme_example"}
    exec(compile(code, "<readme example>", "exec"), namespace)
    return namespace


def test_linen_example_runs_and_prunes(capsys):
    namespace = _run(LINEN_EXAMPLE)
    report, layout = namespace["report"], namespace["pruner"].layout
    pruned_fraction = report.scored_zeros / report.scored_params
    largest_block = max(e.weights_per_block for e in layout.entries)
    assert 0.7 <= pruned_fraction < 0.7 + largest_block / layout.num_weights + 1e-6
    assert "of scored weights pruned" in capsys.readouterr().out
    assert namespace["train_step"]._cache_size() == 1


def test_nnx_example_runs():
    import jax
    import jax.numpy as jnp

    namespace = _run(NNX_EXAMPLE)
    score_grads = jax.grad(namespace["loss_fn"])(namespace["variables"], 0)[1]
    grads = score_grads["layers"]["0"]["kernel"]
    assert grads.shape == (128,) and float(jnp.abs(grads).sum()) > 0
    kernel = namespace["model"].layers[0].kernel[...]
    assert int((jnp.abs(kernel).sum(axis=0) == 0).sum()) == 64
    assert namespace["train_step"]._cache_size() == 1


def test_readme_quotes_the_examples():
    if not README.is_file() or SECTION not in README.read_text(encoding="utf-8"):
        pytest.skip(f"README.md has no '{SECTION}' section yet")
    text = README.read_text(encoding="utf-8")
    for example in (LINEN_EXAMPLE, NNX_EXAMPLE):
        assert example in text, "README example drifted from tests/test_mask_readme.py; copy it back"
