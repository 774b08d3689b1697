"""Convert the BBC News articles (one folder per topic, one `.txt` article per file) to train/dev/test DocBins.

Each Doc is one article with `doc.cats` one-hot over the topics found (the folder names, sorted). The split is
stratified by topic and deterministic: a topic's file names are sorted, shuffled with a `random.Random(--seed)`
shared by the topics in sorted order, and cut into train/dev/test by `--ratios`, so each topic's share in each split
is within one article of its ratio and every machine makes the same split. Each split's articles are then shuffled
with the same generator, so that topics are interleaved and a reader's `limit` takes a mix. `--list-test FILE` writes the test
articles' paths (relative to `--list-root`, by default the BBC folder), one a line, for `make_pretrain_corpus.py
--exclude-list`: continued pretraining then never sees the text the classifier is tested on.

Usage: python scripts/convert_bbc.py assets/news/bbc corpus [--prefix textcat] [--ratios 0.8 0.1 0.1] [--seed 0]
    [--limit-per-class N] [--list-test corpus/textcat_test_files.txt --list-root assets/news]
"""
import argparse
import random
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from project_io import write_atomic

SPLITS = ("train", "dev", "test")
Articles = Dict[str, List[Path]]  # topic -> article files


def split_sizes(n: int, ratios: Sequence[float]) -> Tuple[int, int, int]:
    """Articles of a topic in train/dev/test: dev and test rounded from their ratio, train takes the rest.

    Example: split_sizes(11, (0.8, 0.1, 0.1)) -> (9, 1, 1); each size is within one article of n * ratio.
    """
    n_dev, n_test = round(n * ratios[1]), round(n * ratios[2])
    return n - n_dev - n_test, n_dev, n_test


def min_articles(ratios: Sequence[float]) -> int:
    """The fewest articles a topic needs so that every split with a non-zero ratio gets at least one."""
    n = 1
    while any(size < 1 for size, ratio in zip(split_sizes(n, ratios), ratios) if ratio > 0):
        n += 1
    return n


def check_ratios(ratios: Sequence[float]) -> None:
    if len(ratios) != 3 or any(r < 0 for r in ratios) or ratios[0] <= 0 or abs(sum(ratios) - 1) > 1e-6:
        raise ValueError(f"--ratios {' '.join(map(str, ratios))}: give three non-negative fractions for train, dev "
                         f"and test that sum to 1, train above 0 (e.g. --ratios 0.8 0.1 0.1)")


