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
from jaxprune.experiment.config import RESULTS_NAME, ExperimentConfig, differences, settings
from jaxprune.experiment.emissions import Emissions, check_country, track_emissions
from jaxprune.experiment.finetune import FINETUNE_CHECKPOINTS, finetune_compacted, load_pruned_student, transfer_logits
from jaxprune.experiment.folders import missing_folders, prepare_output_dir, remove_unless_useful, write_json
from jaxprune.experiment.results import (
    Compaction,
    Finetune,
    Metrics,
    RunResults,
    Scores,
    SplitMetrics,
    Timing,
    Training,
)
from jaxprune.experiment.runlock import hold_folder_lock
from jaxprune.parallel import is_primary
from jaxprune.experiment.teachers import Log
from jaxprune.models.bert_rules import bert_sparsity_report
from jaxprune.models.compaction import compact
from jaxprune.models.loading import save_pretrained
from jaxprune.models.sources import describe
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


def train_and_evaluate(config: ExperimentConfig, log: Log = print) -> RunResults:
    """Run one experiment end to end; returns (and writes to ``results.json``) its record.

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


def _finished_run(config: ExperimentConfig, results_path: Path, log: Log) -> RunResults:
    """The record of the finished run in ``results_path``, when ``config`` asks to resume it with its settings."""
    out = results_path.parent
    if not config.resume:
        raise JaxpruneError(f"{out} already holds a finished run; pass a new `output_dir`")
    try:
        recorded = json.loads(results_path.read_text(encoding="utf-8")).get("config", {})
    except (ValueError, AttributeError):
        recorded = {}
    changed = differences(settings(recorded), settings(config.to_dict()))
    if changed:
        raise JaxpruneError(f"{out} holds a run finished with other settings ({'; '.join(changed[:4])}); "
                            f"pass a new `output_dir`, or the settings it was made with")
    log(f"{results_path} exists: this run already finished")
    return RunResults.read(results_path)


def _train_and_evaluate(config: ExperimentConfig, inputs: Inputs, out: Path, log: Log) -> RunResults:
    run_started = time.perf_counter()
    results_path = out / RESULTS_NAME
    if results_path.is_file():
        return _finished_run(config, results_path, log)
    checkpoints = out / "checkpoints"
    if config.resume and not (checkpoints.is_dir() and any(c.name.isdigit() for c in checkpoints.iterdir())):
        log(f"resume: {out} has no checkpoint to resume from; starting a new run")
    base = teacher_baseline(config, log, inputs)
    parallel = config.parallel()
    teacher_logits, logits_started = None, time.perf_counter()
    if config.student.distills and not config.teacher_in_step:
        teacher_logits = predict_logits(base.params, base.model_config, base.encoded_train, config.student.batch_size,
                                        config.student.compute_dtype, progress=progress_bar("teacher logits"),
                                        parallel=parallel)
    teacher_logits_seconds = time.perf_counter() - logits_started
    student = _prune(config, base, teacher_logits, out, parallel, log)
    compacted = _compact(config, base, student, teacher_logits, out, parallel, log)
    metrics = _scores(config, base, compacted.served_metrics, compacted.served, parallel)
    if is_primary():
        save_pretrained(*compacted.model, out / "compacted", tokenizer=base.tokenizer)
    inference = measure_speedup((student.params, base.model_config), compacted.model, config)
    timing = Timing(train_seconds=student.seconds, teacher_logits_seconds=teacher_logits_seconds,
                    finetune_seconds=compacted.seconds.get("finetune"),
                    transfer_logits_seconds=compacted.seconds.get("transfer_logits"),
                    run_seconds=time.perf_counter() - run_started, inference=inference)
    results = _record(config, base, student, compacted, metrics, timing, out)
    if is_primary():
        _write(config, results, out)
    return results


def _write(config: ExperimentConfig, results: RunResults, out: Path) -> None:
    interrupts.check()  # a swallowed Ctrl-C: stop before the results (resuming redoes only the tail)
    write_json(out / RESULTS_NAME, results.to_json())
    if not config.keep_checkpoints:  # the run is finished: results and models are kept
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
        shutil.rmtree(out / FINETUNE_CHECKPOINTS, ignore_errors=True)


@dataclasses.dataclass(frozen=True)
class _Pruned:
    """The student pruned (masked, at full shape) and scored on the eval split."""

    params: Any
    layout: Any
    training: Training
    emissions: Emissions
    seconds: float
    eval_metrics: dict[str, Any]


def _prune(config: ExperimentConfig, base: Baseline, teacher_logits, out: Path, parallel, log: Log) -> _Pruned:
    """The teacher pruned (and distilled) into the student, or an earlier run's pruned student
    (``student_from``); scored on the eval split."""
    teacher_params, teacher_config, encoded_train = base.params, base.model_config, base.encoded_train
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
            training = Training(result.total_steps, result.resumed_from_step, result.final_loss)
        else:  # the pruning was done by an earlier run: its pruned student is loaded, then fine-tuned
            final = load_pruned_student(config.student_from, teacher_params, teacher_config,
                                        config.student.sparsity, log)
            layout, training = None, Training(steps=0, resumed_from_step=None, final_loss=None)
    seconds = time.perf_counter() - started
    eval_metrics = _evaluate(config, (final, teacher_config), base.encoded_eval, "evaluate student", parallel)
    return _Pruned(final, layout, training, emissions, seconds, eval_metrics)


def _evaluate(config: ExperimentConfig, model, encoded, description: str, parallel) -> dict[str, Any]:
    return evaluate(*model, encoded, config.student.batch_size, config.student.compute_dtype, description, parallel)


@dataclasses.dataclass(frozen=True)
class _Compacted:
    """The compacted student (fine-tuned when the run asks), what is served (scored on the
    test split and reported), and what compaction and fine-tuning did."""

    model: tuple[Any, Any]
    served: tuple[Any, Any]
    served_metrics: dict[str, Any]
    compaction: Compaction
    finetune: Finetune | None
    emissions: Emissions
    seconds: dict[str, float | None]


def _compact(config: ExperimentConfig, base: Baseline, student: _Pruned, teacher_logits, out: Path, parallel,
             log: Log) -> _Compacted:
    """The pruned student's report, saved to ``out/pruned``, compacted, and fine-tuned when asked."""
    sparsity = bert_sparsity_report(base.model_config, student.params, student.layout)
    if is_primary():
        save_pretrained(student.params, base.model_config, out / "pruned", tokenizer=base.tokenizer)
    compact_params, compact_config, report = compact(student.params, base.model_config)
    compaction = Compaction(params_nonzero=int(sparsity["params_remaining"]),
                            encoder_sparsity=float(sparsity["encoder_zero_fraction"]), layers=sparsity["layers"],
                            report=report.to_dict())
    served, metrics, emissions = (student.params, base.model_config), student.eval_metrics, student.emissions
    finetune, seconds = None, {}
    if config.finetune_epochs:
        compact_params, finetune, finetune_emissions, seconds = _finetune(
            config, base, compact_params, compact_config, teacher_logits, student.eval_metrics, out, parallel, log)
        emissions = _sum_emissions(emissions, finetune_emissions)
        served = (compact_params, compact_config)
        metrics = _evaluate(config, served, base.encoded_eval, "evaluate fine-tuned student", parallel)
    return _Compacted((compact_params, compact_config), served, metrics, compaction, finetune, emissions, seconds)


