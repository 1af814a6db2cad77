"""Fine-tuning after compaction: the student, its structure final, trained further in its
compacted form (at 75% sparsity a step costs about a third of a masked one), with the
student's distillation and, when the config names one, the transfer set.

nn_pruning and CoFi both fine-tune once the structure is fixed ("it makes a huge
difference for highly pruned models"); the transfer texts join here because their
teacher logits are cheap to cache and a compacted step is cheap to take.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jaxprune.data.batching import join_unlabelled
from jaxprune.errors import JaxpruneError
from jaxprune.evaluation.predict import predict_logits
from jaxprune.experiment.baseline import Baseline, progress_bar
from jaxprune.experiment.config import ExperimentConfig, stable_hash
from jaxprune.experiment.teachers import Log
from jaxprune.experiment.transfer import cached_logits
from jaxprune.models.config import BertConfig
from jaxprune.training.bert import BertClassification
from jaxprune.training.loop import FitResult, fit
from jaxprune.parallel import is_primary

FINETUNE_CHECKPOINTS = "checkpoints-finetune"
SPARSITY_TOLERANCE = 0.05  # how far a loaded student's encoder sparsity may be from the run's


def load_pruned_student(folder: str, teacher_params: Any, teacher_config: BertConfig, sparsity: float,
                        log: Log) -> Any:
    """The masked student an earlier run saved in ``folder`` (its ``pruned`` folder), checked
    against this run's teacher: the same shapes (model, vocabulary and labels) and about the
    run's ``sparsity``. A run given one skips the pruning and goes on with what follows it."""
    from jaxprune.models.bert_rules import bert_sparsity_report
    from jaxprune.models.loading import from_pretrained

    params, config = from_pretrained(folder)
    shapes = jax.tree_util.tree_map(np.shape, params)
    if config.label_names != teacher_config.label_names or shapes != jax.tree_util.tree_map(np.shape, teacher_params):
        raise JaxpruneError(f"`student_from` {folder} was not pruned from this run's teacher (other shapes or "
                            f"labels); pass the pruned folder of a run with the same model, data and vocabulary")
    found = bert_sparsity_report(teacher_config, params)["encoder_zero_fraction"]
    if abs(found - sparsity) > SPARSITY_TOLERANCE:
        raise JaxpruneError(f"`student_from` {folder} is {found:.0%} sparse but this run's sparsity is "
                            f"{sparsity:g}; pass `sparsity={found:.2f}` or another student")
    log(f"student: the pruned student in {folder} ({found:.1%} of the encoder zero), not pruned again")
    return params


def transfer_logits(config: ExperimentConfig, base: Baseline, parallel, log: Log) -> tuple[np.ndarray | None, dict]:
    """The teacher's logits (N, C) on the transfer texts, computed once per teacher and texts
    and kept in the teacher cache; ``(None, {})`` when the run uses no cached transfer logits."""
    if base.transfer is None or not uses_transfer(config) or config.teacher_in_step:
        return None, {}
    key = stable_hash({"teacher": base.info.get("source"), "vocabulary": base.folder, "texts": base.transfer.texts,
                       "max_length": config.max_length, "compute_dtype": config.student.compute_dtype})
    cache_file = Path(config.teacher_cache) / "transfer-logits" / f"{key}.npy"
    started = time.perf_counter()
    logits, reused = cached_logits(cache_file, lambda: predict_logits(
        base.params, base.model_config, base.encoded_transfer, config.student.batch_size,
        config.student.compute_dtype, progress=progress_bar("teacher logits on transfer texts"), parallel=parallel,
    ), primary=is_primary())
    seconds = time.perf_counter() - started
    log(f"transfer set: teacher logits {'reused from' if reused else 'computed and kept in'} {cache_file} "
        f"({seconds:.0f} s)")
    return logits, {"logits_file": str(cache_file), "logits_reused": reused, "logits_seconds": seconds}


def uses_transfer(config: ExperimentConfig) -> bool:
    """Whether the transfer texts train this run: only a distilled student's fine-tuning reads them."""
    return config.transfer_file is not None and config.student.distills and config.finetune_epochs > 0


def finetune_compacted(config: ExperimentConfig, base: Baseline, params: Any, model_config: BertConfig,
                       train_logits: np.ndarray | None, extra_logits: np.ndarray | None, out: Path,
                       parallel) -> tuple[FitResult, int]:
    """The compacted student ``(params, model_config)`` trained ``config.finetune_epochs`` more
    epochs (no pruning; the student's optimizer and distillation) on the training split, joined
    by the transfer texts when the run uses them; returns the fit and the examples per epoch."""
    student = config.student.replace(epochs=config.finetune_epochs, pruning=None)
    train, logits = base.encoded_train, train_logits
    if uses_transfer(config):
        train = join_unlabelled(train, base.encoded_transfer)
        if logits is not None:
            logits = np.concatenate([logits, extra_logits]).astype(np.float32)
    result = fit(
        params, BertClassification(model_config), student, train,
        teacher_logits=logits if student.distills else None,
        teacher=(base.params, BertClassification(base.model_config)) if student.distills else None,
        checkpoint_dir=str(out / FINETUNE_CHECKPOINTS), fingerprint=f"{config.fingerprint()}-finetune",
        resume=config.resume, checkpoint_every=config.checkpoint_every, description="fine-tune compacted",
        parallel=parallel,
    )
    return result, len(train)
