"""Convert CoNLL-2003 (`word POS chunk NER`, IOB2) to a spaCy DocBin, one Doc per `-DOCSTART-` document.

`spacy convert --converter ner` keeps `-DOCSTART-` as a token and yields sentence-sized docs; a transformer does
better with document context, so sentences are grouped into their documents (sentence boundaries kept in
`doc.sents`), long documents are optionally split into chunks of N sentences, and no `-DOCSTART-` token survives.
Entity tags follow IOB2; an `I-` tag that does not continue an entity of the same type starts one (IOB1 style).

CoNLL gives its sentences as input: headlines, bylines and datelines are sentences of their own. spaCy's corpus
readers build the predicted Doc from the words alone, so `doc.sents` never reaches the pipeline. With
`--line-breaks true` each sentence but a chunk's last ends in a "\n" token: the text keeps one sentence per line,
and `sentence_ngram_suggester.v2` (`within_lines`) keeps candidates inside a line, in `spacy train`,
`spacy evaluate` and on raw text alike. Spaces stay unknown either way, so the readers keep CoNLL's tokens.

Usage: python scripts/convert_conll.py INPUT.txt OUTPUT.spacy [--n-docs N] [--max-sents-per-doc N] [--line-breaks true]
"""
import argparse
import sys
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

from project_io import flag, write_atomic

Token = Tuple[str, str]  # (word, NER tag)
Sentence = List[Token]
Document = List[Sentence]
Span = Tuple[int, int, str]  # (start token, end token exclusive, label)

DOCSTART = "-DOCSTART-"


class ConllFormatError(ValueError):
    """A malformed CoNLL line; the message names file and line."""


def read_conll(path: Path) -> List[Document]:
    """Read a CoNLL-2003 file into documents of sentences of (word, tag) tokens.

    path (Path): file with `word POS chunk NER` lines, blank lines between sentences, `-DOCSTART-` lines
        between documents (sentences before the first `-DOCSTART-` form a document of their own).
    RETURNS (List[Document]): documents with at least one sentence.
    """
    docs: List[Document] = [[]]
    sentence: Sentence = []
    with open(path, encoding="utf8") as f:
        for number, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                if sentence:
                    docs[-1].append(sentence)
                    sentence = []
                continue
            if fields[0] == DOCSTART:
                if sentence:
                    docs[-1].append(sentence)
                    sentence = []
                docs.append([])
                continue
            if len(fields) != 4:
                raise ConllFormatError(
                    f"{path}:{number}: {len(fields)} fields in {line.strip()!r} (expected 'word POS chunk NER')"
                )
            tag = fields[3]
            if tag != "O" and (tag[:2] not in ("B-", "I-") or len(tag) < 3):
                raise ConllFormatError(
                    f"{path}:{number}: bad NER tag {tag!r} in {line.strip()!r} "
                    f"(expected 'word POS chunk NER' with NER O, B-TYPE or I-TYPE)"
                )
            sentence.append((fields[0], tag))
    if sentence:
        docs[-1].append(sentence)
    return [doc for doc in docs if doc]


def iob_to_spans(tags: Sequence[str]) -> List[Span]:
    """Entity spans from IOB2 tags; an `I-X` that does not continue an `X` entity begins a new one.

    Example: ["B-PER", "I-PER", "O", "I-LOC", "B-LOC"] -> [(0, 2, "PER"), (3, 4, "LOC"), (4, 5, "LOC")]
    """
    spans: List[Span] = []
    start, label = -1, ""
    for i, tag in enumerate(tags):
        prefix, _, kind = tag.partition("-")
        continues = prefix == "I" and label == kind and start >= 0
        if start >= 0 and not continues:
            spans.append((start, i, label))
            start, label = -1, ""
        if prefix in ("B", "I") and not continues:
            start, label = i, kind
    if start >= 0:
        spans.append((start, len(tags), label))
    return spans


def split_document(doc: Document, max_sents: int) -> List[Document]:
    """Split a document into consecutive chunks of at most `max_sents` sentences (0 = keep whole)."""
    if max_sents <= 0:
        return [doc]
    return [doc[i : i + max_sents] for i in range(0, len(doc), max_sents)]


