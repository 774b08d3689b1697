"""SpanBERT for spaCy.

Importing the package is never required: spaCy finds every component, architecture, registered function and the
`spacy spanbert-pretrain` command through entry points. Submodules stay import-light because spaCy loads every
`spacy_factories` entry point when it creates a pipeline.
"""
from .about import __version__

__all__ = ["__version__"]
