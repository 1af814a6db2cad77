"""Argument parsing shared by the scripts in experiments/ and benchmarks/: one-line
errors, checked numbers, ``--help`` that shows every default, quiet libraries, and a
``main`` wrapper that turns a :class:`jaxprune.errors.JaxpruneError` into one line on
stderr (the library never parses the command line; this module is the scripts' side of
that line).
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import sys
from collections.abc import Callable, Collection, Mapping
from typing import Any


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """``--help`` with the description as written (the module docstring keeps its layout) and
    every default shown: ``(default: X)`` is appended to each option whose default is not
    ``None`` and whose help does not already mention one; a flag that is off by default reads
    ``(default: off)``. An option whose default is ``None`` says its default in its own help."""

    def _format_action(self, action: argparse.Action) -> str:
        help_text = _help_with_default(action)
        if help_text != action.help:
            action = copy.copy(action)  # the parser's own action is left as it was
            action.help = help_text
        return super()._format_action(action)


def _help_with_default(action: argparse.Action) -> str | None:
    help_text = action.help
    if help_text is argparse.SUPPRESS or action.default is None or action.default is argparse.SUPPRESS:
        return help_text
    if help_text and "default" in help_text.lower():
        return help_text
    shown = _shown_default(action.default).replace("%", "%%")  # argparse %-formats the help
    return f"{help_text} (default: {shown})" if help_text else f"(default: {shown})"


def _shown_default(value: Any) -> str:
    """A default as a user would type it: on/off for flags, lists space-separated."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, (list, tuple)):
        return " ".join(str(v) for v in value) or "none"
    text = str(value)
    return text if text else "empty"


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr with exit status 2, and whose
    ``--help`` shows every default (:class:`HelpFormatter`, unless ``formatter_class`` is given)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"error: {message} (see --help)\n")


def quiet_libraries() -> None:
    """Silence library advice a user of the scripts cannot act on; call it first in a script's
    ``main``, before transformers is imported (jaxprune imports it only when it is needed).

    transformers says "PyTorch was not found. Models won't be available..." on every import
    without torch, which jaxprune never needs. This sets ``TRANSFORMERS_NO_ADVISORY_WARNINGS``
    (unless the user set it) in the script's process; real warnings and errors still show.
    orbax logs through absl at WARNING when a checkpoint save waits for the previous one ("consider
    checkpointing less frequently"): advice about its own timing, so absl is kept to errors.
    The library itself never changes the environment.
    """
    import logging

    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    logging.getLogger("absl").setLevel(logging.ERROR)


def whole_number(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} must be at least {minimum}")
        return value

    return parse


