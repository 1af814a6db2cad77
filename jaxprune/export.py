"""ONNX export of jaxprune BERT classifiers (dense, pruned or compacted), for ONNX Runtime.

A compacted model (per-layer head counts and FFN widths) loads only in jaxprune:
transformers refuses its shapes. Exported to ONNX it runs wherever ONNX Runtime does.

The graph is the jaxprune model itself, traced by `jax2onnx <https://github.com/enpasos/jax2onnx>`_
(the JAX-to-ONNX converter; it maps Flax Linen's Dense, Embed and LayerNorm to ONNX ops)
with symbolic batch and length, so one file serves every shape. Its interface is what
Hugging Face's ONNX exports use:

- inputs ``input_ids`` and ``attention_mask``: int64 (batch, sequence), as tokenizers give
  them (cast to int32 inside the graph; token type ids are all zero, as for one text);
- output ``logits``: float32 (batch, num_labels).

The weights are initializers in the file (float32, or float16 with ``dtype="float16"``;
softmax and the logits stay float32). :func:`export_onnx` writes the ``.onnx`` file and
copies the model's ``config.json`` (its labels) and tokenizer files beside it; with
``quantize="int8"`` it also writes the dynamically quantised ``model.int8.onnx``
(:mod:`jaxprune.export_int8`). :func:`onnx_predict_logits` runs any of these files on an
encoded split, as :func:`jaxprune.evaluation.predict.predict_logits` runs a jaxprune model.

jax2onnx, onnx and onnxruntime are the ``onnx`` extra (``pip install -e ".[onnx]"``) and are
imported only when a function here runs.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxprune.errors import JaxpruneError
from jaxprune.models.bert import BertForSequenceClassification
from jaxprune.models.config import BertConfig

Params = dict[str, Any]

INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAME = "logits"
DTYPES = ("float32", "float16")
OPSET = 21  # LayerNormalization (17) and everything BERT needs; ONNX Runtime >= 1.17 runs it
# Files copied beside the .onnx file when the model folder has them: the labels (config.json)
# and whatever tokenizer the checkpoint ships.
SIDE_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
              "vocab.txt", "sentencepiece.bpe.model", "spiece.model")
# protobuf refuses messages over 2 GiB: larger models keep their weights in FILE.onnx.data.
EXTERNAL_DATA_BYTES = 1_800_000_000


def _import_onnx() -> tuple[Any, Any]:
    try:
        import jax2onnx
        import onnx
    except ImportError:
        raise JaxpruneError(
            "ONNX export needs jax2onnx and onnx; install them with `pip install -e \".[onnx]\"`"
        ) from None
    return jax2onnx, onnx


def to_onnx(params: Params, config: BertConfig, *, dtype: str = "float32", opset: int = OPSET) -> Any:
    """The classifier as an ``onnx.ModelProto`` with dynamic batch and sequence length.

    Args:
      params: float32 params of ``BertForSequenceClassification(config)`` (dense, masked
        or compacted: the config's per-layer sizes are the graph's shapes).
      config: the model's config.
      dtype: ``"float32"``, or ``"float16"`` for float16 weights and matmuls (for GPUs;
        ONNX Runtime's CPU provider lacks float16 kernels for some of the ops).

    Returns:
      The model: inputs ``input_ids``/``attention_mask`` int64 (batch, sequence), output
      ``logits`` float32 (batch, num_labels).
    """
    if dtype not in DTYPES:
        raise JaxpruneError(f"`dtype` must be one of {', '.join(DTYPES)}, got {dtype!r}")
    jax2onnx, onnx = _import_onnx()
    compute = jnp.dtype(dtype)
    params, config = _one_unit_for_empty_blocks(params, config)
    model = BertForSequenceClassification(config, dtype=compute)
    weights = jax.tree.map(lambda a: jnp.asarray(a, compute), params)

    def logits(input_ids: jax.Array, attention_mask: jax.Array) -> jax.Array:
        return model.apply({"params": weights}, input_ids, attention_mask)

    spec = jax.ShapeDtypeStruct(("batch", "sequence"), jnp.int32)
    # onnx_ir warns once per shape constant it cannot type while serialising; the model is fine.
    serde_log = logging.getLogger("onnx_ir.serde")
    level = serde_log.level
    serde_log.setLevel(logging.ERROR)
    try:
        proto = jax2onnx.to_onnx(
            logits, [spec, spec], model_name="jaxprune_bert", opset=opset,
            input_names=list(INPUT_NAMES), output_names=[OUTPUT_NAME],
        )
    finally:
        serde_log.setLevel(level)
    _int64_inputs(proto, onnx)
    proto.producer_name = "jaxprune"
    return proto


def _one_unit_for_empty_blocks(params: Params, config: BertConfig) -> tuple[Params, BertConfig]:
    """Give every emptied attention block one head, and every emptied FFN one neuron, all zero.

    A compacted layer with no heads (or no neurons) adds only its output bias. Traced as is, it
    has zero-width tensors, and ONNX's Reshape reads a 0 in a target shape as "copy this
    dimension": ONNX Runtime then fails. One unit whose output weights are zero adds exactly
    nothing, whatever its activation, so the logits are unchanged.
    """
    heads = [config.layer_heads(i) for i in range(config.num_hidden_layers)]
    neurons = [config.layer_intermediate(i) for i in range(config.num_hidden_layers)]
    if min(heads) > 0 and min(neurons) > 0:
        return params, config
    hidden, head_dim = config.hidden_size, config.head_dim
    encoder = dict(params["encoder"])
    for i in range(config.num_hidden_layers):
        layer = {**encoder[f"layer_{i}"]}
        if heads[i] == 0:
            zero_in = {"kernel": np.zeros((hidden, head_dim), np.float32), "bias": np.zeros(head_dim, np.float32)}
            attention = {**layer["attention"], "query": zero_in, "key": zero_in, "value": zero_in}
            attention["output"] = {**attention["output"], "kernel": np.zeros((head_dim, hidden), np.float32)}
            layer["attention"] = attention
        if neurons[i] == 0:
            layer["intermediate"] = {"kernel": np.zeros((hidden, 1), np.float32), "bias": np.zeros(1, np.float32)}
            layer["output"] = {**layer["output"], "kernel": np.zeros((1, hidden), np.float32)}
        encoder[f"layer_{i}"] = layer
    config = config.replace(heads_per_layer=tuple(max(h, 1) for h in heads),
                            intermediate_sizes=tuple(max(n, 1) for n in neurons))
    return {**params, "encoder": encoder}, config


def _int64_inputs(proto: Any, onnx: Any) -> None:
    """Make the int32 graph inputs int64 (what tokenizers and numpy give), cast to int32 first thing."""
    graph = proto.graph
    casts = []
    for value in graph.input:
        inner = f"{value.name}_int32"
        for node in graph.node:
            node.input[:] = [inner if name == value.name else name for name in node.input]
        value.type.tensor_type.elem_type = onnx.TensorProto.INT64
        casts.append(onnx.helper.make_node("Cast", [value.name], [inner], to=onnx.TensorProto.INT32,
                                           name=f"cast_{value.name}"))
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)


QUANTIZATIONS = ("int8",)


@dataclasses.dataclass(frozen=True)
class OnnxExport:
    """What :func:`export_onnx` wrote: the model file, the files copied beside it, the check."""

    path: Path
    copied: tuple[str, ...]
    num_params: int
    dtype: str
    max_abs_diff: float | None  # |ONNX Runtime - jaxprune| logits on the check texts, if any
    int8_path: Path | None = None  # the quantised twin, with quantize="int8"
    int8_check: Any = None  # its jaxprune.export_int8.LogitComparison against the float32 file, if checked


def export_onnx(
    model: str | os.PathLike,
    output: str | os.PathLike,
    *,
    dtype: str = "float32",
    check_texts: Sequence[str] = (),
    max_length: int = 128,
    tolerance: float = 1e-4,
    quantize: str | None = None,
    per_channel: bool = True,
) -> OnnxExport:
    """Export a saved classifier (a folder, dense, pruned or compacted, or a hub id) to ``output``
    (an ``.onnx`` file).

    The folder's ``config.json`` and tokenizer files are copied beside ``output``. The file is
    written aside and renamed when complete, so an interrupted export leaves nothing half
    written. With ``check_texts``, ONNX Runtime and jaxprune both classify them (tokenized
    with the folder's tokenizer, at most ``max_length`` tokens or the model's positions); the
    largest logit difference is returned (float32 export only), and one over ``tolerance``
    raises (the file stays, for a bug report).

    With ``quantize="int8"`` (float32 only) the file is also quantised to ``model.int8.onnx``
    beside it (:func:`jaxprune.export_int8.quantize_int8`, per output channel unless
    ``per_channel=False``); with ``check_texts`` its logits and predicted classes are compared
    with the float32 file's (``int8_check``).
    """
    from jaxprune.models.bert import count_params
    from jaxprune.models.loading import from_pretrained, resolve_folder

    output = Path(output)
    if output.suffix != ".onnx":
        raise JaxpruneError(f"the output must be an .onnx file, got {output}; pass e.g. {output}.onnx")
    if output.is_dir():
        raise JaxpruneError(f"{output} is a folder; pass a file name such as {output / 'model.onnx'}")
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise JaxpruneError(f"`quantize` must be one of {', '.join(QUANTIZATIONS)}, got {quantize!r}")
    if quantize is not None and dtype != "float32":
        raise JaxpruneError(f"`quantize={quantize}` quantises a float32 export; drop `dtype={dtype}`")
    source = resolve_folder(model)  # a hub id is downloaded once, here
    params, config = from_pretrained(source)
    proto = to_onnx(params, config, dtype=dtype)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        _save_atomic(proto, output)
        copied = _copy_side_files(Path(source), output.parent)
    except OSError as err:
        raise JaxpruneError(f"cannot write {output} ({err.strerror}); choose a writable place") from None
    length = min(max_length, config.max_position_embeddings)
    diff = None
    if check_texts and dtype == "float32":
        diff = max_logit_difference(output, params, config, source, check_texts, length)
        if diff > tolerance:
            raise JaxpruneError(f"{output}'s logits differ from jaxprune's by {diff:.2e} on {len(check_texts)} "
                                f"texts, more than `tolerance={tolerance:g}`; please report it with the "
                                f"model's config.json")
    quantized, check = None, None
    if quantize == "int8":
        from jaxprune.export_int8 import compare_logits, int8_path, quantize_int8

        try:
            quantized = quantize_int8(output, int8_path(output), per_channel=per_channel)
        except OSError as err:
            raise JaxpruneError(f"cannot write {int8_path(output)} ({err.strerror}); choose a writable place") from None
        if check_texts:
            ids, mask = encode_texts(source, check_texts, length)
            check = compare_logits(_session_logits(onnx_session(quantized), ids, mask),
                                   _session_logits(onnx_session(output), ids, mask))
    return OnnxExport(output, copied, count_params(params), dtype, diff, quantized, check)


def _save_atomic(proto: Any, output: Path) -> None:
    import onnx

    external = proto.ByteSize() > EXTERNAL_DATA_BYTES
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=f".{output.name}.") as scratch:
        aside = Path(scratch) / output.name
        onnx.save_model(proto, aside, save_as_external_data=external, all_tensors_to_one_file=True,
                        location=f"{output.name}.data")
        if external:
            os.replace(Path(scratch) / f"{output.name}.data", output.parent / f"{output.name}.data")
        os.replace(aside, output)


def _copy_side_files(model_folder: Path, folder: Path) -> tuple[str, ...]:
    copied = []
    for name in SIDE_FILES:
        source, target = model_folder / name, folder / name
        if not source.is_file():
            continue
        if not (target.exists() and os.path.samefile(source, target)):
            shutil.copyfile(source, target)
        copied.append(name)
    return tuple(copied)


def onnx_session(path: str | os.PathLike, *, threads: int | None = None) -> Any:
    """An ``onnxruntime.InferenceSession`` on the CPU (or the given thread count), all graph optimisations on."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise JaxpruneError("running ONNX models needs onnxruntime; `pip install -e \".[onnx]\"`") from None
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])


