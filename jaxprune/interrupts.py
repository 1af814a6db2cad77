"""Ctrl-C and SIGTERM as one exception, held back where stopping at once would lose work.

A run stops for two signals: SIGINT (Ctrl-C, delivered to every process of the terminal's
foreground group, so also to a ``| tee`` reading its output) and SIGTERM (``kill``, schedulers,
containers). Both become :class:`Interrupted`, a ``KeyboardInterrupt`` that knows its signal
and so its exit status (130 or 143), and both are handled the same way wherever the run's
output goes.

Two places decide when a signal may stop the run:

- :func:`handle_signals` (the scripts' entry points): a signal raises :class:`Interrupted`
  where the program is; later signals are ignored while the run cleans up.
- :func:`deferred` (the training loop and its checkpoint saves): a signal is only recorded;
  the loop calls :func:`raise_pending` after each step and, catching the
  :class:`Interrupted`, saves a checkpoint under :func:`stopped_after` and raises. A signal
  never lands inside a jitted step or a native library's call there, so the state it saves is
  whole.

Signals are only handled in the main thread (Python's rule); elsewhere both are no-ops.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_NAMES = {signal.SIGINT: "Ctrl-C (SIGINT)", signal.SIGTERM: "SIGTERM"}


class Interrupted(KeyboardInterrupt):
    """A run stopped by a signal: ``signum``, ``exit_status`` (128 + signum) and a message that
    says what was kept and how to continue (empty when nothing was said yet)."""

    def __init__(self, signum: int = signal.SIGINT, message: str = ""):
        super().__init__(message)
        self.signum = int(signum)
        self.message = message

    @property
    def exit_status(self) -> int:
        return 128 + self.signum

    def with_message(self, message: str) -> "Interrupted":
        return Interrupted(self.signum, message)


def exit_status(error: BaseException) -> int:
    """The exit status of a process that ends with ``error``, a KeyboardInterrupt: 130 unless a
    signal other than SIGINT made it."""
    return error.exit_status if isinstance(error, Interrupted) else 128 + signal.SIGINT


class _State:
    """Where the signals stand: ``deferring`` (nesting depth of :func:`deferred`), the signal
    ``pending`` there, and the one ``received`` (raised) outside it."""

    stopping = False  # a signal has already been raised: later ones are ignored
    deferring = 0
    pending: int | None = None
    received: int | None = None  # the signal raised; kept in case code it interrupted swallowed it


def _handler(signum: int, frame) -> None:
    if _State.deferring:
        if _State.pending is None:
            _State.pending = signum
            _say(f"\n{_NAMES.get(signum, signum)}: stopping after this step and saving a checkpoint\n")
        return
    if _State.stopping:
        return
    _State.stopping, _State.received = True, signum
    raise Interrupted(signum)


def _exit_handler(signum: int, frame) -> None:
    _say(f"error: interrupted by {_NAMES.get(signum, signum)} before the run started; nothing was written\n")
    os._exit(128 + signum)


def exit_on_signals() -> None:
    """For a script's first lines, before its heavy imports: until :func:`handle_signals` takes
    over, SIGINT and SIGTERM end the process at once with 130 or 143 and one line (nothing has
    been written yet, so nothing is lost)."""
    if threading.current_thread() is threading.main_thread():
        for signum in SIGNALS:
            if _ours(signal.getsignal(signum)):
                signal.signal(signum, _exit_handler)


def _say(text: str) -> None:
    """Write to stderr from a signal handler: one system call, no Python buffer (which the
    interrupted code may be in the middle of), and nothing raised if stderr is gone."""
    with contextlib.suppress(OSError):
        os.write(2, text.encode())


def _ours(handler) -> bool:
    """Whether a handler found in place may be replaced: the defaults and ours, not one the
    program installed itself and not an ignored signal."""
    return handler in (signal.SIG_DFL, signal.default_int_handler, _handler, _exit_handler)


@contextlib.contextmanager
def _installed() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.getsignal(signum) for signum in SIGNALS}
    for signum, handler in previous.items():
        if _ours(handler):
            signal.signal(signum, _handler)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            if _ours(handler) and handler is not None:
                signal.signal(signum, handler)


@contextlib.contextmanager
def handle_signals() -> Iterator[None]:
    """For an entry point: SIGINT and SIGTERM raise :class:`Interrupted` inside the block (once:
    later signals are ignored while it unwinds)."""
    saved = _State.stopping, _State.received
    _State.stopping, _State.received = False, None
    try:
        with _installed():
            yield
    finally:
        _State.stopping, _State.received = saved


@contextlib.contextmanager
def deferred(raise_pending: bool = True) -> Iterator[None]:
    """Inside the block a signal is recorded, not raised: read :func:`pending` and stop when it
    suits. One still pending when the outermost block ends is raised there (or, with
    ``raise_pending=False``, for a block that is already stopping, dropped)."""
    if raise_pending and _State.received is not None and not _State.deferring:
        # A signal raised earlier never reached the entry point: the code it landed in (a
        # finalizer, a library's broad except) swallowed it. Stop here, before more work.
        raise Interrupted(_State.received)
    _State.deferring += 1
    try:
        with _installed():
            yield
    finally:
        _State.deferring -= 1
    if not raise_pending:
        _State.pending = None
    elif not _State.deferring and _State.pending is not None:
        signum, _State.pending = _State.pending, None
        _State.stopping = True
        raise Interrupted(signum)


def check() -> None:
    """Raise :class:`Interrupted` if a signal raised earlier was swallowed by the code it landed
    in; for loops and phase boundaries outside :func:`deferred` (never for cleanup code)."""
    if _State.received is not None and not _State.deferring:
        raise Interrupted(_State.received)


def pending() -> int | None:
    """The signal received inside :func:`deferred` and not yet acted on, or None."""
    return _State.pending


def take_pending() -> Interrupted:
    """The pending signal as an :class:`Interrupted` to raise (it is no longer pending)."""
    signum, _State.pending = _State.pending or signal.SIGINT, None
    _State.stopping = True
    return Interrupted(signum)


def raise_pending() -> None:
    """Raise the signal pending inside :func:`deferred` (it is then no longer pending), if any."""
    if _State.pending is not None:
        raise take_pending()


def stopped_after(error: KeyboardInterrupt, save: Callable[[], str]) -> Interrupted:
    """The :class:`Interrupted` to raise for ``error`` once ``save()`` has run, with further
    signals held back so that none stops it half way. ``save`` returns what the message says
    after ``"interrupted; "``: what was kept and how to continue. An error ``save`` raises
    propagates instead (it says more than the interrupt)."""
    with deferred(raise_pending=False):
        said = save()
    interrupted = error if isinstance(error, Interrupted) else Interrupted()
    return interrupted.with_message(f"interrupted; {said}")
