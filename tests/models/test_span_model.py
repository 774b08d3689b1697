"""The span model's token side: a bare transformer pooled to token vectors."""
import spacy
from spacy.tokens import Doc
from spacy_transformers.span_getters import configure_strided_spans

from spacy_spanbert.models.span_model import as_token_vectors
from spacy_spanbert.models.transformer import create_spanbert_transformer


def test_a_bare_transformer_gives_one_vector_per_token(tiny_bert_dir):
    tok2vec = as_token_vectors(create_spanbert_transformer(str(tiny_bert_dir), configure_strided_spans(16, 12)))
    vocab = spacy.blank("en").vocab
    docs = [Doc(vocab, words=["John", "saw", "London", "."]), Doc(vocab, words=["unbelievably", "long"])]
    tok2vec.initialize(X=docs)
    vectors = tok2vec.predict(docs)
    assert [v.shape for v in vectors] == [(4, 32), (2, 32)]
    assert all(abs(v).sum(axis=1).min() > 0 for v in vectors)  # every token, also one split into wordpieces