def positive_number(text: str) -> float:
    """An argparse type: a float > 0 (nan rejected)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{value} must be positive")
    return value


def _number(text: str, example: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; pass e.g. {example}") from None


def fraction_pruned(text: str) -> float:
    """An argparse type: a fraction pruned, 0 <= s < 1."""
    value = _number(text, "0.25")
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"{value} is out of range; pass a value with 0 <= s < 1")
    return value


def fraction_kept(text: str) -> float:
    """An argparse type: a fraction kept, 0 < k <= 1."""
    value = _number(text, "0.5")
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} is out of range; pass a value with 0 < k <= 1")
    return value


# The library's arguments (ExperimentConfig and TrainConfig fields, function arguments) whose
# flag is not the name with dashes, alone or with the value a message asks for.
ARGUMENT_FLAGS = {
    "compute_dtype": "--precision",
    'compute_dtype="float32"': "--precision fp32",
    'compute_dtype="bfloat16"': "--precision bf16",
    "country_iso_code": "--country",
    "checkpoint_dir": "--output-dir",  # run.py's checkpoints are in its output folder
    "student.pruning.sparsity": "--sparsity",
    "student.distillation.temperature": "--temperature",
    "student.optimizer.learning_rate": "--learning-rate",
    "student.epochs": "--epochs",
    "teacher.epochs": "--teacher-epochs",
}
PRECISIONS = {"fp32": "float32", "bf16": "bfloat16"}  # --precision's values and the compute dtypes they pick
_ARGUMENT = re.compile(r"(?<!`)`([A-Za-z_][\w.]*)(?:=([^`]*))?`(?!`)")  # not ``rst``


def as_flags(message: str, flags: Mapping[str, str] | None = None, known: Collection[str] | None = None) -> str:
    """``message`` with each backticked argument of the library written as the flag that sets it.

    A :class:`jaxprune.errors.JaxpruneError` names arguments, alone or with a value
    (`` `output_dir` ``, `` `resume=True` ``, `` `max_length=64` ``); a script's user knows flags.
    ``flags`` (a script's own names) and :data:`ARGUMENT_FLAGS` are looked up first, with the
    value and then without; otherwise ``name`` is ``--name`` with dashes for underscores, ``=True``
    is the flag alone, ``=False`` its ``--no-`` form and any other value follows the flag, unquoted.
    With ``known`` (a script's option strings), an argument whose flag the script lacks (one only the
    library has, such as ``replace_head``) is left as written; so is backticked text that is not an
    argument (a shell command with spaces).

    >>> as_flags("pass a new `output_dir`, or `resume=True`")
    'pass a new --output-dir, or --resume'
    >>> as_flags('pass `max_length=64` or less, or use `compute_dtype="float32"`')
    'pass --max-length 64 or less, or use --precision fp32'
    >>> as_flags("unknown `country_iso_code` 'XYZ'; run `pip install x`")
    "unknown --country 'XYZ'; run `pip install x`"
    >>> as_flags("pass `replace_head=True` or a new `output_dir`", known={"--output-dir"})
    'pass `replace_head=True` or a new --output-dir'
    """
    table = {**ARGUMENT_FLAGS, **(flags or {})}

    def flag(match: re.Match) -> str:
        name, value = match.group(1), match.group(2)
        written = match.group(0)[1:-1]
        option = table.get(name, "--" + name.rsplit(".", 1)[-1].replace("_", "-"))
        if written in table:
            text = table[written]
        elif value is None or value == "True":
            text = option
        elif value == "False":
            text = "--no-" + option[2:]
        else:
            text = f"{option} {value.strip(chr(34) + chr(39))}"
        return text if known is None or text.split()[0] in known else match.group(0)

    return _ARGUMENT.sub(flag, message)


def precision_dtype(precision: str) -> str:
    """The compute dtype of a ``--precision`` value: ``auto`` is bfloat16 on GPU, float32 elsewhere."""
    if precision == "auto":
        import jax

        return "bfloat16" if jax.default_backend() == "gpu" else "float32"
    return PRECISIONS[precision]


def run_script(main: Callable[[], Any], interrupted: str = "interrupted; nothing more was written",
               flags: Mapping[str, str] | None = None, parser: argparse.ArgumentParser | None = None) -> int:
    """Call ``main()`` and return the exit status: 0, or 2 after a JaxpruneError, or 130 after
    Ctrl-C (SIGINT) and 143 after SIGTERM, each reported as one ``error:`` line on stderr (an
    interrupt's own message says what was kept; else ``interrupted`` says what to do next).
    The error's arguments are written as flags (:func:`as_flags`, with the script's own ``flags``;
    with its ``parser``, only as flags it has).

    Output that can no longer be written (a pipe whose reader exited, a closed descriptor) is
    dropped instead of stopping the run (:func:`protect_streams`)."""
    from jaxprune import interrupts
    from jaxprune.errors import JaxpruneError

    protect_streams()
    known = None if parser is None else {flag for action in parser._actions for flag in action.option_strings}
    try:
        with interrupts.handle_signals():
            main()
    except JaxpruneError as err:
        _error_line(as_flags(str(err), flags, known))
        return 2
    except KeyboardInterrupt as err:
        message = getattr(err, "message", "") or interrupted
        _error_line(as_flags(message, flags, known))
        return interrupts.exit_status(err)
    return 0


def _error_line(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)


def exit_process(status: int) -> None:
    """End a script's process with ``status``. After an interrupt (130, 143) the process ends
    at once, once its output is flushed: tearing the interpreter down after a signal stopped
    XLA mid-call (a compilation, say) can crash in native code, and nothing is left to run."""
    if status in (130, 143):
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError, AttributeError):
                pass
        os._exit(status)
    raise SystemExit(status)


class _SafeStream:
    """A text stream that drops what it cannot write: the first write or flush that fails with an
    OSError (EPIPE when the reader exited, EBADF when the descriptor was closed) makes it silent."""

    def __init__(self, stream):
        self._stream, self._broken = stream, stream is None

    def write(self, text: str) -> int:
        if not self._broken:
            try:
                return self._stream.write(text)
            except (OSError, ValueError):
                self._broken = True
        return len(text)

    def flush(self) -> None:
        if not self._broken:
            try:
                self._stream.flush()
            except (OSError, ValueError):
                self._broken = True

    def isatty(self) -> bool:
        return not self._broken and self._stream.isatty()

    def __getattr__(self, name: str) -> Any:
        if self._stream is None:
            raise AttributeError(name)
        return getattr(self._stream, name)


def protect_streams() -> None:
    """Wrap ``sys.stdout`` and ``sys.stderr`` (once) so that a broken pipe or a closed descriptor
    silences the output instead of raising in the middle of a run (tqdm's bars and ``print``
    alike); the run goes on and writes its results."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if not isinstance(stream, _SafeStream):
            setattr(sys, name, _SafeStream(stream))


def add_column_arguments(parser) -> None:
    """``--text-column`` and ``--label-column`` on ``parser`` (or an argument group): which columns of a
    labelled CSV hold the text and the label (the names found without them are jaxprune.data's
    TEXT_COLUMNS and LABEL_COLUMNS)."""
    parser.add_argument("--text-column", default=None, metavar="NAME",
                        help="the text column's name (default: text, sentence, headline, content, review or tweet)")
    parser.add_argument("--label-column", default=None, metavar="NAME",
                        help="the label column's name; labels may be strings or integers such as -1/0/1 (default: "
                             "label, labels, category, class, topic, sentiment or target)")
