"""Generated stand-ins for the project's assets: CoNLL-2003 style files and a raw news-like text corpus."""
import random
from pathlib import Path
from typing import List

PERSONS = ["John Smith", "Mary", "Anna Smith", "Peter"]
PLACES = ["London", "Paris", "Berlin"]
ORGS = ["Reuters", "Google"]
FILLER = "the old man saw a small dog in the city and then visited the big house near the river".split()


def write_conll_docs(path: Path, n_docs: int, sents_per_doc: int = 4, seed: int = 0) -> Path:
    """A CoNLL-2003 file of generated news-like sentences with PER, LOC and ORG entities (IOB2)."""
    rng = random.Random(seed)
    lines: List[str] = []
    for _ in range(n_docs):
        lines += ["-DOCSTART- -X- -X- O", ""]
        for _ in range(sents_per_doc):
            for label, names in (("PER", PERSONS), ("ORG", ORGS), ("LOC", PLACES)):
                for i, word in enumerate(rng.choice(names).split()):
                    lines.append(f"{word} NNP I-NP {'B' if i == 0 else 'I'}-{label}")
                start = rng.randrange(len(FILLER) - 3)
                lines += [f"{w} NN I-NP O" for w in FILLER[start : start + rng.randint(1, 3)]]
            lines += [". . O O", ""]
    path.write_text("\n".join(lines) + "\n", encoding="utf8")
    return path


def write_news_corpus(path: Path, n_docs: int, seed: int = 0) -> Path:
    """A .txt pretraining corpus: documents of a few generated sentences, a blank line between documents."""
    rng = random.Random(seed)
    docs = []
    for i in range(n_docs):
        sentences = []
        for _ in range(rng.randint(3, 6)):
            start = rng.randrange(len(FILLER) - 6)
            who = rng.choice(PERSONS + ORGS)
            sentences.append(f"{who} {' '.join(FILLER[start : start + rng.randint(4, 7)])} in {rng.choice(PLACES)}.")
        docs.append(f"Report {i}: " + " ".join(sentences))
    path.write_text("\n\n".join(docs) + "\n", encoding="utf8")
    return path
