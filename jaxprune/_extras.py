"""Optional dependencies ("extras"): which part of jaxprune needs which, said in one line.

``pip install jaxprune`` is the core: jax, flax, optax and numpy, enough for
:mod:`jaxprune.mask` and the Flax BERT (:mod:`jaxprune.models`: config, model, rules,
compaction). The rest of the package needs an extra:

- ``train``: the pipeline (:mod:`jaxprune.data`, ``evaluation``, ``experiment``, ``training``,
  ``vocab``, :mod:`jaxprune.models.loading` and :mod:`jaxprune.models.sources`);
- ``onnx``: ONNX export and ONNX Runtime (:mod:`jaxprune.export`, ``export_int8``, ``onnx_graph``).

Each of those modules calls :func:`require` before its other imports, so importing it without
its extra raises :class:`MissingExtraError` naming the extra, instead of an import error from
deep inside. The check only looks the libraries up (``importlib.util.find_spec``), it does not
import them.
"""

from __future__ import annotations

import importlib.util
import sys

from jaxprune.errors import JaxpruneError

# extra -> the import names of what it installs (pyproject.toml's optional-dependencies)
EXTRAS = {
    "train": ("datasets", "transformers", "tokenizers", "safetensors", "huggingface_hub", "orbax", "filelock",
              "tqdm", "codecarbon", "matplotlib"),
    "onnx": ("onnx", "onnxruntime"),
}


class MissingExtraError(JaxpruneError, ImportError):
    """A module's extra is not installed. An ImportError too, so ``except ImportError`` sees it."""


def _installed(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a finder that refuses the name; a module without a spec
        return False


def missing_extra(module: str, extra: str, *imports: str) -> str | None:
    """The one-line message for ``module`` when an import of ``extra`` is missing, else ``None``.

    ``imports`` are the import names ``module`` needs (default: everything the extra installs).

    >>> print(missing_extra("jaxprune.example", "onnx", "json", "no_such_library_x"))
    jaxprune.example needs the [onnx] extra (no_such_library_x not installed): pip install "jaxprune[onnx]", or pip install -e ".[onnx]" in a checkout
    >>> print(missing_extra("jaxprune.example", "onnx", "json"))
    None
    """
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; known: {', '.join(EXTRAS)}")
    absent = [name for name in imports or EXTRAS[extra] if not _installed(name)]
    if not absent:
        return None
    named = ", ".join(absent[:3]) + (f" and {len(absent) - 3} more" if len(absent) > 3 else "")
    return (f"{module} needs the [{extra}] extra ({named} not installed): "
            f'pip install "jaxprune[{extra}]", or pip install -e ".[{extra}]" in a checkout')


def require(module: str, extra: str, *imports: str) -> None:
    """Raise :class:`MissingExtraError` unless ``extra``'s ``imports`` (default: all) are installed.

    Called first in a module that needs an extra: ``require(__name__, "train", "datasets")``.
    """
    message = missing_extra(module, extra, *imports)
    if message:
        raise MissingExtraError(message)


def exit_without(script: str, extra: str, *imports: str) -> None:
    """For a script run as a file whose own imports need ``extra``: without it, print the one
    ``error:`` line the scripts print for a :class:`JaxpruneError` and exit with status 2 (an
    import would otherwise fail with a traceback, before the script's error handling starts)."""
    message = missing_extra(script, extra, *imports)
    if message:
        print(f"error: {message}", file=sys.stderr, flush=True)
        raise SystemExit(2)
