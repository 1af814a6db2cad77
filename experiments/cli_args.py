"""Argument parsing shared by the scripts in experiments/ and benchmarks/: one-line
errors, checked numbers, and a ``main`` wrapper that turns a
:class:`jaxprune.errors.JaxpruneError` into one line on stderr (the library never
parses the command line; this module is the scripts' side of that line).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr with exit status 2."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see --help)\n")


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


def run_script(main: Callable[[], Any], interrupted: str = "interrupted; nothing more was written") -> int:
    """Call ``main()`` and return the exit status: 0, or 2 after a JaxpruneError and 130 after
    Ctrl-C, each reported as one ``error:`` line on stderr (``interrupted`` says what to do next)."""
    from jaxprune.errors import JaxpruneError

    try:
        main()
    except JaxpruneError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"error: {interrupted}", file=sys.stderr)
        return 130
    return 0
