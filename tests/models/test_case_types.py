"""SpanBERT.v4 `case_types`: capitalisation as token types for an uncased encoder."""
import types

import numpy
import pytest
import spacy
import torch
from spacy_transformers.span_getters import configure_strided_spans
from transformers.modeling_outputs import BaseModelOutput

from spacy_spanbert.models.case_types import (
    CASE_MIXED, CASE_NONE, CASE_TITLE, CASE_UPPER, CONFIG_KEY, add_case_type_rows, case_type_ids, char_cases, word_case,
)
from spacy_spanbert.models.transformer import create_spanbert_transformer, encoder_of, is_spanbert_transformer

TEXTS = ["Peter Blackburn said the U.S. and McDonald's deal in CHICAGO was OK .", "no capitals here , 1996 ."]


def build(bert_dir, **kwargs):
    return create_spanbert_transformer(str(bert_dir), configure_strided_spans(32, 24), transformer_config={
        "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0}, **kwargs)


@pytest.mark.parametrize("word,case", [
    ("said", CASE_NONE), ("1996", CASE_NONE), ("--", CASE_NONE), ("Chicago", CASE_TITLE), ("O'Neill", CASE_MIXED),
    ("A", CASE_TITLE), ("(Reuters)", CASE_TITLE), ("USA", CASE_UPPER), ("U.S.", CASE_UPPER), ("1-UP", CASE_UPPER),
    ("McDonald", CASE_MIXED), ("iPhone", CASE_MIXED), ("Élan", CASE_TITLE), ("ÉTÉ", CASE_UPPER),
])
def test_word_case_reads_only_the_cased_characters(word, case):
    assert word_case(word) == case


def test_every_wordpiece_gets_its_words_case_and_special_tokens_and_padding_type_0(tiny_bert_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bert_dir))
    texts = ["Peter said U.S. chicago", "x"]
    enc = tokenizer(texts, return_offsets_mapping=True, padding="longest", return_tensors="np")
    ids = case_type_ids(texts, enc["offset_mapping"], offset=2)
    pieces = tokenizer.convert_ids_to_tokens(enc["input_ids"][0])
    for j, piece in enumerate(pieces):
        start, end = enc["offset_mapping"][0][j]
        if end <= start:  # [CLS], [SEP]
            assert ids[0, j] == 0
            continue
        word = next(w for w in texts[0].split() if texts[0].find(w) <= start < texts[0].find(w) + len(w))
        assert ids[0, j] == {CASE_NONE: 0, CASE_TITLE: 2, CASE_UPPER: 3, CASE_MIXED: 4}[word_case(word)], piece
    assert (ids[1] == 0).all()  # lower case, special tokens and padding
    assert list(char_cases("Ab cd")) == [CASE_TITLE, CASE_TITLE, CASE_NONE, CASE_NONE, CASE_NONE, CASE_NONE]


def test_case_rows_start_as_the_checkpoint_and_then_carry_case_to_every_layer(tiny_bert_dir):
    """Before fine-tuning, the transformer with case types computes exactly what it does without (the new rows copy
    row 0); once the rows differ, text with capitals encodes differently and text without does not. The tokenizer is
    the checkpoint's own."""
    nlp = spacy.blank("en")
    docs = [nlp(text) for text in TEXTS]
    plain, cased = build(tiny_bert_dir), build(tiny_bert_dir, case_types=True)
    plain.initialize(X=docs)
    cased.initialize(X=docs)
    encoder = encoder_of(cased).transformer
    assert encoder.embeddings.token_type_embeddings.num_embeddings == 5 and encoder.config.type_vocab_size == 5
    assert getattr(encoder.config, CONFIG_KEY) == 2
    tokenizer = encoder_of(cased).tokenizer
    before = cased.predict(docs)
    assert encoder_of(cased).tokenizer is tokenizer and type(tokenizer).__name__ == "BertTokenizerFast"
    assert before.wordpieces.token_type_ids[0].max() == 4 and before.wordpieces.token_type_ids[1].max() == 0
    for a, b in zip(plain.predict(docs).tensors[0].numpy(), before.tensors[0].numpy()):
        numpy.testing.assert_allclose(a, b, atol=1e-6)
    with torch.no_grad():
        encoder.embeddings.token_type_embeddings.weight[2:] += torch.randn(3, encoder.config.hidden_size)
    after = cased.predict(docs)
    first, second = (numpy.abs(after.tensors[0].numpy()[i] - before.tensors[0].numpy()[i]).max() for i in (0, 1))
    assert first > 1e-2 and second < 1e-6


def test_case_rows_train_save_and_load(tiny_bert_dir):
    """The case rows get gradients, and a saved transformer is rebuilt with them and predicts the same."""
    nlp = spacy.blank("en")
    docs = [nlp(text) for text in TEXTS]
    model = build(tiny_bert_dir, case_types=True)
    model.initialize(X=docs)
    output, backprop = model.begin_update(docs)
    hidden = output.model_output.last_hidden_state
    backprop(types.SimpleNamespace(model_output=BaseModelOutput(last_hidden_state=torch.ones_like(hidden))))
    grad = encoder_of(model).transformer.embeddings.token_type_embeddings.weight.grad
    assert grad is not None and bool((grad[2:].abs().sum(dim=1) > 0).all())
    loaded = build(tiny_bert_dir, case_types=True).from_bytes(model.to_bytes())
    assert encoder_of(loaded).transformer.config.type_vocab_size == 5
    numpy.testing.assert_allclose(loaded.predict(docs).tensors[0].numpy(), model.predict(docs).tensors[0].numpy(),
                                  atol=1e-6)


def test_case_types_errors_are_one_line_and_name_the_fix(tiny_bert_dir):
    no_table = types.SimpleNamespace(config=types.SimpleNamespace(), embeddings=types.SimpleNamespace())
    with pytest.raises(ValueError, match="case_types = false") as err:
        add_case_type_rows(no_table)
    assert "\n" not in str(err.value)
    nlp = spacy.blank("en")
    docs = [nlp(TEXTS[0])]
    plain = build(tiny_bert_dir)
    plain.initialize(X=docs)
    with pytest.raises(ValueError, match="trained with case_types = False.*set case_types = false") as err:
        build(tiny_bert_dir, case_types=True).from_bytes(plain.to_bytes())  # saved without the case rows
    assert "\n" not in str(err.value)
    cased = build(tiny_bert_dir, case_types=True)
    cased.initialize(X=docs)
    with pytest.raises(ValueError, match="trained with case_types = True.*set case_types = true") as err:
        build(tiny_bert_dir).from_bytes(cased.to_bytes())
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match=r"no weights yet: call nlp.initialize\(\)") as err:
        build(tiny_bert_dir, case_types=True).predict(docs)
    assert "\n" not in str(err.value)
    slow = build(tiny_bert_dir, case_types=True, tokenizer_config={"use_fast": False})
    with pytest.raises(ValueError, match="needs a fast tokenizer.*use_fast = true, or case_types = false") as err:
        slow.initialize(X=docs)
    assert "\n" not in str(err.value)



