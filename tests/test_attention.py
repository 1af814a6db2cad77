"""jaxprune.models.bert.attend: the softmax attention, whole and a block of queries at a time."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxprune.models import bert
from jaxprune.models.bert import BertForSequenceClassification, attend, init_params
from jaxprune.models.config import BertConfig
from jaxprune.errors import JaxpruneError


def reference_attention(query, key, value, key_mask):
    """Textbook attention: masked scores, normalised probabilities, then the value product."""
    scores = np.einsum("bnqd,bnkd->bnqk", query, key)
    scores = np.where(key_mask[:, None, None, :], scores, -np.inf)
    probs = np.exp(scores - scores.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    return np.einsum("bnqk,bnkd->bnqd", probs, value)


def random_inputs(batch=2, heads=3, length=8, head_dim=4, seed=0):
    rng = np.random.default_rng(seed)
    query, key, value = (rng.normal(size=(batch, heads, length, head_dim)).astype(np.float32) for _ in range(3))
    key_mask = np.ones((batch, length), bool)
    key_mask[1, length - 3:] = False  # the second sequence ends in padding
    return query, key, value, key_mask


@pytest.mark.parametrize("query_block", [None, 8, 5, 4, 3, 2, 1])
def test_attend_matches_textbook_attention(query_block):
    query, key, value, key_mask = random_inputs()
    got = attend(*map(jnp.asarray, (query, key, value, key_mask)), query_block=query_block)
    np.testing.assert_allclose(np.asarray(got), reference_attention(query, key, value, key_mask), atol=1e-5)


def test_padding_keys_get_no_weight():
    query, key, value, key_mask = random_inputs()
    value_changed = value.copy()
    value_changed[1, :, -3:] = 1e3  # values behind padding
    args = [jnp.asarray(a) for a in (query, key, value_changed, key_mask)]
    np.testing.assert_allclose(
        np.asarray(attend(*args, query_block=2)), reference_attention(query, key, value, key_mask), atol=1e-5
    )


def test_query_blocks_give_the_same_gradients():
    query, key, value, key_mask = (jnp.asarray(a) for a in random_inputs(seed=1))
    weights = jnp.asarray(np.random.default_rng(2).normal(size=query.shape).astype(np.float32))

    def loss(q, k, v, block):
        return jnp.sum(attend(q, k, v, key_mask, query_block=block) * weights)

    whole = jax.grad(loss, argnums=(0, 1, 2))(query, key, value, None)
    blocked = jax.grad(loss, argnums=(0, 1, 2))(query, key, value, 3)
    for a, b in zip(whole, blocked):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-5)


def test_equal_blocks_cover_with_least_padding():
    assert bert.equal_blocks(15, 8) == (2, 8)
    assert bert.equal_blocks(384, 170) == (3, 128)
    assert bert.equal_blocks(32, 10) == (4, 8)
    assert bert.equal_blocks(5, 5) == (1, 5) and bert.equal_blocks(3, 100) == (1, 3)


def test_default_query_block_on_cpu():
    assert jax.default_backend() == "cpu"
    assert bert.default_query_block(256) == 256  # 256 KiB of scores per head: whole
    assert bert.default_query_block(512) == 128
    assert bert.default_query_block(100_000) == 8  # never below 8 queries


def test_query_block_must_be_positive():
    query, key, value, key_mask = (jnp.asarray(a) for a in random_inputs())
    with pytest.raises(JaxpruneError, match="positive"):
        attend(query, key, value, key_mask, query_block=0)


def test_blocked_model_matches_whole_model(monkeypatch):
    config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=32, label_names=("a", "b", "c"))
    params = init_params(config, jax.random.key(0))
    ids = jnp.asarray(np.random.default_rng(0).integers(1, 50, size=(2, 15)), jnp.int32)
    mask = jnp.ones_like(ids).at[1, 10:].set(0)
    model = BertForSequenceClassification(config)
    whole = jax.jit(lambda p: model.apply({"params": p}, ids, mask))(params)
    # 15 keys x 4 bytes x 8 queries: blocks of 8, the second with one padded query.
    monkeypatch.setattr(bert, "CPU_HEAD_SCORE_BYTES", 15 * 4 * 8)
    assert bert.default_query_block(15) == 8
    blocked = jax.jit(lambda p: model.apply({"params": p}, ids, mask))(params)  # traced anew: blocks of 8
    np.testing.assert_allclose(np.asarray(blocked), np.asarray(whole), atol=1e-5)


@pytest.mark.slow  # the script end to end
def test_attention_benchmark_quick_run(tmp_path, repo_script):
    attention = repo_script("benchmarks/attention.py")
    payload = attention.main(["--quick", "--repeats", "1", "--warmup", "0", "--out", str(tmp_path)])
    assert [(row["batch"], row["heads"], row["length"]) for row in payload["rows"]] == [(2, 12, 128), (2, 12, 256)]
    for row in payload["rows"]:
        assert {"attend/all", "jax.nn.dpa"} <= set(row["stats"]) and row["model_default"] in row["stats"]
    assert len(list(tmp_path.glob("attention_cpu_*.json"))) == 1
