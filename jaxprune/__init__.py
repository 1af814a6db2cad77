"""jaxprune: block movement pruning, distillation and bfloat16 for BERT classifiers in JAX.

Public API (see README.md):

- model: :class:`BertConfig`, :class:`BertForSequenceClassification`, :func:`init_params`,
  :func:`from_pretrained`, :func:`save_pretrained`, :func:`load_tokenizer`
- pruning: :mod:`jaxprune.mask` (model-agnostic), :func:`bert_rules`, :func:`compact`,
  :mod:`jaxprune.vocab` (vocabulary pruning)
- training: :class:`TrainConfig`, :func:`fit`, :class:`ExperimentConfig`, :func:`train_and_evaluate`
- losses and metrics: :func:`cross_entropy`, :func:`distillation_loss`, :func:`classification_report`
"""

from jaxprune import mask, vocab
from jaxprune.bert import BertForSequenceClassification, count_params, init_params, param_shapes
from jaxprune.bert_rules import bert_rules, bert_sparsity_report, surviving_units
from jaxprune.compaction import CompactionReport, compact
from jaxprune.config import BertConfig, mahabert_config, minilm_config
from jaxprune.distill import cross_entropy, distillation_loss
from jaxprune.errors import JaxpruneError
from jaxprune.loading import from_pretrained, load_tokenizer, save_pretrained
from jaxprune.metrics import classification_report

from jaxprune.data import load_csv, load_mahanews, load_offline_corpus
from jaxprune.experiment import ExperimentConfig, train_and_evaluate
from jaxprune.loop import fit
from jaxprune.train import TrainConfig

__version__ = "0.1.0"

__all__ = [
    "BertConfig", "BertForSequenceClassification", "CompactionReport", "ExperimentConfig", "JaxpruneError",
    "TrainConfig", "bert_rules", "bert_sparsity_report", "classification_report", "compact", "count_params",
    "cross_entropy", "distillation_loss", "fit", "from_pretrained", "init_params", "load_csv", "load_mahanews",
    "load_offline_corpus", "load_tokenizer", "mahabert_config", "mask", "minilm_config", "param_shapes",
    "save_pretrained", "surviving_units", "train_and_evaluate", "vocab",
]
