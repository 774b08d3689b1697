"""The span model's token side: case features for uncased encoders, v1 and v2 architectures."""
import numpy
import spacy
from spacy.tokens import Doc
from thinc.api import Model

from spacy_spanbert.models.span_model import CASE_ATTRS, as_token_vectors, with_case_features


def test_case_features_give_an_uncased_encoder_capitalisation(tiny_bert_dir):
    from spacy_transformers.span_getters import configure_strided_spans

    from spacy_spanbert.models.transformer import create_spanbert_transformer

    tok2vec = with_case_features(
        as_token_vectors(create_spanbert_transformer(str(tiny_bert_dir), configure_strided_spans(16, 12)))
    )
    vocab = spacy.blank("en").vocab
    upper, lower = Doc(vocab, words=["John", "saw", "LONDON", "."]), Doc(vocab, words=["john", "saw", "london", "."])
    tok2vec.initialize(X=[upper])
    assert tok2vec.get_dim("nO") == 32 + len(CASE_ATTRS)
    a, b = tok2vec.predict([upper, lower])
    assert a.shape == (4, 32 + len(CASE_ATTRS))
    numpy.testing.assert_allclose(a[:, :32], b[:, :32], rtol=1e-5)  # the uncased encoder cannot tell them apart
    assert (a[:, 32:] != b[:, 32:]).any(axis=1).tolist() == [True, False, True, False]


def test_case_features_pass_only_the_vector_gradient_back():
    """The flags have no parameters: backprop hands the encoder the gradient of its own columns, unchanged."""
    received = []

    def forward(model, docs, is_train):
        def backprop(d_vectors):
            received.extend(d_vectors)
            return []

        return [model.ops.alloc2f(len(doc), 3) for doc in docs], backprop

    tok2vec = with_case_features(Model("vectors", forward, dims={"nO": 3}))
    doc = Doc(spacy.blank("en").vocab, words=["John", "saw", "LONDON", "."])
    tok2vec.initialize(X=[doc])
    output, backprop = tok2vec.begin_update([doc])
    d_output = numpy.arange(4 * (3 + len(CASE_ATTRS)), dtype="f").reshape((4, -1))
    backprop([d_output])
    assert len(received) == 1
    numpy.testing.assert_array_equal(received[0], d_output[:, :3])
    assert output[0][:, 3:].tolist()[0] == [1, 0, 0, 0, 0]  # "John": title case only