def _scores(config: ExperimentConfig, base: Baseline, student_metrics: dict, served, parallel) -> Scores:
    """Teacher and served student on the eval split and, when there is one, the test split."""
    test = None
    if base.encoded_test is not None:
        test_metrics = _evaluate(config, served, base.encoded_test, "evaluate student on test", parallel)
        test = SplitMetrics(teacher=Metrics.of(base.test_metrics), student=Metrics.of(test_metrics),
                            majority_class_accuracy=majority_accuracy(base.encoded_test))
    eval_split = SplitMetrics(teacher=Metrics.of(base.metrics), student=Metrics.of(student_metrics),
                              majority_class_accuracy=majority_accuracy(base.encoded_eval))
    return Scores(eval=eval_split, test=test, chance_accuracy=1.0 / len(base.model_config.label_names))


def _record(config: ExperimentConfig, base: Baseline, student: _Pruned, compacted: _Compacted, metrics: Scores,
            timing: Timing, out: Path) -> RunResults:
    return RunResults(
        model=describe(config.model), pooling=base.model_config.classifier_pooling, model_folder=base.folder,
        device=f"{jax.default_backend()}: {jax.devices()[0].device_kind}", teacher=base.info,
        data={**base.data_info.to_dict(), "transfer": base.transfer.to_dict() if base.transfer else None},
        vocabulary=base.vocabulary, metrics=metrics, compaction=compacted.compaction, training=student.training,
        finetune=compacted.finetune, timing=timing, emissions=compacted.emissions,
        pruned_dir=str((out / "pruned").resolve()), compacted_dir=str((out / "compacted").resolve()), config=config,
    )


def _finetune(config: ExperimentConfig, base, params, model_config, teacher_logits, before: dict, out: Path,
              parallel, log: Log) -> tuple[Any, Finetune, Emissions, dict[str, float | None]]:
    """The compacted student fine-tuned (:mod:`.finetune`), what it did, its emissions and seconds."""
    extra, transfer = transfer_logits(config, base, parallel, log)
    started = time.perf_counter()
    with track_emissions(config.country_iso_code) as emissions:
        result, examples = finetune_compacted(config, base, params, model_config, teacher_logits, extra, out,
                                              parallel)
    seconds = time.perf_counter() - started
    log(f"fine-tuned the compacted student: {config.finetune_epochs} epochs of {examples} examples "
        f"({result.total_steps} steps, {seconds:.0f} s)")
    finetune = Finetune(epochs=config.finetune_epochs, examples_per_epoch=examples, steps=result.total_steps,
                        resumed_from_step=result.resumed_from_step, final_loss=result.final_loss,
                        accuracy_before=before["accuracy"], macro_f1_before=before["macro_f1"],
                        transfer_logits_file=transfer.get("logits_file"),
                        transfer_logits_reused=transfer.get("logits_reused"))
    return result.params, finetune, emissions, {"finetune": seconds, "transfer_logits": transfer.get("logits_seconds")}


def _sum_emissions(first, second):
    """One block's emissions and a later block's, as one record (None where either failed)."""
    if first.kg_co2 is None or second.kg_co2 is None:
        return first if first.kg_co2 is None else second
    return dataclasses.replace(first, kg_co2=first.kg_co2 + second.kg_co2,
                               energy_kwh=(first.energy_kwh or 0.0) + (second.energy_kwh or 0.0))
