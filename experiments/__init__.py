"""The command-line entry points: thin scripts that parse flags, build configs, call the library.

Run them as ``python experiments/run.py ...`` (or ``python -m experiments.run``) after ``pip install -e .``.
"""
