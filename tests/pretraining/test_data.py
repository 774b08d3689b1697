"""Corpus reading and packing: formats, document boundaries, long sentences, entity candidates."""
import json
import os

import numpy as np
import pytest
from spacy.language import Language
from transformers import AutoTokenizer

from spacy_spanbert.pretraining.collator import SpanMaskingCollator
from spacy_spanbert.pretraining.data import PackedBlocks, iter_documents, pack_corpus
from spacy_spanbert.pretraining.masking import MaskingConfig


@pytest.fixture(scope="module")
def tokenizer(tiny_bert_dir):
    return AutoTokenizer.from_pretrained(str(tiny_bert_dir))


def decode_blocks(blocks, tokenizer):
    return [tokenizer.decode(blocks[i]["input_ids"]) for i in range(len(blocks))]


def test_blocks_pack_sentences_of_one_document(tokenizer, tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("the cat saw the dog.\nthe dog saw the cat.\n\nmary met john.\n")
    blocks = PackedBlocks(pack_corpus(corpus, tokenizer, 32, tmp_path / "packed"))
    assert decode_blocks(blocks, tokenizer) == [
        "[CLS] the cat saw the dog. the dog saw the cat. [SEP]", "[CLS] mary met john. [SEP]"]
    item = blocks[0]
    assert item["word_ids"][0] == -1 and item["word_ids"][-1] == -1
    # word ids are block-global: the two sentences do not share word numbers
    assert len(set(item["word_ids"][1:-1].tolist())) == 12


def test_long_sentence_is_split_not_dropped(tokenizer, tmp_path):
    words = " ".join(["the big old river"] * 20)  # 80 words, one line
    corpus = tmp_path / "long.txt"
    corpus.write_text(words + "\n")
    blocks = PackedBlocks(pack_corpus(corpus, tokenizer, 16, tmp_path / "packed"))
    assert all(len(blocks[i]["input_ids"]) <= 16 for i in range(len(blocks)))
    assert sum(len(blocks[i]["input_ids"]) - 2 for i in range(len(blocks))) == 80
    joined = " ".join(t.replace("[CLS] ", "").replace(" [SEP]", "") for t in decode_blocks(blocks, tokenizer))
    assert joined == words


def test_long_sentences_are_split_without_the_tokenizers_length_warning(tiny_bert_dir, tmp_path, caplog):
    """Packing splits long sentences on purpose: transformers' "indexing errors" warning would be a false alarm
    there, and only there (the same tokenizer still warns when a caller tokenizes too much text)."""
    import transformers

    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bert_dir), model_max_length=16)  # warns once per instance
    long_text = " ".join(["the big old river"] * 20)
    (tmp_path / "long.txt").write_text(long_text + "\n")
    transformers.logging.enable_propagation()
    try:
        pack_corpus(tmp_path / "long.txt", tokenizer, 16, tmp_path / "packed")
        assert "Token indices sequence length" not in caplog.text
        tokenizer(long_text)
        assert "Token indices sequence length" in caplog.text
    finally:
        transformers.logging.disable_propagation()


def test_jsonl_and_docbin_inputs(tokenizer, tmp_path):
    import spacy
    from spacy.tokens import DocBin

    jl = tmp_path / "c.jsonl"
    jl.write_text(json.dumps({"text": "the cat saw the dog."}) + "\n" + json.dumps({"text": "mary met john."}) + "\n")
    assert list(iter_documents(jl)) == [[("the cat saw the dog.", [])], [("mary met john.", [])]]
    nlp = spacy.blank("en")
    db = DocBin(docs=[nlp("the cat saw the dog."), nlp("mary met john.")])
    db.to_disk(tmp_path / "c.spacy")
    blocks = PackedBlocks(pack_corpus(tmp_path / "c.spacy", tokenizer, 32, tmp_path / "packed"))
    assert decode_blocks(blocks, tokenizer) == ["[CLS] the cat saw the dog. [SEP]", "[CLS] mary met john. [SEP]"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"body": "x"}\n')
    with pytest.raises(ValueError, match="'text' field"):
        pack_corpus(bad, tokenizer, 32, tmp_path / "bad")
    with pytest.raises(ValueError, match="Unsupported corpus format"):
        pack_corpus(tmp_path / "packed" / "meta.json", tokenizer, 32, tmp_path / "x")


def candidates_of_first_block(tokenizer, tmp_path, nlp, kind: str, text: str):
    """Pack `text` with `nlp`'s candidates; (first block, decoded candidate spans)."""
    corpus = tmp_path / f"{kind}.txt"
    corpus.write_text(text, encoding="utf8")
    item = PackedBlocks(pack_corpus(corpus, tokenizer, 64, tmp_path / "packed", nlp=nlp, candidate_kind=kind))[0]
    return item, [tokenizer.decode(item["input_ids"][s:e + 1]) for s, e in item["candidates"]]


def assert_candidates_masked_first(tokenizer, item, scheme: str, mask_ratio: float) -> None:
    """With candidate_share = 1 every candidate is drawn before any random word fills the rest of the budget."""
    col = SpanMaskingCollator.from_tokenizer(tokenizer, masking=MaskingConfig(scheme=scheme, candidate_share=1.0,
                                                                              mask_ratio=mask_ratio))
    masked = set(np.flatnonzero(col([item])["labels"][0].numpy() != -100).tolist())
    assert {p for s, e in item["candidates"] for p in range(s, e + 1)} <= masked


