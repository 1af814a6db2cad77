"""Wall-clock timing of the jitted BERT forward, for the pipeline and the benchmarks.

Compilation is always excluded: a function is compiled ahead of time
(``jit(...).lower(...).compile()``), run ``warmup`` times, then timed
``repeats`` times, each run blocking on its result (JAX dispatch is
asynchronous, so an unblocked timer would only measure the dispatch).

Comparisons run side by side: :func:`compare_inference` compiles both models
first and then alternates them (A B A B ...), so drift of the machine (clock
boost, other load, thermal throttling) hits both and the reported ratio stays
fair. No speed is ever asserted; results name the device they were taken on
(:func:`device_description`). What only the benchmark scripts need (device slugs,
peak FLOP/s, results files) is in ``benchmarks/_common.py``.

>>> import jax, jax.numpy as jnp
>>> from jaxprune.models.bert import init_params
>>> from jaxprune.models.config import BertConfig
>>> config = BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
...                     num_attention_heads=2, intermediate_size=32)
>>> params = init_params(config, jax.random.key(0))
>>> result = time_forward(params, config, batch_size=2, seq_length=8, repeats=3, warmup=1)
>>> result.min_s <= result.median_s <= result.max_s
True
"""

from __future__ import annotations

import dataclasses
import os
import platform
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from jaxprune.models.bert import BertForSequenceClassification, Params, inference_logits
from jaxprune.models.config import BertConfig
from jaxprune.errors import JaxpruneError


