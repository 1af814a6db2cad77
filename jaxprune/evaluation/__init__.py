"""Evaluation: logits of a split, classification metrics, inference timing.

:mod:`.predict` (``predict_logits``), :mod:`.metrics` (``classification_report``),
:mod:`.timing` (jitted inference timed side by side: dense vs compacted). Needs the ``train``
extra (the batches come from :mod:`jaxprune.data`).
"""

from jaxprune._extras import require

require(__name__, "train", "datasets")
