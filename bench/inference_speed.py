"""Inference speed and peak memory of `nlp.pipe`, side by side, each pipeline in its own subprocess.

Pipelines (same encoder for the transformer ones):
  spanbert_ner     shared `transformer` (configs/ner.cfg's spacy-spanbert.SpanBERT) + `spanbert_ner` (configs/ner.cfg)
  trf_ner          the same `transformer` + spaCy's transition-based `ner` on a TransformerListener
  trf_only         the bare `transformer` component: the ceiling for any head on that encoder
  trf_only_stock   the same bare component on spacy-transformers' own `TransformerModel.v3` (which `trf_ner` was
                   trained with): what SpanBERT's length-sorted inference adds to the encoder alone (less what
                   configs/ner.cfg's case types cost at tokenization)
  cnn_ner          spaCy's CNN tok2vec + `ner` (the default `ner` model)
  span_marker      span-marker (PyPI `span-marker`) on the same encoder directory, only if `span_marker` is importable;
                   it reads the same spaCy tokens, batch size and threads

Untrained heads are used unless `--trained NAME=DIR` points at a trained pipeline (a random NER head predicts far
more entities than a trained one, which makes decoding slower, so trained pipelines give the fairer number). An
untrained span-marker head costs what a trained one does: span-marker encodes every candidate span (entity markers
packed into 256-piece samples) whatever its weights, and only the decoding of its predictions varies.

    python bench/inference_speed.py --data corpus/test.spacy --model all-MiniLM-L6-v2 --n-sents 2000
"""
import argparse
import importlib.util
import json
import resource
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

if __package__ in (None, ""):  # run as `python bench/NAME.py`: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    RESULTS_DIR, ROOT, machine_info, machine_line, run_logged, short_error, thread_env, write_json, write_text,
)

PIPELINES = ["spanbert_ner", "trf_ner", "trf_only", "trf_only_stock", "cnn_ner", "span_marker"]
LABELS = ["PER", "LOC", "ORG", "MISC"]
TRF_NER_MODEL = {"@architectures": "spacy.TransitionBasedParser.v2", "state_type": "ner", "extra_state_tokens": False,
                 "hidden_width": 64, "maxout_pieces": 2, "use_upper": False, "nO": None,
                 "tok2vec": {"@architectures": "spacy-transformers.TransformerListener.v1", "grad_factor": 1.0,
                             "pooling": {"@layers": "reduce_mean.v1"}, "upstream": "*"}}


def load_texts(path: Path, n_sents: int) -> List[str]:
    """Sentences from a .spacy file, or the lines of a one-text-per-line file."""
    if not path.exists():
        raise FileNotFoundError(f"--data {path} does not exist")
    if path.suffix != ".spacy":
        lines = [line.strip() for line in path.read_text(encoding="utf8").splitlines()]
        return [line for line in lines if line][:n_sents]
    import spacy
    from spacy.tokens import DocBin

    texts: List[str] = []
    for doc in DocBin().from_disk(path).get_docs(spacy.blank("en").vocab):
        # strip: with one CoNLL sentence per line (`convert_conll.py --line-breaks true`) a sentence ends in its "\n"
        texts.extend([s.text.strip() for s in doc.sents] if doc.has_annotation("SENT_START") else [doc.text])
        if len(texts) >= n_sents:
            break
    return texts[:n_sents]


def build_pipeline(name: str, model: str, trained: Dict[str, str], window: int, stride: int):
    import spacy
    from spacy.training import Example

    if name in trained:
        return spacy.load(trained[name])
    if name == "cnn_ner":
        nlp = spacy.blank("en")
        nlp.add_pipe("ner")
    else:
        from spacy.util import load_config

        config = load_config(ROOT / "configs" / "ner.cfg", overrides={"paths.init_model": model}, interpolate=True)
        config["components"]["transformer"]["model"]["get_spans"].update({"window": window, "stride": stride})
        if name in ("trf_only", "trf_only_stock"):
            config["nlp"]["pipeline"] = ["transformer"]
            del config["components"]["spanbert_ner"]
        elif name == "trf_ner":
            config["nlp"]["pipeline"] = ["transformer", "ner"]
            del config["components"]["spanbert_ner"]
            config["components"]["ner"] = {"factory": "ner", "model": TRF_NER_MODEL}
        if name in ("trf_ner", "trf_only_stock"):  # spacy-transformers' own encoder, as bench/configs/trf_ner.cfg
            block = config["components"]["transformer"]["model"]
            block["@architectures"] = "spacy-transformers.TransformerModel.v3"
            for key in ("quantize", "cpu_bf16", "case_types"):  # SpanBERT's own settings
                block.pop(key, None)
        nlp = spacy.util.load_model_from_config(config, auto_fill=True)
    doc = nlp.make_doc("John met Mary in London for Reuters .")
    example = Example.from_dict(doc, {"entities": [(0, 4, "PER"), (9, 13, "PER"), (17, 23, "LOC"), (28, 35, "ORG")]})
    for pipe_name in nlp.pipe_names:
        if pipe_name != "transformer":
            for label in LABELS:
                nlp.get_pipe(pipe_name).add_label(label)
    nlp.initialize(lambda: [example])
    return nlp


