"""A Flax Linen BERT sequence classifier with Hugging Face BERT semantics.

Word + absolute position + token-type embeddings, post-LayerNorm blocks with the
config's epsilon, exact (erf) GELU for ``hidden_act="gelu"``, padding masked out
of attention, pooler (dense + tanh on [CLS]) or the mean over tokens
(``classifier_pooling``), and a linear classifier. Dropout is
active only when ``deterministic=False``.

Parameters are always float32; ``dtype`` is the compute dtype (float32 or
bfloat16). Softmax runs in float32 and logits are returned in float32 whatever
the compute dtype.

Every layer may have its own head count and FFN width (see
:class:`jaxprune.models.config.BertConfig`); a layer with zero heads or zero neurons
only adds the output bias of that sub-block, which is what an emptied layer of
a compacted model computes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxprune.models.activations import activation
from jaxprune.models.config import BertConfig
from jaxprune.errors import JaxpruneError

Array = jax.Array
Params = dict[str, Any]


def _dense(features: int, dtype: Any, name: str) -> nn.Dense:
    return nn.Dense(
        features,
        dtype=dtype,
        param_dtype=jnp.float32,
        kernel_init=nn.initializers.normal(stddev=0.02),
        name=name,
    )


def _layer_norm(config: BertConfig, dtype: Any, name: str) -> nn.LayerNorm:
    return nn.LayerNorm(epsilon=config.layer_norm_eps, dtype=dtype, param_dtype=jnp.float32, name=name)


class BertEmbeddings(nn.Module):
    config: BertConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, input_ids: Array, token_type_ids: Array, deterministic: bool) -> Array:
        cfg = self.config
        init = nn.initializers.normal(stddev=0.02)

        def embed(num: int, name: str) -> nn.Embed:
            return nn.Embed(num, cfg.hidden_size, embedding_init=init, dtype=self.dtype,
                            param_dtype=jnp.float32, name=name)

        # (1, T), not (B, T): the position-embedding gradient sums over the batch first; changing
        # that changes the float32 sums, and so the trained weights.
        positions = jax.lax.broadcasted_iota(jnp.int32, (1, input_ids.shape[-1]), 1)
        x = (
            embed(cfg.vocab_size, "word_embeddings")(input_ids)
            + embed(cfg.max_position_embeddings, "position_embeddings")(positions)
            + embed(cfg.type_vocab_size, "token_type_embeddings")(token_type_ids)
        )
        x = _layer_norm(cfg, self.dtype, "LayerNorm")(x)
        return nn.Dropout(cfg.hidden_dropout_prob)(x, deterministic=deterministic)


def equal_blocks(total: int, most: int) -> tuple[int, int]:
    """``(count, size)``: the fewest equal blocks of at most ``most`` items that cover
    ``total``, each as small as possible (``count * size - total`` items of padding)."""
    count = -(-total // most)
    return count, -(-total // count)


# On CPU, one head's float32 scores for a block of queries are kept within this
# many bytes (half the 512 KiB L2 cache per core of the machine it was measured
# on): larger blocks ran 2-4x slower at length 384-512 whatever the batch
# (``python benchmarks/attention.py``; results in docs/benchmarks.md).
CPU_HEAD_SCORE_BYTES = 256 * 1024


def default_query_block(key_length: int) -> int | None:
    """The query block ``attend`` uses by default: None (all queries) off CPU, and for a
    symbolic length (an ONNX export traces one graph for every length)."""
    if jax.default_backend() != "cpu" or not isinstance(key_length, int):
        return None
    return max(8, CPU_HEAD_SCORE_BYTES // (4 * key_length))


def attend(
    query: Array,
    key: Array,
    value: Array,
    key_mask: Array,
    dropout: Callable[[Array], Array] | None = None,
    query_block: int | None = None,
) -> Array:
    """Softmax attention over heads-major arrays.

    query, key, value: (B, N, T, D) in the compute dtype, the query already
    scaled by 1/sqrt(D); key_mask: (B, T) bool, False for padding. Returns
    (B, N, T, D) in the compute dtype. Logits and the softmax are float32.

    Queries are attended in equal blocks of at most ``query_block`` (a
    ``lax.map``; the last block is padded with zero queries whose rows are
    dropped); None means :func:`default_query_block` (all queries at once up
    to length 256 on CPU, and everywhere else).
    ``dropout``, when given, drops unnormalised attention weights (the same as
    dropping probabilities) and attends all queries at once.
    """
    batch, heads, length, head_dim = query.shape
    padding_bias = jnp.where(key_mask, 0.0, jnp.finfo(jnp.float32).min)[:, None, None, :]
    if query_block is None:
        query_block = default_query_block(key.shape[2]) or length
    if query_block < 1:
        raise JaxpruneError(f"`query_block` must be a positive number of queries, got {query_block}")
    if dropout is not None or query_block >= length:
        return _softmax_attention(query, key, value, padding_bias, dropout)
    num_blocks, block = equal_blocks(length, query_block)
    padded = jnp.pad(query, ((0, 0), (0, 0), (0, num_blocks * block - length), (0, 0)))
    blocks = padded.reshape(batch, heads, num_blocks, block, head_dim).transpose(2, 0, 1, 3, 4)
    context = jax.lax.map(lambda q: _softmax_attention(q, key, value, padding_bias, None), blocks)
    context = context.transpose(1, 2, 0, 3, 4).reshape(batch, heads, num_blocks * block, head_dim)
    return context[:, :, :length]


def _softmax_attention(
    query: Array, key: Array, value: Array, padding_bias: Array, dropout: Callable[[Array], Array] | None
) -> Array:
    # The softmax is normalised after the value product: one division per output
    # element instead of one per score.
    logits = jnp.einsum("bnqd,bnkd->bnqk", query, key, preferred_element_type=jnp.float32)
    logits = logits + padding_bias
    peak = jax.lax.stop_gradient(logits.max(axis=-1, keepdims=True))
    weights = jnp.exp(logits - peak)
    total = weights.sum(axis=-1, keepdims=True)
    if dropout is not None:
        weights = dropout(weights)
    context = jnp.einsum(
        "bnqk,bnkd->bnqd", weights.astype(value.dtype), value, preferred_element_type=jnp.float32
    )
    return (context / total).astype(value.dtype)


class BertSelfAttention(nn.Module):
    """Multi-head self-attention, its output projection and the post-LayerNorm."""

    config: BertConfig
    num_heads: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array, attention_mask: Array, deterministic: bool) -> Array:
        """x: (B, T, H) compute dtype; attention_mask: (B, T), 1 = token, 0 = padding."""
        cfg = self.config
        batch, length, _ = x.shape
        heads, head_dim = self.num_heads, cfg.head_dim
        width = heads * head_dim

        def project(name: str, scale: float = 1.0) -> Array:  # (B, T, H) -> (B, N, T, D)
            projected = _dense(width, self.dtype, name)(x)
            if scale != 1.0:  # on the (T x D) queries, not on the (T x T) scores
                projected = projected * jnp.asarray(scale, projected.dtype)
            return projected.reshape(batch, length, heads, head_dim).transpose(0, 2, 1, 3)

        query, key, value = project("query", head_dim**-0.5), project("key"), project("value")
        if heads == 0:
            context = jnp.zeros((batch, length, 0), self.dtype)
        else:
            dropout = None
            if not deterministic and cfg.attention_probs_dropout_prob > 0:
                drop = nn.Dropout(cfg.attention_probs_dropout_prob)
                dropout = lambda w: drop(w, deterministic=False)  # noqa: E731
            context = attend(query, key, value, attention_mask.astype(bool), dropout)
            context = context.transpose(0, 2, 1, 3).reshape(batch, length, width)

        out = _dense(cfg.hidden_size, self.dtype, "output")(context)
        out = nn.Dropout(cfg.hidden_dropout_prob)(out, deterministic=deterministic)
        return _layer_norm(cfg, self.dtype, "LayerNorm")(out + x)


class BertLayer(nn.Module):
    config: BertConfig
    num_heads: int
    intermediate_size: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array, attention_mask: Array, deterministic: bool) -> Array:
        cfg = self.config
        x = BertSelfAttention(cfg, self.num_heads, self.dtype, name="attention")(
            x, attention_mask, deterministic
        )
        hidden = _dense(self.intermediate_size, self.dtype, "intermediate")(x)
        hidden = activation(cfg.hidden_act)(hidden)
        out = _dense(cfg.hidden_size, self.dtype, "output")(hidden)
        out = nn.Dropout(cfg.hidden_dropout_prob)(out, deterministic=deterministic)
        return _layer_norm(cfg, self.dtype, "output_LayerNorm")(out + x)


class BertEncoder(nn.Module):
    config: BertConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array, attention_mask: Array, deterministic: bool) -> tuple[Array, tuple[Array, ...]]:
        """``(output, hidden)``: the last layer's output and every layer's, (B, T, H) each in the compute dtype."""
        cfg = self.config
        outputs = []
        # A Python loop, not nn.scan: layers may differ in shape after compaction.
        for i in range(cfg.num_hidden_layers):
            x = BertLayer(
                cfg, cfg.layer_heads(i), cfg.layer_intermediate(i), self.dtype, name=f"layer_{i}"
            )(x, attention_mask, deterministic)
            outputs.append(x)
        return x, tuple(outputs)


def mean_pool(hidden: Array, attention_mask: Array) -> Array:
    """(B, T, H) hidden states averaged over the unmasked tokens -> (B, H) float32."""
    weights = attention_mask.astype(jnp.float32)[..., None]
    total = jnp.sum(hidden.astype(jnp.float32) * weights, axis=1)
    return total / jnp.maximum(jnp.sum(weights, axis=1), 1.0)


class BertForSequenceClassification(nn.Module):
    """BERT encoder + pooling (``config.classifier_pooling``) + classifier.

    Call with ``input_ids`` (B, T) int, ``attention_mask`` (B, T) int/bool and
    optionally ``token_type_ids`` (B, T); returns logits (B, num_labels) float32. With
    ``return_hidden=True`` it returns ``(logits, hidden)``: ``hidden`` holds the output of
    every encoder layer, (B, T, H) each in the compute dtype (layer distillation reads them;
    the logits are the same either way).
    """

    config: BertConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(
        self,
        input_ids: Array,
        attention_mask: Array | None = None,
        token_type_ids: Array | None = None,
        deterministic: bool = True,
        return_hidden: bool = False,
    ) -> Array | tuple[Array, tuple[Array, ...]]:
        cfg = self.config
        if attention_mask is None:
            attention_mask = jnp.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = jnp.zeros_like(input_ids)
        x = BertEmbeddings(cfg, self.dtype, name="embeddings")(input_ids, token_type_ids, deterministic)
        x, hidden = BertEncoder(cfg, self.dtype, name="encoder")(x, attention_mask, deterministic)
        if cfg.classifier_pooling == "mean":
            pooled = mean_pool(x, attention_mask).astype(self.dtype)
        else:
            pooled = jnp.tanh(_dense(cfg.hidden_size, self.dtype, "pooler")(x[:, 0]))
        dropout = cfg.classifier_dropout if cfg.classifier_dropout is not None else cfg.hidden_dropout_prob
        pooled = nn.Dropout(dropout)(pooled, deterministic=deterministic)
        logits = _dense(cfg.num_labels, self.dtype, "classifier")(pooled).astype(jnp.float32)
        return (logits, hidden) if return_hidden else logits


# On CPU, inference feeds the model this many tokens at a time: batches of 32 x 128
# ran 1.2x faster as four micro-batches of 8 x 128 (MiniLM and BERT-base shapes; a
# layer's activations then stay in cache), and length 512 neither gained nor lost
# (docs/benchmarks.md).
CPU_MICROBATCH_TOKENS = 1024


def default_microbatch_size(length: int) -> int | None:
    """Sequences per micro-batch that :func:`inference_logits` uses by default: None (the whole batch) off CPU."""
    if jax.default_backend() != "cpu":
        return None
    return max(1, CPU_MICROBATCH_TOKENS // length)


def inference_logits(
    model: BertForSequenceClassification,
    params: Params,
    input_ids: Array,
    attention_mask: Array | None = None,
    token_type_ids: Array | None = None,
    *,
    microbatch_size: int | None = None,
) -> Array:
    """Deterministic logits (B, num_labels) float32, ``microbatch_size`` sequences at a time.

    The same function as ``model.apply({"params": params}, ...)``: the batch is cut
    into equal micro-batches (the last padded with all-padding rows, whose logits are
    dropped) that run one after another (``lax.map``). None means
    :func:`default_microbatch_size`. Call it under ``jax.jit``.
    """
    batch, length = input_ids.shape
    if attention_mask is None:
        attention_mask = jnp.ones_like(input_ids)
    if token_type_ids is None:
        token_type_ids = jnp.zeros_like(input_ids)
    size = microbatch_size if microbatch_size is not None else default_microbatch_size(length) or batch
    if size < 1:
        raise JaxpruneError(f"`microbatch_size` must be a positive number of sequences, got {size}")
    if size >= batch:
        return model.apply({"params": params}, input_ids, attention_mask, token_type_ids)
    num_micro, size = equal_blocks(batch, size)
    stack = lambda a: jnp.pad(a, ((0, num_micro * size - batch), (0, 0))).reshape(num_micro, size, length)  # noqa: E731
    logits = jax.lax.map(
        lambda inputs: model.apply({"params": params}, *inputs),
        (stack(input_ids), stack(attention_mask), stack(token_type_ids)),
    )
    return logits.reshape(num_micro * size, -1)[:batch]


def _dummy_inputs() -> tuple[Array, Array]:
    ids = jnp.zeros((1, 8), jnp.int32)
    return ids, jnp.ones_like(ids)


def init_params(config: BertConfig, rng: Array) -> Params:
    """Freshly initialised float32 params (normal(0.02) kernels, zero biases, unit LayerNorm)."""
    model = BertForSequenceClassification(config)
    return jax.jit(lambda key: model.init(key, *_dummy_inputs())["params"])(rng)


def param_shapes(config: BertConfig) -> Params:
    """The params tree as ``jax.ShapeDtypeStruct`` leaves, without allocating any weights."""
    model = BertForSequenceClassification(config)
    return jax.eval_shape(lambda: model.init(jax.random.key(0), *_dummy_inputs())["params"])


def count_params(params: Params) -> int:
    """Number of scalars in a params tree (arrays or shape structs)."""
    return int(sum(int(leaf.size) for leaf in jax.tree_util.tree_leaves(params)))
