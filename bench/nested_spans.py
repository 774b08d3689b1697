"""Derive nested span data from CoNLL-2003 for `spanbert_spancat` (CoNLL itself is flat; no nested corpus is on PyPI).

Rule: every entity stays a span; every proper sub-span of a multi-token entity whose text is a name in the TRAIN
lexicon is added with the label it most often has there. A name is in the lexicon when train has it as an entity at
least `min_count` times and at least `min_rate` of its occurrences there ARE that entity (so "Cup" of "World Cup"
or "United" of "Manchester United" stay out, while a country or a city inside an organisation's name gets in), e.g.
"New York Stock Exchange" ORG gives "New York" LOC, "Bank of England" ORG gives "England" LOC. The lexicon always
comes from the train file, so dev and test are derived by the same rule without reading their own gold.

Usage: python bench/nested_spans.py corpus/train.spacy corpus/dev.spacy corpus/test.spacy --out-dir corpus/nested
"""
import argparse
from collections import Counter, defaultdict
from pathlib import Path
from typing import Dict, List, Tuple

from spacy.tokens import Doc, DocBin, Span
from spacy.vocab import Vocab

SPANS_KEY = "sc"


def build_lexicon(docs: List[Doc], min_count: int = 2, min_rate: float = 0.5) -> Dict[str, str]:
    """Entity text -> its most frequent label, for texts that are mostly entities where they occur (see above)."""
    counts: Dict[str, Counter] = defaultdict(Counter)
    for doc in docs:
        for ent in doc.ents:
            counts[ent.text][ent.label_] += 1
    longest = max((len(text.split()) for text in counts), default=0)
    occurrences: Counter = Counter()
    for doc in docs:
        words = [t.text for t in doc]
        for start in range(len(words)):
            for end in range(start + 1, min(start + longest, len(words)) + 1):
                text = " ".join(words[start:end])
                if text in counts:
                    occurrences[text] += 1
    return {
        text: c.most_common(1)[0][0]
        for text, c in counts.items()
        if sum(c.values()) >= min_count and sum(c.values()) >= min_rate * occurrences[text]
    }


def nested_spans(doc: Doc, lexicon: Dict[str, str]) -> List[Span]:
    """The doc's entities plus their proper sub-spans that are names in `lexicon` (sorted, no duplicates)."""
    found: Dict[Tuple[int, int, str], Span] = {}
    for ent in doc.ents:
        found[(ent.start, ent.end, ent.label_)] = Span(doc, ent.start, ent.end, label=ent.label_)
        for start in range(ent.start, ent.end):
            for end in range(start + 1, ent.end + 1):
                if (start, end) == (ent.start, ent.end):
                    continue
                label = lexicon.get(doc[start:end].text)
                if label is not None:
                    found[(start, end, label)] = Span(doc, start, end, label=label)
    return [found[key] for key in sorted(found)]


def derive(paths: List[Path], out_dir: Path, min_count: int = 2, min_rate: float = 0.5) -> Dict[str, Tuple[int, int]]:
    """Write `<out_dir>/<name>.spacy` with `doc.spans["sc"]` for each input; the first path is the train file.

    RETURNS (Dict[str, Tuple[int, int]]): per output file, (entities, nested sub-spans added).
    """
    vocab = Vocab()
    loaded = [list(DocBin().from_disk(path).get_docs(vocab)) for path in paths]
    lexicon = build_lexicon(loaded[0], min_count, min_rate)
    out_dir.mkdir(parents=True, exist_ok=True)
    stats = {}
    for path, docs in zip(paths, loaded):
        out = DocBin(attrs=["ORTH", "SENT_START", "ENT_IOB", "ENT_TYPE"], store_user_data=False)
        n_ents = n_nested = 0
        for doc in docs:
            spans = nested_spans(doc, lexicon)
            doc.spans[SPANS_KEY] = spans
            n_ents += len(doc.ents)
            n_nested += len(spans) - len(doc.ents)
            out.add(doc)
        out.to_disk(out_dir / path.name)
        stats[path.name] = (n_ents, n_nested)
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("inputs", type=Path, nargs="+", help="train .spacy first, then any others (dev, test)")
    parser.add_argument("--out-dir", type=Path, required=True)
    parser.add_argument("--min-count", type=int, default=2, help="how often a name must be an entity in train")
    parser.add_argument("--min-rate", type=float, default=0.5, help="share of its train occurrences that are entities")
    args = parser.parse_args()
    missing = [str(p) for p in args.inputs if not p.is_file()]
    if missing:
        raise SystemExit(f"nested_spans: not found: {', '.join(missing)}; run `spacy project run convert` first")
    for name, (n_ents, n_nested) in derive(args.inputs, args.out_dir, args.min_count, args.min_rate).items():
        print(f"{args.out_dir / name}: {n_ents} entities + {n_nested} nested sub-spans")


if __name__ == "__main__":
    main()
