"""The one exception type that reaches users as a one-line message."""


class JaxpruneError(Exception):
    """A problem with the user's input: what was wrong and how to fix it, in one line.

    Entry points in ``experiments/`` catch it, print ``error: <message>`` to stderr
    and exit with status 2, without a traceback.
    """
