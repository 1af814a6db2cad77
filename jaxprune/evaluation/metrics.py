"""Accuracy, macro-F1 and per-class F1 from predictions (numpy, on host)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def classification_report(
    predictions: np.ndarray, labels: np.ndarray, label_names: Sequence[str]
) -> dict[str, float | dict[str, float]]:
    """``accuracy``, ``macro_f1`` and ``per_class_f1`` over the classes present in ``labels``.

    A class absent from the eval labels has no F1 to speak of: it is left out of
    ``per_class_f1`` (in id order) and of ``macro_f1``, the mean F1 of the classes that
    occur in ``labels``; predicting such a class still costs the true class its recall.
    Whenever every class occurs, ``macro_f1`` is the usual macro-F1 (scikit-learn's
    ``f1_score(labels, predictions, average="macro")``). A class that occurs but is never
    predicted has F1 0.

    Args:
      predictions, labels: (N,) int class ids.
      label_names: class names in id order.

    >>> report = classification_report(np.array([0, 0, 2, 2]), np.array([0, 1, 1, 1]), ["a", "b", "c"])
    >>> report["per_class_f1"], report["macro_f1"], report["accuracy"]
    ({'a': 0.6666666666666666, 'b': 0.0}, 0.3333333333333333, 0.25)
    """
    predictions = np.asarray(predictions)
    labels = np.asarray(labels)
    if predictions.shape != labels.shape or labels.ndim != 1:
        raise ValueError(f"predictions {predictions.shape} and labels {labels.shape} must be equal 1-D shapes")
    per_class: dict[str, float] = {}
    for class_id, name in enumerate(label_names):
        support = np.sum(labels == class_id)
        if not support:
            continue
        true_pos = np.sum((predictions == class_id) & (labels == class_id))
        predicted = np.sum(predictions == class_id)
        per_class[name] = float(2 * true_pos / (predicted + support))
    return {
        "accuracy": float(np.mean(predictions == labels)) if labels.size else 0.0,
        "macro_f1": float(np.mean(list(per_class.values()))) if per_class else 0.0,
        "per_class_f1": per_class,
    }
