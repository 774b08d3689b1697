"""CoNLL-2003 test accuracy of spanbert_ner against the alternatives, on the same backbone and training budget.

Why: issue 5 asks for numbers anyone can rerun showing that the span-boundary head is at least as accurate as
spacy-transformers' transition-based `ner` (same MiniLM encoder, same steps, batches, schedule and strided windows),
span-marker (same encoder) and spaCy's CNN pipeline (the floor). Every run is a subprocess driven through the CLI, so
a failed system is recorded with its error and the others still run.

    python bench/accuracy.py --quick --encoder DIR           # minutes: plumbing check on a few dozen docs
    python bench/accuracy.py --seeds 1 2 3 --gpu-id 0        # the real benchmark
"""
import argparse
import importlib.util
import json
import math
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

if __package__ in (None, ""):  # run as `python bench/NAME.py`: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    ROOT, fmt_duration, fmt_stat, machine_info, machine_line, markdown_table, run_cli,
    reused_note, run_logged, shown, thread_env, write_json,
)
from bench.ner_runs import (  # noqa: E402
    failed_record, ner_scores, prepare_corpus, resolve_encoder, set_budget, summarize_runs, train_and_evaluate,
    warmup_overrides,
)
from bench.report import publish  # noqa: E402

BENCH = Path(__file__).resolve().parent
SYSTEMS: Dict[str, Dict[str, Any]] = {
    "spanbert_ner": {"config": ROOT / "configs" / "ner.cfg", "label": "spanbert_ner (ours)", "encoder": True},
    # ours in mixed precision on a GPU: the transformer's and the span scorer's autocast (no-op on a CPU)
    "spanbert_ner_amp": {"config": ROOT / "configs" / "ner.cfg", "label": "spanbert_ner, mixed precision",
                         "encoder": True, "overrides": ["--components.transformer.model.mixed_precision", "true",
                                                        "--components.spanbert_ner.model.mixed_precision", "true"]},
    "trf_ner": {"config": BENCH / "configs" / "trf_ner.cfg", "label": "spacy-transformers + ner", "encoder": True},
    "span_marker": {"config": None, "label": "SpanMarker", "encoder": True},
    "cnn_ner": {"config": BENCH / "configs" / "cnn_ner.cfg", "label": "spaCy CNN tok2vec + ner", "encoder": False},
}


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus-dir", type=Path, default=ROOT / "corpus", help="holds train/dev/test .spacy")
    p.add_argument("--encoder", default=None, help="HF encoder dir or name (default: the MiniLM-L6 package)")
    p.add_argument("--systems", nargs="+", choices=list(SYSTEMS), default=list(SYSTEMS))
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="default 1 2 3 (quick: 1)")
    p.add_argument("--max-steps", type=int, default=None, help="steps per run (default: configs/ner.cfg's; quick 12)")
    p.add_argument("--eval-frequency", type=int, default=None, help="dev evaluation every N steps")
    p.add_argument("--warmup-steps", type=int, default=None,
                   help="learning-rate warmup of every system (default: each config's own; quick: a fifth of steps)")
    p.add_argument("--gpu-id", type=int, default=-1)
    p.add_argument("--threads", type=int, default=None, help="pin OMP/MKL threads of every run")
    p.add_argument("--reuse", action="store_true", help="take finished runs of the same inputs (config and corpus "
                   "contents, budget, seed, overrides, encoder files) from --work-dir; span_marker always runs")
    p.add_argument("--quick", action="store_true", help="a few dozen docs, a handful of steps: a sanity check")
    p.add_argument("--work-dir", type=Path, default=None, help="models and logs (default bench/work/accuracy[-quick])")
    p.add_argument("--output", type=Path, default=None, help="JSON (default bench/results/accuracy[-quick].json)")
    p.add_argument("--span-marker-job", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    suffix = "-quick" if args.quick else ""
    args.seeds = args.seeds or ([1] if args.quick else [1, 2, 3])
    set_budget(args)
    args.work_dir = (args.work_dir or BENCH / "work" / f"accuracy{suffix}").resolve()
    args.output = args.output or BENCH / "results" / f"accuracy{suffix}.json"
    return args


def run_system(name: str, args: argparse.Namespace, corpus: Dict[str, Path], encoder: str,
               on_run: Optional[Callable[[Dict[str, Any]], None]] = None) -> Dict[str, Any]:
    """All seeds of one system; never raises for a failed run, the failure is recorded in the result.

    on_run: called with the result so far after every seed (to publish a long run as it goes)."""
    spec = SYSTEMS[name]
    result: Dict[str, Any] = {"label": spec["label"], "status": "ok", "runs": [],
                              "overrides": spec.get("overrides", [])}
    if name == "span_marker" and importlib.util.find_spec("span_marker") is None:
        result.update(status="not run", reason="span-marker not installed (to include it: bash "
                      "bench/setup_span_marker.sh, then run this script with .venv-span-marker/bin/python)")
        return result
    if spec["config"] is not None:
        result["config"] = str(Path(spec["config"]).relative_to(ROOT))
        if not Path(spec["config"]).exists():
            result.update(status="failed", reason=f"{result['config']} not found")
            return result
    env = thread_env(args.threads)
    for seed in args.seeds:
        run_dir = args.work_dir / name / f"seed{seed}"
        label = f"{name} seed {seed}"
        if name == "span_marker":
            run = run_span_marker(args, corpus, encoder, seed, run_dir, env)
        else:
            run = train_and_evaluate(
                spec["config"], run_dir, corpus, seed=seed, max_steps=args.max_steps,
                eval_frequency=args.eval_frequency, gpu_id=args.gpu_id, reuse=args.reuse,
                init_model=encoder if spec["encoder"] else None, env=env, label=label,
                overrides=[*result["overrides"], *warmup_overrides(args)],
            )
        result["runs"].append(run)
        result["summary"] = summarize_runs(result["runs"])
        if result["summary"]["n_ok"] == 0:
            result.update(status="failed", reason=result["runs"][0].get("error", "no successful run"))
        else:
            result["status"] = "partial" if result["summary"]["n_failed"] else "ok"
        if on_run is not None:
            on_run(result)
    return result


def span_marker_budget(args: argparse.Namespace) -> Dict[str, Any]:
    """span-marker has no spaCy config: it gets configs/ner.cfg's words per batch, peak learning rate and warmup (or
    --warmup-steps), for the HF Trainer that span-marker uses."""
    from spacy.util import load_config

    training = load_config(ROOT / "configs" / "ner.cfg", interpolate=False)["training"]
    lr = training["optimizer"]["learn_rate"]
    return {"batch_words": int(training["batcher"]["size"]), "learning_rate": float(lr["initial_rate"]),
            "warmup_steps": int(lr["warmup_steps"]) if args.warmup_steps is None else args.warmup_steps,
            "model_max_length": 256}


def run_span_marker(args, corpus, encoder, seed, run_dir, env) -> Dict[str, Any]:
    """Train + evaluate span-marker in a child process (this script with --span-marker-job)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    job = {
        "encoder": encoder, "seed": seed, "max_steps": args.max_steps, "gpu_id": args.gpu_id,
        "run_dir": str(run_dir), **{k: str(v) for k, v in corpus.items()}, **span_marker_budget(args),
    }
    job_path = run_dir / "job.json"
    write_json(job_path, job)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--span-marker-job", str(job_path)]
    done = run_logged(cmd, run_dir / "train.log", env=env, prefix=f"[span_marker seed {seed}] ")
    record: Dict[str, Any] = {"seed": seed, "status": "ok", "command": " ".join(cmd), "train_wall_s": done.wall_s}
    metrics_path = run_dir / "metrics.json"
    if not done.ok or not metrics_path.exists():
        return failed_record(record, "train", done)
    metrics = json.loads(metrics_path.read_text())
    record.update(ner_scores(metrics), train_wall_s=metrics.get("train_wall_s", done.wall_s))
    return record


def span_marker_job(job_path: Path) -> None:
    """Child process: fine-tune SpanMarker on CoNLL sentences, predict test, score with spaCy's NER scorer."""
    import torch
    from datasets import Dataset
    from span_marker import SpanMarkerModel, Trainer
    from spacy.scorer import get_ner_prf
    from spacy.tokens import Doc, DocBin, Span
    from spacy.training import Example
    from spacy.util import filter_spans
    from spacy.vocab import Vocab
    from transformers import TrainingArguments

    job = json.loads(Path(job_path).read_text())
    vocab = Vocab()

    def sentences(doc) -> List:
        """Sentence spans without their trailing whitespace tokens: the line break `convert_conll.py --line-breaks
        true` ends each sentence with has no wordpieces, so SpanMarker must not count it as a word."""
        if not doc.has_annotation("SENT_START"):
            return [doc[i : i + 100] for i in range(0, len(doc), 100)]
        trimmed = []
        for sent in doc.sents:
            end = sent.end
            while end > sent.start and doc[end - 1].is_space:
                end -= 1
            if end > sent.start:
                trimmed.append(doc[sent.start : end])
        return trimmed

    train_docs = list(DocBin().from_disk(job["train"]).get_docs(vocab))
    types = sorted({e.label_ for d in train_docs for e in d.ents})
    tags = ["O"] + [f"{p}-{t}" for t in types for p in "BI"]
    tokens, ner_tags = [], []
    for doc in train_docs:
        for sent in sentences(doc):
            tokens.append([t.text for t in sent])
            ner_tags.append([tags.index(f"{t.ent_iob_}-{t.ent_type_}") if t.ent_iob_ in "BI" else 0 for t in sent])
    words_per_sent = sum(map(len, tokens)) / max(1, len(tokens))
    batch = max(1, round(job["batch_words"] / words_per_sent))
    per_device = min(batch, 16)
    torch.manual_seed(job["seed"])
    model = SpanMarkerModel.from_pretrained(job["encoder"], labels=tags, model_max_length=job["model_max_length"])
    hf_args = TrainingArguments(
        output_dir=str(Path(job["run_dir"]) / "hf"), max_steps=job["max_steps"], learning_rate=job["learning_rate"],
        warmup_steps=job["warmup_steps"], lr_scheduler_type="linear", per_device_train_batch_size=per_device,
        gradient_accumulation_steps=math.ceil(batch / per_device), weight_decay=0.01, max_grad_norm=1.0,
        seed=job["seed"], save_strategy="no", eval_strategy="no", report_to=[], logging_steps=10,
        use_cpu=job["gpu_id"] < 0,
    )
    start = time.perf_counter()
    Trainer(model=model, args=hf_args, train_dataset=Dataset.from_dict({"tokens": tokens, "ner_tags": ner_tags})).train()
    train_wall = time.perf_counter() - start
    examples, n_words, start = [], 0, time.perf_counter()
    for gold in DocBin().from_disk(job["test"]).get_docs(vocab):
        sents = sentences(gold)
        # a list of token lists gets one list of entities per sentence back, a single sentence included
        preds = model.predict([[t.text for t in s] for s in sents], batch_size=32) if sents else []
        pred = Doc(vocab, words=[t.text for t in gold], spaces=[bool(t.whitespace_) for t in gold])
        spans = [
            Span(pred, s.start + e["word_start_index"], s.start + e["word_end_index"], label=e["label"])
            for s, ents in zip(sents, preds) for e in ents
        ]
        pred.ents = filter_spans(spans)
        examples.append(Example(pred, gold))
        n_words += len(gold)
    scores = get_ner_prf(examples)
    scores.update(speed=n_words / max(1e-9, time.perf_counter() - start), train_wall_s=round(train_wall, 2))
    write_json(Path(job["run_dir"]) / "metrics.json", scores)


def render_markdown(result: Dict[str, Any]) -> str:
    """The results table: mean ± sample std over seeds (in %), per-type F, training time per run."""
    types = sorted({t for s in result["systems"].values() for t in s.get("summary", {}).get("per_type_f", {})})
    rows = []
    for name, sys_res in result["systems"].items():
        summ = sys_res.get("summary") or {}
        if sys_res["status"] in ("ok", "partial"):
            status = "ok" if sys_res["status"] == "ok" else f"{summ['n_failed']} seed(s) failed"
        else:
            status = f"{sys_res['status']}: {sys_res.get('reason', '')}"
        rows.append([
            sys_res["label"], fmt_stat(summ.get("p")), fmt_stat(summ.get("r")), fmt_stat(summ.get("f")),
            *[fmt_stat(summ.get("per_type_f", {}).get(t)) for t in types],
            fmt_duration((summ.get("train_wall_s") or {}).get("mean")), summ.get("n_ok", 0), status,
        ])
    s = result["settings"]
    table = markdown_table(["system", "P", "R", "F", *[f"F {t}" for t in types], "train time", "seeds", "status"], rows)
    title = f"CoNLL-2003 test accuracy, {s['max_steps']} training steps"
    title += " (QUICK sanity run: tiny subset, not a result)" if s["quick"] else ""
    title += "" if result.get("finished", True) else " (in progress: seeds and systems not listed have not run yet)"
    return "\n".join([
        f"### {title}", "",
        f"Encoder `{'/'.join(Path(s['encoder']).parts[-2:])}`; {s['max_steps']} training steps per run"
        f"{'' if s.get('warmup_steps') is None else ', warmup ' + str(s['warmup_steps']) + ' steps for every system'}; "
        f"seeds {s['seeds']}; "
        f"corpus `{Path(s['corpus_dir']).name}`{' (first docs only)' if s['quick'] else ''}. "
        "Scores in %, mean ± sample standard deviation over seeds; train time is the mean wall time of one run.",
        "", table, "",
        f"Total wall time {fmt_duration(result['wall_s'])}"
        f"{reused_note(sum(bool(r.get('reused')) for sy in result['systems'].values() for r in sy.get('runs', [])))}. "
        f"{machine_line(result['machine'])}",
        f"Rerun: `{shown(result['command'])}`",
    ])


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    if args.span_marker_job:
        span_marker_job(args.span_marker_job)
        return {}
    started = time.perf_counter()
    encoder = resolve_encoder(args.encoder) if any(SYSTEMS[s]["encoder"] for s in args.systems) else ""
    corpus = prepare_corpus(args)
    result: Dict[str, Any] = {
        "benchmark": "accuracy",
        "command": "python bench/accuracy.py " + shlex.join(sys.argv[1:] if argv is None else argv),
        "settings": {
            "quick": args.quick, "encoder": encoder, "corpus_dir": str(args.corpus_dir), "seeds": args.seeds,
            "max_steps": args.max_steps, "eval_frequency": args.eval_frequency, "warmup_steps": args.warmup_steps,
            "gpu_id": args.gpu_id,
            "corpus": {k: str(v) for k, v in corpus.items()},
        },
        "machine": machine_info(args.gpu_id, args.threads),
        "systems": {},
    }

    def progress(name: str, system: Dict[str, Any], finished: bool = False) -> None:
        """Publish after every seed, so an interrupted long run keeps what it finished."""
        result["systems"][name] = system
        result.update(wall_s=round(time.perf_counter() - started, 1), finished=finished)
        publish(result, args.output, render_markdown(result))

    for i, name in enumerate(args.systems, 1):
        system = run_system(name, args, corpus, encoder, on_run=lambda partial, name=name: progress(name, partial))
        progress(name, system, finished=i == len(args.systems))
    return result


if __name__ == "__main__":
    run_cli(main)
