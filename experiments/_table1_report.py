"""Table I's report, for experiments/table1.py: each row's runs over several student seeds reduced
to mean and standard deviation, one side-by-side timing of the teacher(s) and every row's
compacted model (cached in ``<output-dir>/timing.json``), the markdown table, and the figures.

Everything here reads ``runs``: for each row name (in table order), the record
(:class:`jaxprune.experiment.results.RunResults`) of each finished student seed (in the order the
seeds were given).

>>> mean_std({0: 0.80, 1: 0.90}, scale=100)
{'mean': 85.0, 'std': 7.0710678118654755, 'n': 2, 'per_seed': {'0': 80.0, '1': 90.0}}
"""

from __future__ import annotations

import datetime
import json
import statistics
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jaxprune.experiment.results import RunResults

TIMING_NAME = "timing.json"
TIMING_REPEATS = 10
TIMING_DTYPE = "float32"

Runs = Mapping[str, Mapping[int, "RunResults"]]  # row name -> student seed -> that run's record
Log = Callable[[str], Any]


def mean_std(per_seed: Mapping[int, float | None], scale: float = 1.0) -> dict | None:
    """``{"mean", "std", "n", "per_seed"}`` of the values given, times ``scale`` (``None`` values are
    left out); ``std`` is the sample standard deviation (n - 1), ``None`` for a single value.
    ``None`` when there is no value at all (a key the runs do not have)."""
    values = {seed: value * scale for seed, value in per_seed.items() if value is not None}
    if not values:
        return None
    numbers = list(values.values())
    return {"mean": statistics.fmean(numbers), "std": statistics.stdev(numbers) if len(numbers) > 1 else None,
            "n": len(numbers), "per_seed": {str(seed): value for seed, value in values.items()}}


def _first(runs: Runs) -> RunResults:
    return next(iter(next(iter(runs.values())).values()))


def teachers(runs: Runs) -> dict[str, tuple[str, list[str]]]:
    """Each teacher (its folder, as the runs record it): its row name in the table and the rows
    that start from it. The first is "teacher", the baseline every speedup is measured against."""
    rows_of: dict[str, list[str]] = {}
    for name, by_seed in runs.items():
        for results in by_seed.values():
            names = rows_of.setdefault(results.teacher["source"], [])
            if name not in names:
                names.append(name)
    return {source: ("teacher" if i == 0 else f"teacher of {', '.join(names)}", names)
            for i, (source, names) in enumerate(rows_of.items())}


def timing_models(runs: Runs) -> dict[str, str]:
    """What Table I times: each teacher, and the compacted model of each row's first finished seed
    whose model is still saved (the first seed's when none is)."""
    models = {name: source for source, (name, _) in teachers(runs).items()}
    for name, by_seed in runs.items():
        models[name] = str(by_seed[timed_seed(by_seed)].compacted_dir)
    return models


def timed_seed(by_seed: dict) -> int:
    """The seed whose compacted model Table I times: the first whose model is still saved, else the first."""
    saved = [seed for seed, results in by_seed.items() if (Path(results.compacted_dir) / "config.json").is_file()]
    return (saved or list(by_seed))[0]


def _stamp(folder: str) -> int | None:
    """When the model was written (a row run again writes a new one); None for a hub id."""
    config = Path(folder) / "config.json"
    return config.stat().st_mtime_ns if config.is_file() else None


