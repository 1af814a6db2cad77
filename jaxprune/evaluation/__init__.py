"""Evaluation: logits of a split, classification metrics, inference timing.

:mod:`.predict` (``predict_logits``), :mod:`.metrics` (``classification_report``),
:mod:`.timing` (jitted inference timed side by side: dense vs compacted).
"""
