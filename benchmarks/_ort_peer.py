"""The ONNX Runtime peer of the inference benchmark: the same BERT exported to ONNX, run by ORT.

Every graph is float32 with the interface of Hugging Face's ONNX exports: int64 inputs
``input_ids`` and ``attention_mask`` (batch, sequence; both dynamic), output ``logits``.

* ``dense-torch``: what a user without jaxprune serves. transformers'
  ``BertForSequenceClassification`` with the dense weights (``benchmarks/_torch_peer.py``;
  the mean-pooling twin for e5-small) is exported with ``torch.onnx.export``. The exporter is
  the TorchScript one (``dynamo=False``): torch 2.13 still ships it, it runs offline and needs
  nothing but torch, whereas the torch.export-based one (the default since torch 2.9) imports
  onnxscript, which nothing else here needs. It traces with example ids of 3x12 tokens, not
  the parity check's 2x16, so a shape frozen into the graph would fail that check.
* ``dense`` and ``sNN``: :func:`jaxprune.export.to_onnx` of jaxprune's dense and compacted
  params (:mod:`jaxprune.onnx_graph`, with ONNX Runtime's BERT fusions), saved with
  ``onnx.save_model``.

With ``int8``, every file is also quantised by :func:`jaxprune.export_int8.quantize_int8`
(ONNX Runtime's dynamic quantisation, per channel, 7-bit weights, as ``export_onnx.py
--quantize int8`` does) into the session ``<name>-int8``: ``dense-torch-int8`` is what a user
of Hugging Face Optimum's dynamic quantisation serves. Int8 logits are not checked against JAX's (they
differ by design; the largest difference goes to the notes).

Each file is loaded by :func:`jaxprune.export.onnx_session` (CPU provider, ``ORT_ENABLE_ALL``
graph optimisation, ORT's default intra-op threads) and deleted; the session keeps the graph.
``ort_parity`` checks every session against the JAX logits before anything is timed, and
raises when they differ by more than ``PARITY_TOLERANCE``.

onnxruntime here is the CPU package, so ``benchmarks/inference.py`` runs this peer only on
JAX's CPU backend. onnx and onnxruntime are imported only when the peer runs.
"""

from __future__ import annotations

import os
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

TORCH_EXPORT = "dense-torch"  # the session name of transformers' exported dense model
INT8 = "-int8"  # suffix of the session name of a file's dynamically quantised twin
PARITY_TOLERANCE = 1e-4  # max |ORT - JAX| float32 logit
OPSET = 18  # the TorchScript exporter's newest; jaxprune.export uses its own (21)


def import_ort() -> Any:
    """The onnxruntime module, or ``None`` when onnxruntime or onnx is missing."""
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError:
        return None
    return onnxruntime


def export_transformers(torch: Any, torch_model: Any, path: Path) -> None:
    """``torch.onnx.export`` (TorchScript) of a float32 CPU transformers classifier to ``path``."""
    example = torch.randint(0, 100, (3, 12))
    tokens = {0: "batch", 1: "sequence"}
    with warnings.catch_warnings():
        # The exporter's deprecation notice and transformers' TracerWarnings on Python ifs that
        # read shapes; ort_parity checks the graph at another shape.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            torch_model, (), os.fspath(path), kwargs={"input_ids": example, "attention_mask": torch.ones_like(example)},
            input_names=["input_ids", "attention_mask"], output_names=["logits"], opset_version=OPSET,
            dynamic_axes={"input_ids": tokens, "attention_mask": tokens, "logits": {0: "batch"}},
            dynamo=False,
        )