@dataclasses.dataclass(frozen=True)
class TimingResult:
    """Seconds per batch of one jitted forward, compilation excluded.

    Attributes:
      median_s / min_s / max_s: over ``repeats`` timed runs.
      sequences_per_s: ``batch_size / median_s``.
      compile_s: time to lower and compile (not part of the runs).
      times_s: every timed run, in order.
    """

    median_s: float
    min_s: float
    max_s: float
    sequences_per_s: float
    batch_size: int
    seq_length: int
    dtype: str
    repeats: int
    warmup: int
    compile_s: float
    device: str
    times_s: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy (``times_s`` becomes a list)."""
        out = dataclasses.asdict(self)
        out["times_s"] = list(self.times_s)
        return out


def device_description(device: jax.Device | None = None) -> str:
    """E.g. ``"gpu: NVIDIA H100 80GB HBM3"`` or ``"cpu: Intel(R) Xeon(R) ... (2 cores)"``."""
    device = device or jax.devices()[0]
    if device.platform != "cpu":
        return f"{device.platform}: {device.device_kind}"
    return f"cpu: {_cpu_model()} ({os.cpu_count()} cores)"


def time_calls(run: Callable[[], Any], *, repeats: int, warmup: int) -> list[float]:
    """Run ``run()`` ``warmup`` times untimed, then ``repeats`` times timed; seconds per run.

    ``run`` must block until its work is done (e.g. end in ``block_until_ready``).
    """
    _check_counts(repeats, warmup)
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return times


def time_side_by_side(
    runs: Mapping[str, Callable[[], Any]], *, repeats: int, warmup: int, settle: int = 0
) -> dict[str, list[float]]:
    """Time several blocking calls alternately: warm up each, then A B C, A B C, ...

    With ``settle``, each timed call comes right after that many untimed calls of the same
    function (A A B B C C, ...). Calls of different runtimes on a CPU need it: ONNX Runtime's
    and OpenMP's threads keep spinning for a while after a call, and a runtime whose own thread
    pool has gone to sleep wakes it first; either can double a 20 ms call. Settled, every
    runtime is timed as a server busy with it alone runs it: back to back.

    Returns seconds per call for each name, in order of the rounds.
    """
    _check_counts(repeats, warmup)
    if settle < 0:
        raise JaxpruneError(f"settle={settle}; need settle >= 0")
    for _ in range(warmup):
        for run in runs.values():
            run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            times[name] += time_calls(run, repeats=1, warmup=settle)
    return times


def summarize(times: Sequence[float], batch_size: int) -> dict[str, float]:
    """``median_s``, ``min_s``, ``max_s`` and ``sequences_per_s`` of a list of seconds per batch."""
    median = statistics.median(times)
    return {"median_s": median, "min_s": min(times), "max_s": max(times), "sequences_per_s": batch_size / median}


def time_forward(
    params: Params,
    config: BertConfig,
    *,
    batch_size: int,
    seq_length: int,
    dtype: Any = jnp.float32,
    repeats: int = 10,
    warmup: int = 2,
    seed: int = 0,
) -> TimingResult:
    """Time the jitted forward of ``BertForSequenceClassification(config, dtype)``.

    Args:
      params: float32 params for ``config`` (e.g. from ``init_params`` or ``compact``).
      config: the model's config (uniform or per-layer).
      batch_size / seq_length: shape of the random ``input_ids`` (B, T) int32;
        the attention mask is all ones (no padding).
      dtype: compute dtype (``jnp.float32`` or ``jnp.bfloat16``).
      repeats / warmup: timed and untimed runs after compilation.
      seed: seed of the random token ids.

    Returns:
      A :class:`TimingResult` (seconds per batch).
    """
    _check_counts(repeats, warmup)
    run, compile_s = compiled_forward(params, config, batch_size, seq_length, dtype, seed)
    times = time_calls(run, repeats=repeats, warmup=warmup)
    return _result(times, batch_size, seq_length, dtype, warmup, compile_s)


def compare_inference(
    dense: tuple[Params, BertConfig],
    compacted: tuple[Params, BertConfig],
    *,
    batch_size: int,
    seq_length: int,
    dtype: Any = jnp.float32,
    repeats: int = 10,
    warmup: int = 2,
    parallel: Any = None,
) -> dict[str, Any]:
    """Time two models side by side on the same random batch shape (split over ``parallel``'s
    mesh when it has several devices).

    Both are compiled and warmed up first; then the timed runs alternate
    (dense, compacted, dense, compacted, ...) so drift of the machine affects
    both equally.

    Args:
      dense / compacted: ``(params, config)`` of each model.
      batch_size / seq_length / dtype / repeats / warmup: as in :func:`time_forward`.

    Returns:
      JSON-ready dict: ``dense`` and ``compacted`` (each a :class:`TimingResult`
      dict), ``dense_median_s``, ``compacted_median_s``, ``speedup``
      (``dense_median_s / compacted_median_s``), ``batch_size``,
      ``seq_length``, ``dtype``, ``device``, ``repeats``.
    """
    _check_counts(repeats, warmup)
    runs = {}
    compile_s = {}
    for name, (params, config) in (("dense", dense), ("compacted", compacted)):
        runs[name], compile_s[name] = compiled_forward(params, config, batch_size, seq_length, dtype,
                                                       parallel=parallel)
    times = time_side_by_side(runs, repeats=repeats, warmup=warmup)
    results = {
        name: _result(times[name], batch_size, seq_length, dtype, warmup, compile_s[name]) for name in runs
    }
    return {
        "dense": results["dense"].to_dict(),
        "compacted": results["compacted"].to_dict(),
        "dense_median_s": results["dense"].median_s,
        "compacted_median_s": results["compacted"].median_s,
        "speedup": results["dense"].median_s / results["compacted"].median_s,
        "batch_size": batch_size,
        "seq_length": seq_length,
        "dtype": jnp.dtype(dtype).name,
        "device": device_description(),
        "repeats": repeats,
    }


def compiled_forward(
    params: Params, config: BertConfig, batch_size: int, seq_length: int, dtype: Any = jnp.float32, seed: int = 0,
    parallel: Any = None,
) -> tuple[Callable[[], jax.Array], float]:
    """A no-argument call of the compiled forward on random ids that blocks on the
    (B, num_labels) float32 logits it returns, and the seconds spent compiling it.

    The forward is :func:`jaxprune.models.bert.inference_logits` (micro-batched on CPU),
    the path ``predict_logits`` evaluates with."""
    if batch_size < 1 or seq_length < 1:
        raise JaxpruneError(f"batch_size={batch_size}, seq_length={seq_length}; both must be >= 1")
    if seq_length > config.max_position_embeddings:
        raise JaxpruneError(
            f"seq_length {seq_length} exceeds max_position_embeddings "
            f"{config.max_position_embeddings}; time a shorter length"
        )
    if parallel is not None and parallel.size > 1:
        batch_size = parallel.padded_batch_size(batch_size)
    model = BertForSequenceClassification(config, dtype=dtype)
    input_ids = jax.random.randint(
        jax.random.key(seed), (batch_size, seq_length), 0, config.vocab_size, dtype=jnp.int32
    )
    attention_mask = jnp.ones_like(input_ids)
    if parallel is not None and parallel.size > 1:  # the batch split over the mesh, as in training
        params = parallel.put(params)
        input_ids, attention_mask = (jax.device_put(x, parallel.batch_sharding) for x in (input_ids, attention_mask))
    else:
        params = jax.device_put(params)

    def forward(params: Params, input_ids: jax.Array, attention_mask: jax.Array) -> jax.Array:
        return inference_logits(model, params, input_ids, attention_mask)

    start = time.perf_counter()
    compiled = jax.jit(forward).lower(params, input_ids, attention_mask).compile()
    compile_s = time.perf_counter() - start
    return (lambda: compiled(params, input_ids, attention_mask).block_until_ready()), compile_s


def _result(
    times: Sequence[float], batch_size: int, seq_length: int, dtype: Any, warmup: int, compile_s: float
) -> TimingResult:
    return TimingResult(
        **summarize(times, batch_size),
        batch_size=batch_size,
        seq_length=seq_length,
        dtype=jnp.dtype(dtype).name,
        repeats=len(times),
        warmup=warmup,
        compile_s=compile_s,
        device=device_description(),
        times_s=tuple(times),
    )


def _check_counts(repeats: int, warmup: int) -> None:
    if repeats < 1 or warmup < 0:
        raise JaxpruneError(f"repeats={repeats}, warmup={warmup}; need repeats >= 1 and warmup >= 0")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
