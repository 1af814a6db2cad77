"""Latency and throughput of jitted BERT inference: dense vs compacted, JAX vs PyTorch vs ONNX Runtime.

For every cell (model, batch size, length) all variants in all dtypes are
compiled first and then timed alternately, round after round (see
``jaxprune.evaluation.timing.time_side_by_side``), so the ratios in one cell, bf16
compacted vs fp32 dense included, are measured side by side. On a CPU each timed call
comes right after an untimed call of the same run (``--settle 1``): after another
runtime's call, ORT's and OpenMP's still-spinning threads and a runtime's own sleeping
pool made 20 ms calls take 40-120 ms on 2 cores. The runs:

* ``jax/dense`` and ``jax/sNN``: the jaxprune Flax BERT, dense, and compacted
  to encoder sparsity NN% by keeping a uniform fraction ``1 - NN/100`` of the
  attention heads and of the FFN neurons in every layer (12 heads -> 9/6/3;
  MahaBERT FFN 3072 -> 2304/1536/768; MiniLM and e5-small 1536 -> 1152/768/384). Head and
  neuron parameters scale with the number kept, so the encoder's parameter
  count falls by NN% up to LayerNorm and output biases; the exact fraction is
  in the results. The compacted params are slices of the dense ones (what
  ``jaxprune.models.compaction.compact`` returns for a model whose other heads/neurons
  were pruned); the weights are random (speed does not depend on them).
* ``torch_eager/...``: transformers' ``BertForSequenceClassification`` with
  the same weights and shapes (``benchmarks/_torch_peer.py``) (compacted layers get narrower ``nn.Linear``
  modules), ``eval()`` + ``torch.inference_mode()``, default (SDPA) attention.
* ``torch_compile/...``: the same under ``torch.compile`` (failures recorded).
* ``ort/float32/...`` (float32 cells, JAX on the CPU only: onnxruntime is the CPU package):
  ONNX Runtime, CPU provider, all graph optimisations, default threads
  (``benchmarks/_ort_peer.py``). ``ort/float32/dense-torch`` runs transformers' own
  ``torch.onnx.export`` of the dense model, what serving without jaxprune gives;
  ``ort/float32/dense`` and ``ort/float32/sNN`` run ``jaxprune.export.to_onnx`` of the dense
  and compacted params. Rows get ``ort_speedup_vs_ort_dense`` (against that transformers
  export) and ``jax_speedup_vs_ort``; every row names the ``fastest`` runtime.
* ``ort/int8/...`` (with ``--ort-int8 on``): each of those files dynamically quantised
  (``jaxprune.export_int8``): ``ort/int8/dense-torch`` is transformers' export quantised, the
  int8 model a user without jaxprune would pick. Rows get ``ort_int8`` and
  ``ort_int8_speedup_vs_ort_dense`` / ``_vs_ort_dense_int8`` (against transformers' export in
  fp32 / int8).

Models: ``minilm`` (all-MiniLM-L6-v2's shape), ``e5-small`` (multilingual-e5-small's: 12
layers of MiniLM's width, 250k vocabulary, mean pooling) and ``mahabert`` (BERT-base).
Before timing, the PyTorch and ORT peers' float32 logits are checked against JAX's
(the ORT check raises above 1e-4).

Random token ids, no padding. Results go to
``benchmarks/results/inference_<device>_<date>.{json,md}`` (written by
``benchmarks/_inference_report.py``).

Usage (see docs/benchmarks.md): ``python benchmarks/inference.py`` runs the
device default grid (the full grid on GPU, a ~5 minute grid on CPU).
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # run as a file: the scripts' folders import from the checkout's root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._inference_report import fastest, write_report
from benchmarks._ort_peer import INT8, TORCH_EXPORT, import_ort, ort_parity, ort_runner, ort_sessions
from benchmarks._torch_peer import build_torch_model, import_torch, torch_parity, torch_runner
from experiments.cli_args import Parser, fraction_pruned, run_script, whole_number

RESULTS = Path(__file__).resolve().parent / "results"
SPARSITIES = (0.25, 0.5, 0.75)
GPU_BATCH_SIZES, GPU_LENGTHS = (1, 32, 128), (128, 512)
# (model, batch size, length, dtypes, try torch.compile): about 5 minutes on 2 CPU cores.
CPU_CELLS = (
    ("minilm", 1, 128, ("float32", "bfloat16"), False),
    ("minilm", 32, 128, ("float32", "bfloat16"), True),
    ("minilm", 8, 512, ("float32",), False),
    ("mahabert", 1, 128, ("float32", "bfloat16"), False),
    ("mahabert", 32, 128, ("float32",), False),
)
QUICK_CELLS = (("minilm", 1, 128, ("float32",), False), ("minilm", 4, 128, ("float32",), False))
# PyTorch's CPU bfloat16 kernels are far slower than float32 here (no AVX512-BF16):
# on CPU the bf16 peer runs only up to this many tokens per batch.
CPU_TORCH_BF16_MAX_TOKENS = 1024
MAX_LENGTH = 512  # max_position_embeddings of every model shape


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = Parser(description=__doc__.split("\n")[0])
    # Without a grid flag (these four) CPU runs CPU_CELLS and --quick QUICK_CELLS; otherwise the
    # product of the four, each taking these values unless given.
    fixed = "; with no grid flag on CPU or with --quick: a fixed grid"
    parser.add_argument("--models", nargs="+", choices=("minilm", "e5-small", "mahabert"),
                        help=f"models to time (default: mahabert minilm{fixed})")
    parser.add_argument("--batch-sizes", nargs="+", type=whole_number(1),
                        help=f"(default: {' '.join(map(str, GPU_BATCH_SIZES))}{fixed})")
    parser.add_argument("--lengths", nargs="+", type=whole_number(1),
                        help=f"at most {MAX_LENGTH} (all models) (default: {' '.join(map(str, GPU_LENGTHS))}{fixed})")
    parser.add_argument("--dtypes", nargs="+", choices=("float32", "bfloat16"),
                        help=f"(default: float32 bfloat16{fixed})")
    parser.add_argument("--sparsities", nargs="+", type=fraction_pruned,
                        help=f"encoder sparsities (default: {' '.join(map(str, SPARSITIES))}; 0.5 with --quick)")
    parser.add_argument("--repeats", type=whole_number(1),
                        help="timed rounds (default: 20 on GPU, 3 on CPU, 2 with --quick)")
    parser.add_argument("--warmup", type=whole_number(0),
                        help="untimed rounds after compiling (default: 3 on GPU, 1 on CPU)")
    parser.add_argument("--settle", type=whole_number(0),
                        help="untimed calls right before each timed one, so it follows a call of its own runtime, "
                             "not another's spinning threads (default: 1 on CPU, 0 on GPU)")
    parser.add_argument("--torch", choices=("on", "off"), default="on", help="run the PyTorch peer")
    parser.add_argument("--ort", choices=("on", "off"), default="on",
                        help="run the ONNX Runtime peer (float32, JAX on the CPU only)")
    parser.add_argument("--ort-int8", choices=("on", "off"), default="on",
                        help="also time every ORT file dynamically quantised to int8")
    parser.add_argument("--torch-compile", choices=("auto", "dense", "all", "off"), default="auto",
                        help="torch.compile variants; auto = the dense model at 32x128 on GPU, the marked CPU cell "
                             "on CPU")
    parser.add_argument("--xla-flags", default="", help="appended to XLA_FLAGS before JAX starts")
    parser.add_argument("--quick", action="store_true", help="tiny smoke grid (MiniLM, fp32, 50%%)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder")
    args = parser.parse_args(argv)
    if args.lengths and max(args.lengths) > MAX_LENGTH:
        parser.error(f"--lengths {max(args.lengths)} exceeds the models' {MAX_LENGTH} position embeddings")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.xla_flags:
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + args.xla_flags).strip()
    # JAX must not grab most of the GPU: the PyTorch peer shares it.
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    import jax

    from benchmarks._common import device_slug, unused_stem

    on_gpu = jax.devices()[0].platform != "cpu"
    cells = grid(args, on_gpu)
    sparsities = tuple(args.sparsities or ((0.5,) if args.quick else SPARSITIES))
    repeats = args.repeats or (2 if args.quick else 20 if on_gpu else 3)
    warmup = args.warmup if args.warmup is not None else (3 if on_gpu else 1)
    args.settle = args.settle if args.settle is not None else (0 if on_gpu else 1)  # the report reads it
    torch = import_torch() if args.torch == "on" else None
    started = time.time()
    load_before = os.getloadavg()
    rows, notes = [], []
    if args.torch == "on" and torch is None:
        notes.append("torch is not installed: PyTorch peer skipped")
    ort = import_ort() if args.ort == "on" and not on_gpu else None
    if args.ort == "on" and on_gpu:
        notes.append(f"ONNX Runtime peer skipped: JAX's backend is {jax.default_backend()} and onnxruntime "
                     f"here is the CPU package")
    elif args.ort == "on" and ort is None:
        notes.append("onnxruntime or onnx is not installed: ONNX Runtime peer skipped")
    models = {}
    # The files are written before the first cell (an unwritable --out fails at once) and
    # rewritten before every other, so a run cut short (Ctrl-C, a killed job) keeps the cells it timed.
    stem = unused_stem(args.out, f"inference_{device_slug()}_{datetime.date.today().isoformat()}"
                                 f"{'_quick' if args.quick else ''}")
    for done, (model_name, batch_size, length, dtypes, compile_cell) in enumerate(cells):
        partial = [*notes, f"partial: {done} of {len(cells)} cells timed so far"]
        write_report(args, argv, rows, partial, repeats, warmup, started, load_before, stem, final=False)
        if model_name not in models:
            models.clear()  # one model at a time: MahaBERT with its PyTorch and ORT twins holds ~8 GB
            models[model_name] = Model(model_name, sparsities, torch, ort is not None, notes, args.ort_int8 == "on")
        compile_mode = resolve_compile(args.torch_compile, on_gpu, compile_cell)
        print(f"[inference] cell {done + 1}/{len(cells)}: {model_name} {batch_size}x{length} "
              f"{', '.join(dtypes)}", flush=True)
        rows += models[model_name].time_cell(batch_size, length, dtypes, repeats, warmup, args.settle, compile_mode,
                                             on_gpu, notes)
    return write_report(args, argv, rows, notes, repeats, warmup, started, load_before, stem)


def grid(args: argparse.Namespace, on_gpu: bool) -> list[tuple[str, int, int, tuple[str, ...], bool]]:
    """The cells to time: explicit flags make a full product, else the device default."""
    explicit = args.models or args.batch_sizes or args.lengths or args.dtypes
    if args.quick and not explicit:
        return list(QUICK_CELLS)
    if not explicit and not on_gpu:
        return list(CPU_CELLS)
    cells = []
    for model in args.models or ("mahabert", "minilm"):
        for batch_size in args.batch_sizes or GPU_BATCH_SIZES:
            for length in args.lengths or GPU_LENGTHS:
                # torch.compile only where the GPU goals are set: each compile takes minutes, and
                # dynamo falls back to eager once one model class has been recompiled 8 times.
                compile_cell = on_gpu and (batch_size, length) == (32, 128)
                cells.append((model, batch_size, length, tuple(args.dtypes or ("float32", "bfloat16")), compile_cell))
    return cells


def resolve_compile(flag: str, on_gpu: bool, compile_cell: bool) -> str:
    if flag == "auto":
        return "dense" if compile_cell else "off"
    return flag


class Model:
    """Dense and compacted params of one model, their PyTorch twins (built on demand) and,
    with ``ort``, their ONNX Runtime sessions (float32)."""

    def __init__(self, name: str, sparsities: tuple[float, ...], torch, ort: bool, notes: list[str],
                 int8: bool = False):
        import jax

        from jaxprune.models.bert import count_params, init_params
        from benchmarks._common import model_config

        self.name = name
        self.config = model_config(name)
        dense = init_params(self.config, jax.random.key(0))
        self.variants = {"dense": (dense, self.config, 0.0)}
        for sparsity in sparsities:
            params, config = keep_uniform(dense, self.config, 1.0 - sparsity)
            self.variants[f"s{round(100 * sparsity)}"] = (params, config, sparsity)
        self.encoder_params = {k: count_params(v[0]["encoder"]) for k, v in self.variants.items()}
        self.torch = torch
        self.torch_models: dict[tuple[str, str], Any] = {}
        if torch is not None:
            self.parity = torch_parity(self, notes)
        self.ort_sessions, self.ort_export_s = ort_sessions(self, notes, int8) if ort else ({}, {})
        if ort:
            self.ort_parity = ort_parity(self, self.ort_sessions, notes)

    def torch_model(self, variant: str, dtype: str):
        key = (variant, dtype)
        if key not in self.torch_models:
            params, config, _ = self.variants[variant]
            self.torch_models[key] = build_torch_model(self.torch, params, config, dtype)
        return self.torch_models[key]

    def time_cell(self, batch_size, length, dtypes, repeats, warmup, settle, compile_mode, on_gpu, notes):
        """Every variant in every dtype of one (batch, length), timed side by side: one row each."""
        import jax
        import jax.numpy as jnp

        from jaxprune.evaluation.timing import compiled_forward, summarize, time_side_by_side

        runs, compile_s, compile_errors = {}, {}, {}
        ids = jax.random.randint(jax.random.key(0), (batch_size, length), 0, self.config.vocab_size)
        for dtype in dtypes:
            for variant, (params, config, _) in self.variants.items():
                runs[f"jax/{dtype}/{variant}"], compile_s[f"jax/{dtype}/{variant}"] = compiled_forward(
                    params, config, batch_size, length, jnp.dtype(dtype)
                )
            if dtype == "float32":
                for name, session in self.ort_sessions.items():
                    key = f"ort/int8/{name.removesuffix(INT8)}" if name.endswith(INT8) else f"ort/float32/{name}"
                    runs[key] = ort_runner(session, ids)
            if self.torch is None:
                continue
            if dtype == "bfloat16" and not on_gpu and batch_size * length > CPU_TORCH_BF16_MAX_TOKENS:
                notes.append(f"{self.name} {batch_size}x{length} bfloat16: PyTorch peer skipped on CPU "
                             f"(more than {CPU_TORCH_BF16_MAX_TOKENS} tokens; its CPU bf16 kernels are very slow)")
                continue
            for variant in self.variants:
                model = self.torch_model(variant, dtype)
                runs[f"torch_eager/{dtype}/{variant}"] = torch_runner(self.torch, model, ids, on_gpu)
                if compile_mode == "all" or (compile_mode == "dense" and variant == "dense"):
                    name = f"torch_compile/{dtype}/{variant}"
                    start = time.perf_counter()
                    try:
                        run = torch_runner(self.torch, self.torch.compile(model), ids, on_gpu)
                        run()
                        runs[name] = run
                        compile_s[name] = time.perf_counter() - start
                    except Exception as err:  # noqa: BLE001 - any compile failure is a result
                        compile_errors[name] = f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"
        times = time_side_by_side(runs, repeats=repeats, warmup=warmup, settle=settle)
        median = {name: summarize(seconds, batch_size)["median_s"] for name, seconds in times.items()}
        rows = []
        for dtype in dtypes:
            for variant, (_, config, sparsity) in self.variants.items():
                jax_name = f"jax/{dtype}/{variant}"
                row = {
                    "model": self.name, "batch_size": batch_size, "seq_length": length, "dtype": dtype,
                    "variant": variant, "sparsity": sparsity,
                    "heads_per_layer": config.layer_heads(0), "intermediate_size": config.layer_intermediate(0),
                    "encoder_params": self.encoder_params[variant],
                    "encoder_fraction_kept": self.encoder_params[variant] / self.encoder_params["dense"],
                    "jax": summarize(times[jax_name], batch_size), "jax_compile_s": compile_s[jax_name],
                    "jax_speedup_vs_dense": median[f"jax/{dtype}/dense"] / median[jax_name],
                    # e.g. bf16 compacted vs fp32 dense, timed in the same rounds.
                    "jax_speedup_vs_fp32_dense": (median["jax/float32/dense"] / median[jax_name]
                                                  if "float32" in dtypes else None),
                    "jax_times_s": times[jax_name],
                }
                for kind in ("torch_eager", "torch_compile"):
                    name = f"{kind}/{dtype}/{variant}"
                    row[kind] = summarize(times[name], batch_size) if name in times else None
                    if name in compile_errors:
                        row[f"{kind}_error"] = compile_errors[name]
                    if name in compile_s:
                        row[f"{kind}_compile_s"] = compile_s[name]
                    if name in median:
                        row[f"jax_speedup_vs_{kind}"] = median[name] / median[jax_name]
                row.update(self.ort_fields(dtype, variant, jax_name, times, median, batch_size))
                row["fastest"] = fastest(row)
                rows.append(row)
        return rows

    def ort_fields(self, dtype, variant, jax_name, times, median, batch_size) -> dict[str, Any]:
        """A row's ONNX Runtime stats and ratios; ``ort`` is None where ORT did not run."""
        from jaxprune.evaluation.timing import summarize

        ort_name, torch_export = f"ort/{dtype}/{variant}", f"ort/{dtype}/{TORCH_EXPORT}"
        if ort_name not in times:
            return {"ort": None}
        fields = {"ort": summarize(times[ort_name], batch_size), "ort_export_s": self.ort_export_s[variant],
                  "jax_speedup_vs_ort": median[ort_name] / median[jax_name],
                  # What compaction gives an ORT user: against ORT on transformers' export of the dense model.
                  "ort_speedup_vs_ort_dense": (median[torch_export] / median[ort_name]
                                               if torch_export in times else None)}
        if variant == "dense" and torch_export in times:
            fields["ort_dense_torch"] = summarize(times[torch_export], batch_size)
            fields["ort_dense_torch_export_s"] = self.ort_export_s[TORCH_EXPORT]
        int8_name, torch_int8 = f"ort/int8/{variant}", f"ort/int8/{TORCH_EXPORT}"
        if int8_name in times:
            fields["ort_int8"] = summarize(times[int8_name], batch_size)
            fields["ort_int8_speedup_vs_ort_dense"] = (median[torch_export] / median[int8_name]
                                                      if torch_export in times else None)
            fields["ort_int8_speedup_vs_ort_dense_int8"] = (median[torch_int8] / median[int8_name]
                                                           if torch_int8 in times else None)
            if variant == "dense" and torch_int8 in times:
                fields["ort_dense_torch_int8"] = summarize(times[torch_int8], batch_size)
        return fields


