"""`spacy-spanbert.SpanBoundaryModel.v2`: thinc glue from (docs, suggested spans) to span logits.

    (docs, spans) -> with_getitem(0, tok2vec) -> (token vectors per doc, spans) -> span scorer -> logits

The tok2vec is a `spacy-transformers.TransformerListener.v1` (shared `transformer` component), a standalone
`spacy-transformers.Tok2VecTransformer.v3`, or a bare `spacy-spanbert.SpanBERT.v4` transformer, which is pooled to
token vectors here. The scorer is the pure torch `SpanScorer` behind a `PyTorchWrapper` (`scorer_layer.py`), saved as
safetensors.
"""
from typing import List, Optional, Tuple

from spacy.tokens import Doc
from thinc.api import Model, chain, with_getitem
from thinc.types import Floats2d, Ragged

from .scorer_layer import build_span_scorer

InT = Tuple[List[Doc], Ragged]
OutT = Floats2d


def build_span_boundary_model(
    tok2vec: Model,
    hidden_width: int = 256,
    max_width: Optional[int] = None,
    use_interior: bool = False,
    dropout: float = 0.1,
    mixed_precision: bool = False,
) -> Model[InT, OutT]:
    """Score suggested spans from their boundary token vectors, a width embedding and an optional pooled interior.

    tok2vec (Model[List[Doc], List[Floats2d]]): Token vectors; a bare transformer (FullTransformerBatch output) is
        mean-pooled over its wordpieces.
    hidden_width (int): Width of the span MLP's hidden layer.
    max_width (Optional[int]): Rows of the width embedding. None (the default) follows the component's suggester,
        the one place the longest span is set; a number must cover the suggester's (checked at initialize).
    use_interior (bool): Add an attention-pooled interior to the boundary representation.
    dropout (float): Dropout after the hidden layer, in training only.
    mixed_precision (bool): Autocast the span scorer on a GPU (the transformer has its own `mixed_precision`).
    RETURNS (Model[Tuple[List[Doc], Ragged], Floats2d]): One logit per label (plus "none" for NER) per span.
    """
    tok2vec = as_token_vectors(tok2vec)
    scorer = build_span_scorer(hidden_width, max_width, use_interior, dropout, mixed_precision)
    model: Model[InT, OutT] = chain(with_getitem(0, tok2vec), scorer)
    model.set_ref("tok2vec", tok2vec)
    model.set_ref("scorer", scorer)
    return model


def as_token_vectors(tok2vec: Model) -> Model:
    """Pool a bare SpanBERT transformer to one vector per token; other layers pass through."""
    from .transformer import is_spanbert_transformer

    if is_spanbert_transformer(tok2vec):
        from spacy_transformers.layers import split_trf_batch, trfs2arrays
        from thinc.api import reduce_mean

        return chain(tok2vec, split_trf_batch(), trfs2arrays(reduce_mean(), 1.0))
    return tok2vec
