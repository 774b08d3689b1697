"""The `spacy spanbert-*` commands (registered on spaCy's CLI through the `spacy_cli` entry points).

Each module stays import-light: torch, transformers and the pipeline load only when its command runs.
"""
