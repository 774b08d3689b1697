"""`spacy-spanbert.SpanBERTTok2Vec.v1`: what a span component's transformer listener becomes under `replace_listeners`.

spaCy's `nlp.replace_listeners` (and `[initialize]`/sourced components that ask for it) gives a component its own copy
of a shared `transformer` and rewrites the component's config to match. spacy-transformers rewrites only configs of
its own `TransformerModel` (into `Tok2VecTransformer.v3`); ours would keep a bare `SpanBERT.v4` block, which builds a
model of another shape, so the pipeline would save but not load. Our transformers name this architecture instead: the
same layers, in the same chain-of-chain shape that replacing the listener leaves in memory.
"""
from typing import Any, Dict, List

from spacy.tokens import Doc
from spacy_transformers.layers import split_trf_batch, trfs2arrays
from thinc.api import Model, chain
from thinc.types import Floats2d, Ragged

ARCHITECTURE = "spacy-spanbert.SpanBERTTok2Vec.v1"


def build_spanbert_tok2vec(
    transformer: Model, pooling: Model[Ragged, Floats2d], grad_factor: float = 1.0
) -> Model[List[Doc], List[Floats2d]]:
    """A SpanBERT transformer used by one component only: token vectors pooled from its wordpieces.

    transformer (Model): A `spacy-spanbert.SpanBERT.v4` model (the shared component's model block).
    pooling (Model[Ragged, Floats2d]): Wordpiece vectors to token vectors, as the listener had it (e.g. reduce_mean).
    grad_factor (float): Scales the gradient into the transformer, as the listener had it.
    """
    return chain(chain(transformer, split_trf_batch()), trfs2arrays(pooling, grad_factor))


def replace_listener_cfg(tok2vec_model_cfg: Dict[str, Any], listener_model_cfg: Dict[str, Any]) -> Dict[str, Any]:
    """The config that replaces a TransformerListener's once its component has its own copy of our transformer."""
    if "TransformerListener" not in str(listener_model_cfg.get("@architectures", "")):
        return dict(tok2vec_model_cfg)
    return {"@architectures": ARCHITECTURE, "transformer": dict(tok2vec_model_cfg),
            "pooling": listener_model_cfg.get("pooling", {"@layers": "reduce_mean.v1"}),
            "grad_factor": listener_model_cfg.get("grad_factor", 1.0)}
