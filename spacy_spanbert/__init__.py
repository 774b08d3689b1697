"""SpanBERT for spaCy.

Importing the package is never required: spaCy finds every component, architecture, registered function and the
`spacy spanbert-pretrain` command through entry points. Submodules stay import-light because spaCy loads every
`spacy_factories` entry point when it creates a pipeline. Any of those imports runs this file, which makes forked
`nlp.pipe(..., n_process=N)` workers safe from torch's OpenMP deadlock (see `fork_safety`).
"""
from . import fork_safety
from .about import __version__

fork_safety.install()

__all__ = ["__version__"]