def max_logit_difference(
    onnx_path: str | os.PathLike,
    params: Params,
    config: BertConfig,
    tokenizer_folder: str | os.PathLike,
    texts: Sequence[str],
    max_length: int = 128,
) -> float:
    """Largest |ONNX Runtime - jaxprune| float32 logit over ``texts`` (padded, one batch)."""
    ids, mask = encode_texts(tokenizer_folder, texts, max_length)
    ort_logits = _session_logits(onnx_session(onnx_path), ids, mask)
    jax_logits = BertForSequenceClassification(config).apply({"params": params}, ids.astype(np.int32),
                                                             mask.astype(np.int32))
    return float(np.max(np.abs(ort_logits - np.asarray(jax_logits))))


def encode_texts(tokenizer_folder: str | os.PathLike, texts: Sequence[str], max_length: int) -> tuple[np.ndarray, ...]:
    """``(input_ids, attention_mask)``, int64 (N, longest), of ``texts`` by the folder's tokenizer."""
    from jaxprune.models.loading import load_tokenizer

    encoded = load_tokenizer(tokenizer_folder)(list(texts), padding=True, truncation=True,
                                                max_length=max_length, return_tensors="np")
    return encoded["input_ids"].astype(np.int64), encoded["attention_mask"].astype(np.int64)


