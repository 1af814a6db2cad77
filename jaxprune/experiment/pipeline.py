"""One experiment of the paper: teacher, pruned (and distilled) student, evaluation,
compaction, measured speedup and emissions, written to ``results.json``.

``train_and_evaluate(config)`` is what ``experiments/run.py`` calls; tests call
it with tiny settings. Nothing here parses the command line. The parts: :mod:`.config`
(``ExperimentConfig``), :mod:`.presets`, :mod:`.baseline` (model, data and the evaluated
teacher), :mod:`.teachers` (the teacher cache).
"""

from __future__ import annotations

import contextlib
import dataclasses

import json
import shutil
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp

from jaxprune import interrupts
from jaxprune.errors import JaxpruneError
from jaxprune.evaluation.predict import predict_logits
from jaxprune.experiment.baseline import (
    Baseline,
    Inputs,
    check_inputs,
    check_precision,
    evaluate,
    majority_accuracy,
    progress_bar,
    teacher_baseline,
)
from jaxprune.experiment.config import RESULTS_NAME, ExperimentConfig, differences, recorded_settings, settings
from jaxprune.experiment.emissions import check_country, track_emissions
from jaxprune.experiment.finetune import FINETUNE_CHECKPOINTS, finetune_compacted, load_pruned_student, transfer_logits
from jaxprune.experiment.folders import missing_folders, prepare_output_dir, remove_unless_useful, write_json
from jaxprune.experiment.runlock import hold_folder_lock
from jaxprune.parallel import is_primary
from jaxprune.experiment.teachers import Log
from jaxprune.models.bert import count_params
from jaxprune.models.bert_rules import bert_sparsity_report
from jaxprune.models.compaction import compact
from jaxprune.models.loading import save_pretrained
from jaxprune.models.sources import describe
from jaxprune.training.config import PruningConfig
from jaxprune.training.bert import BertClassification
from jaxprune.training.loop import fit

__all__ = ["Baseline", "ExperimentConfig", "Inputs", "check_inputs", "check_precision", "evaluate", "majority_accuracy",
           "measure_speedup", "teacher_baseline", "train_and_evaluate"]


def measure_speedup(dense, compacted, config: ExperimentConfig) -> dict:
    from jaxprune.evaluation.timing import compare_inference

    return compare_inference(
        dense, compacted, batch_size=config.student.batch_size, seq_length=config.max_length,
        dtype=jnp.dtype(config.student.compute_dtype), repeats=config.speed_repeats, parallel=config.parallel(),
    )


def train_and_evaluate(config: ExperimentConfig, log: Log = print) -> dict[str, Any]:
    """Run one experiment end to end; returns (and writes) the results dict.

    The inputs are checked and read first (:func:`check_inputs`), before the output folder is
    touched; the run then uses the config with the epochs ``min_steps`` asks for on its data.
    Only one process at a time may use ``config.output_dir`` (a lock, released on exit and by the
    OS after a crash). A run that fails before its first checkpoint removes the output folder (and
    an empty teacher cache) it created; an interrupted one keeps its checkpoints for ``resume``.
    """
    check_country(config.country_iso_code)
    inputs = check_inputs(config, log)
    config = inputs.config
    created = {Path(folder): missing_folders(Path(folder)) for folder in (config.output_dir, config.teacher_cache)}
    out = prepare_output_dir(config.output_dir)
    try:
        # In a multi-process run process 0 holds the lock and writes the files; all of them compute.
        with hold_folder_lock(out) if is_primary() else contextlib.nullcontext():
            return _train_and_evaluate(config, inputs, out, log)
    except BaseException:
        for folder, missing in created.items():
            if missing and is_primary():
                remove_unless_useful(folder, missing)
        raise


def _finished_run(config: ExperimentConfig, results_path: Path, log: Log) -> dict[str, Any]:
    """The results of the finished run in ``results_path``, when ``config`` asks to resume it with its settings."""
    out = results_path.parent
    if not config.resume:
        raise JaxpruneError(f"{out} already holds a finished run; pass a new `output_dir`")
    finished = json.loads(results_path.read_text(encoding="utf-8"))
    changed = differences(recorded_settings(finished.get("config", {})), settings(config.to_dict()))
    if any(line.startswith("split:") for line in changed):
        raise JaxpruneError(f"{out} holds a run made before duplicate texts were collapsed (its eval split shares "
                            f"texts with training); pass a new `output_dir` to run it again")
    if changed:
        raise JaxpruneError(f"{out} holds a run finished with other settings ({'; '.join(changed[:4])}); "
                            f"pass a new `output_dir`, or the settings it was made with")
    log(f"{results_path} exists: this run already finished")
    return finished


