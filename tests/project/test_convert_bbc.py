"""BBC folder -> textcat DocBins: a deterministic, stratified, disjoint split; one-line errors before any work; the
test split's list keeps those articles out of the pretraining corpus; the textcat metrics printer."""
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from spacy.tokens import DocBin
from spacy.vocab import Vocab

from convert_bbc import SPLITS, convert, min_articles, split_sizes
from make_pretrain_corpus import build_corpus
from print_textcat_metrics import format_table, summarise

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "convert_bbc.py"
TOPICS = {"business": 23, "sport": 17, "tech": 12}
WORDS = ("market shares profit bank team match goal player phone software network chip minister vote "
         "growth season data screen price coach").split()


def write_bbc(root: Path, topics=TOPICS, reverse: bool = False) -> Path:
    """A BBC-like folder: unique articles of 30+ words, written in sorted or reversed order."""
    rng = random.Random(0)
    files = [(topic, i) for topic, n in sorted(topics.items()) for i in range(1, n + 1)]
    texts = {key: " ".join(rng.choice(WORDS) for _ in range(30)) for key in files}
    for topic, i in reversed(files) if reverse else files:
        path = root / topic / f"{i:03d}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"Headline {topic} {i}\n\n{topic} article {i} says {texts[topic, i]}.\n", encoding="utf8")
    return root


def read_split(out: Path, name: str):
    return list(DocBin().from_disk(out / f"textcat_{name}.spacy").get_docs(Vocab()))


def test_split_sizes_stay_within_one_article_of_the_ratios():
    for n in range(min_articles((0.8, 0.1, 0.1)), 60):
        sizes = split_sizes(n, (0.8, 0.1, 0.1))
        assert sum(sizes) == n and all(abs(size - n * r) <= 1 for size, r in zip(sizes, (0.8, 0.1, 0.1)))
    assert min_articles((0.8, 0.1, 0.1)) == 6 and min_articles((0.5, 0.5, 0.0)) == 2


def test_split_is_deterministic_stratified_and_disjoint(tmp_path):
    counts = convert(write_bbc(tmp_path / "a"), tmp_path / "out_a")
    # the same articles written in the opposite order (another file system's listing order) split the same way
    assert convert(write_bbc(tmp_path / "b", reverse=True), tmp_path / "out_b") == counts
    seen = {}
    for name, ratio in zip(SPLITS, (0.8, 0.1, 0.1)):
        docs_a, docs_b = read_split(tmp_path / "out_a", name), read_split(tmp_path / "out_b", name)
        assert [d.text for d in docs_a] == [d.text for d in docs_b] and [d.cats for d in docs_a] == [d.cats for d in docs_b]
        for topic, n in TOPICS.items():
            in_split = [d for d in docs_a if d.cats[topic] == 1.0]
            assert abs(len(in_split) - ratio * n) <= 1 and len(in_split) == counts[name][topic]
            assert all(d.text.startswith(f"Headline {topic} ") for d in in_split)
        for doc in docs_a:
            assert sorted(doc.cats) == sorted(TOPICS) and sum(doc.cats.values()) == 1.0
            assert doc.text not in seen, f"in {seen.get(doc.text)} and {name}"
            seen[doc.text] = name
    assert len(seen) == sum(TOPICS.values())
    # the topics are interleaved, so a reader's `limit` takes a mix
    order = [max(d.cats, key=d.cats.get) for d in read_split(tmp_path / "out_a", "train")]
    assert order != sorted(order) and len(set(order[:10])) > 1
    other = convert(write_bbc(tmp_path / "c"), tmp_path / "out_c", seed=1)
    assert other == counts  # the same sizes, other articles
    assert {d.text for d in read_split(tmp_path / "out_c", "test")} != {d.text for d in read_split(tmp_path / "out_a", "test")}


def test_limit_per_class_and_ratios(tmp_path):
    counts = convert(write_bbc(tmp_path / "bbc"), tmp_path / "out", ratios=(0.5, 0.25, 0.25), limit_per_class=8)
    assert counts == {"train": {t: 4 for t in TOPICS}, "dev": {t: 2 for t in TOPICS}, "test": {t: 2 for t in TOPICS}}


def test_list_test_names_exactly_the_test_articles(tmp_path):
    bbc = write_bbc(tmp_path / "news" / "bbc")
    listing = tmp_path / "test_files.txt"
    convert(bbc, tmp_path / "out", list_test=listing, list_root=tmp_path / "news")
    lines = listing.read_text(encoding="utf8").splitlines()
    test_texts = {d.text for d in read_split(tmp_path / "out", "test")}
    assert lines == sorted(lines) and all(line.startswith("bbc/") for line in lines)
    assert {(tmp_path / "news" / line).read_text(encoding="utf8").strip() for line in lines} == test_texts