def shared_timing(out: Path, runs: Runs, *, time_now: bool, log: Log = print) -> dict | None:
    """One timing of every model of :func:`timing_models`, side by side (``benchmarks/saved_models.py``'s
    :func:`time_models`) at the runs' batch size x max length, float32. ``<out>/timing.json`` is
    reused while it holds exactly these models (the same folders, not rewritten since) at that
    shape; otherwise they are all timed again, together, unless ``time_now`` is off. Returns the
    timing restricted to the models it still describes, or None."""
    models = {name: {"path": path, "stamp": _stamp(path)} for name, path in timing_models(runs).items()}
    recorded = _first(runs).config
    shape = {"batch_size": recorded.student.batch_size, "seq_length": recorded.max_length, "dtype": TIMING_DTYPE}
    path = out / TIMING_NAME
    cached = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    if cached is not None and all(cached.get(k) == v for k, v in shape.items()):
        current = {name: timed for name, timed in cached["models"].items()
                   if name in models and {k: timed.get(k) for k in ("path", "stamp")} == models[name]}
        if set(current) == set(models) or not time_now:
            if set(current) != set(models):
                log(f"table1: {path} lacks {len(models) - len(current)} of the models (--no-timing): their "
                    "times are left out")
            return {**cached, "models": current} if current else None
    if not time_now:
        return None
    from benchmarks.saved_models import time_models
    from jaxprune.experiment.folders import write_json

    timing = time_models({name: model["path"] for name, model in models.items()}, repeats=TIMING_REPEATS,
                         log=log, **shape)
    for name, model in models.items():
        timing["models"][name]["stamp"] = model["stamp"]
    timing["date"] = datetime.date.today().isoformat()
    write_json(path, timing)
    return timing


def _pieces(results: RunResults) -> int | None:
    return (results.vocabulary or {}).get("kept_pieces")


def table_rows(runs: Runs, timing: dict | None = None) -> list[dict]:
    """One row per teacher, then one per student row: sizes, accuracy and macro-F1 over the seeds
    (:func:`mean_std`, in %), and inference time from ``timing`` (:func:`shared_timing`), with
    speedup and % decrease against the first teacher in that same timing."""
    if not runs:
        return []
    original = _first(runs).params_original
    rows = []
    for source, (name, students) in teachers(runs).items():
        results = next(r for student in students for r in runs[student].values() if r.teacher["source"] == source)
        seed, params = results.config.teacher.seed, results.compaction.params_before
        teacher = results.metrics.eval.teacher
        rows.append({
            "name": name, "teacher": True, "teacher_source": source, "sparsity": 0.0, "distill": False,
            "vocabulary": _pieces(results), "seeds": [seed], "n_seeds": 1, "timed_seed": None,
            "params_m": params / 1e6, "params_reduction_pct": 100 * (1 - params / original), "params_nonzero_m": None,
            "accuracy_pct": mean_std({seed: teacher.accuracy}, 100),
            "macro_f1_pct": mean_std({seed: teacher.macro_f1}, 100),
            "accuracy_before_finetune_pct": None, "macro_f1_before_finetune_pct": None,
            "kg_co2": None, "encoder_sparsity": 0.0, "transfer": None,
        })
    for name, by_seed in runs.items():
        seed_timed = timed_seed(by_seed)
        timed = by_seed[seed_timed]

        def over_seeds(value: Callable[[RunResults], float | None], scale: float = 1.0) -> dict | None:
            return mean_std({seed: value(results) for seed, results in by_seed.items()}, scale)

        def before(value: Callable[[Any], float]) -> Callable[[RunResults], float | None]:
            return lambda results: None if results.finetune is None else value(results.finetune)

        params = over_seeds(lambda r: r.compaction.params_after)["mean"]
        rows.append({
            "name": name, "teacher": False, "teacher_source": timed.teacher["source"],
            "sparsity": timed.config.student.sparsity, "distill": timed.config.student.distills,
            "vocabulary": _pieces(timed),
            "seeds": list(by_seed), "n_seeds": len(by_seed), "timed_seed": seed_timed,
            # The size after compaction, not a count of non-zeros: a dequantised 4-bit model
            # (e5-small) has exact zeros of its own (about 11M in its embeddings).
            "params_m": params / 1e6, "params_reduction_pct": 100 * (1 - params / original),
            "params_nonzero_m": over_seeds(lambda r: r.compaction.params_nonzero)["mean"] / 1e6,
            "accuracy_pct": over_seeds(lambda r: r.metrics.eval.student.accuracy, 100),
            "macro_f1_pct": over_seeds(lambda r: r.metrics.eval.student.macro_f1, 100),
            "accuracy_before_finetune_pct": over_seeds(before(lambda f: f.accuracy_before), 100),
            "macro_f1_before_finetune_pct": over_seeds(before(lambda f: f.macro_f1_before), 100),
            "kg_co2": over_seeds(lambda r: r.emissions.kg_co2),
            "encoder_sparsity": over_seeds(lambda r: r.compaction.encoder_sparsity)["mean"],
            "transfer": timed.data.get("transfer"),
        })
    times = {name: timed["median_s"] for name, timed in (timing or {}).get("models", {}).items()}
    reference = times.get(rows[0]["name"])
    for row in rows:
        seconds = times.get(row["name"])
        row["inference_ms"] = None if seconds is None else seconds * 1e3
        row["speedup"] = reference / seconds if reference and seconds else None
        row["inference_time_decrease_pct"] = 100 * (1 - seconds / reference) if reference and seconds else None
    return rows