def _train_and_evaluate(config: ExperimentConfig, inputs: Inputs, out: Path, log: Log) -> dict[str, Any]:
    run_started = time.perf_counter()
    results_path = out / RESULTS_NAME
    if results_path.is_file():
        return _finished_run(config, results_path, log)
    checkpoints = out / "checkpoints"
    if config.resume and not (checkpoints.is_dir() and any(c.name.isdigit() for c in checkpoints.iterdir())):
        log(f"resume: {out} has no checkpoint to resume from; starting a new run")
    base = teacher_baseline(config, log, inputs)
    folder, tokenizer, data_info = base.folder, base.tokenizer, base.data_info
    encoded_train, encoded_eval = base.encoded_train, base.encoded_eval
    teacher_params, teacher_config, teacher_info = base.params, base.model_config, base.info
    teacher_metrics, label_names = base.metrics, teacher_config.label_names
    vocabulary = base.vocabulary or {}
    batch_size = config.student.batch_size
    parallel = config.parallel()

    teacher_logits, logits_started = None, time.perf_counter()
    if config.student.distills and not config.teacher_in_step:
        teacher_logits = predict_logits(teacher_params, teacher_config, encoded_train, batch_size,
                                        config.student.compute_dtype, progress=progress_bar("teacher logits"),
                                        parallel=parallel)
    teacher_logits_seconds = time.perf_counter() - logits_started

    started = time.perf_counter()
    with track_emissions(config.country_iso_code) as emissions:
        if config.student_from is None:
            result = fit(
                teacher_params, BertClassification(teacher_config), config.student, encoded_train,
                teacher_logits=teacher_logits,
                teacher=(teacher_params, BertClassification(teacher_config)) if config.student.distills else None,
                checkpoint_dir=str(out / "checkpoints"), fingerprint=config.fingerprint(),
                resume=config.resume, checkpoint_every=config.checkpoint_every, description="student",
                parallel=parallel,
            )
            final, layout = result.params, result.pruner.layout if result.pruner.prunes else None
            trained = {"train_steps": result.total_steps, "resumed_from_step": result.resumed_from_step,
                       "final_loss": result.final_loss}
        else:  # the pruning was done by an earlier run: its pruned student is loaded, then fine-tuned
            final = load_pruned_student(config.student_from, teacher_params, teacher_config,
                                        config.student.sparsity, log)
            layout, trained = None, {"train_steps": 0, "resumed_from_step": None, "final_loss": None}
    train_seconds = time.perf_counter() - started

    student_metrics = evaluate(final, teacher_config, encoded_eval, batch_size,
                               config.student.compute_dtype, "evaluate student", parallel)
    sparsity = bert_sparsity_report(teacher_config, final, layout)

    if is_primary():
        save_pretrained(final, teacher_config, out / "pruned", tokenizer=tokenizer)
    compact_params, compact_config, compact_report = compact(final, teacher_config)
    finetuned: dict[str, Any] = {"accuracy_before_finetune": None, "macro_f1_before_finetune": None,
                                 "finetune": None}
    served = (final, teacher_config)  # what the student's eval and test scores are of
    if config.finetune_epochs:
        compact_params, finetuned = _finetune(config, base, compact_params, compact_config, teacher_logits,
                                              student_metrics, out, parallel, log)
        emissions = _sum_emissions(emissions, finetuned.pop("emissions"))
        served = (compact_params, compact_config)
        student_metrics = evaluate(*served, encoded_eval, batch_size, config.student.compute_dtype,
                                   "evaluate fine-tuned student", parallel)
    test_results: dict[str, Any] = {"test_accuracy": None}
    if base.encoded_test is not None:
        test_metrics = evaluate(*served, base.encoded_test, batch_size,
                                config.student.compute_dtype, "evaluate student on test", parallel)
        test_results = {
            "test_accuracy": test_metrics["accuracy"],
            "test_macro_f1": test_metrics["macro_f1"],
            "test_per_class_f1": test_metrics["per_class_f1"],
            "teacher_test_accuracy": base.test_metrics["accuracy"],
            "teacher_test_macro_f1": base.test_metrics["macro_f1"],
            "test_majority_class_accuracy": majority_accuracy(base.encoded_test),
        }
    if is_primary():
        save_pretrained(compact_params, compact_config, out / "compacted", tokenizer=tokenizer)
    speed = measure_speedup((final, teacher_config), (compact_params, compact_config), config)

    results = {
        "model": describe(config.model),
        "pooling": teacher_config.classifier_pooling,
        "model_folder": folder,
        "dataset": data_info.source,
        "dataset_files": data_info.files,
        "split_sizes": data_info.split_sizes,
        "data": {**data_info.to_dict(), "transfer": base.transfer.to_dict() if base.transfer else None},
        "sparsity": config.student.sparsity,
        "distill": config.student.distills,
        "method": (config.student.pruning or PruningConfig()).method,
        "precision": config.student.compute_dtype,
        "params_total": count_params(final),
        "vocabulary_pruned": base.vocabulary is not None,
        "params_before_vocab_pruning": count_params(final) + vocabulary.get("embedding_params_removed", 0),
        "params_after_vocab_pruning": count_params(final),
        "kept_pieces": vocabulary.get("kept_pieces"),
        "eval_fallback_rate": vocabulary["eval_fallback"]["texts_changed_fraction"] if vocabulary else None,
        "vocabulary": base.vocabulary,
        "params_nonzero": int(sparsity["params_remaining"]),
        "encoder_sparsity": float(sparsity["encoder_zero_fraction"]),
        "chance_accuracy": 1.0 / len(label_names),
        "majority_class_accuracy": majority_accuracy(encoded_eval),
        "teacher_accuracy": teacher_metrics["accuracy"],
        "teacher_macro_f1": teacher_metrics["macro_f1"],
        "accuracy": student_metrics["accuracy"],
        "macro_f1": student_metrics["macro_f1"],
        "per_class_f1": student_metrics["per_class_f1"],
        **finetuned,
        "teacher_per_class_f1": teacher_metrics["per_class_f1"],
        **test_results,
        "train_seconds": train_seconds,
        "teacher_logits_seconds": teacher_logits_seconds,
        "run_seconds": time.perf_counter() - run_started,
        **trained,
        "emissions_kg_co2": emissions.kg_co2,
        "energy_kwh": emissions.energy_kwh,
        "emissions_country": emissions.country_iso_code,
        "emissions_error": emissions.error,
        "params_before_compaction": compact_report.params_before,
        "params_after_compaction": compact_report.params_after,
        "compaction": compact_report.to_dict(),
        "compacted_dir": str((out / "compacted").resolve()),
        "pruned_dir": str((out / "pruned").resolve()),
        "speedup": speed,
        "layers": sparsity["layers"],
        "teacher": teacher_info,
        "device": f"{jax.default_backend()}: {jax.devices()[0].device_kind}",
        "config": config.to_dict(),
    }
    if not is_primary():
        return results
    interrupts.check()  # a swallowed Ctrl-C: stop before the results (resuming redoes only the tail)
    write_json(results_path, results)
    if not config.keep_checkpoints:  # the run is finished: results and models are kept
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
        shutil.rmtree(out / FINETUNE_CHECKPOINTS, ignore_errors=True)
    return results


