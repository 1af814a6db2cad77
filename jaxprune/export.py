"""ONNX export of jaxprune BERT classifiers (dense, pruned or compacted), for ONNX Runtime.

A compacted model (per-layer head counts and FFN widths) loads only in jaxprune:
transformers refuses its shapes. Exported to ONNX it runs wherever ONNX Runtime does.

The graph (:mod:`jaxprune.onnx_graph`) is the model's forward pass written op by op in the
form ONNX Runtime's graph optimiser fuses: native LayerNormalization, attention as
MatMul/Softmax, and then, by default, ONNX Runtime's BERT fusions (one ``Attention`` node per
layer), for dense, pruned and compacted models alike. Batch and length are symbolic, so one
file serves every shape. Its interface is what Hugging Face's ONNX exports use:

- inputs ``input_ids`` and ``attention_mask``: int64 (batch, sequence), as tokenizers give
  them (token type ids are all zero, as for one text);
- output ``logits``: float32 (batch, num_labels).

The weights are initializers in the file (float32, or float16 with ``dtype="float16"``;
softmax and the logits stay float32). :func:`export_onnx` writes the ``.onnx`` file and
copies the model's ``config.json`` (its labels) and tokenizer files beside it; with
``quantize="int8"`` it also writes the dynamically quantised ``model.int8.onnx``
(:mod:`jaxprune.export_int8`). :func:`onnx_predict_logits` runs any of these files on an
encoded split, as :func:`jaxprune.evaluation.predict.predict_logits` runs a jaxprune model.

onnx and onnxruntime are in the ``onnx`` extra (``pip install -e ".[onnx]"``); importing this module
without them says so in one line.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxprune._extras import require

require(__name__, "onnx")

from jaxprune.errors import JaxpruneError
from jaxprune.models.bert import BertForSequenceClassification
from jaxprune.models.config import BertConfig
from jaxprune.onnx_graph import INPUT_NAMES, OUTPUT_NAME  # noqa: F401 - the interface, re-exported

Params = dict[str, Any]

DTYPES = ("float32", "float16")
# Files copied beside the .onnx file when the model folder has them: the labels (config.json)
# and whatever tokenizer the checkpoint ships.
SIDE_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
              "vocab.txt", "sentencepiece.bpe.model", "spiece.model")
# protobuf refuses messages over 2 GiB: larger models keep their weights in FILE.onnx.data.
EXTERNAL_DATA_BYTES = 1_800_000_000


def to_onnx(params: Params, config: BertConfig, *, dtype: str = "float32", ort_fusion: bool = True) -> Any:
    """The classifier as an ``onnx.ModelProto`` with dynamic batch and sequence length.

    Args:
      params: float32 params of ``BertForSequenceClassification(config)`` (dense, masked
        or compacted: the config's per-layer sizes are the graph's shapes).
      config: the model's config.
      dtype: ``"float32"``, or ``"float16"`` for float16 weights and matmuls (for GPUs;
        ONNX Runtime's CPU provider lacks float16 kernels for some of the ops).
      ort_fusion: apply ONNX Runtime's BERT fusions (one ``Attention`` node per layer,
        ``SkipLayerNormalization``, ``BiasGelu``: :func:`jaxprune.onnx_graph.fuse_for_onnx_runtime`);
        the file then needs ONNX Runtime. False: standard ONNX ops only, for any runtime.

    Returns:
      The model (:func:`jaxprune.onnx_graph.bert_graph`): inputs ``input_ids``/``attention_mask``
      int64 (batch, sequence), output ``logits`` float32 (batch, num_labels).
    """
    if dtype not in DTYPES:
        raise JaxpruneError(f"`dtype` must be one of {', '.join(DTYPES)}, got {dtype!r}")
    from jaxprune.onnx_graph import bert_graph, fuse_for_onnx_runtime

    model = bert_graph(jax.tree.map(np.asarray, params), config, dtype=dtype)
    return fuse_for_onnx_runtime(model) if ort_fusion else model


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
    reduce_range: bool = True,
    ort_fusion: bool = True,
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
    beside it (:func:`jaxprune.export_int8.quantize_int8` with ``per_channel`` and ``reduce_range``);
    with ``check_texts`` its logits and predicted classes are compared
    with the float32 file's (``int8_check``). ``ort_fusion`` is :func:`to_onnx`'s.
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
    proto = to_onnx(params, config, dtype=dtype, ort_fusion=ort_fusion)
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
            quantized = quantize_int8(output, int8_path(output), per_channel=per_channel, reduce_range=reduce_range)
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
    import onnxruntime as ort  # the module's guard has checked that it is installed
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
