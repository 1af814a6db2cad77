"""sparsity_report counts zeros per leaf and finds fully removed group units."""

from __future__ import annotations

import json

import jax.numpy as jnp

from jaxprune import mask

RULES = [
    mask.BlockRule("^w$", (1, 2)),
    mask.GroupRule(
        (mask.GroupMember("^up$", axis=1), mask.GroupMember("^up_bias$", axis=0), mask.GroupMember("^down$", axis=0)),
        name="neurons",
    ),
]


def _params():
    return {
        "w": jnp.array([[0.0, 0.0], [1.0, 0.0]]),
        # neuron 0 fully zero, neuron 1 alive, neuron 2 zero except its bias.
        "up": jnp.array([[0.0, 1.0, 0.0], [0.0, 2.0, 0.0]]),
        "up_bias": jnp.array([0.0, 0.0, 5.0]),
        "down": jnp.array([[0.0], [3.0], [0.0]]),
        "other": jnp.array([0.0, 7.0]),
    }


def test_counts_by_hand():
    params = _params()
    report = mask.sparsity_report(params, mask.build_layout(params, RULES))
    by_path = {leaf.path: leaf for leaf in report.leaves}
    assert (by_path["w"].size, by_path["w"].zeros, by_path["w"].scored) == (4, 3, True)
    assert by_path["w"].zero_fraction == 0.75
    assert (by_path["up"].zeros, by_path["up_bias"].zeros, by_path["down"].zeros) == (4, 2, 2)
    assert (by_path["other"].zeros, by_path["other"].scored) == (1, False)
    assert report.total_params == 4 + 6 + 3 + 3 + 2 and report.total_zeros == 3 + 4 + 2 + 2 + 1
    assert report.params_remaining == 18 - 12
    assert (report.scored_params, report.scored_zeros) == (16, 11)
    (group,) = report.groups
    assert (group.name, group.anchor, group.units, group.removed, group.kept) == ("neurons", "up", 3, (0,), 2)
    out = json.loads(json.dumps(report.to_dict()))
    assert out["params_remaining"] == 6 and out["groups"][0]["removed"] == [0]
    assert out["scored_zero_fraction"] == 11 / 16


def test_without_layout_and_after_masking():
    params = {"w": jnp.ones((2, 4)), "b": jnp.ones(3)}
    report = mask.sparsity_report(params)
    assert report.total_zeros == 0 and report.groups == () and report.scored_params == 0
    layout = mask.build_layout(params, [mask.BlockRule("^w$", (1, 2))])
    scores = {"w": jnp.array([[1.0, 0.0], [0.0, 2.0]])}
    report = mask.sparsity_report(mask.apply_masks(params, scores, 0.5, layout), layout)
    assert (report.scored_params, report.scored_zeros, report.params_remaining) == (8, 4, 7)