def _session_logits(session: Any, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    feeds = {"input_ids": ids.astype(np.int64), "attention_mask": mask.astype(np.int64)}
    return session.run([OUTPUT_NAME], feeds)[0]


def onnx_predict_logits(session: Any, encoded: Any, batch_size: int, num_labels: int) -> np.ndarray:
    """Logits (N, ``num_labels``) float32 of an ONNX classifier session for every row of
    ``encoded`` (a :class:`jaxprune.data.batching.EncodedSplit`), in row order, in the batches
    (``batch_size`` rows of one length bucket) that jaxprune's own evaluation uses."""
    from jaxprune.data.batching import epoch_plan, make_batch

    out = np.zeros((len(encoded), num_labels), np.float32)
    for rows in epoch_plan(encoded, batch_size, shuffle=False):
        batch = make_batch(encoded, rows, batch_size)
        out[rows] = _session_logits(session, batch["input_ids"], batch["attention_mask"])[: len(rows)]
    return out


def onnx_precision(path: str | os.PathLike) -> str:
    """``"int8"``, ``"float16"`` or ``"float32"``: how an exported file stores its weights."""
    import onnx

    from jaxprune.export_int8 import is_quantized

    proto = onnx.load(os.fspath(path), load_external_data=False)
    if is_quantized(proto):
        return "int8"
    half = any(t.data_type == onnx.TensorProto.FLOAT16 for t in proto.graph.initializer)
    return "float16" if half else "float32"
