"""One experiment of the paper, end to end, and what it writes.

:mod:`.config` (``ExperimentConfig``, fingerprints), :mod:`.presets` (the configs the
command line starts from), :mod:`.baseline` (model, data and the evaluated teacher),
:mod:`.teachers` (the teacher cache), :mod:`.pipeline` (``train_and_evaluate``),
:mod:`.folders` (output folders, atomic JSON), :mod:`.runlock` (one process per folder),
:mod:`.emissions` (CodeCarbon), :mod:`.summary` (the printed table).

Needs the ``train`` extra. Names are imported on first use: ``jaxprune.experiment.presets``
(or ``.config``) does not import the data, model-loading and checkpointing libraries the
pipeline needs.
"""

from jaxprune._extras import require

# CodeCarbon (the CO2 figure) and matplotlib (table1.py's figure) are used when present.
require(__name__, "train", "datasets", "transformers", "tokenizers", "safetensors", "huggingface_hub", "orbax",
        "filelock", "tqdm")

import importlib

# name -> module that defines it
_EXPORTS = {
    "ExperimentConfig": "jaxprune.experiment.config",
    "Inputs": "jaxprune.experiment.baseline",
    "check_inputs": "jaxprune.experiment.baseline",
    "check_precision": "jaxprune.experiment.baseline",
    "evaluate": "jaxprune.experiment.baseline",
    "majority_accuracy": "jaxprune.experiment.baseline",
    "teacher_baseline": "jaxprune.experiment.baseline",
    "train_and_evaluate": "jaxprune.experiment.pipeline",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'jaxprune.experiment' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__():
    return __all__
