"""The one exception type that reaches users as a one-line message."""


class JaxpruneError(Exception):
    """A problem with the user's input: what was wrong and how to fix it, in one line.

    The library speaks of its own arguments, never of command-line flags: a message names an
    argument (or config field) in backticks, alone or with the value to pass, e.g.
    ``pass a new `output_dir``` or ``rerun with `resume=True```. Entry points in
    ``experiments/`` catch the error, rewrite each backticked argument as the flag that sets
    it (``experiments.cli_args.as_flags``: ``--output-dir``, ``--resume``), print
    ``error: <message>`` to stderr and exit with status 2, without a traceback.
    """