def test_a_sourced_component_keeps_case_types_through_replace_listeners(tmp_path):
    """spaCy's replace_listeners gives the component its own copy of the shared transformer: the copy must still
    type case (an encoder trained with the case rows would otherwise get zeros, silently), and the pipeline must save
    and load (its listener's config becomes SpanBERTTok2Vec.v1, the shape the replaced model has in memory)."""
    from tests.fixtures.tiny_pipeline import build_tiny_ner_pipeline

    texts = ["John saw the big dog in London .", "Mary liked Paris and Berlin ."]
    nlp = spacy.load(build_tiny_ner_pipeline(tmp_path / "tiny", steps=30)["pipeline"])
    before = [doc.spans["spanbert_ents"].attrs["scores"] for doc in nlp.pipe(texts)]
    nlp.replace_listeners("transformer", "spanbert_ner", ["model.tok2vec"])
    nlp.remove_pipe("transformer")
    copied = next(node for node in nlp.get_pipe("spanbert_ner").model.walk() if is_spanbert_transformer(node))
    assert encoder_of(copied).case_types and getattr(encoder_of(copied).transformer.config, CONFIG_KEY) == 2
    after = [doc.spans["spanbert_ents"].attrs["scores"] for doc in nlp.pipe(texts)]
    for a, b in zip(before, after):
        numpy.testing.assert_allclose(a, b, rtol=1e-5)
    tok2vec = nlp.config["components"]["spanbert_ner"]["model"]["tok2vec"]
    assert tok2vec["@architectures"] == "spacy-spanbert.SpanBERTTok2Vec.v1"
    assert tok2vec["transformer"]["@architectures"] == "spacy-spanbert.SpanBERT.v4"
    assert tok2vec["transformer"]["case_types"] is True
    nlp.to_disk(tmp_path / "own")
    loaded = [doc.spans["spanbert_ents"].attrs["scores"] for doc in spacy.load(tmp_path / "own").pipe(texts)]
    for a, b in zip(before, loaded):
        numpy.testing.assert_allclose(a, b, rtol=1e-5)


def test_threads_sharing_a_transformer_get_the_sequential_output(tiny_bert_dir):
    """Case types are data of each forward: threads sharing one transformer (a threaded web server) compute exactly
    what one thread does, and share one tokenizer."""
    from concurrent.futures import ThreadPoolExecutor

    nlp = spacy.blank("en")
    docs = [nlp(text) for text in TEXTS]
    model = build(tiny_bert_dir, case_types=True)
    model.initialize(X=docs)
    tokenizer = encoder_of(model).tokenizer
    expected = model.predict(docs).tensors[0].numpy()
    with ThreadPoolExecutor(4) as pool:
        outputs = list(pool.map(lambda i: model.predict(docs[i % 2:] + docs[:i % 2]).tensors[0].numpy(), range(16)))
    assert encoder_of(model).tokenizer is tokenizer
    for i, output in enumerate(outputs):
        if i % 2:  # the batch in the other order
            output = output[[1, 0]] if len(output) == 2 else output
        numpy.testing.assert_allclose(output, expected, atol=1e-6)