def test_entity_candidates_feed_named_entity_masking(tokenizer, tmp_path):
    import spacy

    nlp = spacy.blank("en")
    ruler = nlp.add_pipe("entity_ruler")
    ruler.add_patterns([{"label": "GPE", "pattern": "new london"}, {"label": "PERSON", "pattern": "mary"}])
    item, spans = candidates_of_first_block(tokenizer, tmp_path, nlp, "named_entity",
                                            "mary saw the old river in new london.\nthe cat met mary.\n")
    assert spans == ["mary", "new london", "mary"]
    assert_candidates_masked_first(tokenizer, item, "named_entity", 0.3)


def test_packed_corpus_is_reused_when_unchanged(tokenizer, tiny_text_corpus, tmp_path):
    out = pack_corpus(tiny_text_corpus, tokenizer, 32, tmp_path / "p")
    stamp = (out / "ids.bin").stat().st_mtime_ns
    pack_corpus(tiny_text_corpus, tokenizer, 32, tmp_path / "p")
    assert (out / "ids.bin").stat().st_mtime_ns == stamp
    pack_corpus(tiny_text_corpus, tokenizer, 48, tmp_path / "p")
    assert json.loads((out / "meta.json").read_text())["source"]["max_length"] == 48


def test_huge_document_is_read_in_parts_without_losing_text(tokenizer, tmp_path, monkeypatch):
    from spacy_spanbert.pretraining import data

    monkeypatch.setattr(data, "MAX_DOC_LINES", 2)
    corpus = tmp_path / "c.txt"
    corpus.write_text("the cat saw the dog.\nthe dog saw the cat.\nmary met john.\n")
    docs = list(iter_documents(corpus))
    assert [len(d) for d in docs] == [2, 1]
    assert [s for d in docs for s, _ in d][-1] == "mary met john."


def test_interrupted_pack_keeps_the_previous_complete_pack(tokenizer, tmp_path, monkeypatch):
    from spacy_spanbert.pretraining import data

    first = tmp_path / "a.txt"
    first.write_text("The old man saw a dog.\n\nA red car stood near the river.\n", encoding="utf8")
    out = pack_corpus(first, tokenizer, 32, tmp_path / "p")
    before = PackedBlocks(out)
    ids = [list(before[i]["input_ids"]) for i in range(len(before))]
    second = tmp_path / "b.txt"
    second.write_text("Mary went home.\n\nJohn stayed in London.\n\nThey met in Paris.\n", encoding="utf8")
    calls = []

    def crash(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # e.g. Ctrl-C half-way through the corpus
        return pack_document(*args, **kwargs)

    pack_document = data._pack_document
    monkeypatch.setattr(data, "_pack_document", crash)
    with pytest.raises(KeyboardInterrupt):
        pack_corpus(second, tokenizer, 32, tmp_path / "p")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt", "p"]  # no temp dir left behind
    after = PackedBlocks(tmp_path / "p")
    assert [list(after[i]["input_ids"]) for i in range(len(after))] == ids
    assert json.loads((tmp_path / "p" / "meta.json").read_text())["source"]["corpus"] == str(first.resolve())


DETS, ADJS = {"the", "a"}, {"old", "dark"}


@Language.component("toy_parser", assigns=["token.dep", "token.head", "token.pos"])
def toy_parser(doc):
    """Parses 'DET ADJ* NOUN' and names as noun phrases under the first verb: enough for English noun_chunks."""
    root = next((t for t in doc if t.text.lower() in {"saw", "met"}), doc[0])
    root.pos_, root.dep_ = "VERB", "ROOT"
    i = 0
    while i < len(doc):
        tok = doc[i]
        if tok.text.lower() in DETS:
            j = i + 1
            while j < len(doc) - 1 and doc[j].text.lower() in ADJS:
                j += 1
            noun = doc[j]
            noun.pos_, noun.dep_, noun.head = "NOUN", "dobj", root
            for mod in doc[i:j]:
                mod.pos_, mod.dep_, mod.head = ("DET", "det", noun) if mod.i == i else ("ADJ", "amod", noun)
            i = j + 1
            continue
        if tok.i != root.i:
            tok.pos_, tok.dep_, tok.head = ("PROPN", "nsubj", root) if tok.text.istitle() else ("ADP", "prep", root)
        i += 1
    return doc


def test_noun_chunks_feed_noun_phrase_masking(tokenizer, tmp_path):
    import spacy

    nlp = spacy.blank("en")
    nlp.add_pipe("toy_parser")
    item, spans = candidates_of_first_block(tokenizer, tmp_path, nlp, "noun_phrase",
                                            "the old cat saw Mary near a dark river.\n")
    assert spans == ["the old cat", "mary", "a dark river"]
    assert_candidates_masked_first(tokenizer, item, "noun_phrase", 0.7)


def test_temp_packs_of_dead_processes_are_removed(tokenizer, tiny_text_corpus, tmp_path):
    dead, live = tmp_path / ".p.tmp-999999999", tmp_path / f".p.tmp-{os.getppid()}"
    for leftover in (dead, live):
        leftover.mkdir()
        (leftover / "ids.bin").write_bytes(b"\0" * 64)
    pack_corpus(tiny_text_corpus, tokenizer, 32, tmp_path / "p")
    assert not dead.exists() and live.exists()  # another live process may still be packing there
