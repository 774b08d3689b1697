"""Calibration of the entity scores on CoNLL-2003 test: ECE and reliability diagrams before and after calibration
(ner: temperature; spancat: per-label Platt scaling), and precision / recall / F at confidence thresholds 0.1 to
0.9, for spanbert_ner and spanbert_spancat.

Why: a user who sets `threshold` at load time (a precision-first app) needs to know what a score of 0.8 means.
"Before" is the trained pipeline's raw scores (temperature 1, bias 0), "after" the temperature and calibration_bias
`spacy spanbert-calibrate` fitted on dev data and saved in the pipeline; both come from ONE pass over the test set
(the same logits). A scalar temperature leaves spanbert_ner's entities unchanged, so its F is the same before and
after; spancat's threshold cuts calibrated scores, so which pairs it writes changes.

The commands behind bench/results/calibration.* (a 2-core CPU, no GPU), as run before the workflow converted with
`--line-breaks true` (add it to each convert_conll.py line for the workflow's corpus of today):

    python scripts/fetch_assets.py assets --only conll2003 minilm
    python scripts/convert_conll.py assets/conll2003/train.txt corpus/train.spacy --max-sents-per-doc 10
    python scripts/convert_conll.py assets/conll2003/valid.txt corpus/dev.spacy --n-docs 60 --max-sents-per-doc 10
    python scripts/convert_conll.py assets/conll2003/valid.txt corpus/dev_full.spacy --max-sents-per-doc 10
    python scripts/convert_conll.py assets/conll2003/test.txt corpus/test.spacy --max-sents-per-doc 10
    # nested spans for spancat: entities + their sub-spans that are names in train (see `derive_nested` below)
    python bench/calibration.py --nested corpus/train.spacy corpus/dev.spacy corpus/dev_full.spacy corpus/test.spacy \
        --out-dir corpus/nested
    OMP_NUM_THREADS=1 python -m spacy train configs/ner.cfg --output bench/work/calibration/ner \
        --paths.train corpus/train.spacy --paths.dev corpus/dev.spacy --paths.init_model assets/all-MiniLM-L6-v2 \
        --training.max_steps 300 --training.eval_frequency 150 --training.optimizer.learn_rate.warmup_steps 100 \
        --system.seed 1
    OMP_NUM_THREADS=2 python -m spacy train configs/spancat.cfg --output bench/work/calibration500/spancat \
        --paths.train corpus/nested/train.spacy --paths.dev corpus/nested/dev.spacy \
        --paths.init_model assets/all-MiniLM-L6-v2 --training.max_steps 500 \
        --training.optimizer.learn_rate.total_steps 500 --training.eval_frequency 125 \
        --training.optimizer.learn_rate.warmup_steps 100 --system.seed 1
    OMP_NUM_THREADS=1 python -m spacy spanbert-calibrate bench/work/calibration/ner/model-best \
        corpus/dev_full.spacy bench/work/calibration/ner/calibrated
    OMP_NUM_THREADS=2 python -m spacy spanbert-calibrate bench/work/calibration500/spancat/model-best \
        corpus/nested/dev_full.spacy bench/work/calibration500/spancat/calibrated
    OMP_NUM_THREADS=2 python bench/calibration.py --threads 2 \
        --ner bench/work/calibration/ner/calibrated corpus/test.spacy \
        --spancat bench/work/calibration500/spancat/calibrated corpus/nested/test.spacy --note "..."
(the note recorded under the tables says what was trained; see bench/results/calibration.md)
"""
import argparse
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

if __package__ in (None, ""):  # run as `python bench/calibration.py`: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import RESULTS_DIR, machine_info, machine_line, markdown_table, shown, write_json, write_text  # noqa

THRESHOLDS = [round(0.1 * i, 1) for i in range(1, 10)]
N_BINS = 15
SYSTEMS = ("ner", "spancat")