def ort_sessions(model: Any, notes: list[str], int8: bool = False) -> tuple[dict[str, Any], dict[str, float]]:
    """ORT sessions of ``model``'s variants, plus ``dense-torch`` when the PyTorch peer is on
    (and with ``int8`` each one's quantised twin), and the seconds each export took.

    ``model`` is ``inference.Model`` (its ``name``, ``variants``, ``torch`` and ``torch_model``).
    """
    import onnx
    import onnxruntime

    from jaxprune.export import onnx_session, to_onnx
    from jaxprune.export_int8 import quantize_int8

    sessions, export_s = {}, {}
    with tempfile.TemporaryDirectory(prefix="jaxprune_ort_") as folder:
        exports: list[tuple[str, Callable[[Path], None]]] = []
        if model.torch is not None:
            dense_torch = model.torch_model("dense", "float32")
            exports.append((TORCH_EXPORT, lambda path: export_transformers(model.torch, dense_torch, path)))
        else:
            notes.append(f"{model.name}: ORT of the transformers export skipped (needs the PyTorch peer, --torch on)")
        for variant, (params, config, _) in model.variants.items():
            exports.append((variant, lambda path, p=params, c=config: onnx.save_model(to_onnx(p, c), os.fspath(path))))
        for name, export in exports:
            path = Path(folder) / f"{name}.onnx"
            start = time.perf_counter()
            export(path)
            export_s[name] = time.perf_counter() - start
            threads_before = _thread_count()
            sessions[name] = onnx_session(path)
            if int8:
                start = time.perf_counter()
                quantized = quantize_int8(path, path.with_name(f"{name}{INT8}.onnx"))
                export_s[name + INT8] = export_s[name] + time.perf_counter() - start
                sessions[name + INT8] = onnx_session(quantized)
                quantized.unlink()
            path.unlink()
            said = any(note.startswith("ONNX Runtime ") for note in notes)
            if threads_before is not None and len(sessions) == 1 and not said:
                # ORT's default: an intra-op pool of one thread per physical core, the caller included.
                threads = 1 + _thread_count() - threads_before
                notes.append(f"ONNX Runtime {onnxruntime.__version__}: CPU provider, ORT_ENABLE_ALL, default "
                             f"intra-op threads ({threads} here: the first session started {threads - 1} "
                             f"worker thread(s) besides the caller)")
    return sessions, export_s


def _thread_count() -> int | None:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return None


def ort_runner(session: Any, ids: Any) -> Callable[[], np.ndarray]:
    """A no-argument blocking run of ``session`` on ``ids`` (B, T) as int64 with an all-ones mask;
    returns the (B, C) float32 logits."""
    input_ids = np.asarray(ids, dtype=np.int64)
    feeds = {"input_ids": input_ids, "attention_mask": np.ones_like(input_ids)}
    return lambda: session.run(["logits"], feeds)[0]


def ort_parity(model: Any, sessions: dict[str, Any], notes: list[str]) -> dict[str, float]:
    """Max |logit difference| ORT vs JAX (float32, 2x16 random ids) per session, appended to
    ``notes``; ``dense-torch`` is compared with the JAX dense model, an int8 twin with its variant.

    Raises:
      RuntimeError: a float32 session differs by more than ``PARITY_TOLERANCE``; it would time
        another model.
    """
    import jax

    from jaxprune.models.bert import BertForSequenceClassification

    ids = jax.random.randint(jax.random.key(1), (2, 16), 0, model.config.vocab_size)
    jax_logits = {variant: np.asarray(BertForSequenceClassification(config).apply({"params": params}, ids))
                  for variant, (params, config, _) in model.variants.items()}
    out = {}
    for name, session in sessions.items():
        variant = name.removesuffix(INT8)
        expected = jax_logits["dense" if variant == TORCH_EXPORT else variant]
        out[name] = float(np.max(np.abs(ort_runner(session, ids)() - expected)))
    notes.append(f"{model.name}: max |ORT - JAX| fp32 logits per ORT variant {out}")
    wrong = {name: diff for name, diff in out.items() if not name.endswith(INT8) and not diff <= PARITY_TOLERANCE}
    if wrong:
        raise RuntimeError(f"ORT peer of {model.name}: logits differ from JAX by more than "
                           f"{PARITY_TOLERANCE} ({wrong}); the exported graphs are not the timed model")
    return out
