"""SpanBERT for spaCy.

Importing the package is never required: spaCy finds every component, architecture, registered function and the
`spacy spanbert-*` commands through entry points. Submodules stay import-light because spaCy loads every
`spacy_factories` entry point when it creates a pipeline, and importing changes nothing global: what the components
need in a forked worker (`fork_safety`) or for memory (`memory`) happens where they run.
"""
from .about import __version__

__all__ = ["__version__"]
