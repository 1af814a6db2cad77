"""What every benchmark script shares: device names, peak FLOP/s, versions, results files.

None of this is library code: jaxprune itself only times (``jaxprune.evaluation.timing``);
naming the device in a file name, looking up its datasheet peak and writing the
``<name>_<device>_<date>.{json,md}`` pair are the benchmarks' own business.

>>> import types
>>> device_slug(types.SimpleNamespace(platform="gpu", device_kind="NVIDIA H100 80GB HBM3"))
'h100'
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp

from jaxprune.errors import JaxpruneError

# Dense peak FLOP/s (no structured sparsity) of accelerators we know, by
# substring of ``device_kind`` (lower case), for model-FLOPs utilisation.
# SXM figures from NVIDIA's datasheets; fp32 means plain FP32 (not TF32).
PEAK_FLOPS: dict[str, dict[str, float]] = {
    "h100": {"bfloat16": 989e12, "float32": 67e12},
    "h200": {"bfloat16": 989e12, "float32": 67e12},
    "a100": {"bfloat16": 312e12, "float32": 19.5e12},
}


MODELS = ("minilm", "e5-small", "mahabert")  # the shapes the benchmarks time, with random weights


def model_config(name: str) -> Any:
    """The ``BertConfig`` of the benchmark shape ``name`` (one of :data:`MODELS`)."""
    from jaxprune.models.config import e5_small_config, mahabert_config, minilm_config

    return {"minilm": minilm_config, "e5-small": e5_small_config, "mahabert": mahabert_config}[name]()


def device_slug(device: jax.Device | None = None) -> str:
    """A short file-name-safe device kind: ``"cpu"``, ``"h100"``, ``"a100"``, ``"gpu"``..."""
    device = device or jax.devices()[0]
    if device.platform == "cpu":
        return "cpu"
    kind = device.device_kind.lower()
    for known in PEAK_FLOPS:
        if known in kind:
            return known
    slug = "".join(c if c.isalnum() else "-" for c in kind).strip("-")
    return slug or device.platform


def peak_flops_per_s(dtype: Any, device: jax.Device | None = None) -> float | None:
    """Datasheet dense peak FLOP/s of ``device`` for ``dtype``; ``None`` when unknown (e.g. CPU)."""
    device = device or jax.devices()[0]
    if device.platform == "cpu":
        return None
    kind = device.device_kind.lower()
    for known, peaks in PEAK_FLOPS.items():
        if known in kind:
            return peaks.get(jnp.dtype(dtype).name)
    return None


def versions() -> dict[str, str | None]:
    """Versions of Python and the packages a benchmark depends on (``None`` if not installed).

    Read from package metadata, so nothing (torch in particular) is imported.
    """
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in ("jax", "jaxlib", "flax", "optax", "torch", "transformers"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def unused_stem(folder: os.PathLike | str, stem: str, suffixes: tuple[str, ...] = (".json", ".md")) -> str:
    """``stem``, or ``stem_run2``, ``stem_run3``...: the first with no ``<stem><suffix>`` in ``folder``,
    so a second run of a benchmark on the same day never overwrites the first one's results."""
    folder = os.fspath(folder)
    candidate, number = stem, 1
    while any(os.path.exists(os.path.join(folder, candidate + suffix)) for suffix in suffixes):
        number += 1
        candidate = f"{stem}_run{number}"
    return candidate


def write_results(
    folder: os.PathLike | str,
    stem: str,
    payload: Mapping[str, Any],
    markdown: str,
    *,
    unique: bool = True,
    echo: bool = True,
) -> str:
    """Write ``<folder>/<stem>.json`` and ``.md`` for a benchmark run; print the table if ``echo``.

    With ``unique`` (the default) existing results are kept: the files get the first
    free name of :func:`unused_stem`. ``unique=False`` writes ``stem`` itself, e.g. to
    update a run's own files as it goes. Returns the path written, without its suffix.

    The scripts' results folder is their ``--out`` flag, which the message names: this
    module is part of the command-line scripts, not of the library.
    """
    try:
        os.makedirs(folder, exist_ok=True)
        base = os.path.join(os.fspath(folder), unused_stem(folder, stem) if unique else stem)
        with open(base + ".json", "w", encoding="utf-8") as file:
            json.dump(payload, file, indent=1)
        with open(base + ".md", "w", encoding="utf-8") as file:
            file.write(markdown)
    except OSError as err:
        raise JaxpruneError(f"cannot write results to {folder} ({err.strerror}); pass a writable --out") from None
    if echo:
        print(markdown)
        print(f"wrote {base}.json and .md")
    return base
