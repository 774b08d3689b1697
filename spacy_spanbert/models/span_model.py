"""`spacy-spanbert.SpanBoundaryModel.v2` (and v1): thinc glue from (docs, suggested spans) to span logits.

    (docs, spans) -> with_getitem(0, tok2vec) -> (token vectors per doc, spans) -> span scorer -> logits

The tok2vec is a `spacy-transformers.TransformerListener.v1` (shared `transformer` component), a standalone
`spacy-transformers.Tok2VecTransformer.v3`, or a bare `spacy-spanbert.SpanBERT.v1` transformer, which is pooled to
token vectors here. The scorer is the pure torch `SpanScorer` behind a `PyTorchWrapper` (`scorer_layer.py`), saved as
safetensors.
"""
from typing import Any, Callable, List, Optional, Tuple

from spacy.attrs import IS_DIGIT, IS_LOWER, IS_PUNCT, IS_TITLE, IS_UPPER
from spacy.tokens import Doc
from thinc.api import Model, chain, with_getitem
from thinc.types import Floats2d, Ragged

from .scorer_layer import build_span_scorer

InT = Tuple[List[Doc], Ragged]
OutT = Floats2d


def build_span_boundary_model(
    tok2vec: Model,
    hidden_width: int = 256,
    max_width: int = 10,
    use_interior: bool = False,
    dropout: float = 0.1,
    case_features: bool = False,
) -> Model[InT, OutT]:
    """`SpanBoundaryModel.v1`: as v2 with a fixed `max_width` and no mixed precision (kept for saved pipelines)."""
    return build_span_boundary_model_v2(tok2vec, hidden_width, max_width, use_interior, dropout, case_features)


def build_span_boundary_model_v2(
    tok2vec: Model,
    hidden_width: int = 256,
    max_width: Optional[int] = None,
    use_interior: bool = False,
    dropout: float = 0.1,
    case_features: bool = False,
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
    case_features (bool): Append 5 orthographic flags per token (title, upper, lower, digit, punct): an uncased
        encoder such as MiniLM never sees capitalisation, one of the strongest cues for named entities.
    mixed_precision (bool): Autocast the span scorer on a GPU (the transformer has its own `mixed_precision`).
    RETURNS (Model[Tuple[List[Doc], Ragged], Floats2d]): One logit per label (plus "none" for NER) per span.
    """
    tok2vec = as_token_vectors(tok2vec)
    if case_features:
        tok2vec = with_case_features(tok2vec)
    scorer = build_span_scorer(hidden_width, max_width, use_interior, dropout, mixed_precision)
    model: Model[InT, OutT] = chain(with_getitem(0, tok2vec), scorer)
    model.set_ref("tok2vec", tok2vec)
    model.set_ref("scorer", scorer)
    return model


def as_token_vectors(tok2vec: Model) -> Model:
    """Pool a bare spacy-transformers TransformerModel to one vector per token; other layers pass through."""
    from spacy_transformers.layers.transformer_model import TransformerModel

    if isinstance(tok2vec, TransformerModel):
        from spacy_transformers.layers import split_trf_batch, trfs2arrays
        from thinc.api import reduce_mean

        return chain(tok2vec, split_trf_batch(), trfs2arrays(reduce_mean(), 1.0))
    return tok2vec


CASE_ATTRS = [IS_TITLE, IS_UPPER, IS_LOWER, IS_DIGIT, IS_PUNCT]


def with_case_features(tok2vec: Model) -> Model:
    """Append the tokens' orthographic flags (`CASE_ATTRS`, 0/1) to the token vectors; no parameters."""

    def forward(model: Model, docs: List[Doc], is_train: bool) -> Tuple[List[Floats2d], Callable]:
        vectors, backprop_tok2vec = model.layers[0](docs, is_train)
        flags = [model.ops.asarray2f(doc.to_array(CASE_ATTRS).reshape((len(doc), len(CASE_ATTRS)))) for doc in docs]
        width = vectors[0].shape[1] if vectors else 0
        output = [model.ops.xp.hstack([v, f]) for v, f in zip(vectors, flags)]

        def backprop(d_output: List[Floats2d]) -> Any:
            return backprop_tok2vec([model.ops.as_contig(d[:, :width]) for d in d_output])

        return output, backprop

    return Model("with_case_features", forward, layers=[tok2vec], init=_init_case_features, dims={"nO": None})


def _init_case_features(model: Model, X: Any = None, Y: Any = None) -> None:
    model.layers[0].initialize(X=X)
    if model.layers[0].has_dim("nO"):
        model.set_dim("nO", model.layers[0].get_dim("nO") + len(CASE_ATTRS))
