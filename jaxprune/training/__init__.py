"""Training: configs, state and the one train step, the loop, checkpoints, losses.

:mod:`.config` (``TrainConfig`` and its nested parts), :mod:`.task` (``Task``: what training
needs from a model), :mod:`.bert` (``BertClassification``, BERT's task), :mod:`.step`
(``TrainState``, ``create_train_state``, ``train_step``), :mod:`.loop` (``fit``) and its parts
:mod:`.checkpoint` (orbax, the restore policy), :mod:`.divergence` (the nan/inf guard) and
:mod:`.progress`; :mod:`.losses` (cross-entropy, distillation and layer distillation).
"""

from jaxprune._extras import require

require(__name__, "train", "datasets", "orbax", "tqdm")