def _value(stats: dict | None, digits: int = 2) -> str:
    if stats is None:
        return "-"
    text = f"{stats['mean']:.{digits}f}"
    return text if stats["std"] is None else f"{text} ± {stats['std']:.{digits}f}"


def _number(value: float | None, form: str) -> str:
    return "-" if value is None else format(value, form)


def markdown(rows: list[dict], runs: Runs, timing: dict | None, command: str) -> str:
    first = _first(runs)
    students = [row for row in rows if not row["teacher"]]
    seeds = sorted({seed for row in students for seed in row["seeds"]})
    timed_seeds = [row["timed_seed"] for row in students]
    usual = max(set(timed_seeds), key=timed_seeds.count) if timed_seeds else None
    others = ", ".join(f"{row['name']}: seed {row['timed_seed']}'s" for row in students if row["timed_seed"] != usual)
    timed = f"seed {usual}'s" + (f" ({others}, the first seed with a saved model)" if others else "")
    original = first.params_original
    before = any(row["accuracy_before_finetune_pct"] for row in rows)
    transfer = next((row["transfer"] for row in students if row["transfer"]), None)
    if timing is None:
        timed_note = "Inference: not timed (--no-timing, and no timing.json for these models)."
    else:
        timed_note = (f"Inference: {timing['device']}; every model below timed side by side in one run (the teacher "
                      f"and {timed} compacted model of each row; {TIMING_NAME}, {timing.get('date', '?')}), batch "
                      f"{timing['batch_size']} x length {timing['seq_length']}, {timing['dtype']}, jitted, "
                      f"compilation excluded, {timing['repeats']} interleaved rounds, median. Speedup and % "
                      f"decrease: the first teacher's time / the row's time in that same timing.")
    lines = [
        "# Table I, reproduced with jaxprune",
        "",
        f"Command: `{command}`  ",
        f"Date: {datetime.date.today().isoformat()}; model: {first.model}; data: {first.data['source']} "
        f"(train {first.data['split_sizes'].get('train')}, eval {first.data['split_sizes'].get('eval')}).",
        "",
        f"Student seeds: {', '.join(map(str, seeds))}; teacher and eval split: seed "
        f"{first.config.teacher.seed} (one teacher per vocabulary, shared by every seed). Accuracy and "
        "macro-F1 on the eval split: mean ± standard deviation over the seeds (n - 1; the Seeds column "
        "says how many finished).",
        "",
        timed_note,
        "",
        "Params: the whole model (embeddings included) after compaction, mean over the seeds; % reduction "
        f"against the original model ({original / 1e6:.2f}M)."
        + (f" Transfer texts for distillation (the -kd rows): read {transfer['read']}, dropped {transfer['dropped']}, "
           f"used {transfer['used']}." if transfer else ""),
        "",
        "| Model | Vocabulary (pieces) | Params (M) | % reduction in params | Inference (ms) "
        "| % decrease in inference time | Speedup "
        + ("| Accuracy before fine-tuning (%, mean) " if before else "")
        + "| Accuracy (%) | Macro-F1 (%) | kg CO2eq (training, mean) | Seeds |",
        "|---|---|---|---|---|---|---" + ("|---" if before else "") + "|---|---|---|---|",
    ]
    for r in rows:
        before_cell = (f"| {_number((r['accuracy_before_finetune_pct'] or {}).get('mean'), '.2f')} "
                       if before else "")
        lines.append(
            f"| {r['name']} | {'all' if r['vocabulary'] is None else format(r['vocabulary'], ',')} "
            f"| {r['params_m']:.2f} | {r['params_reduction_pct']:.1f} | {_number(r['inference_ms'], '.1f')} "
            f"| {_number(r['inference_time_decrease_pct'], '.1f')} "
            f"| {_number(r['speedup'], '.2f')}{'x' if r['speedup'] else ''} {before_cell}"
            f"| {_value(r['accuracy_pct'])} | {_value(r['macro_f1_pct'])} "
            f"| {_number((r['kg_co2'] or {}).get('mean'), '.2e')} | {'-' if r['teacher'] else r['n_seeds']} |"
        )
    return "\n".join(lines) + "\n"


