"""The ONNX graph of a jaxprune BERT classifier, written op by op in the form ONNX Runtime fuses.

:func:`bert_graph` builds, from the params and config, the graph that
:class:`jaxprune.models.bert.BertForSequenceClassification` computes, node for node in the
shape of transformers' own ONNX export, whose patterns ONNX Runtime's graph optimiser knows:

- LayerNorm is ONNX's ``LayerNormalization`` (opset 17), which ORT merges with the residual
  ``Add`` before it into ``SkipLayerNormalization``;
- attention is ``MatMul`` -> ``Add`` (padding) -> ``Softmax`` -> ``MatMul`` over heads-major
  (batch, heads, tokens, head size) tensors, reached by ``Reshape`` + ``Transpose``;
- a dense layer is ``MatMul`` + ``Add``, and erf GELU is ``Div`` -> ``Erf`` -> ``Add`` ->
  ``Mul`` -> ``Mul`` (ORT fuses it, with its bias, into ``BiasGelu``).

Every layer has its own head count and FFN width; a layer with no heads (or no neurons) adds
only that sub-block's output bias, as in the JAX model. The graph is a second statement of
the JAX model's forward pass, for export only: ``tests/test_export_onnx.py`` checks that ONNX
Runtime computes the JAX logits on dense and compacted models, every pooling and activation.

Token type ids are all zero (one text per row), so the type-0 embedding is folded into the
position table. In float16, weights and matmuls are float16; the attention scores, the
softmax and the logits are float32, as in the JAX model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from jaxprune._extras import require

require(__name__, "onnx")

from jaxprune.errors import JaxpruneError
from jaxprune.models.config import BertConfig

Params = dict[str, Any]

INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAME = "logits"
OPSET = 21  # LayerNormalization (17), Gelu with tanh (20); ONNX Runtime >= 1.17 runs it


class _Builder:
    """Nodes and initializers of one graph; every op returns the name of its (single) output."""

    def __init__(self, onnx: Any, dtype: np.dtype) -> None:
        self.onnx, self.dtype = onnx, dtype
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0

    def weight(self, name: str, array: Any, dtype: Any = None) -> str:
        """An initializer named after its param path, in the compute dtype unless ``dtype`` says."""
        array = np.asarray(array, dtype or self.dtype)
        self.initializers.append(self.onnx.numpy_helper.from_array(array, name))
        return name

    def constant(self, value: Any, dtype: Any) -> str:
        self._count += 1
        return self.weight(f"const_{self._count}", value, dtype)

    def op(self, op_type: str, *inputs: str, name: str = "", **attributes: Any) -> str:
        self._count += 1
        output = f"{name or op_type.lower()}_{self._count}"
        self.nodes.append(self.onnx.helper.make_node(op_type, list(inputs), [output],
                                                     name=f"{op_type}_{self._count}", **attributes))
        return output

    def dense(self, x: str, params: Params, prefix: str) -> str:
        """``x @ kernel + bias``."""
        product = self.op("MatMul", x, self.weight(f"{prefix}/kernel", params["kernel"]))
        return self.op("Add", product, self.weight(f"{prefix}/bias", params["bias"]), name=prefix.replace("/", "_"))

    def layer_norm(self, x: str, params: Params, prefix: str, epsilon: float) -> str:
        return self.op("LayerNormalization", x, self.weight(f"{prefix}/scale", params["scale"]),
                       self.weight(f"{prefix}/bias", params["bias"]), axis=-1, epsilon=epsilon)

    def to_float32(self, x: str) -> str:
        """``x`` (compute dtype) as float32: a Cast in float16, nothing in float32."""
        return x if self.dtype == np.float32 else self.op("Cast", x, to=self.onnx.TensorProto.FLOAT)

    def to_compute(self, x: str) -> str:
        """``x`` (float32) in the compute dtype."""
        if self.dtype == np.float32:
            return x
        return self.op("Cast", x, to=self.onnx.helper.np_dtype_to_tensor_dtype(self.dtype))


def bert_graph(params: Params, config: BertConfig, *, dtype: str = "float32") -> Any:
    """The classifier as an ``onnx.ModelProto``: inputs ``input_ids``/``attention_mask`` int64
    (batch, sequence), output ``logits`` float32 (batch, num_labels), both axes dynamic.

    ``params`` are the float32 params of ``BertForSequenceClassification(config)``;
    ``dtype`` (``"float32"`` or ``"float16"``) is that of the weights and matmuls.
    """
    import onnx

    if config.hidden_act not in ONNX_ACTIVATIONS:
        raise JaxpruneError(f"hidden_act {config.hidden_act!r} has no ONNX export; use one of "
                            f"{sorted(ONNX_ACTIVATIONS)} in the model's config.json")
    g = _Builder(onnx, np.dtype(dtype))
    x = _embeddings(g, params["embeddings"], config)
    padding_bias = _padding_bias(g)
    for i in range(config.num_hidden_layers):
        layer = params["encoder"][f"layer_{i}"]
        x = _attention(g, x, padding_bias, layer["attention"], f"encoder/layer_{i}/attention", config,
                       config.layer_heads(i))
        x = _feed_forward(g, x, layer, f"encoder/layer_{i}", config, config.layer_intermediate(i))
    if config.classifier_pooling == "mean":
        pooled = g.to_compute(_mean_pool(g, g.to_float32(x)))
    else:
        first = g.op("Gather", x, g.constant(0, np.int64), axis=1)  # (B, H): the [CLS] token
        pooled = g.op("Tanh", g.dense(first, params["pooler"], "pooler"))
    logits = g.to_float32(g.dense(pooled, params["classifier"], "classifier"))
    g.nodes.append(onnx.helper.make_node("Identity", [logits], [OUTPUT_NAME], name="logits"))

    tokens = ["batch", "sequence"]
    graph = onnx.helper.make_graph(
        g.nodes, "jaxprune_bert",
        [onnx.helper.make_tensor_value_info(name, onnx.TensorProto.INT64, tokens) for name in INPUT_NAMES],
        [onnx.helper.make_tensor_value_info(OUTPUT_NAME, onnx.TensorProto.FLOAT, ["batch", config.num_labels])],
        g.initializers,
    )
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", OPSET)],
                                   producer_name="jaxprune")
    model.ir_version = 10  # what ONNX Runtime >= 1.17 reads
    return model


def fuse_for_onnx_runtime(model: Any) -> Any:
    """``model`` with ONNX Runtime's BERT fusions applied (``onnxruntime.transformers.optimizer``):
    each layer's attention becomes one ``Attention`` node (its projections in one matrix), each
    residual Add + LayerNorm a ``SkipLayerNormalization``, each dense + GELU a ``BiasGelu``.

    These are ONNX Runtime's own (``com.microsoft``) ops: the file then runs in ONNX Runtime only.
    The fusions read each layer's head count from its own Reshape, so compacted layers fuse too
    (a layer without heads has no attention to fuse). Only graph rewrites run here, none of ORT's
    hardware-specific ones, so the file serves any CPU.
    """
    import logging

    import onnx
    from onnxruntime.transformers.optimizer import optimize_model

    # The optimiser warns that the producer is not PyTorch and that compacted layers' attention
    # widths differ from the hidden size; both are expected here, and it fuses them correctly.
    producer, disabled = model.producer_name, logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        fused = optimize_model(model, model_type="bert", num_heads=0, hidden_size=0, opt_level=0)
    finally:
        logging.disable(disabled)
    model = fused.model
    model.producer_name = producer  # the optimiser signs the file as its own
    domains = {node.domain for node in model.graph.node} - {"", "ai.onnx"}
    known = {opset.domain for opset in model.opset_import}
    model.opset_import.extend(onnx.helper.make_opsetid(domain, 1) for domain in sorted(domains - known))
    return model


def _embeddings(g: _Builder, params: Params, config: BertConfig) -> str:
    """(B, T, H): word + position + type-0 embeddings, LayerNorm."""
    words = g.op("Gather", g.weight("embeddings/word_embeddings", params["word_embeddings"]["embedding"]),
                 "input_ids")
    table = (np.asarray(params["position_embeddings"]["embedding"], np.float32)
             + np.asarray(params["token_type_embeddings"]["embedding"], np.float32)[0])
    length = g.op("Shape", "input_ids", start=1, end=2)
    positions = g.op("Slice", g.weight("embeddings/position_and_type_embeddings", table),
                     g.constant([0], np.int64), length, g.constant([0], np.int64))  # (T, H)
    x = g.op("Add", words, positions)
    return g.layer_norm(x, params["LayerNorm"], "embeddings/LayerNorm", config.layer_norm_eps)


def _padding_bias(g: _Builder) -> str:
    """(B, 1, 1, T) float32: 0 for tokens, the lowest float32 for padding (what the JAX model adds),
    as Unsqueeze, Unsqueeze, Cast, Sub, Mul: the mask pattern of ORT's attention fusion."""
    mask = g.op("Unsqueeze", g.op("Unsqueeze", "attention_mask", g.constant([1], np.int64)), g.constant([2], np.int64))
    padding = g.op("Sub", g.constant(1.0, np.float32), g.op("Cast", mask, to=g.onnx.TensorProto.FLOAT))
    return g.op("Mul", padding, g.constant(np.finfo(np.float32).min, np.float32), name="padding_bias")


