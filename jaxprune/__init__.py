"""jaxprune: block movement pruning, distillation and bfloat16 for BERT classifiers in JAX.

Public API (see docs/library.md); names are imported on first use, so ``import jaxprune.mask``
pulls in jax, numpy, flax and optax only.

The core (``pip install jaxprune``: jax, flax, optax, numpy):

- pruning: :mod:`jaxprune.mask` (model-agnostic), :func:`bert_rules`, :func:`compact`
- model (:mod:`jaxprune.models`): :class:`BertConfig`, :class:`BertForSequenceClassification`,
  :func:`init_params`

With the ``train`` extra (``pip install "jaxprune[train]"``; without it, these names raise
:class:`jaxprune._extras.MissingExtraError` saying so in one line):

- loading and saving: :func:`from_pretrained`, :func:`save_pretrained`, :func:`load_tokenizer`;
  :mod:`jaxprune.vocab` (vocabulary pruning)
- training (:mod:`jaxprune.training`): :class:`TrainConfig`, :func:`fit` over a :class:`Task`
  (:class:`BertClassification` for BERT)
- experiments (:mod:`jaxprune.experiment`): :class:`ExperimentConfig`, :func:`train_and_evaluate`
- data (:mod:`jaxprune.data`), evaluation (:mod:`jaxprune.evaluation`)

With the ``onnx`` extra: :mod:`jaxprune.export` (ONNX export, run in ONNX Runtime).
"""

import importlib

__version__ = "0.1.0"

# name -> module that defines it
_EXPORTS = {
    "BertConfig": "jaxprune.models.config",
    "mahabert_config": "jaxprune.models.config",
    "minilm_config": "jaxprune.models.config",
    "BertForSequenceClassification": "jaxprune.models.bert",
    "count_params": "jaxprune.models.bert",
    "init_params": "jaxprune.models.bert",
    "param_shapes": "jaxprune.models.bert",
    "bert_rules": "jaxprune.models.bert_rules",
    "bert_sparsity_report": "jaxprune.models.bert_rules",
    "surviving_units": "jaxprune.models.bert_rules",
    "CompactionReport": "jaxprune.models.compaction",
    "compact": "jaxprune.models.compaction",
    "from_pretrained": "jaxprune.models.loading",
    "load_tokenizer": "jaxprune.models.loading",
    "save_pretrained": "jaxprune.models.loading",
    "cross_entropy": "jaxprune.training.losses",
    "distillation_loss": "jaxprune.training.losses",
    "layer_distillation_loss": "jaxprune.training.losses",
    "TrainConfig": "jaxprune.training.config",
    "OptimizerConfig": "jaxprune.training.config",
    "PruningConfig": "jaxprune.training.config",
    "DistillationConfig": "jaxprune.training.config",
    "fit": "jaxprune.training.loop",
    "Task": "jaxprune.training.task",
    "BertClassification": "jaxprune.training.bert",
    "classification_report": "jaxprune.evaluation.metrics",
    "predict_logits": "jaxprune.evaluation.predict",
    "load_csv": "jaxprune.data",
    "load_mahanews": "jaxprune.data",
    "load_offline_corpus": "jaxprune.data",
    "ExperimentConfig": "jaxprune.experiment.config",
    "train_and_evaluate": "jaxprune.experiment.pipeline",
    "JaxpruneError": "jaxprune.errors",
}
_SUBPACKAGES = ("data", "evaluation", "experiment", "mask", "models", "training", "vocab")

__all__ = sorted([*_EXPORTS, *_SUBPACKAGES])


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _SUBPACKAGES:
        value = importlib.import_module(f"jaxprune.{name}")
    else:
        raise AttributeError(f"module 'jaxprune' has no attribute {name!r}")
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__():
    return __all__
