"""CoNLL-2003 -> DocBin conversion: documents, sentences, entities, subsets and malformed input."""
import pytest
from spacy.tokens import DocBin
from spacy.vocab import Vocab

from convert_conll import ConllFormatError, convert, iob_to_spans, main, read_conll


def _docs(path):
    return list(DocBin().from_disk(path).get_docs(Vocab()))


def test_read_conll_groups_sentences_into_documents(conll_sample):
    docs = read_conll(conll_sample)
    assert [len(doc) for doc in docs] == [2, 3]
    assert [w for w, _ in docs[0][1]] == ["Peter", "Blackburn"]
    assert all(w != "-DOCSTART-" for doc in docs for sent in doc for w, _ in sent)


def test_sentences_before_first_docstart_form_a_document(tmp_path):
    path = tmp_path / "nodocstart.txt"
    path.write_text("Paris NNP B-NP B-LOC\n\n-DOCSTART- -X- -X- O\n\nJohn NNP B-NP B-PER\n", encoding="utf8")
    assert [[[w for w, _ in s] for s in doc] for doc in read_conll(path)] == [[["Paris"]], [["John"]]]


@pytest.mark.parametrize(
    "tags,spans",
    [
        (["B-PER", "I-PER", "O", "B-LOC"], [(0, 2, "PER"), (3, 4, "LOC")]),
        (["I-LOC", "I-LOC", "O"], [(0, 2, "LOC")]),  # stray I- begins an entity
        (["B-PER", "I-LOC", "I-LOC"], [(0, 1, "PER"), (1, 3, "LOC")]),  # type change begins a new one
        (["B-ORG", "B-ORG", "I-ORG"], [(0, 1, "ORG"), (1, 3, "ORG")]),  # B- always begins
        (["O", "O"], []),
        (["B-MISC"], [(0, 1, "MISC")]),
    ],
)
def test_iob_to_spans(tags, spans):
    assert iob_to_spans(tags) == spans


def test_convert_writes_documents_with_sentences_and_entities(conll_sample, tmp_path):
    out = tmp_path / "out.spacy"
    assert convert(conll_sample, out) == (2, 2, 5, 7)
    first, second = _docs(out)
    assert [s.text for s in first.sents] == ["EU rejects German call .", "Peter Blackburn"]
    assert [(e.text, e.label_) for e in first.ents] == [("EU", "ORG"), ("German", "MISC"),
                                                        ("Peter Blackburn", "PER")]
    assert [(e.text, e.label_) for e in second.ents] == [("BRUSSELS", "LOC"), ("European Commission", "ORG"),
                                                         ("New York", "LOC"), ("Germany", "LOC")]
    assert len(list(second.sents)) == 3
    assert "-DOCSTART-" not in first.text + second.text


def test_n_docs_and_sentence_chunks(conll_sample, tmp_path):
    out = tmp_path / "out.spacy"
    assert convert(conll_sample, out, max_sents_per_doc=2) == (2, 3, 5, 7)
    assert [len(list(d.sents)) for d in _docs(out)] == [2, 2, 1]
    assert convert(conll_sample, out, n_docs=1) == (1, 1, 2, 3)
    assert len(_docs(out)) == 1


def test_line_breaks_put_one_sentence_per_line_and_keep_conll_tokens(conll_sample, tmp_path):
    plain, lines = tmp_path / "plain.spacy", tmp_path / "lines.spacy"
    assert convert(conll_sample, plain) == convert(conll_sample, lines, line_breaks=True)
    for before, after in zip(_docs(plain), _docs(lines)):
        assert [(e.text, e.label_) for e in after.ents] == [(e.text, e.label_) for e in before.ents]
        assert [t.text for t in after if t.text != "\n"] == [t.text for t in before]
        # one line per sentence, and no break after a chunk's last one
        assert [line.strip() for line in after.text.split("\n")] == [s.text.strip() for s in before.sents]
    # spaCy's corpus reader keeps the words as given (spaces unknown), line breaks included: the pipeline sees them
    import spacy
    from spacy.training import Corpus
    nlp = spacy.blank("en")
    example = next(iter(Corpus(str(lines))(nlp)))
    assert [t.text for t in example.predicted] == [t.text for t in example.reference]
    assert "\n" in [t.text for t in example.predicted]
    assert not example.predicted.has_annotation("SENT_START")


def test_line_breaks_flag_on_the_command_line(conll_sample, tmp_path):
    out = tmp_path / "out.spacy"
    main([str(conll_sample), str(out), "--line-breaks", "true"])
    assert "\n" in _docs(out)[0].text
    main([str(conll_sample), str(out), "--line-breaks", "false"])
    assert "\n" not in _docs(out)[0].text
    with pytest.raises(SystemExit):
        main([str(conll_sample), str(out), "--line-breaks", "maybe"])


def test_malformed_line_names_file_and_line_and_keeps_old_output(conll_sample, tmp_path, capsys):
    out = tmp_path / "out.spacy"
    convert(conll_sample, out)
    before = out.read_bytes()
    bad = tmp_path / "bad.txt"
    lines = conll_sample.read_text(encoding="utf8").splitlines()
    lines[5] = "German JJ B-MISC"  # 3 fields on line 6
    bad.write_text("\n".join(lines) + "\n", encoding="utf8")
    with pytest.raises(ConllFormatError, match=r"bad\.txt:6: .*expected 'word POS chunk NER'"):
        convert(bad, out)
    with pytest.raises(SystemExit) as exc:
        main([str(bad), str(out)])
    message = str(exc.value.code)
    assert "\n" not in message and f"{bad}:6:" in message
    assert out.read_bytes() == before


def test_bad_tag_and_missing_file(tmp_path):
    bad = tmp_path / "tag.txt"
    bad.write_text("EU NNP B-NP X-ORG\n", encoding="utf8")
    with pytest.raises(ConllFormatError, match=r"tag\.txt:1: bad NER tag 'X-ORG'"):
        read_conll(bad)
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        convert(tmp_path / "missing.txt", tmp_path / "out.spacy")
