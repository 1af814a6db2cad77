"""The results of ``benchmarks/inference.py``: the JSON payload, the markdown tables and the goals.

One row per (model, batch x len, dtype, variant), as ``inference.Model.time_cell`` makes it;
runtimes are ``jax``, ``torch_eager``, ``torch_compile``, ``ort`` (ONNX Runtime, float32
rows only; the dense row also holds ``ort_dense_torch``, ORT on transformers' own export) and
``ort_int8`` (the same files dynamically quantised; ``ort_dense_torch_int8`` on the dense row).
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import sys
import time
from typing import Any

# Runtime key of a row -> the name the tables give it; "fastest" is one of these names.
RUNTIMES = {"jax": "jax", "torch_eager": "torch eager", "torch_compile": "torch compile", "ort": "ort",
            "ort_dense_torch": "ort (transformers export)", "ort_int8": "ort int8",
            "ort_dense_torch_int8": "ort int8 (transformers export)"}


def fastest(row: dict[str, Any]) -> str:
    """The runtime with the lowest median time in ``row`` (a name of ``RUNTIMES``)."""
    timed = {name: row[key]["median_s"] for key, name in RUNTIMES.items() if row.get(key)}
    return min(timed, key=timed.get)


def write_report(args, argv, rows, notes, repeats, warmup, started, load_before, stem, final=True) -> dict[str, Any]:
    """Write (or rewrite) ``<out>/<stem>.{json,md}`` with the rows so far; the table is printed when ``final``."""
    import jax

    from benchmarks._common import versions, write_results
    from benchmarks._torch_peer import import_torch
    from jaxprune.evaluation.timing import device_description

    date = datetime.date.today().isoformat()
    torch = import_torch()
    payload = {
        "benchmark": "inference",
        "date": date,
        "command": ("python benchmarks/inference.py " + " ".join(argv if argv is not None else sys.argv[1:])).strip(),
        "device": device_description(),
        "jax_backend": jax.default_backend(),
        "versions": {**versions(), **_onnx_versions()},
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "torch_threads": torch.get_num_threads() if torch else None,
        "repeats": repeats,
        "warmup": warmup,
        "settle": args.settle,
        "wall_s": time.time() - started,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "notes": notes,
        "rows": rows,
    }
    write_results(args.out, stem, payload, markdown(payload), unique=False, echo=final)
    return payload


def _onnx_versions() -> dict[str, str | None]:
    out = {}
    for name in ("onnxruntime", "onnx"):
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def _ms(stats: dict | None) -> str:
    return "-" if not stats else f"{1000 * stats['median_s']:.1f}"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


GOAL_VARIANT = "s75"  # the issues' speed goals are set at 75% encoder sparsity


def goal_variant(rows: list[dict[str, Any]]) -> str:
    """The variant the goals are read off: ``s75`` when it was timed, else the sparsest one."""
    variants = {row["variant"] for row in rows}
    return GOAL_VARIANT if GOAL_VARIANT in variants else max(rows, key=lambda r: r["sparsity"])["variant"]


def goals(rows: list[dict[str, Any]]) -> list[str]:
    """The issue's speed goals, read off the rows of each (model, batch x len): markdown lines."""
    if not rows:
        return []
    by_key = {(r["model"], r["batch_size"], r["seq_length"], r["dtype"], r["variant"]): r for r in rows}
    cells = list(dict.fromkeys((r["model"], r["batch_size"], r["seq_length"]) for r in rows))
    most = goal_variant(rows)
    which = ("the goals' sparsity" if most == GOAL_VARIANT
             else f"the highest sparsity timed; the goals are at {GOAL_VARIANT}")
    lines = ["", f"Goals ({most}: {which}; the GPU goals are for batch 32 x 128):", "",
             f"| model | batch x len | {most} vs dense, bf16 (goal >= 2.5x on GPU) | {most} vs dense, fp32 | "
             f"bf16 {most} vs fp32 dense (goal >= 5x on GPU) | jax dense vs torch eager, fp32 (goal >= 1x) | "
             f"{most} in ORT vs dense in ORT (transformers export), fp32 (goal >= 3x at 32x128) |",
             "|---|---|---|---|---|---|---|"]
    for model, batch, length in cells:
        def get(dtype, variant, field):
            row = by_key.get((model, batch, length, dtype, variant))
            return None if row is None else row.get(field)

        lines.append(f"| {model} | {batch}x{length} | {_x(get('bfloat16', most, 'jax_speedup_vs_dense'))} | "
                     f"{_x(get('float32', most, 'jax_speedup_vs_dense'))} | "
                     f"{_x(get('bfloat16', most, 'jax_speedup_vs_fp32_dense'))} | "
                     f"{_x(get('float32', 'dense', 'jax_speedup_vs_torch_eager'))} | "
                     f"{_x(get('float32', most, 'ort_speedup_vs_ort_dense'))} |")
    return lines + int8_goals(rows, most)


