"""Build the span-masking pretraining corpus from raw news text: clean, deduplicated, free of CoNLL's Reuters text.

Continued pretraining must not see the evaluation text (CoNLL-2003 is Reuters news, and news corpora may quote
it), and repeated boilerplate paragraphs waste steps. So: whitespace is normalised; a paragraph whose normalised
form was already seen is dropped, and a document that is mostly such repeats is dropped whole; any document
sharing an n-gram of `--ngram` words with a CoNLL file is dropped. The kept documents are shuffled with `--seed`;
the first `--heldout-docs` go to a held-out file (masked-LM loss evaluation), up to `--max-docs` to the corpus.
`--exclude-list FILE` names files (one path a line, relative to the input directories, e.g. the BBC test split that
`convert_bbc.py --list-test` writes) that are left out as well, so a classifier's test text is never pretrained on.

Inputs (files or directories, any mix):
  - a directory: every `.txt` file under it is ONE document (paragraphs separated by blank lines), every `.csv`
    / `.jsonl` file is read as below;
  - a `.txt` file: documents separated by blank lines, one paragraph per line (the format written here);
  - a `.csv` file with a `text` column, or a `.jsonl` file with a "text" field: one document per row.
Output: documents separated by a blank line, paragraphs on their own lines.

Usage: python scripts/make_pretrain_corpus.py INPUT... --output corpus/pretrain.txt \
    --heldout corpus/pretrain_heldout.txt [--exclude-conll FILE ...] [--exclude-list FILE] [--max-docs N]
    [--heldout-docs N]
"""
import argparse
import csv
import hashlib
import json
import random
import re
import sys
from pathlib import Path
from typing import AbstractSet, Dict, Iterable, Iterator, List, Optional, Sequence, Set

from project_io import write_atomic

Document = List[str]  # paragraphs
_WORD = re.compile(r"[a-z0-9]+")
_ALPHA = re.compile(r"[a-z]")
_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Collapse runs of whitespace and unify typographic apostrophes."""
    return _SPACE.sub(" ", text.replace("\u2019", "'").replace("\u00a0", " ")).strip()


def words(text: str) -> List[str]:
    """Lower-cased word tokens that match between CoNLL's tokenisation and running text ("does n't" ~ "doesn't")."""
    return _WORD.findall(text.lower().replace("\u2019", "'").replace("n't", " n't"))


def _paragraphs(block: str) -> Document:
    return [p for p in (normalise(x) for x in re.split(r"\n\s*\n", block)) if p]


def read_documents(path: Path, skip: AbstractSet[Path] = frozenset()) -> Iterator[Document]:
    """Yield the documents of one input path (see the module docstring for the formats).

    skip (AbstractSet[Path]): resolved paths of files inside a directory input to leave out (`--exclude-list`).
    """
    if path.is_dir():
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            if child.resolve() in skip:
                continue
            if child.suffix == ".txt":
                doc = _paragraphs(child.read_text(encoding="utf8", errors="replace"))
                if doc:
                    yield doc
            elif child.suffix in (".csv", ".jsonl"):
                yield from read_documents(child)
    elif path.suffix == ".csv":
        csv.field_size_limit(1 << 30)
        with open(path, encoding="utf8", errors="replace", newline="") as f:
            reader = csv.DictReader(f)
            if "text" not in (reader.fieldnames or []):
                raise ValueError(f"{path}:1: no 'text' column in the CSV header (columns: {reader.fieldnames})")
            for row in reader:
                doc = _paragraphs(row["text"] or "")
                if doc:
                    yield doc
    elif path.suffix == ".jsonl":
        with open(path, encoding="utf8") as f:
            for number, line in enumerate(f, start=1):
                if not line.strip():
                    continue
                try:
                    doc = _paragraphs(json.loads(line)["text"])
                except (ValueError, KeyError, TypeError):
                    raise ValueError(f"{path}:{number}: not a JSON object with a \"text\" field") from None
                if doc:
                    yield doc
    elif path.is_file():
        text = path.read_text(encoding="utf8", errors="replace")
        for block in re.split(r"\n\s*\n", text):
            doc = [p for p in (normalise(line) for line in block.splitlines()) if p]
            if doc:
                yield doc
    else:
        raise FileNotFoundError(f"{path}: raw-text input not found; run `spacy project run fetch` or fix the path")


def excluded_files(list_path: Optional[Path], inputs: Sequence[Path]) -> Set[Path]:
    """Resolved paths of the files `list_path` names (one a line, relative to an input directory, or absolute).

    Every listed file must exist under one of the directory inputs: a list written against another root would
    silently exclude nothing, and the text it was meant to keep out would be pretrained on.
    """
    if list_path is None:
        return set()
    if not list_path.is_file():
        raise FileNotFoundError(f"{list_path}: exclude list not found; write it with `convert_bbc.py --list-test` "
                                f"(`spacy project run textcat_convert`) or fix the path")
    roots = [p for p in inputs if p.is_dir()]
    found: Set[Path] = set()
    missing = []
    for line in list_path.read_text(encoding="utf8").splitlines():
        if not line.strip():
            continue
        hits = [(root / line.strip()).resolve() for root in roots if (root / line.strip()).is_file()]
        found.update(hits)
        if not hits:
            missing.append(line.strip())
    if missing:
        dirs = ", ".join(str(p) for p in roots) or "none"
        raise ValueError(f"{list_path}: {len(missing)} listed file(s) not found under the input directories ({dirs}), "
                         f"e.g. {missing[0]!r}; write the paths relative to the raw-text directory "
                         f"(convert_bbc.py --list-root)")
    return found


