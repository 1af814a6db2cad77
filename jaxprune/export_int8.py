"""int8 ONNX classifiers: ONNX Runtime's dynamic quantisation of an exported float32 file, and its check.

Dynamic quantisation (``onnxruntime.quantization.quantize_dynamic``) stores every weight matrix
of a MatMul or Gemm, and the embedding tables, as int8 with a float scale; activations are
quantised on the fly, batch by batch, so no calibration data is needed. The file is about a
quarter of the float32 one and runs the matrix products as int8 on CPUs.

Weights are quantised per output channel (one scale per column: a few outlier columns then
cost the others no precision) and in 7 bits (``reduce_range``): on x86 CPUs without VNNI,
ONNX Runtime's uint8 x int8 kernels add pairs of products in 16 bits, which 8-bit weights can
overflow. Both settings are arguments of :func:`quantize_int8`.

The check is about the task: :func:`compare_logits` gives the largest logit difference and the
fraction of texts whose predicted class (argmax) is the same in int8 and float32.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from jaxprune._extras import require

require(__name__, "onnx")


INT8_SUFFIX = ".int8.onnx"
# Nodes that only a dynamically quantised graph has.
QUANTIZED_OPS = frozenset({"DynamicQuantizeLinear", "MatMulInteger", "DynamicQuantizeMatMul", "QGemm"})


def int8_path(fp32_path: str | os.PathLike) -> Path:
    """Where the int8 twin of ``fp32_path`` goes: ``model.onnx`` -> ``model.int8.onnx``, beside it."""
    path = Path(fp32_path)
    return path.with_name(path.name.removesuffix(".onnx") + INT8_SUFFIX)


def quantize_int8(
    fp32_path: str | os.PathLike,
    output: str | os.PathLike,
    *,
    per_channel: bool = True,
    reduce_range: bool = True,
) -> Path:
    """Write the dynamically quantised (int8 weights) version of the float32 ONNX file ``fp32_path``.

    The file is written aside and renamed into place when complete. Returns ``output``.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic  # the module's guard checked onnxruntime
    fp32_path, output = Path(fp32_path), Path(output)
    external = fp32_path.with_name(fp32_path.name + ".data").is_file()
    # quantize_dynamic advises, on the root logger, a pre-processing pass that dynamic
    # quantisation of a float32 BERT does not need (it only speeds up static quantisation).
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with tempfile.TemporaryDirectory(dir=output.parent, prefix=f".{output.name}.") as scratch:
            aside = Path(scratch) / output.name
            # ONNX's shape inference cannot type the outputs of ORT's fused ops (Attention,
            # SkipLayerNormalization): in a float32 export every such tensor is float32.
            quantize_dynamic(fp32_path, aside, per_channel=per_channel, reduce_range=reduce_range,
                             weight_type=QuantType.QInt8, use_external_data_format=external,
                             extra_options={"DefaultTensorType": 1})  # onnx.TensorProto.FLOAT
            for written in Path(scratch).iterdir():
                if written != aside:  # FILE.onnx.data of a large model
                    os.replace(written, output.parent / written.name)
            os.replace(aside, output)
    finally:
        root.setLevel(level)
    return output


def is_quantized(model_proto) -> bool:
    """Whether an ``onnx.ModelProto`` is a dynamically quantised graph."""
    return any(node.op_type in QUANTIZED_OPS for node in model_proto.graph.node)


@dataclasses.dataclass(frozen=True)
class LogitComparison:
    """A candidate model's logits against a reference's on the same texts."""

    count: int  # texts compared
    max_abs_diff: float  # largest |candidate - reference| logit
    argmax_agreement: float  # fraction of texts with the same predicted class


def compare_logits(candidate: np.ndarray, reference: np.ndarray) -> LogitComparison:
    """Compare (N, C) logits row by row.

    >>> compare_logits(np.array([[1.0, 0.0], [0.0, 2.0]]), np.array([[0.5, 0.0], [1.0, 0.0]]))
    LogitComparison(count=2, max_abs_diff=2.0, argmax_agreement=0.5)
    """
    if candidate.shape != reference.shape:
        raise ValueError(f"logits of shapes {candidate.shape} and {reference.shape} cannot be compared")
    same = candidate.argmax(axis=-1) == reference.argmax(axis=-1)
    return LogitComparison(int(len(same)), float(np.max(np.abs(candidate - reference))), float(same.mean()))
