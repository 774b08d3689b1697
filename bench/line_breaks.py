"""Line breaks as segment boundaries: CoNLL-2003 test F of trained `spanbert_ner` pipelines, three ways.

Why: CoNLL gives its sentences (headlines, bylines and datelines among them) as input, but spaCy's corpus readers
drop `doc.sents` on the way to the pipeline, so candidate spans could run from one sentence into the next.
`convert_conll.py --line-breaks true` keeps one sentence per line of text, and `sentence_ngram_suggester.v2`
(`within_lines = true`) keeps candidates inside a line. This measures what each part is worth on pipelines that
were trained without either (the table names each one's suggester), so the only change is at test time:

- as trained: the test split without line breaks, the pipeline's own suggester (v1);
- line-break text: the test split with line breaks, the pipeline's own suggester (the breaks are whitespace tokens);
- + within_lines: the same text, the suggester swapped for v2 with `within_lines = true`.

Each pipeline runs over `spacy.training.Corpus` and is scored by spaCy's `Scorer`, as `spacy evaluate` does.

Usage (repository root; the pipelines come from bench/run_cpu.sh's accuracy runs, or any spanbert_ner pipeline):

    python bench/line_breaks.py --models bench/work/accuracy_lr_2e4/spanbert_ner_cpu_bf16/seed{1,2,3}/model/model-best \
        bench/work/accuracy_averages/spanbert_ner_cpu_bf16/seed{1,2,3}/model/model-best
"""
import argparse
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

if __package__ in (None, ""):  # run by path: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (RESULTS_DIR, ROOT, fmt_duration, machine_info, machine_line, markdown_table, run_cli,
                          shown, summarize, write_json, write_text)

WORK = ROOT / "bench" / "work" / "line_breaks"
CONDITIONS = ("as_trained", "line_text", "within_lines")
TITLES = {"as_trained": "as trained", "line_text": "line-break text", "within_lines": "+ within_lines"}


def convert_test(conll: Path, work_dir: Path, max_sents_per_doc: int) -> Dict[str, Path]:
    """The test split twice, with and without line breaks, converted by the workflow's own script."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from convert_conll import convert

    paths = {"plain": work_dir / "test.spacy", "lines": work_dir / "test_lines.spacy"}
    convert(conll, paths["plain"], max_sents_per_doc=max_sents_per_doc)
    convert(conll, paths["lines"], max_sents_per_doc=max_sents_per_doc, line_breaks=True)
    return paths


def score(nlp: Any, corpus: Path) -> Dict[str, Any]:
    """P/R/F, and how many predicted entities run over one of the corpus's sentence boundaries (with examples)."""
    from spacy.scorer import Scorer
    from spacy.training import Corpus, Example

    examples = list(Corpus(str(corpus))(nlp))
    # what nlp.evaluate does, keeping the annotated Docs (evaluate scores copies)
    docs = nlp.pipe(eg.predicted for eg in examples)
    examples = [Example(doc, eg.reference) for doc, eg in zip(docs, examples)]
    scores = Scorer(nlp).score(examples)
    crossing = []
    for eg in examples:
        starts = {token.i for token in eg.reference if token.is_sent_start}
        for ent in eg.predicted.ents:  # the corpus keeps CoNLL's tokens, so indices match the reference's
            if any(i in starts for i in range(ent.start + 1, ent.end)):
                crossing.append(f"{ent.text} ({ent.label_})".replace("\n", " / "))
    return {"p": scores["ents_p"], "r": scores["ents_r"], "f": scores["ents_f"], "crossing": len(crossing),
            "crossing_examples": crossing}


def evaluate_model(model: Path, corpora: Dict[str, Path]) -> Dict[str, Any]:
    import spacy

    from spacy_spanbert.models.suggesters import build_sentence_ngram_suggester_v2

    nlp = spacy.load(model)
    pipe = nlp.get_pipe("spanbert_ner")
    row: Dict[str, Any] = {"model": shown(str(model)), "suggester": nlp.config["components"]["spanbert_ner"]
                           ["suggester"]["@misc"]}
    row["as_trained"] = score(nlp, corpora["plain"])
    row["line_text"] = score(nlp, corpora["lines"])
    pipe.suggester = build_sentence_ngram_suggester_v2(pipe.suggester.max_width, within_lines=True)
    row["within_lines"] = score(nlp, corpora["lines"])
    return row


