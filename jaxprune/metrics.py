"""Accuracy, macro-F1 and per-class F1 from predictions (numpy, on host)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def classification_report(
    predictions: np.ndarray, labels: np.ndarray, label_names: Sequence[str]
) -> dict[str, float | dict[str, float]]:
    """``accuracy``, ``macro_f1`` (over classes present in labels or predictions) and ``per_class_f1``.

    Args:
      predictions, labels: (N,) int class ids.
      label_names: class names in id order.
    """
    predictions = np.asarray(predictions)
    labels = np.asarray(labels)
    if predictions.shape != labels.shape or labels.ndim != 1:
        raise ValueError(f"predictions {predictions.shape} and labels {labels.shape} must be equal 1-D shapes")
    per_class: dict[str, float] = {}
    present: list[float] = []
    for class_id, name in enumerate(label_names):
        true_pos = np.sum((predictions == class_id) & (labels == class_id))
        predicted = np.sum(predictions == class_id)
        actual = np.sum(labels == class_id)
        denominator = predicted + actual
        f1 = float(2 * true_pos / denominator) if denominator else 0.0
        per_class[name] = f1
        if denominator:
            present.append(f1)
    return {
        "accuracy": float(np.mean(predictions == labels)) if labels.size else 0.0,
        "macro_f1": float(np.mean(present)) if present else 0.0,
        "per_class_f1": per_class,
    }
