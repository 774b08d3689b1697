"""Registered names that 0.3 and earlier wrote into saved configs, and that this release no longer builds.

Each registered concept has one version. A config (or a saved pipeline) that names a retired one fails here, at
config resolution and before any weights are read, with one line naming what to change or pin, instead of
catalogue's "cannot find function" listing. Each stand-in takes the settings its version took (config validation
checks them against the signature) and refuses them all.
"""
from typing import Any, Callable, Dict, NoReturn, Optional

PIN = "or pin spacy-spanbert==0.3.* to load a pipeline saved by it"
TRANSFORMER_FIX = (f'set @architectures = "spacy-spanbert.SpanBERT.v4" (it takes the same settings, plus quantize, '
                   f"cpu_bf16 and case_types) and train again, {PIN}")
SPAN_MODEL_FIX = f'set @architectures = "spacy-spanbert.SpanBoundaryModel.v2" (max_width = null follows the suggester), {PIN}'
SUGGESTER_FIX = (f'set @misc = "spacy-spanbert.sentence_ngram_suggester.v2" with within_lines = false (v1\'s '
                 f"behaviour), {PIN}")


def _refuse(name: str, fix: str) -> NoReturn:
    raise ValueError(f"{name} was retired in spacy-spanbert 0.4: {fix}")


def _transformer(version: str) -> Callable[..., NoReturn]:
    def build(name: Any = None, get_spans: Any = None, tokenizer_config: Optional[Dict[str, Any]] = None,
              transformer_config: Optional[Dict[str, Any]] = None, mixed_precision: bool = False,
              grad_scaler_config: Optional[Dict[str, Any]] = None, quantize: Optional[str] = None,
              cpu_bf16: Any = False, case_types: bool = False) -> NoReturn:
        _refuse(f"spacy-spanbert.SpanBERT.{version}", TRANSFORMER_FIX)

    build.__doc__ = f"Retired: SpanBERT.{version} raises a one-line error naming SpanBERT.v4."
    return build


spanbert_v1 = _transformer("v1")
spanbert_v2 = _transformer("v2")
spanbert_v3 = _transformer("v3")


def span_boundary_model_v1(tok2vec: Any = None, hidden_width: int = 256, max_width: Optional[int] = None,
                           use_interior: bool = False, dropout: float = 0.1, case_features: bool = False) -> NoReturn:
    """Retired: raises a one-line error naming SpanBoundaryModel.v2."""
    _refuse("spacy-spanbert.SpanBoundaryModel.v1", SPAN_MODEL_FIX)


def sentence_ngram_suggester_v1(max_width: int = 10) -> NoReturn:
    """Retired: raises a one-line error naming sentence_ngram_suggester.v2."""
    _refuse("spacy-spanbert.sentence_ngram_suggester.v1", SUGGESTER_FIX)
