"""Registered functions of the pretraining config (entry points in the `spacy_misc` group)."""
from .masking import MaskingConfig


def span_masking_v1(
    scheme: str = "span",
    mask_ratio: float = 0.15,
    geometric_p: float = 0.2,
    min_span_words: int = 1,
    max_span_words: int = 10,
    mask_prob: float = 0.8,
    random_prob: float = 0.1,
    candidate_share: float = 0.5,
) -> MaskingConfig:
    """spacy-spanbert.SpanMasking.v1: the masking recipe; the defaults are the paper's (validated on creation)."""
    return MaskingConfig(
        scheme=scheme,
        mask_ratio=mask_ratio,
        geometric_p=geometric_p,
        min_span_words=min_span_words,
        max_span_words=max_span_words,
        mask_prob=mask_prob,
        random_prob=random_prob,
        candidate_share=candidate_share,
    )
