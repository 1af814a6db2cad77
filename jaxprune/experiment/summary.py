"""The human-readable summary of one experiment's ``results.json``: what ``experiments/run.py`` prints."""

from __future__ import annotations

from typing import Any


def _vocabulary_rows(results: dict[str, Any]) -> list[tuple[str, str]]:
    vocabulary = results.get("vocabulary")
    if not vocabulary:
        return [("vocabulary", "not pruned (--prune-vocab keeps only the pieces the training texts use)")]
    fallback = vocabulary["eval_fallback"]
    return [
        ("vocabulary", f"{vocabulary['kept_pieces']:,} of {vocabulary['original_pieces']:,} pieces kept; params "
                       f"{results['params_before_vocab_pruning']:,} -> {results['params_after_vocab_pruning']:,}"),
        ("eval texts with dropped pieces", f"{fallback['texts_changed']} of {fallback['texts']} "
                                           f"({fallback['texts_changed_fraction']:.1%}; tokenized with smaller pieces)"),
    ]


def _number(value: float | None, unit: str) -> str:
    return "not measured" if value is None else f"{value:.2e} {unit}"


def _data_rows(results: dict[str, Any]) -> list[tuple[str, str]]:
    sizes, files = results["split_sizes"], results.get("dataset_files")
    if isinstance(files, dict):  # {role: file name}; a lone file is split into train and eval
        counts = ", ".join(f"{name} {sizes[name]:,}" + (f" ({files[name]})" if name in files else "")
                           for name in ("train", "eval", "test") if name in sizes)
    else:
        counts = ", ".join(f"{name} {sizes[name]:,}" for name in ("train", "eval", "test") if name in sizes)
    rows = [("data", f"{results['dataset']}: {counts}")]
    info = results.get("data")
    if info:  # runs made before the loader counted duplicates have no such record
        overlap = "; ".join(
            f"{name}: {n} texts also in training" + (" left out" if info["overlap_removed"].get(name) else " kept")
            if n else f"{name}: no text in training" for name, n in info["overlap"].items())
        repaired = f"; {info['repaired_texts']} CP866 mojibake texts repaired" if info.get("repaired_texts") else ""
        rows.append(("data cleaning", f"{info['duplicate_rows']:,} duplicate rows collapsed "
                                      f"({info['label_conflicts']} with conflicting labels); {overlap}{repaired}"))
        transfer = info.get("transfer")
        if transfer:
            rows.append(("transfer set", f"{transfer['used']:,} texts used of {transfer['read']:,} read "
                                         f"({transfer['dropped_eval_test']:,} equal to eval/test texts and "
                                         f"{transfer['duplicates']:,} repeats dropped)"))
    return rows


def _finetune_rows(results: dict[str, Any]) -> list[tuple[str, str]]:
    finetune = results.get("finetune")
    if not finetune:
        return []
    return [("fine-tuning after compaction",
             f"{finetune['epochs']} epochs of {finetune['examples_per_epoch']:,} examples ({finetune['steps']} steps, "
             f"{finetune['train_seconds']:.0f} s); eval accuracy {results['accuracy_before_finetune']:.4f} before, "
             f"{results['accuracy']:.4f} after")]


def _time_row(results: dict[str, Any]) -> tuple[str, str]:
    student_from = results.get("config", {}).get("student_from")
    parts = [f"pruning skipped (the student of {student_from})" if student_from
             else f"pruning {results['train_seconds']:.0f} s"]
    if results.get("finetune"):
        parts.append(f"fine-tuning {results['finetune']['train_seconds']:.0f} s")
        if results["finetune"].get("logits_seconds") is not None:
            parts.append(f"transfer logits {results['finetune']['logits_seconds']:.0f} s")
    if results.get("run_seconds") is not None:
        parts.append(f"whole run {results['run_seconds']:.0f} s")
    return ("time", ", ".join(parts))


def _accuracy_row(results: dict[str, Any], prefix: str, split: str) -> tuple[str, str]:
    majority = results.get(f"{prefix}majority_class_accuracy")
    chance = "" if majority is None else f"; chance {majority:.4f} (always the majority class)"
    return (f"accuracy ({split})", f"teacher {results[f'teacher_{prefix}accuracy']:.4f}, "
                                  f"student {results[f'{prefix}accuracy']:.4f}{chance}")


def summary_table(results: dict[str, Any]) -> str:
    """A short human-readable summary of one results dict."""
    speed = results.get("speedup") or {}
    test_rows = []
    if results.get("test_accuracy") is not None:
        test_rows = [_accuracy_row(results, "test_", "test"),
                     ("macro-F1 (test)", f"teacher {results['teacher_test_macro_f1']:.4f}, "
                                         f"student {results['test_macro_f1']:.4f}")]
    emissions = (f"{_number(results['emissions_kg_co2'], 'kg')} CO2eq, {_number(results['energy_kwh'], 'kWh')} "
                 f"({results.get('emissions_country', '?')} grid, CodeCarbon)")
    if results.get("emissions_error"):
        emissions += f"; tracking failed: {results['emissions_error']}"
    rows = [
        ("model", f"{results['model']}, {results.get('pooling', 'cls')} pooling"),
        *_data_rows(results),
        ("sparsity / distill / method", f"{results['sparsity']:.2f} / {results['distill']} / {results['method']}"),
        ("precision", results["precision"]),
        _accuracy_row(results, "", "eval"),
        ("macro-F1 (eval)", f"teacher {results['teacher_macro_f1']:.4f}, student {results['macro_f1']:.4f}"),
        *test_rows,
        *_finetune_rows(results),
        ("encoder sparsity", f"{results['encoder_sparsity']:.3f}"),
        *_vocabulary_rows(results),
        ("params (total / non-zero)", f"{results['params_total']:,} / {results['params_nonzero']:,}"),
        ("params after compaction", f"{results['params_after_compaction']:,}"),
        ("inference speedup", f"{speed.get('speedup', float('nan')):.2f}x compacted vs dense (batch "
                              f"{speed.get('batch_size')}, length {speed.get('seq_length')}, {speed.get('device', '?')})"),
        _time_row(results),
        ("emissions / energy", emissions),
        ("pruned model", f"{results['pruned_dir']} (masked, full size)"),
        ("compacted model", f"{results['compacted_dir']} (pruned rows and heads removed"
                            f"{', then fine-tuned' if results.get('finetune') else ''})"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
