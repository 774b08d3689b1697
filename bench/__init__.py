"""The evidence benchmarks, one package: scripts run as `python bench/NAME.py` (or `python -m bench.NAME`).

Every module imports its siblings as `bench.*`; a script started by path first puts the repository root on
sys.path (the `if __package__` guard at its top), so one process never loads a helper module twice.
Shared pieces: `common` (machine facts, logged subprocesses, formatting, result files), `ner_runs` (spaCy
training and evaluation runs), `report` (README tables and plots), `tiny_bert` (the stand-in encoder of the
tests and of --quick runs).
"""