def int8_goals(rows: list[dict[str, Any]], most: str) -> list[str]:
    """The int8 goals (issue 23) for the ``most`` sparse variant: markdown lines (none without int8 rows)."""
    dense = {(r["model"], r["batch_size"], r["seq_length"]): r for r in rows
             if r["variant"] == "dense" and r["dtype"] == "float32"}
    rows = [row for row in rows if row["variant"] == most and row.get("ort_int8")]
    if not rows:
        return []
    lines = ["", f"| model | batch x len | {most} int8 vs dense fp32 in ORT (transformers export) (goal >= 8x) | "
                 f"{most} int8 vs dense int8 in ORT (transformers export) (goal >= 3x) | "
                 f"jaxprune dense fp32 vs transformers dense fp32 in ORT (goal >= 1x) |",
             "|---|---|---|---|---|"]
    for row in rows:
        dense_row = dense.get((row["model"], row["batch_size"], row["seq_length"]), {})
        lines.append(f"| {row['model']} | {row['batch_size']}x{row['seq_length']} | "
                     f"{_x(row.get('ort_int8_speedup_vs_ort_dense'))} | "
                     f"{_x(row.get('ort_int8_speedup_vs_ort_dense_int8'))} | "
                     f"{_x(dense_row.get('ort_speedup_vs_ort_dense'))} |")
    return lines


def ort_table(rows: list[dict[str, Any]]) -> list[str]:
    """ONNX Runtime beside JAX, per float32 row with ORT times: markdown lines (none without ORT)."""
    rows = [row for row in rows if row.get("ort")]
    if not rows:
        return []
    lines = ["", "ONNX Runtime (fp32; jaxprune's exports of every variant, and transformers' export of the "
             "dense model, which is what serving without jaxprune gives):", "",
             "| model | batch x len | variant | ort ms | ort ms, transformers export | "
             "vs ort dense (transformers export) | ort int8 ms | ort int8 ms, transformers export | "
             "int8 vs ort dense fp32 / int8 (transformers export) | jax ms | jax vs ort | fastest |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['model']} | {row['batch_size']}x{row['seq_length']} | {row['variant']} | "
                     f"{_ms(row['ort'])} | {_ms(row.get('ort_dense_torch'))} | "
                     f"{_x(row.get('ort_speedup_vs_ort_dense'))} | {_ms(row.get('ort_int8'))} | "
                     f"{_ms(row.get('ort_dense_torch_int8'))} | {_x(row.get('ort_int8_speedup_vs_ort_dense'))} / "
                     f"{_x(row.get('ort_int8_speedup_vs_ort_dense_int8'))} | {_ms(row['jax'])} | "
                     f"{_x(row.get('jax_speedup_vs_ort'))} | {row['fastest']} |")
    return lines


def markdown(payload: dict[str, Any]) -> str:
    lines = [
        f"# Inference benchmark, {payload['date']}",
        "",
        f"- device: {payload['device']}",
        f"- command: `{payload['command']}`",
        f"- versions: {payload['versions']}",
        f"- repeats {payload['repeats']} (median shown), warmup {payload['warmup']}, "
        f"settle {payload['settle']} (untimed calls right before each timed one), "
        f"XLA_FLAGS `{payload['xla_flags']}`, torch threads {payload['torch_threads']}",
        f"- load average before/after: {payload['load_average_before'][0]:.1f} / "
        f"{payload['load_average_after'][0]:.1f}; wall {payload['wall_s']:.0f} s",
        "",
        "Variant sNN: NN% encoder sparsity as a uniform per-layer keep of heads and FFN neurons. "
        "Times are median ms per batch; speedups are ratios of medians measured side by side "
        "(all dtypes, variants and runtimes of one model and batch x len in the same rounds). "
        "Fastest: the runtime with the lowest median for that variant.",
        "",
        "| model | batch x len | dtype | variant | heads/FFN | enc. kept | jax ms | jax seq/s | "
        "vs jax dense | vs jax fp32 dense | torch eager ms | torch compile ms | ort ms | jax vs torch eager | "
        "jax vs ort | fastest |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in payload["rows"]:
        compiled = _ms(row["torch_compile"]) if row["torch_compile"] else (
            "failed" if "torch_compile_error" in row else "-")
        lines.append(
            f"| {row['model']} | {row['batch_size']}x{row['seq_length']} | {row['dtype']} | {row['variant']} | "
            f"{row['heads_per_layer']}/{row['intermediate_size']} | {100 * row['encoder_fraction_kept']:.1f}% | "
            f"{_ms(row['jax'])} | {row['jax']['sequences_per_s']:.1f} | {_x(row['jax_speedup_vs_dense'])} | "
            f"{_x(row['jax_speedup_vs_fp32_dense'])} | {_ms(row['torch_eager'])} | {compiled} | "
            f"{_ms(row.get('ort'))} | {_x(row.get('jax_speedup_vs_torch_eager'))} | "
            f"{_x(row.get('jax_speedup_vs_ort'))} | {row['fastest']} |"
        )
    lines += ort_table(payload["rows"])
    lines += goals(payload["rows"])
    if payload["notes"]:
        lines += ["", "Notes:", ""] + [f"- {note}" for note in payload["notes"]]
    errors = {r["torch_compile_error"] for r in payload["rows"] if "torch_compile_error" in r}
    lines += [f"- torch.compile failed: {e}" for e in sorted(errors)]
    return "\n".join(lines) + "\n"