def derive_nested(paths: Sequence[Path], out_dir: Path, min_count: int = 2, min_rate: float = 0.5) -> None:
    """Nested span data from CoNLL-2003 (flat) for spanbert_spancat: `<out_dir>/<name>.spacy` with doc.spans["sc"].

    Every entity stays a span; every proper sub-span of an entity whose text is a name in the TRAIN lexicon (the first
    path) is added with the label it most often has there. A name is in the lexicon when train has it as an entity at
    least `min_count` times and at least `min_rate` of its occurrences there ARE that entity ("England" of "Bank of
    England" gets in, "United" of "Manchester United" stays out); dev and test never read their own gold for it.
    """
    from spacy.tokens import DocBin, Span
    from spacy.vocab import Vocab

    loaded = [list(DocBin().from_disk(path).get_docs(Vocab())) for path in paths]
    counts: Dict[str, Counter] = defaultdict(Counter)
    for doc in loaded[0]:
        for ent in doc.ents:
            counts[ent.text][ent.label_] += 1
    longest = max((len(text.split()) for text in counts), default=0)
    seen: Counter = Counter()  # how often each entity text occurs in train at all
    for doc in loaded[0]:
        words = [t.text for t in doc]
        seen.update(text for i in range(len(words)) for j in range(i + 1, min(i + longest, len(words)) + 1)
                    if (text := " ".join(words[i:j])) in counts)
    lexicon = {text: c.most_common(1)[0][0] for text, c in counts.items()
               if sum(c.values()) >= max(min_count, min_rate * seen[text])}
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    for path, docs in zip(paths, loaded):
        out, n_nested = DocBin(attrs=["ORTH", "SENT_START", "ENT_IOB", "ENT_TYPE"], store_user_data=False), 0
        for doc in docs:
            found = {(e.start, e.end, e.label_) for e in doc.ents}
            for ent in doc.ents:  # its proper sub-spans that are names
                found |= {(i, j, lexicon[doc[i:j].text]) for i in range(ent.start, ent.end) for j in
                          range(i + 1, ent.end + 1) if (i, j) != (ent.start, ent.end) and doc[i:j].text in lexicon}
            doc.spans["sc"] = [Span(doc, i, j, label=label) for i, j, label in sorted(found)]
            n_nested += len(found) - len(doc.ents)
            out.add(doc)
        out.to_disk(Path(out_dir) / Path(path).name)
        print(f"{Path(out_dir) / Path(path).name}: {sum(len(d.ents) for d in docs)} entities + {n_nested} nested")


def prf(scores: Any, correct: Any, n_gold: int, threshold: float) -> Dict[str, float]:
    """Precision, recall and F of the outputs scoring >= threshold (recall over every gold span)."""
    kept = scores >= threshold
    tp = int(correct[kept].sum())
    p = tp / max(int(kept.sum()), 1)
    r = tp / max(n_gold, 1)
    return {"threshold": threshold, "p": p, "r": r, "f": 2 * p * r / (p + r) if p + r else 0.0, "n": int(kept.sum())}


def measure(model_dir: Path, test_path: Path, threads: Optional[int]) -> Dict[str, Any]:
    """One pass over the test set; ECE, reliability bins and threshold tables at temperature 1 and the fitted one."""
    import spacy
    import torch
    from spacy.training import Corpus

    from spacy_spanbert.pipeline.calibration import (
        collect, expected_calibration_error, reliability_bins, resolve_component, scored, scores_and_correctness,
    )

    if threads:
        torch.set_num_threads(threads)
    nlp = spacy.load(model_dir)
    pipe = resolve_component(nlp, None)
    temperature, bias = pipe.cfg.get("temperature", 1.0), pipe.cfg.get("calibration_bias", 0.0)
    examples = list(Corpus(test_path)(nlp))
    data = collect(nlp, pipe.name, examples)
    written = pipe.cfg.get("threshold") if pipe.normalize == "sigmoid" else None
    result: Dict[str, Any] = {"model": shown(str(model_dir)), "test": shown(str(test_path)), "component": pipe.name,
                              "labels": list(pipe.labels), "temperature": temperature, "calibration_bias": bias,
                              "n_gold": data.n_gold,
                              "calibration": nlp.meta.get("spanbert_calibration", {}).get(pipe.name)}
    for stage, t, b in (("before", 1.0, 0.0), ("after", temperature, bias)):
        scores, correct = scores_and_correctness(pipe, data, t, b)
        shown_scores = scored(pipe, scores)
        kept = scores >= written if written is not None else None
        result[stage] = {
            # spancat: every (span, label) pair that a threshold of 0.1 would write; ner: every written entity
            "ece": expected_calibration_error(scores[shown_scores], correct[shown_scores], N_BINS),
            "bins": reliability_bins(scores[shown_scores], correct[shown_scores], N_BINS),
            "n_scored": int(shown_scores.sum()),
            "ece_all_candidates": expected_calibration_error(scores, correct, N_BINS) if pipe.normalize == "sigmoid"
            else None,
            # spancat: the pairs it writes at its own threshold (what doc.spans[key].attrs["scores"] holds)
            "ece_written": expected_calibration_error(scores[kept], correct[kept], N_BINS)
            if kept is not None and kept.any() else None,
            "n_written": int(kept.sum()) if kept is not None else None,
            # ner: "none" = every written entity; spancat has no such row (threshold 0 would write every candidate)
            "thresholds": [prf(scores, correct, data.n_gold, th)
                           for th in ([0.0] if pipe.normalize == "softmax" else []) + THRESHOLDS],
        }
    # the offline tables above must agree with what the component itself writes: spaCy's scorer at its threshold
    scorer = nlp.evaluate(examples)
    key = "ents" if pipe.normalize == "softmax" else f"spans_{pipe.key}"
    result["scorer"] = {"threshold": pipe.cfg.get("threshold"), "p": scorer[f"{key}_p"], "r": scorer[f"{key}_r"],
                        "f": scorer[f"{key}_f"]}
    return result