class SpanMarkerPipe:
    """span-marker behind the `nlp.pipe` interface of this benchmark: spaCy's English tokens in, entity counts out.

    Words are counted from the same tokenizer as for the spaCy pipelines, so words/s compare one to one."""

    def __init__(self, model: str, trained: Optional[str]) -> None:
        import spacy
        from span_marker import SpanMarkerModel

        self.tokenizer = spacy.blank("en").tokenizer
        if trained:
            self.model = SpanMarkerModel.from_pretrained(trained)
        else:
            labels = ["O"] + [f"{prefix}-{label}" for label in LABELS for prefix in "BI"]
            self.model = SpanMarkerModel.from_pretrained(model, labels=labels, model_max_length=256)
        self.model.eval()

    def pipe(self, texts: List[str], batch_size: int):
        from types import SimpleNamespace

        for start in range(0, len(texts), batch_size):
            words = [[t.text for t in self.tokenizer(text)] for text in texts[start : start + batch_size]]
            keep = [w for w in words if w]
            preds = iter(self.model.predict(keep, batch_size=batch_size) if keep else [])
            for w in words:
                ents = next(preds) if w else []
                yield SimpleNamespace(n_words=len(w), ents=ents)


def worker(args: argparse.Namespace) -> Dict:
    """Measure one pipeline in this process; RETURNS the result row (printed as JSON by the caller)."""
    import torch

    torch.set_num_threads(args.threads)
    texts = load_texts(args.data, args.n_sents)
    trained = dict(t.split("=", 1) for t in args.trained)
    t0 = time.perf_counter()
    if args.worker == "span_marker":
        nlp = SpanMarkerPipe(args.model, trained.get("span_marker"))
    else:
        nlp = build_pipeline(args.worker, args.model, trained, args.window, args.stride)
    load_s = time.perf_counter() - t0
    rss_loaded = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    list(nlp.pipe(texts[: args.batch_size], batch_size=args.batch_size))  # warm-up, not timed
    reset_peak_rss()
    t0 = time.perf_counter()
    n_words = n_ents = 0
    for doc in nlp.pipe(texts, batch_size=args.batch_size):
        n_words += doc.n_words if hasattr(doc, "n_words") else len(doc)
        n_ents += len(doc.ents)
    wall = time.perf_counter() - t0
    row = {"pipeline": args.worker, "texts": len(texts), "words": n_words, "entities_predicted": n_ents,
           "wall_s": round(wall, 3), "words_per_s": round(n_words / wall, 1), "load_s": round(load_s, 2),
           "rss_after_load_mb": round(rss_loaded, 1),
           "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
           "peak_rss_during_pipe_mb": peak_rss_since_reset(), "trained": args.worker in trained}
    if args.long_doc_words and args.worker == "spanbert_ner":
        row.update(long_doc_check(nlp, texts, args.long_doc_words))
    return row