def _finetune(config: ExperimentConfig, base, params, model_config, teacher_logits, before: dict, out: Path,
              parallel, log: Log) -> tuple[Any, dict[str, Any]]:
    """The compacted student fine-tuned (:mod:`.finetune`), and what results.json says of it."""
    extra, transfer_timing = transfer_logits(config, base, parallel, log)
    started = time.perf_counter()
    with track_emissions(config.country_iso_code) as emissions:
        result, examples = finetune_compacted(config, base, params, model_config, teacher_logits, extra, out,
                                              parallel)
    log(f"fine-tuned the compacted student: {config.finetune_epochs} epochs of {examples} examples "
        f"({result.total_steps} steps, {time.perf_counter() - started:.0f} s)")
    return result.params, {
        "accuracy_before_finetune": before["accuracy"],
        "macro_f1_before_finetune": before["macro_f1"],
        "finetune": {"epochs": config.finetune_epochs, "examples_per_epoch": examples, "steps": result.total_steps,
                     "train_seconds": time.perf_counter() - started, "resumed_from_step": result.resumed_from_step,
                     "final_loss": result.final_loss, **transfer_timing},
        "emissions": emissions,
    }


def _sum_emissions(first, second):
    """One block's emissions and a later block's, as one record (None where either failed)."""
    if first.kg_co2 is None or second.kg_co2 is None:
        return first if first.kg_co2 is None else second
    return dataclasses.replace(first, kg_co2=first.kg_co2 + second.kg_co2,
                               energy_kwh=(first.energy_kwh or 0.0) + (second.energy_kwh or 0.0))