def to_markdown(result: Dict[str, Any]) -> str:
    rows = [[r["model"], r["suggester"].replace("spacy-spanbert.", ""), *(f"{r[c]['f'] * 100:.2f}" for c in CONDITIONS),
             f"{(r['within_lines']['f'] - r['as_trained']['f']) * 100:+.2f}",
             f"{r['as_trained']['crossing']} → {r['within_lines']['crossing']}"] for r in result["rows"]]
    stats = {c: summarize([r[c]["f"] for r in result["rows"]]) for c in CONDITIONS}
    gains = summarize([r["within_lines"]["f"] - r["as_trained"]["f"] for r in result["rows"]])
    if len(result["rows"]) > 1 and gains:
        means = [f"{stats[c]['mean'] * 100:.2f} ± {stats[c]['std'] * 100:.2f}" for c in CONDITIONS]
        rows.append(["**mean ± std**", "", *means, f"{gains['mean'] * 100:+.2f} ± {gains['std'] * 100:.2f}", ""])
    suggesters = {r["suggester"] for r in result["rows"]}
    trained = ("pipelines trained without them" if suggesters == {"spacy-spanbert.sentence_ngram_suggester.v1"}
               else "pipelines as trained")
    lines = [
        f"### Line breaks as segment boundaries (CoNLL-2003 test F, {trained})", "",
        f"Test split `{result['conll']}` in chunks of {result['max_sents_per_doc']} sentences. Columns: the split "
        "without line breaks and the pipeline's own suggester; the split with one sentence per line, same "
        "suggester; the same text with `sentence_ngram_suggester.v2` (`within_lines = true`). F in %.", "",
        markdown_table(["pipeline", "trained with", *(TITLES[c] for c in CONDITIONS), "within_lines − as trained",
                        "entities across a sentence boundary"], rows), "",
    ]
    if gains:
        lines += [f"**`within_lines` on line-break text changes test F by {gains['mean'] * 100:+.2f} on average "
                  f"({gains['min'] * 100:+.2f} to {gains['max'] * 100:+.2f}) over {gains['n']} pipeline(s), with "
                  "no retraining.**", "",
                  "Entities the first pipeline wrote across one of CoNLL's sentence boundaries, as trained: "
                  + "; ".join(result["rows"][0]["as_trained"]["crossing_examples"][:12]) + ". Some are lines glued "
                  "together, some are names the corpus splits over two sentences and annotates as two entities: on "
                  "CoNLL both count as errors.", ""]
    lines += [f"Total wall time {fmt_duration(result['wall_s'])}. {machine_line(result['machine'])}",
              f"Rerun: `{result['command']}`"]
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", type=Path, nargs="+", required=True, help="trained spanbert_ner pipelines")
    parser.add_argument("--conll", type=Path, default=ROOT / "assets" / "conll2003" / "test.txt")
    parser.add_argument("--max-sents-per-doc", type=int, default=10, help="as the workflow's convert step")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work-dir", type=Path, default=WORK)
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "line_breaks.json")
    args = parser.parse_args(argv)
    if not args.conll.is_file():
        raise FileNotFoundError(f"{args.conll}: CoNLL test file not found; run `spacy project run fetch` or pass "
                                "--conll FILE")
    missing = [str(m) for m in args.models if not (m / "config.cfg").is_file()]
    if missing:
        raise FileNotFoundError(f"no trained pipeline at {', '.join(missing)}: pass spanbert_ner pipeline directories")
    import torch

    torch.set_num_threads(args.threads)
    started = time.time()
    corpora = convert_test(args.conll, args.work_dir, args.max_sents_per_doc)
    rows = []
    for model in args.models:
        rows.append(evaluate_model(model, corpora))
        print(f"{shown(str(model))}: " + ", ".join(f"{TITLES[c]} {rows[-1][c]['f'] * 100:.2f}" for c in CONDITIONS),
              flush=True)
    command = shlex.join(["python", "bench/line_breaks.py", *(shown(a) for a in (argv or sys.argv[1:]))])
    result = {"machine": machine_info(threads=args.threads), "conll": shown(str(args.conll)),
              "max_sents_per_doc": args.max_sents_per_doc, "rows": rows, "wall_s": round(time.time() - started, 1),
              "command": command}
    write_json(args.output, result)
    write_text(args.output.with_suffix(".md"), to_markdown(result))
    print(to_markdown(result))


if __name__ == "__main__":
    run_cli(main)