def to_spacy_docs(documents: Sequence[Document], vocab, line_breaks: bool = False) -> Iterator:
    """Build spaCy Docs: words, sentence starts and entities (sentence-local spans, never across sentences).

    Spaces are left unknown, so spaCy's corpus readers keep CoNLL's tokens instead of re-tokenizing the text.
    line_breaks (bool): end every sentence but the last with a "\n" token (entity O), so that the text keeps one
        sentence per line.
    """
    from spacy.tokens import Doc

    for document in documents:
        words: List[str] = []
        sent_starts: List[bool] = []
        ents: List[str] = []
        for i, sentence in enumerate(document):
            sent_tags = [tag for _, tag in sentence]
            words.extend(word for word, _ in sentence)
            sent_starts.extend([True] + [False] * (len(sentence) - 1))
            iob = ["O"] * len(sentence)
            for start, end, label in iob_to_spans(sent_tags):
                iob[start : end] = [f"B-{label}"] + [f"I-{label}"] * (end - start - 1)
            ents.extend(iob)
            if line_breaks and i < len(document) - 1:
                words.append("\n")
                sent_starts.append(False)
                ents.append("O")
        yield Doc(vocab, words=words, sent_starts=sent_starts, ents=ents)


def convert(input_path: Path, output_path: Path, n_docs: int = 0, max_sents_per_doc: int = 0,
            line_breaks: bool = False) -> Tuple[int, int, int, int]:
    """Convert one CoNLL file; the output is written atomically (temporary file, then rename).

    n_docs (int): keep only the first N `-DOCSTART-` documents (0 = all), applied before splitting.
    max_sents_per_doc (int): split longer documents into chunks of this many sentences (0 = never).
    line_breaks (bool): one sentence per line of text (see the module docstring).
    RETURNS (Tuple[int, int, int, int]): source documents, output docs, sentences and entities written.
    """
    from spacy.tokens import DocBin
    from spacy.vocab import Vocab

    if not input_path.is_file():
        raise FileNotFoundError(f"{input_path}: CoNLL file not found; run `spacy project run fetch` first")
    if n_docs < 0 or max_sents_per_doc < 0:
        raise ValueError(f"--n-docs and --max-sents-per-doc must be >= 0 (got {n_docs}, {max_sents_per_doc})")
    documents = read_conll(input_path)
    if not documents:
        raise ValueError(f"{input_path}: no sentences found; is this a CoNLL-2003 file?")
    if n_docs:
        documents = documents[:n_docs]
    chunks = [chunk for doc in documents for chunk in split_document(doc, max_sents_per_doc)]
    docbin = DocBin(attrs=["ORTH", "SENT_START", "ENT_IOB", "ENT_TYPE"], store_user_data=False)
    n_sents = n_ents = 0
    for doc in to_spacy_docs(chunks, Vocab(), line_breaks):
        docbin.add(doc)
        n_sents += sum(1 for _ in doc.sents)
        n_ents += len(doc.ents)
    write_atomic(output_path, docbin.to_bytes())
    return len(documents), len(chunks), n_sents, n_ents


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("input", type=Path)
    parser.add_argument("output", type=Path)
    parser.add_argument("--n-docs", type=int, default=0, help="first N documents only (0 = all)")
    parser.add_argument("--max-sents-per-doc", type=int, default=0, help="split documents into N-sentence chunks")
    parser.add_argument("--line-breaks", type=flag, default=False, metavar="{true,false}",
                        help="true: end each sentence with a line-break token (one sentence per line of text)")
    args = parser.parse_args(argv)
    try:
        n_src, n_docs, n_sents, n_ents = convert(args.input, args.output, args.n_docs, args.max_sents_per_doc,
                                                 args.line_breaks)
    except (ValueError, FileNotFoundError) as err:
        sys.exit(f"convert_conll: {err}")
    print(f"{args.input} -> {args.output}: {n_src} documents ({n_docs} docs after splitting), "
          f"{n_sents} sentences, {n_ents} entities")


if __name__ == "__main__":
    main()
