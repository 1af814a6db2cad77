"""The human-readable summary of one experiment's record (:class:`RunResults`): what
``experiments/run.py`` prints."""

from __future__ import annotations

from jaxprune.experiment.results import RunResults, SplitMetrics


def _vocabulary_rows(results: RunResults) -> list[tuple[str, str]]:
    vocabulary = results.vocabulary
    if not vocabulary:
        return [("vocabulary", "not pruned (--prune-vocab keeps only the pieces the training texts use)")]
    fallback = vocabulary["eval_fallback"]
    return [
        ("vocabulary", f"{vocabulary['kept_pieces']:,} of {vocabulary['original_pieces']:,} pieces kept; params "
                       f"{results.params_original:,} -> {results.compaction.params_before:,}"),
        ("eval texts with dropped pieces", f"{fallback['texts_changed']} of {fallback['texts']} "
                                           f"({fallback['texts_changed_fraction']:.1%}; tokenized with smaller "
                                           f"pieces)"),
    ]


def _number(value: float | None, unit: str) -> str:
    return "not measured" if value is None else f"{value:.2e} {unit}"


def _data_rows(results: RunResults) -> list[tuple[str, str]]:
    info = results.data
    sizes, files = info["split_sizes"], info["files"]
    counts = ", ".join(f"{name} {sizes[name]:,}" + (f" ({files[name]})" if name in files else "")
                       for name in ("train", "eval", "test") if name in sizes)
    overlap = "; ".join(
        f"{name}: {n} texts also in training" + (" left out" if info["overlap_removed"].get(name) else " kept")
        if n else f"{name}: no text in training" for name, n in info["overlap"].items())
    repaired = f"; {info['repaired_texts']} CP866 mojibake texts repaired" if info.get("repaired_texts") else ""
    rows = [("data", f"{info['source']}: {counts}"),
            ("data cleaning", f"{info['duplicate_rows']:,} duplicate rows collapsed "
                              f"({info['label_conflicts']} with conflicting labels); {overlap}{repaired}")]
    transfer = info.get("transfer")
    if transfer:
        rows.append(("transfer set", f"{transfer['used']:,} texts used of {transfer['read']:,} read "
                                     f"({transfer['dropped_eval_test']:,} equal to eval/test texts and "
                                     f"{transfer['duplicates']:,} repeats dropped)"))
    return rows


def _finetune_rows(results: RunResults) -> list[tuple[str, str]]:
    finetune = results.finetune
    if finetune is None:
        return []
    return [("fine-tuning after compaction",
             f"{finetune.epochs} epochs of {finetune.examples_per_epoch:,} examples ({finetune.steps} steps, "
             f"{results.timing.finetune_seconds:.0f} s); eval accuracy {finetune.accuracy_before:.4f} before, "
             f"{results.metrics.eval.student.accuracy:.4f} after")]


def _time_row(results: RunResults) -> tuple[str, str]:
    timing, student_from = results.timing, results.config.student_from
    parts = [f"pruning skipped (the student of {student_from})" if student_from
             else f"pruning {timing.train_seconds:.0f} s"]
    if timing.finetune_seconds is not None:
        parts.append(f"fine-tuning {timing.finetune_seconds:.0f} s")
    if timing.transfer_logits_seconds is not None:
        parts.append(f"transfer logits {timing.transfer_logits_seconds:.0f} s")
    if timing.run_seconds is not None:
        parts.append(f"whole run {timing.run_seconds:.0f} s")
    return ("time", ", ".join(parts))


def _scores_rows(split: SplitMetrics, name: str) -> list[tuple[str, str]]:
    return [(f"accuracy ({name})", f"teacher {split.teacher.accuracy:.4f}, student {split.student.accuracy:.4f}; "
                                   f"chance {split.majority_class_accuracy:.4f} (always the majority class)"),
            (f"macro-F1 ({name})", f"teacher {split.teacher.macro_f1:.4f}, student {split.student.macro_f1:.4f}")]


def summary_table(results: RunResults) -> str:
    """A short human-readable summary of one run's record."""
    speed, student, emissions = results.timing.inference, results.config.student, results.emissions
    emitted = (f"{_number(emissions.kg_co2, 'kg')} CO2eq, {_number(emissions.energy_kwh, 'kWh')} "
               f"({emissions.country_iso_code} grid, CodeCarbon)")
    if emissions.error:
        emitted += f"; tracking failed: {emissions.error}"
    method = student.pruning.method if student.pruning is not None else "-"
    compaction = results.compaction
    rows = [
        ("model", f"{results.model}, {results.pooling} pooling"),
        *_data_rows(results),
        ("sparsity / distill / method", f"{student.sparsity:.2f} / {student.distills} / {method}"),
        ("precision", student.compute_dtype),
        *_scores_rows(results.metrics.eval, "eval"),
        *(_scores_rows(results.metrics.test, "test") if results.metrics.test is not None else []),
        *_finetune_rows(results),
        ("encoder sparsity", f"{compaction.encoder_sparsity:.3f}"),
        *_vocabulary_rows(results),
        ("params (total / non-zero)", f"{compaction.params_before:,} / {compaction.params_nonzero:,}"),
        ("params after compaction", f"{compaction.params_after:,}"),
        ("inference speedup", f"{speed['speedup']:.2f}x compacted vs dense (batch {speed['batch_size']}, "
                              f"length {speed['seq_length']}, {speed['device']})"),
        _time_row(results),
        ("emissions / energy", emitted),
        ("pruned model", f"{results.pruned_dir} (masked, full size)"),
        ("compacted model", f"{results.compacted_dir} (pruned rows and heads removed"
                            f"{', then fine-tuned' if results.finetune else ''})"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