def keep_uniform(params: dict, config, keep: float):
    """Slice every layer to its first ``round(keep * n)`` heads and FFN neurons."""
    layers = config.num_hidden_layers
    return keep_first(params, config, [round(keep * config.num_attention_heads)] * layers,
                      [round(keep * config.intermediate_size)] * layers)


def keep_first(params: dict, config, heads: list[int], neurons: list[int]):
    """Slice layer i to its first ``heads[i]`` heads and ``neurons[i]`` FFN neurons: the params and
    config of a compacted model (what ``compact`` returns when the others were pruned)."""
    import jax
    import numpy as np

    encoder = {}
    for i, (kept_heads, kept_neurons) in enumerate(zip(heads, neurons, strict=True)):
        layer = params["encoder"][f"layer_{i}"]
        attention = layer["attention"]
        width = kept_heads * config.head_dim
        cols = lambda p, n: {"kernel": p["kernel"][:, :n], "bias": p["bias"][:n]}  # noqa: E731
        encoder[f"layer_{i}"] = {
            "attention": {
                **{name: cols(attention[name], width) for name in ("query", "key", "value")},
                "output": {"kernel": attention["output"]["kernel"][:width], "bias": attention["output"]["bias"]},
                "LayerNorm": attention["LayerNorm"],
            },
            "intermediate": cols(layer["intermediate"], kept_neurons),
            "output": {"kernel": layer["output"]["kernel"][:kept_neurons], "bias": layer["output"]["bias"]},
            "output_LayerNorm": layer["output_LayerNorm"],
        }
    encoder = jax.tree.map(lambda a: jax.device_put(np.asarray(a)), encoder)
    new_config = config.replace(heads_per_layer=tuple(heads), intermediate_sizes=tuple(neurons))
    return {**params, "encoder": encoder}, new_config

if __name__ == "__main__":
    raise SystemExit(run_script(main, interrupted="interrupted; the cells timed before it are in the results files"))