def reset_peak_rss() -> None:
    """Free what loading left behind and reset the kernel's high-water mark (Linux), so the pipe's peak is measured
    apart from the load's (deserialising a pipeline briefly holds several copies of the weights)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss_since_reset() -> Optional[float]:
    """VmHWM in MB (the peak since `reset_peak_rss`), or None where /proc is unavailable."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def long_doc_check(nlp, texts: List[str], n_words: int) -> Dict:
    """One document of `n_words` words: every token must get a transformer vector (no silent truncation)."""
    words: List[str] = []
    while len(words) < n_words:
        words.extend(" ".join(texts).split())
    from spacy.tokens import Doc

    doc = Doc(nlp.vocab, words=words[:n_words])
    t0 = time.perf_counter()
    doc = nlp(doc)
    wall = time.perf_counter() - t0
    vectors = nlp.get_pipe("spanbert_ner").model.get_ref("tok2vec").predict([doc])[0]
    covered = int((abs(nlp.get_pipe("spanbert_ner").model.ops.to_numpy(vectors)).sum(axis=1) > 0).sum())
    return {"long_doc_words": len(doc), "long_doc_tokens_with_vectors": covered, "long_doc_wall_s": round(wall, 2),
            "long_doc_entities": len(doc.ents),
            "peak_rss_mb_with_long_doc": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def to_markdown(result: Dict) -> str:
    """The results table, speeds relative to the bare transformer, and where and with what it was measured."""
    rows = [r for r in result["results"] if "words_per_s" in r]
    ceiling = next((r["words_per_s"] for r in rows if r["pipeline"] == "trf_only"), None)
    lines = [
        f"Inference speed, `nlp.pipe` batch {result['batch_size']}, {result['threads']} thread(s), "
        f"{result['texts']} texts ({result['unit']}s) from `{result['data']}`, encoder `{result['model']}`.",
        f"Total wall {result['total_wall_s']} s. {machine_line(result['machine'])}",
        "",
        "| pipeline | words/s | vs bare transformer | peak RSS in pipe (MB) | peak RSS incl. load (MB) | wall (s) | trained |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        rel = f"{r['words_per_s'] / ceiling:.2f}x" if ceiling else "-"
        in_pipe = r.get("peak_rss_during_pipe_mb")
        lines.append(f"| {r['pipeline']} | {r['words_per_s']:,.0f} | {rel} | {in_pipe or '-'} | "
                     f"{r['peak_rss_mb']:,.0f} | {r['wall_s']} | {r['trained']} |")
    lines.append("\nRows: `spanbert_ner` = configs/ner.cfg's SpanBERT transformer + spanbert_ner; `trf_ner` = "
                 "spacy-transformers' TransformerModel.v3 + `ner`; `trf_only` = the bare SpanBERT transformer (the "
                 "ceiling for any head on it); `trf_only_stock` = the bare TransformerModel.v3 (what length-sorted "
                 "inference adds, less what case types cost at tokenization); "
                 "`cnn_ner` = spaCy's CNN tok2vec + ner; `span_marker` = span-marker on the same encoder.")
    speed = {r["pipeline"]: r["words_per_s"] for r in rows}
    if "spanbert_ner" in speed:
        ratios = [f"{speed['spanbert_ner'] / speed[other]:.2f}x {other}" for other in PIPELINES[1:] if other in speed]
        lines.append(f"\nspanbert_ner words/s relative to the others: {', '.join(ratios)}.")
    for r in result["results"]:
        if "skipped" in r:
            lines.append(f"\n{r['pipeline']}: skipped ({r['skipped']})")
        if "long_doc_words" in r:
            lines.append(f"\nLong document: {r['long_doc_words']:,} words, {r['long_doc_tokens_with_vectors']:,} "
                         f"tokens with transformer vectors, {r['long_doc_wall_s']} s, peak RSS "
                         f"{r['peak_rss_mb_with_long_doc']:,.0f} MB.")
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True,
                        help=".spacy (DocBin) or .txt (one text per line) of English text")
    parser.add_argument("--model", default="all-MiniLM-L6-v2", help="encoder directory or short name")
    parser.add_argument("--n-sents", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--window", type=int, default=128)
    parser.add_argument("--stride", type=int, default=96)
    parser.add_argument("--pipelines", nargs="+", default=PIPELINES, choices=PIPELINES)
    parser.add_argument("--trained", nargs="*", default=[], help="NAME=DIR: load a trained pipeline for NAME")
    parser.add_argument("--long-doc-words", type=int, default=0, help="also run one doc of this many words")
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR)
    parser.add_argument("--worker", choices=PIPELINES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print("RESULT " + json.dumps(worker(args)))
        return
    start = time.perf_counter()
    texts = load_texts(args.data, args.n_sents)  # fail early on bad --data
    results = []
    for name in args.pipelines:
        if name == "span_marker" and importlib.util.find_spec("span_marker") is None:
            row = {"pipeline": name, "skipped": "span_marker is not importable: run bash bench/setup_span_marker.sh, "
                                                "then this script with .venv-span-marker/bin/python"}
        else:
            cmd = [sys.executable, __file__, "--worker", name, "--model", args.model, "--n-sents", str(args.n_sents),
                   "--batch-size", str(args.batch_size), "--threads", str(args.threads), "--window", str(args.window),
                   "--stride", str(args.stride), "--long-doc-words", str(args.long_doc_words), "--data",
                   str(args.data), "--trained", *args.trained]
            done = run_logged(cmd, env=thread_env(args.threads), prefix=f"[{name}] ")
            lines = [line for line in done.tail.splitlines() if line.startswith("RESULT ")]
            row = (json.loads(lines[-1][len("RESULT "):]) if done.ok and lines else
                   {"pipeline": name, "skipped": f"worker failed: {short_error(done.tail)}"})
        results.append(row)
        print(json.dumps(row), flush=True)
    result = {"machine": machine_info(threads=args.threads), "threads": args.threads, "batch_size": args.batch_size,
              "unit": "sentence", "texts": len(texts), "data": str(args.data), "model": args.model, "results": results,
              "total_wall_s": round(time.perf_counter() - start, 1)}
    write_json(args.output_dir / "inference_speed.json", result)
    write_text(args.output_dir / "inference_speed.md", to_markdown(result))
    print(to_markdown(result))


if __name__ == "__main__":
    main()
