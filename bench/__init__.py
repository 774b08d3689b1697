"""The benchmarks behind the docs, one package: scripts run as `python bench/NAME.py` (or `python -m bench.NAME`).

Each script first puts the repository root on sys.path (its `if __package__` guard) and imports its helpers as
`bench.*` (`common`, `ner_runs`, `report`), so one process never loads a helper twice.
"""