def conll_ngrams(paths: Sequence[Path], n: int) -> Set[int]:
    """Hashes of every n-gram of words in the running text of CoNLL files (`-DOCSTART-` excluded)."""
    grams: Set[int] = set()
    for path in paths:
        if not path.is_file():
            raise FileNotFoundError(f"{path}: CoNLL file to exclude not found; run `spacy project run fetch` first")
        tokens: List[str] = []
        with open(path, encoding="utf8") as f:
            for line in f:
                fields = line.split()
                if fields and fields[0] != "-DOCSTART-":
                    tokens.extend(words(fields[0]))
        grams.update(_ngram_hashes(tokens, n))
    return grams


def _ngram_hashes(tokens: Sequence[str], n: int) -> Iterator[int]:
    # An n-gram of numbers only (sports results, tables) says nothing about shared text.
    for i in range(len(tokens) - n + 1):
        gram = tokens[i : i + n]
        if sum(1 for t in gram if _ALPHA.search(t)) * 2 >= n:
            yield hash(tuple(gram))


def _paragraph_key(paragraph: str) -> bytes:
    return hashlib.blake2b(" ".join(words(paragraph)).encode("utf8"), digest_size=16).digest()


def clean_documents(docs: Iterable[Document], exclude: Set[int], n: int, min_words: int,
                    stats: Dict[str, int]) -> List[Document]:
    """Drop repeated paragraphs, mostly-repeated documents, short documents and documents overlapping `exclude`."""
    seen: Set[bytes] = set()
    kept: List[Document] = []
    for doc in docs:
        stats["read"] += 1
        if exclude and any(h in exclude for h in _ngram_hashes(words(" ".join(doc)), n)):
            stats["excluded_conll"] += 1
            continue
        keys = [_paragraph_key(p) for p in doc]
        fresh = [p for p, key in zip(doc, keys) if key not in seen]
        seen.update(keys)
        if sum(len(p) for p in fresh) * 2 < sum(len(p) for p in doc):
            stats["duplicates"] += 1
            continue
        if len(words(" ".join(fresh))) < min_words:
            stats["too_short"] += 1
            continue
        kept.append(fresh)
    return kept


def build_corpus(inputs: Sequence[Path], output: Path, heldout: Path, exclude_conll: Sequence[Path] = (),
                 max_docs: int = 0, heldout_docs: int = 0, ngram: int = 13, min_words: int = 20,
                 seed: int = 0, exclude_list: Optional[Path] = None) -> Dict[str, int]:
    """Write the pretraining corpus and its held-out split (both atomically). RETURNS counts per outcome.

    exclude_list (Optional[Path]): files to leave out, one path a line relative to an input directory.
    """
    if ngram < 4 or max_docs < 0 or heldout_docs < 0 or min_words < 0:
        raise ValueError(f"need --ngram >= 4 and non-negative sizes (got ngram={ngram}, max_docs={max_docs}, "
                         f"heldout_docs={heldout_docs}, min_words={min_words})")
    for path in inputs:
        if not path.exists():
            raise FileNotFoundError(f"{path}: raw-text input not found; run `spacy project run fetch` or fix the path")
    skip = excluded_files(exclude_list, inputs)
    exclude = conll_ngrams(exclude_conll, ngram)
    stats = {"read": 0, "excluded_conll": 0, "duplicates": 0, "too_short": 0}
    docs = clean_documents((d for path in inputs for d in read_documents(path, skip)), exclude, ngram, min_words,
                           stats)
    stats["excluded_list"] = len(skip)
    if len(docs) <= heldout_docs:
        names = ", ".join(str(p) for p in inputs)
        raise ValueError(f"{names}: {len(docs)} usable documents after cleaning ({stats}), need more than "
                         f"--heldout-docs {heldout_docs}; point the raw-text input at a larger corpus")
    random.Random(seed).shuffle(docs)
    held, train = docs[:heldout_docs], docs[heldout_docs:]
    if max_docs:
        train = train[:max_docs]
    write_atomic(heldout, "".join("\n".join(doc) + "\n\n" for doc in held))
    write_atomic(output, "".join("\n".join(doc) + "\n\n" for doc in train))
    stats.update(kept=len(docs), corpus_docs=len(train), heldout_docs=len(held),
                 corpus_words=sum(len(p.split()) for doc in train for p in doc))
    return stats


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("inputs", nargs="+", type=Path, help="raw-text files or directories")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--heldout", type=Path, required=True, help="held-out documents for masked-LM evaluation")
    parser.add_argument("--exclude-conll", nargs="*", type=Path, default=[], help="CoNLL files whose text to drop")
    parser.add_argument("--exclude-list", type=Path, default=None,
                        help="files to leave out, one path a line relative to an input directory")
    parser.add_argument("--max-docs", type=int, default=0, help="documents in the corpus (0 = all)")
    parser.add_argument("--heldout-docs", type=int, default=0)
    parser.add_argument("--ngram", type=int, default=13, help="shared n-gram length that marks CoNLL overlap")
    parser.add_argument("--min-words", type=int, default=20, help="drop documents shorter than this")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        stats = build_corpus(args.inputs, args.output, args.heldout, args.exclude_conll, args.max_docs,
                             args.heldout_docs, args.ngram, args.min_words, args.seed, args.exclude_list)
    except (ValueError, FileNotFoundError) as err:
        sys.exit(f"make_pretrain_corpus: {err}")
    print(f"{args.output}: {stats['corpus_docs']} documents, {stats['corpus_words']} words; {args.heldout}: "
          f"{stats['heldout_docs']} documents (read {stats['read']}, dropped {stats['excluded_conll']} sharing "
          f"text with CoNLL, {stats['duplicates']} duplicates, {stats['too_short']} too short, "
          f"{stats['excluded_list']} left out by --exclude-list)")


if __name__ == "__main__":
    main()