def _run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("case,expected", [
    ("missing", "BBC folder not found; run `python scripts/fetch_assets.py assets --only bbc_news`"),
    ("empty", "no topic subfolders with .txt articles; expected one subfolder per topic"),
    ("files_only", "no topic subfolders with .txt articles"),
    ("one_topic", "only the topic 'sport'"),
    ("too_few", "topic 'tech' has 5 article(s) (after --limit-per-class 0), too few to split by --ratios 0.8 0.1 0.1"),
])
def test_bad_input_is_one_line_on_stderr_before_any_work(tmp_path, case, expected):
    bbc = tmp_path / "bbc"
    if case != "missing":
        bbc.mkdir()
    if case == "files_only":
        (bbc / "001.txt").write_text("an article without a topic folder\n", encoding="utf8")
    if case == "one_topic":
        write_bbc(bbc, {"sport": 10})
    if case == "too_few":
        write_bbc(bbc, {"sport": 10, "tech": 5})
    out = tmp_path / "out"
    done = _run(bbc, out, "--list-test", tmp_path / "list.txt")
    assert done.returncode == 1 and done.stdout == ""
    assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith("convert_bbc: ")
    assert expected in done.stderr and str(bbc) in done.stderr
    assert not out.exists() and not (tmp_path / "list.txt").exists()


def test_bad_options_are_one_line_errors(tmp_path):
    bbc = write_bbc(tmp_path / "bbc")
    done = _run(bbc, tmp_path / "out", "--ratios", "0.8", "0.3", "0.1")
    assert done.returncode == 1 and "sum to 1" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    done = _run(bbc, tmp_path / "out", "--list-test", tmp_path / "l.txt", "--list-root", tmp_path / "elsewhere")
    assert done.returncode == 1 and "is not under --list-root" in done.stderr and not (tmp_path / "out").exists()


def test_exclude_list_keeps_the_test_split_out_of_the_pretraining_corpus(tmp_path):
    news = tmp_path / "news"
    write_bbc(news / "bbc")
    (news / "other.txt").write_text("A different story " + " ".join(WORDS) + " and more.\n", encoding="utf8")
    listing = tmp_path / "test_files.txt"
    convert(news / "bbc", tmp_path / "out", list_test=listing, list_root=news)
    test_texts = [d.text.split("\n")[-1] for d in read_split(tmp_path / "out", "test")]  # the article paragraph
    out, held = tmp_path / "pretrain.txt", tmp_path / "held.txt"
    base = build_corpus([news], out, held, min_words=5)
    corpus = out.read_text(encoding="utf8")
    assert all(text in corpus for text in test_texts)  # without the list, the test articles are pretrained on
    stats = build_corpus([news], out, held, min_words=5, exclude_list=listing)
    corpus = out.read_text(encoding="utf8")
    assert not any(text in corpus for text in test_texts) and "A different story" in corpus
    assert stats["excluded_list"] == len(test_texts) == 2 + 2 + 1
    assert stats["corpus_docs"] == base["corpus_docs"] - len(test_texts)
    # a list written against another root would exclude nothing: an error naming the file and the fix
    listing.write_text("business/001.txt\n", encoding="utf8")
    with pytest.raises(ValueError, match=r"1 listed file\(s\) not found .* relative to the raw-text directory"):
        build_corpus([news], out, held, min_words=5, exclude_list=listing)


def test_exclude_list_on_the_command_line(tmp_path):
    news = write_bbc(tmp_path / "news" / "bbc").parent
    listing = tmp_path / "list.txt"
    listing.write_text("bbc/sport/001.txt\n\nbbc/tech/002.txt\n", encoding="utf8")
    script = SCRIPT.with_name("make_pretrain_corpus.py")
    done = subprocess.run([sys.executable, str(script), str(news), "--output", str(tmp_path / "p.txt"), "--heldout",
                           str(tmp_path / "h.txt"), "--exclude-list", str(listing), "--min-words", "5"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "2 left out by --exclude-list" in done.stdout and "sport article 1 says" not in (tmp_path / "p.txt").read_text()
    done = subprocess.run([sys.executable, str(script), str(news), "--output", str(tmp_path / "p.txt"), "--heldout",
                           str(tmp_path / "h.txt"), "--exclude-list", str(tmp_path / "nope.txt")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "exclude list not found" in done.stderr and len(done.stderr.splitlines()) == 1


def test_textcat_metrics_from_per_component_evaluate_output(tmp_path):
    cats = {"cats_score": 0.8, "cats_score_desc": "macro F", "cats_micro_p": 0.9, "cats_micro_r": 0.9,
            "cats_micro_f": 0.9, "cats_macro_p": 0.85, "cats_macro_r": 0.75, "cats_macro_f": 0.8,
            "cats_macro_auc": 0.97, "cats_f_per_type": {"tech": {"p": 1.0, "r": 0.5, "f": 0.667},
                                                        "sport": {"p": 0.7, "r": 1.0, "f": 0.933}}}
    metrics = summarise({"tokenizer": {"token_acc": 1.0}, "textcat": cats, "speed": 123.0}, "test", "x.json")
    assert metrics["accuracy"] == pytest.approx(0.9) and list(metrics["per_label"]) == ["sport", "tech"]
    assert metrics["macro"]["f"] == pytest.approx(0.8) and metrics["words_per_second"] == 123.0
    table = format_table(metrics)
    assert "accuracy 90.0" in table and "66.7" in table and "macro" in table
    multi = summarise(dict(cats, cats_score_desc="macro AUC"), "test", "x.json")
    assert multi["accuracy"] is None and "macro AUC 0.970" in format_table(multi)
    with pytest.raises(ValueError, match="--per-component"):
        summarise({"cats_score": 0.8, "cats_f_per_type": {}}, "test", "x.json")
    path = tmp_path / "eval.json"
    path.write_text(json.dumps({"ents_f": 0.5}), encoding="utf8")
    done = subprocess.run([sys.executable, str(SCRIPT.with_name("print_textcat_metrics.py")), str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "no text classification score blocks" in done.stderr
