"""Training: configs, state and the one train step, the loop, checkpoints, losses.

:mod:`.config` (``TrainConfig`` and its nested parts), :mod:`.step` (``TrainState``,
``create_train_state``, ``train_step``), :mod:`.loop` (``fit``), :mod:`.checkpoint` (orbax),
:mod:`.losses` (cross-entropy, distillation and layer distillation).
"""

from jaxprune._extras import require

require(__name__, "train", "datasets", "orbax", "tqdm")