def _attention(g: _Builder, x: str, padding_bias: str, params: Params, prefix: str, config: BertConfig,
               heads: int) -> str:
    """Self-attention with ``heads`` heads, its output projection and the post-LayerNorm."""
    if heads == 0:  # no context: the output projection adds its bias alone
        out = g.op("Add", x, g.weight(f"{prefix}/output/bias", params["output"]["bias"]))
        return g.layer_norm(out, params["LayerNorm"], f"{prefix}/LayerNorm", config.layer_norm_eps)
    head_dim = config.head_dim
    split = g.constant([0, 0, heads, head_dim], np.int64)  # 0: keep that dimension (batch, tokens)

    def heads_major(name: str, perm: list[int]) -> str:
        projected = g.dense(x, params[name], f"{prefix}/{name}")
        return g.op("Transpose", g.op("Reshape", projected, split), perm=perm)

    query = heads_major("query", [0, 2, 1, 3])  # (B, N, T, D)
    key = heads_major("key", [0, 2, 3, 1])  # (B, N, D, T)
    value = heads_major("value", [0, 2, 1, 3])
    # The JAX model scales the (T x D) queries; the graph divides the (T x T) scores by sqrt(D),
    # the pattern ORT's attention fusion knows (a Mul would be mistaken for the padding's Mul).
    # The logits move by float32 rounding only.
    scores = g.op("Div", g.op("MatMul", query, key), g.constant(math.sqrt(head_dim), g.dtype))
    scores = g.op("Add", g.to_float32(scores), padding_bias)
    weights = g.to_compute(g.op("Softmax", scores, axis=-1))
    context = g.op("Transpose", g.op("MatMul", weights, value), perm=[0, 2, 1, 3])
    context = g.op("Reshape", context, g.constant([0, 0, heads * head_dim], np.int64))
    out = g.op("Add", g.dense(context, params["output"], f"{prefix}/output"), x)
    return g.layer_norm(out, params["LayerNorm"], f"{prefix}/LayerNorm", config.layer_norm_eps)