def figures(rows: list[dict], runs: Runs, out: Path, timing: dict | None) -> list[Path]:
    """Figure 3 (accuracy vs the shared timing's inference time, error bars: std over seeds; a
    legend names the points, so no label covers another) and the per-layer survival of heads and
    FFN neurons (each row's timed seed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    paths = []
    timed = [r for r in rows if r["inference_ms"] is not None]
    if timed:
        fig, ax = plt.subplots(figsize=(8.5, 4.8))
        colors = plt.get_cmap("tab20")
        for i, r in enumerate(timed):
            marker = "*" if r["teacher"] else "D" if r["vocabulary"] else ("o" if r["distill"] else "s")
            ax.errorbar(r["inference_ms"], r["accuracy_pct"]["mean"], yerr=r["accuracy_pct"]["std"] or 0.0,
                        fmt=marker, markersize=11 if r["teacher"] else 7, capsize=3, color=colors(i % 20),
                        label=f"{r['name']} (n={r['n_seeds']})" if not r["teacher"] else r["name"])
        ax.set_xlabel(f"inference time per batch (ms; {timing['batch_size']} x {timing['seq_length']}, "
                      f"{timing['dtype']}, {timing['device']})", fontsize=8)
        ax.set_ylabel("accuracy (%, mean ± std over seeds)")
        ax.set_title("Accuracy vs inference time (compacted models, timed side by side)")
        ax.grid(alpha=0.3)
        ax.legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8, frameon=False)
        paths.append(out / "figure3_accuracy_vs_time.png")
        fig.savefig(paths[-1], dpi=120, bbox_inches="tight")
        plt.close(fig)

    students = [(name, next(iter(by_seed.values()))) for name, by_seed in runs.items()]
    fig, axes = plt.subplots(2, len(students), figsize=(2.2 * len(students) + 1, 5.5), squeeze=False)
    for col, (name, results) in enumerate(students):
        layers = results.compaction.layers
        for row, (kept, total, title) in enumerate((("heads_kept", "heads", "heads"),
                                                     ("neurons_kept", "neurons", "FFN neurons"))):
            survival = np.array([[layer[kept] / max(layer[total], 1)] for layer in layers])
            ax = axes[row, col]
            image = ax.imshow(survival, vmin=0, vmax=1, cmap="viridis", aspect="auto")
            ax.set_xticks([])
            ax.set_yticks(range(len(layers)))
            ax.set_ylabel("layer" if col == 0 else "")
            ax.set_title(f"{name}\n{title}", fontsize=8)
            for i, value in enumerate(survival[:, 0]):
                ax.text(0, i, f"{value:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if value < 0.5 else "black")
    fig.colorbar(image, ax=axes, fraction=0.03, label="fraction surviving")
    paths.append(out / "layer_survival.png")
    fig.savefig(paths[-1], dpi=120)
    plt.close(fig)
    return paths