def plot(result: Dict[str, Any], out_dir: Path) -> List[Path]:
    """calibration_reliability.png (one panel per system) and calibration_thresholds.png (P/R/F vs threshold)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    systems = [result["systems"][name] for name in SYSTEMS if name in result["systems"]]
    paths = [out_dir / "calibration_reliability.png", out_dir / "calibration_thresholds.png"]
    fig, axes = plt.subplots(1, len(systems), figsize=(5 * len(systems), 4.6), squeeze=False)
    for ax, entry in zip(axes[0], systems):
        ax.plot([0, 1], [0, 1], color="grey", lw=1, ls=":", label="perfect")
        for stage, style in (("before", "o--"), ("after", "s-")):
            bins = [b for b in entry[stage]["bins"] if b["count"]]
            ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], style,
                    label=f"{stage} (ECE {entry[stage]['ece']:.3f})")
        ax.set(title=f"{entry['component']}: reliability on CoNLL-2003 test", xlabel="score (bin mean)",
               ylabel="share correct")
    fig2, axes2 = plt.subplots(1, len(systems), figsize=(5 * len(systems), 4.2), squeeze=False)
    for ax, entry in zip(axes2[0], systems):
        for stage, style in (("before", "--"), ("after", "-")):
            rows = [row for row in entry[stage]["thresholds"] if row["threshold"] > 0]
            for metric, color in (("p", "C0"), ("r", "C1"), ("f", "C2")):
                ax.plot([row["threshold"] for row in rows], [100 * row[metric] for row in rows], style, color=color,
                        label=f"{metric.upper()} {stage}")
        ax.set(title=f"{entry['component']}: test P / R / F by threshold", xlabel="threshold", ylabel="%")
    for figure, axs, path in ((fig, axes, paths[0]), (fig2, axes2, paths[1])):
        for ax in axs[0]:
            ax.title.set_fontsize(9)
            ax.legend(fontsize=7, ncol=1 if figure is fig else 2)
            ax.grid(alpha=0.3)
        figure.tight_layout()
        figure.savefig(path, dpi=120)
    return paths


def render(result: Dict[str, Any]) -> str:
    """The Markdown section: ECE before/after, the threshold tables, the two figures."""
    lines = ["### Calibrated confidence: reliability and thresholds on CoNLL-2003 test", ""]
    rows = []
    for name in SYSTEMS:
        entry = result["systems"].get(name)
        if not entry:
            continue
        t, b = entry["temperature"], entry.get("calibration_bias", 0.0)
        if isinstance(t, float):
            shown_t = f"temperature {t:.3f}"
        else:  # per label: Platt's a = 1 / T and b
            b = [b] * len(t) if isinstance(b, float) else b
            shown_t = "Platt a, b: " + "; ".join(f"{label} {1 / x:.2f}, {y:+.2f}"
                                                 for label, x, y in zip(entry["labels"], t, b))
        what = "written entities" if name == "ner" else "(span, label) pairs scoring >= 0.1"
        rows.append([entry["component"], what, f"{entry['before']['ece']:.4f}", f"{entry['after']['ece']:.4f}",
                     shown_t, f"{entry['before']['n_scored']} / {entry['after']['n_scored']}"])
    lines += [markdown_table(["component", "scores measured", "ECE before", "ECE after", "calibration",
                              "n before / after"], rows), ""]
    spancat = result["systems"].get("spancat")
    if spancat and None not in (spancat["before"].get("ece_written"), spancat["after"].get("ece_written")):
        lines += [f"spancat's written spans alone (the pairs scoring >= its threshold "
                  f"{spancat['scorer']['threshold']}, what `doc.spans[key].attrs[\"scores\"]` holds): ECE "
                  f"{spancat['before']['ece_written']:.4f} before, {spancat['after']['ece_written']:.4f} after "
                  f"(n {spancat['before']['n_written']} / {spancat['after']['n_written']}).", ""]
    devs = sorted({(e.get("calibration") or {}).get("dev", "?") for e in result["systems"].values()})
    lines.append(f"ECE: {N_BINS} equal-width bins, weighted by count. Calibration fitted by `spacy "
                 f"spanbert-calibrate` on {', '.join(f'`{d}`' for d in devs)}, never on test: ner a scalar "
                 f"temperature, spancat per-label Platt scaling sigmoid(a * logit + b) on the dev pairs scoring "
                 f">= 0.01 (stored as temperature 1 / a and calibration_bias b).")
    for name in SYSTEMS:
        entry = result["systems"].get(name)
        if not entry:
            continue
        lines += ["", f"**{entry['component']}**, test P / R / F (%) when only scores >= threshold are written "
                      f"({entry['n_gold']} gold spans; `{entry['model']}` on `{entry['test']}`):", ""]
        table = []
        for before, after in zip(entry["before"]["thresholds"], entry["after"]["thresholds"]):
            label = "none" if before["threshold"] == 0 else f"{before['threshold']:.1f}"
            table.append([label] + [f"{100 * row[m]:.1f}" for row in (before, after) for m in ("p", "r", "f")])
        lines.append(markdown_table(["threshold", "P before", "R before", "F before", "P after", "R after",
                                     "F after"], table))
        scorer = entry["scorer"]
        lines += ["", f"spaCy's scorer on the calibrated pipeline (threshold {scorer['threshold']}): "
                      f"P {100 * scorer['p']:.1f}, R {100 * scorer['r']:.1f}, F {100 * scorer['f']:.1f}."]
    lines += ["", result["note"], "", machine_line(result["machine"]), f"Rerun: see the commands at the top of "
              f"`bench/calibration.py`.", "", "![reliability](bench/results/calibration_reliability.png)",
              "", "![thresholds](bench/results/calibration_thresholds.png)"]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ner", nargs=2, type=Path, metavar=("MODEL_DIR", "TEST_SPACY"))
    parser.add_argument("--spancat", nargs=2, type=Path, metavar=("MODEL_DIR", "TEST_SPACY"))
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--note", default="", help="what was trained, and how long (goes under the tables)")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "calibration.json")
    parser.add_argument("--nested", nargs="+", type=Path, metavar="SPACY",
                        help="instead: derive spancat's nested data from these (train first) into --out-dir")
    parser.add_argument("--out-dir", type=Path, default=Path("corpus/nested"))
    args = parser.parse_args(argv)
    if args.nested:
        missing = [str(p) for p in args.nested if not p.is_file()]
        if missing:
            parser.error(f"not found: {', '.join(missing)}; run `spacy project run convert` first")
        derive_nested(args.nested, args.out_dir)
        return 0
    jobs = {name: getattr(args, name) for name in SYSTEMS if getattr(args, name)}
    if not jobs:
        parser.error("pass --ner and/or --spancat MODEL_DIR TEST_SPACY")
    for model_dir, test_path in jobs.values():
        if not (model_dir / "config.cfg").is_file() or not test_path.is_file():
            parser.error(f"{model_dir} (a calibrated pipeline) or {test_path} (test .spacy) is missing; "
                         f"run the commands at the top of bench/calibration.py")
    result = {"systems": {name: measure(model, test, args.threads) for name, (model, test) in jobs.items()},
              "machine": machine_info(threads=args.threads), "note": args.note}
    write_json(args.output, result)
    write_text(args.output.with_suffix(".md"), render(result))
    for path in plot(result, args.output.parent):
        print(f"wrote {path}")
    print(f"wrote {args.output} and {args.output.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
