"""jaxprune.mask on tiny hand-written arrays: layouts, top-k and soft masks, scopes, errors."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprune import mask
from jaxprune.errors import JaxpruneError

M = mask.MaskConfig
# Jitted once per (layout, config): eager masking would compile each small op on first use.
_compute_masks = jax.jit(mask.compute_masks, static_argnames=("layout", "config"))


def _masks(params, rules, scores_by_path, keep, config=M()):
    """Block masks as a {path string: np.ndarray} dict, scores set by path string."""
    layout = mask.build_layout(params, rules)
    arrays = [jnp.asarray(scores_by_path["/".join(e.anchor)], jnp.float32) for e in layout.entries]
    masks = _compute_masks(mask.scores_from_list(arrays, layout), keep, layout, config)
    flat = mask.scores_to_list(masks, layout)
    return {"/".join(e.anchor): np.asarray(m) for e, m in zip(layout.entries, flat)}


# --- block rules --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "keep, expected",
    [
        (0.25, [[0, 1], [0, 0]]),
        (0.5, [[0, 1], [1, 0]]),
        (0.75, [[0, 1], [1, 1]]),
        (1.0, [[1, 1], [1, 1]]),
        (0.0, [[0, 0], [0, 0]]),
    ],
)
def test_topk_block_masks_by_hand(keep, expected):
    params = {"dense": {"kernel": jnp.ones((4, 6)), "bias": jnp.ones(6)}}
    got = _masks(params, [mask.BlockRule("kernel", (2, 3))], {"dense/kernel": [[0.0, 3.0], [2.0, 1.0]]}, keep)
    np.testing.assert_array_equal(got["dense/kernel"], expected)


def test_block_mask_expands_over_each_block():
    kernel = jnp.arange(1.0, 25.0).reshape(4, 6)
    params = {"dense": {"kernel": kernel, "bias": jnp.ones(6)}}
    layout = mask.build_layout(params, [mask.BlockRule("kernel", (2, 3))])
    scores = {"dense": {"kernel": jnp.array([[0.0, 3.0], [2.0, 1.0]])}}
    masked = mask.apply_masks(params, scores, 0.5, layout)
    expected = np.array(
        [
            [0, 0, 0, 4, 5, 6],
            [0, 0, 0, 10, 11, 12],
            [13, 14, 15, 0, 0, 0],
            [19, 20, 21, 0, 0, 0],
        ],
        np.float32,
    )
    np.testing.assert_array_equal(masked["dense"]["kernel"], expected)
    assert masked["dense"]["bias"] is params["dense"]["bias"]  # unmatched leaves pass through


def test_whole_dimension_blocks_score_columns():
    params = {"w": jnp.ones((3, 4))}
    layout = mask.build_layout(params, [mask.BlockRule("w", (None, 1))])
    assert layout.entries[0].score_shape == (1, 4)
    assert layout.entries[0].weights_per_block == 3
    got = _masks(params, [mask.BlockRule("w", (None, 1))], {"w": [[0.1, 0.4, 0.3, 0.2]]}, 0.5)
    np.testing.assert_array_equal(got["w"], [[0, 1, 1, 0]])


def test_ties_keep_lower_index_and_signed_zeros_tie():
    params = {"w": jnp.ones((1, 4))}
    rules = [mask.BlockRule("w", (1, 1))]
    got = _masks(params, rules, {"w": [[0.0, 0.0, 0.0, 0.0]]}, 0.5)
    np.testing.assert_array_equal(got["w"], [[1, 1, 0, 0]])
    got = _masks(params, rules, {"w": [[-0.0, 0.0, -0.0, 0.0]]}, 0.5)
    np.testing.assert_array_equal(got["w"], [[1, 1, 0, 0]])
    got = _masks(params, rules, {"w": [[1.0, 2.0, 2.0, 2.0]]}, 0.5)
    np.testing.assert_array_equal(got["w"], [[0, 1, 1, 0]])


@pytest.mark.parametrize("keep, kept", [(0.3, 2), (0.29, 1), (0.1, 1), (0.09, 0), (0.7, 4), (1.2, 5)])
def test_count_rounds_half_up(keep, kept):
    params = {"w": jnp.ones((1, 5))}
    got = _masks(params, [mask.BlockRule("w", (1, 1))], {"w": [[5.0, 4.0, 3.0, 2.0, 1.0]]}, keep)
    np.testing.assert_array_equal(got["w"][0], [1] * kept + [0] * (5 - kept))


# --- group rules --------------------------------------------------------------------------


def _mlp_params():
    return {
        "up": {"kernel": jnp.arange(1.0, 13.0).reshape(3, 4), "bias": jnp.arange(1.0, 5.0)},
        "down": {"kernel": jnp.arange(1.0, 9.0).reshape(4, 2), "bias": jnp.ones(2)},
    }


NEURONS = mask.GroupRule(
    (
        mask.GroupMember(r"up/kernel", axis=1),
        mask.GroupMember(r"up/bias", axis=0),
        mask.GroupMember(r"down/kernel", axis=0),
    ),
    name="neurons",
)


def test_neuron_group_zeroes_column_bias_and_row():
    params = _mlp_params()
    layout = mask.build_layout(params, [NEURONS])
    (entry,) = layout.entries
    assert entry.anchor == ("up", "kernel") and entry.score_shape == (4,)
    assert entry.weights_per_block == 3 + 1 + 2
    scores = {"up": {"kernel": jnp.array([1.0, -1.0, 3.0, 0.0])}}
    masked = mask.apply_masks(params, scores, 0.5, layout)
    np.testing.assert_array_equal(
        masked["up"]["kernel"], [[1, 0, 3, 0], [5, 0, 7, 0], [9, 0, 11, 0]]
    )
    np.testing.assert_array_equal(masked["up"]["bias"], [1, 0, 3, 0])
    np.testing.assert_array_equal(masked["down"]["kernel"], [[1, 2], [0, 0], [5, 6], [0, 0]])
    np.testing.assert_array_equal(masked["down"]["bias"], [1, 1])


def _attention_params(layers=2, hidden=2, heads=2, d=2):
    return {
        f"layer_{i}": {
            "query": {"kernel": jnp.ones((hidden, heads * d)), "bias": jnp.ones(heads * d)},
            "out": {"kernel": jnp.ones((heads * d, hidden)), "bias": jnp.ones(hidden)},
        }
        for i in range(layers)
    }


HEADS = mask.GroupRule(
    (
        mask.GroupMember(r"layer_(\d+)/query/kernel", axis=1, width=2),
        mask.GroupMember(r"layer_(\d+)/query/bias", axis=0, width=2),
        mask.GroupMember(r"layer_(\d+)/out/kernel", axis=0, width=2),
    ),
    name="heads",
)


def test_head_groups_one_per_layer_anchored_at_first_member():
    params = _attention_params()
    layout = mask.build_layout(params, [HEADS])
    assert [e.anchor for e in layout.entries] == [("layer_0", "query", "kernel"), ("layer_1", "query", "kernel")]
    assert [e.group_key for e in layout.entries] == [("0",), ("1",)]
    assert layout.entries[0].weights_per_block == 2 * 2 + 2 + 2 * 2
    scores = {
        "layer_0": {"query": {"kernel": jnp.array([0.5, -0.5])}},
        "layer_1": {"query": {"kernel": jnp.array([-1.0, 2.0])}},
    }
    masked = mask.apply_masks(params, scores, 0.5, layout)
    np.testing.assert_array_equal(masked["layer_0"]["query"]["kernel"], [[1, 1, 0, 0], [1, 1, 0, 0]])
    np.testing.assert_array_equal(masked["layer_0"]["query"]["bias"], [1, 1, 0, 0])
    np.testing.assert_array_equal(masked["layer_0"]["out"]["kernel"], [[1, 1], [1, 1], [0, 0], [0, 0]])
    np.testing.assert_array_equal(masked["layer_1"]["query"]["kernel"], [[0, 0, 1, 1], [0, 0, 1, 1]])
    np.testing.assert_array_equal(masked["layer_1"]["out"]["kernel"], [[0, 0], [0, 0], [1, 1], [1, 1]])
    np.testing.assert_array_equal(masked["layer_0"]["out"]["bias"], [1, 1])


def test_zero_size_group_is_allowed():
    params = _attention_params(layers=1, heads=0)
    layout = mask.build_layout(params, [HEADS])
    assert layout.entries[0].score_shape == (0,)
    masked = mask.apply_masks(params, mask.init_scores(layout), 0.5, layout, M(scope="global"))
    assert masked["layer_0"]["query"]["kernel"].shape == (2, 0)


# --- scopes and budgets -------------------------------------------------------------------


def _two_leaves():
    # a: 4 blocks of 1 weight; b: 2 blocks of 4 weights.
    params = {"a": jnp.ones((2, 2)), "b": jnp.ones((2, 4))}
    rules = [mask.BlockRule("^a$", (1, 1)), mask.BlockRule("^b$", (2, 2))]
    scores = {"a": [[4.0, 1.0], [0.5, 3.0]], "b": [[8.0, 2.0]]}
    return params, rules, scores


def test_default_weights_are_one_over_block_size():
    params, rules, _ = _two_leaves()
    layout = mask.build_layout(params, rules)
    assert [e.weight for e in layout.entries] == [1.0, 0.25]
    assert layout.num_weights == 12 and layout.num_blocks == 6


@pytest.mark.parametrize(
    "config, keep, a, b",
    [
        # local: each leaf keeps its own half.
        (M(scope="local"), 0.5, [[1, 0], [0, 1]], [[1, 0]]),
        # global by score per weight: a0=4, a3=3, b0=2, a1=1, a2=0.5, b1=0.5 (a2 wins the tie).
        (M(scope="global", budget="blocks"), 0.5, [[1, 0], [0, 1]], [[1, 0]]),
        (M(scope="global", budget="blocks"), 0.75, [[1, 1], [1, 1]], [[1, 0]]),
        (M(scope="global", budget="blocks"), 5 / 6, [[1, 1], [1, 1]], [[1, 0]]),
        # weights budget: cumulative weights in rank order are 1, 2, 6, 7, 8, 12.
        (M(scope="global"), 0.5, [[1, 0], [0, 1]], [[1, 0]]),
        (M(scope="global"), 0.25, [[1, 0], [0, 1]], [[0, 0]]),
        (M(scope="global"), 8 / 12, [[1, 1], [1, 1]], [[1, 0]]),
    ],
)
def test_scopes_and_budgets_by_hand(config, keep, a, b):
    params, rules, scores = _two_leaves()
    got = _masks(params, rules, scores, keep, config)
    np.testing.assert_array_equal(got["a"], a)
    np.testing.assert_array_equal(got["b"], b)


def test_rule_weight_changes_global_ranking():
    params, _, scores = _two_leaves()
    rules = [mask.BlockRule("^a$", (1, 1), weight=1.0), mask.BlockRule("^b$", (2, 2), weight=1.0)]
    # keys: b0=8, a0=4, a3=3, b1=2, ...
    got = _masks(params, rules, scores, 0.5, M(scope="global", budget="blocks"))
    np.testing.assert_array_equal(got["a"], [[1, 0], [0, 1]])
    np.testing.assert_array_equal(got["b"], [[1, 0]])
    got = _masks(params, rules, scores, 4 / 6, M(scope="global", budget="blocks"))
    np.testing.assert_array_equal(got["b"], [[1, 1]])


def _random_setup(seed=0):
    rng = np.random.default_rng(seed)
    params = {"w": jnp.ones((16, 32)), "up": jnp.ones((8, 8)), "up_bias": jnp.ones(8), "down": jnp.ones((8, 4))}
    rules = [
        mask.BlockRule("^w$", (4, 4)),  # 32 blocks of 16
        mask.GroupRule(
            (mask.GroupMember("^up$", 1), mask.GroupMember("^up_bias$", 0), mask.GroupMember("^down$", 0)),
            name="neurons",
        ),  # 8 units of 8 + 1 + 4 = 13
    ]
    layout = mask.build_layout(params, rules)
    scores = mask.scores_from_list(
        [jnp.asarray(rng.normal(size=e.score_shape), jnp.float32) for e in layout.entries], layout
    )
    return params, layout, scores


@pytest.mark.parametrize("keep", [0.25, 0.5, 0.75])
def test_exact_kept_fraction(keep):
    _, layout, scores = _random_setup()
    for config in (M(scope="local"), M(scope="global", budget="blocks")):
        masks = _compute_masks(scores, keep, layout, config)
        assert float(mask.kept_fraction(masks, layout, "blocks")) == keep
        if config.scope == "local":
            for m in mask.scores_to_list(masks, layout):
                assert np.asarray(m).sum() == keep * m.size
    masks = _compute_masks(scores, keep, layout, M(scope="global", budget="weights"))
    kept = float(mask.kept_fraction(masks, layout, "weights"))
    assert keep - 16 / layout.num_weights < kept <= keep


def test_soft_method_thresholds_sigmoid():
    params = {"w": jnp.ones((2, 2))}
    # sigmoid: 0.047, 0.5, 0.731, 0.269
    scores = {"w": [[-3.0, 0.0], [1.0, -1.0]]}
    got = _masks(params, [mask.BlockRule("w", (1, 1))], scores, 0.0, M(method="soft", threshold=0.3))
    np.testing.assert_array_equal(got["w"], [[0, 1], [1, 0]])
    got = _masks(params, [mask.BlockRule("w", (1, 1))], scores, 1.0, M(method="soft", threshold=0.6))
    np.testing.assert_array_equal(got["w"], [[0, 0], [1, 0]])


def test_soft_method_on_a_group():
    params = _mlp_params()
    got = _masks(params, [NEURONS], {"up/kernel": [2.0, -2.0, 0.0, -0.5]}, 0.5, M(method="soft", threshold=0.45))
    np.testing.assert_array_equal(got["up/kernel"], [1, 0, 1, 0])


def test_score_penalty_is_weighted_mean_of_sigmoid():
    _, layout, scores = _random_setup(1)
    sig = [jax.nn.sigmoid(s) for s in mask.scores_to_list(scores, layout)]
    expected = (16 * jnp.sum(sig[1]) + 13 * jnp.sum(sig[0])) / (32 * 16 + 8 * 13)
    assert [e.anchor for e in layout.entries] == [("up",), ("w",)]
    np.testing.assert_allclose(mask.score_penalty(scores, layout), expected, rtol=1e-6)


# --- scores -------------------------------------------------------------------------------


def test_init_scores_constant_and_initializer():
    params, layout, _ = _random_setup()
    scores = mask.init_scores(layout, 0.5)
    assert set(scores) == {"up", "w"}
    assert scores["w"].shape == (4, 8) and scores["w"].dtype == jnp.float32
    assert float(scores["w"][0, 0]) == 0.5 and scores["up"].shape == (8,)
    random = mask.init_scores(layout, jax.nn.initializers.normal(1.0), rng=jax.random.key(0))
    assert float(jnp.std(random["w"])) > 0.1
    with pytest.raises(JaxpruneError, match="rng"):
        mask.init_scores(layout, jax.nn.initializers.normal(1.0))


def test_wrong_scores_shape_is_reported():
    params, layout, _ = _random_setup()
    with pytest.raises(JaxpruneError, match="shape"):
        mask.apply_masks(params, {"w": jnp.zeros((2, 2)), "up": jnp.zeros(8)}, 0.5, layout)
    with pytest.raises(JaxpruneError, match="no entry"):
        mask.apply_masks(params, {"w": jnp.zeros((4, 8))}, 0.5, layout)


# --- layout errors ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rules, message",
    [
        ([mask.BlockRule("nothing_here", (1, 1))], "matches none"),
        ([mask.BlockRule("kernel", (1, 1)), mask.BlockRule("^up/kernel$", (1, 1))], "matched twice"),
        ([mask.BlockRule("up/kernel", (2, 2))], "does not divide"),
        ([mask.BlockRule("up/kernel", (1,))], "one block size per dimension"),
        ([mask.GroupRule((mask.GroupMember("up/kernel", 1), mask.GroupMember("nope", 0)))], "no leaf for member"),
        ([mask.GroupRule((mask.GroupMember("up/kernel", 1), mask.GroupMember("down/kernel", 1)))], "unit counts"),
        ([mask.GroupRule((mask.GroupMember("kernel", 1),))], "same captures"),
        ([mask.GroupRule((mask.GroupMember("up/kernel", 1, width=3),))], "divisible"),
    ],
)
def test_layout_errors(rules, message):
    with pytest.raises(JaxpruneError, match=message):
        mask.build_layout(_mlp_params(), rules)


def test_group_with_missing_member_is_reported():
    params = _attention_params()
    del params["layer_1"]["out"]
    with pytest.raises(JaxpruneError, match="no leaf for member"):
        mask.build_layout(params, [HEADS])


def test_bad_regex_and_config_are_reported():
    with pytest.raises(JaxpruneError, match="regular expression"):
        mask.BlockRule("layer_(", (1, 1))
    with pytest.raises(JaxpruneError, match="scope"):
        M(scope="everywhere")


def test_params_must_match_layout():
    params, layout, scores = _random_setup()
    with pytest.raises(JaxpruneError, match="shape"):
        mask.apply_masks({**params, "w": jnp.ones((16, 16))}, scores, 0.5, layout)
    with pytest.raises(JaxpruneError, match="lack"):
        mask.apply_masks({k: v for k, v in params.items() if k != "w"}, scores, 0.5, layout)