def find_articles(folder: Path) -> Articles:
    """The `.txt` files of each topic subfolder (hidden folders and top-level files are ignored), sorted by name."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: BBC folder not found; run `python scripts/fetch_assets.py assets --only "
                                f"bbc_news` (or `spacy project run fetch`), or pass the folder holding <topic>/*.txt")
    topics = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted((f for f in sub.glob("*.txt") if f.is_file()), key=lambda f: f.name)
        if files:
            topics[sub.name] = files
    if len(topics) < 2:
        found = f"only the topic '{next(iter(topics))}'" if topics else "no topic subfolders with .txt articles"
        raise ValueError(f"{folder}: {found}; expected one subfolder per topic (at least two), each holding .txt "
                         f"articles, e.g. business/001.txt: point it at assets/news/bbc")
    return topics


def split_articles(topics: Articles, ratios: Sequence[float], seed: int = 0,
                   limit_per_class: int = 0) -> Dict[str, List[Tuple[Path, str]]]:
    """Stratified, seeded split: RETURNS (file, topic) pairs per split, the topics interleaved by a seeded shuffle.

    limit_per_class (int): keep a seeded sample of at most this many articles per topic (0 = all), cut before the
        split, so small runs stay stratified.
    Raises ValueError (one line) when a topic has too few articles for every split to get one.
    """
    check_ratios(ratios)
    if limit_per_class < 0:
        raise ValueError(f"--limit-per-class must be 0 (all) or positive, got {limit_per_class}")
    need = min_articles(ratios)
    for topic, files in topics.items():
        n = min(len(files), limit_per_class or len(files))
        if n < need:
            raise ValueError(f"topic '{topic}' has {n} article(s) (after --limit-per-class {limit_per_class}), too "
                             f"few to split by --ratios {' '.join(map(str, ratios))}: each split needs one, so at "
                             f"least {need}; add articles, raise --limit-per-class or change --ratios")
    rng = random.Random(seed)
    splits: Dict[str, List[Tuple[Path, str]]] = {name: [] for name in SPLITS}
    for topic in sorted(topics):
        files = list(topics[topic])
        rng.shuffle(files)
        if limit_per_class:
            files = files[:limit_per_class]
        n_train, n_dev, _ = split_sizes(len(files), ratios)
        cuts = {"train": files[:n_train], "dev": files[n_train : n_train + n_dev], "test": files[n_train + n_dev :]}
        for name in SPLITS:
            splits[name].extend((f, topic) for f in cuts[name])
    for name in SPLITS:
        rng.shuffle(splits[name])
    return splits


def relative_paths(files: Sequence[Path], root: Path) -> List[str]:
    """POSIX paths of `files` relative to `root`; a ValueError when one lies outside it."""
    root = root.resolve()
    out = []
    for f in files:
        try:
            out.append(f.resolve().relative_to(root).as_posix())
        except ValueError:
            raise ValueError(f"{f} is not under --list-root {root}: pass the raw-text directory that holds the BBC "
                             f"folder (e.g. --list-root assets/news)") from None
    return out


def convert(folder: Path, output_dir: Path, prefix: str = "textcat", ratios: Sequence[float] = (0.8, 0.1, 0.1),
            seed: int = 0, limit_per_class: int = 0, list_test: Optional[Path] = None,
            list_root: Optional[Path] = None) -> Dict[str, Dict[str, int]]:
    """Check everything, then write `{prefix}_{split}.spacy` (atomically) and the test list.

    RETURNS (Dict[str, Dict[str, int]]): articles per topic in each split.
    """
    topics = find_articles(folder)
    try:
        splits = split_articles(topics, ratios, seed, limit_per_class)
    except ValueError as err:
        raise ValueError(f"{folder}: {err}") from None
    test_list = sorted(relative_paths([f for f, _ in splits["test"]], list_root or folder)) if list_test else []
    from spacy.lang.en import English  # after the checks: bad input fails in a moment
    from spacy.tokens import DocBin

    labels = sorted(topics)
    nlp = English()
    counts: Dict[str, Dict[str, int]] = {}
    for name in SPLITS:
        docbin = DocBin(attrs=["ORTH"], store_user_data=False)
        counts[name] = {label: 0 for label in labels}
        for path, topic in splits[name]:
            doc = nlp.make_doc(path.read_text(encoding="utf8", errors="replace").strip())
            doc.cats = {label: float(label == topic) for label in labels}
            docbin.add(doc)
            counts[name][topic] += 1
        write_atomic(Path(output_dir) / f"{prefix}_{name}.spacy", docbin.to_bytes())
    if list_test:
        write_atomic(list_test, "".join(line + "\n" for line in test_list))
    return counts


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("input", type=Path, help="BBC folder: one subfolder per topic with .txt articles")
    parser.add_argument("output_dir", type=Path, help="where PREFIX_{train,dev,test}.spacy go")
    parser.add_argument("--prefix", default="textcat", help="file name prefix of the DocBins")
    parser.add_argument("--ratios", type=float, nargs=3, default=[0.8, 0.1, 0.1], metavar=("TRAIN", "DEV", "TEST"))
    parser.add_argument("--seed", type=int, default=0, help="seed of the per-topic shuffle")
    parser.add_argument("--limit-per-class", type=int, default=0, help="at most N articles per topic (0 = all)")
    parser.add_argument("--list-test", type=Path, default=None, help="write the test articles' paths here")
    parser.add_argument("--list-root", type=Path, default=None,
                        help="--list-test paths are relative to this directory (default: INPUT)")
    args = parser.parse_args(argv)
    try:
        counts = convert(args.input, args.output_dir, args.prefix, args.ratios, args.seed, args.limit_per_class,
                         args.list_test, args.list_root)
    except (ValueError, FileNotFoundError) as err:
        sys.exit(f"convert_bbc: {err}")
    for name in SPLITS:
        per_topic = ", ".join(f"{topic} {n}" for topic, n in counts[name].items())
        print(f"{args.output_dir / f'{args.prefix}_{name}.spacy'}: {sum(counts[name].values())} articles ({per_topic})")
    if args.list_test:
        print(f"{args.list_test}: {sum(counts['test'].values())} test article paths")


if __name__ == "__main__":
    main()