def _feed_forward(g: _Builder, x: str, params: Params, prefix: str, config: BertConfig, neurons: int) -> str:
    if neurons == 0:
        out = g.op("Add", x, g.weight(f"{prefix}/output/bias", params["output"]["bias"]))
    else:
        hidden = _activation(g, g.dense(x, params["intermediate"], f"{prefix}/intermediate"), config.hidden_act)
        out = g.op("Add", g.dense(hidden, params["output"], f"{prefix}/output"), x)
    return g.layer_norm(out, params["output_LayerNorm"], f"{prefix}/output_LayerNorm", config.layer_norm_eps)


def _gelu_erf(g: _Builder, x: str) -> str:
    # x * (1 + erf(x / sqrt 2)) / 2, in the order ORT's Gelu fusion looks for.
    erf = g.op("Erf", g.op("Div", x, g.constant(math.sqrt(2.0), g.dtype)))
    return g.op("Mul", g.op("Mul", x, g.op("Add", erf, g.constant(1.0, g.dtype))), g.constant(0.5, g.dtype))


def _gelu_tanh(g: _Builder, x: str) -> str:
    return g.op("Gelu", x, approximate="tanh")


# The ONNX form of each activation of jaxprune.models.activations.ACTIVATIONS (the one table;
# tests/test_export_onnx.py checks that both name the same activations).
ONNX_ACTIVATIONS: dict[str, Callable[[_Builder, str], str]] = {
    "gelu": _gelu_erf,
    "gelu_new": _gelu_tanh,
    "gelu_pytorch_tanh": _gelu_tanh,
    "relu": lambda g, x: g.op("Relu", x),
}


def _activation(g: _Builder, x: str, name: str) -> str:
    return ONNX_ACTIVATIONS[name](g, x)


def _mean_pool(g: _Builder, x: str) -> str:
    """(B, H) float32: ``x`` (B, T, H) float32 averaged over the unmasked tokens."""
    weights = g.op("Unsqueeze", g.op("Cast", "attention_mask", to=g.onnx.TensorProto.FLOAT),
                   g.constant([2], np.int64))  # (B, T, 1)
    axis = g.constant([1], np.int64)
    total = g.op("ReduceSum", g.op("Mul", x, weights), axis, keepdims=0)
    count = g.op("Max", g.op("ReduceSum", weights, axis, keepdims=0), g.constant(1.0, np.float32))
    return g.op("Div", total, count)
