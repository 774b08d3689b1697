"""BBC News topic classification: spaCy's `textcat` on our SpanBERT transformer against spacy-transformers' stock
transformer + `textcat` and spaCy's CNN/bag-of-words ensemble, and ours again after `spacy spanbert-quantize`.

Why: the SpanBERT transformer is not only for span components; a reader choosing it for classification wants its
accuracy and speed beside the stock alternatives. Every system trains with `spacy train` in a subprocess on the same
split (scripts/convert_bbc.py), from the same encoder (MiniLM-L6; the CNN has none), for the same steps and words per
batch; the seeds are given on the command line. The test split is then predicted with `nlp.pipe(batch_size=32)` in
this process: accuracy, macro F and per-class F (spaCy's `Scorer.score_cats`) and words/s.

    python bench/textcat.py --seeds 1 --threads 2        # assets/news/bbc + assets/all-MiniLM-L6-v2 (fetch_assets.py)
    python bench/textcat.py --quick --bbc-dir DIR --encoder TINY_BERT   # plumbing check: 6 steps, 32-token windows
    # the pipelines an earlier run trained, scored, quantized and timed again, e.g. on an emulated AVX2 CPU:
    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 FBGEMM_ENABLE_INSTRUCTIONS=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 \
        python bench/textcat.py --reuse --seeds 1 2 3 --threads 2 --output bench/results/textcat_avx2.json
"""
import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

if __package__ in (None, ""):  # run as `python bench/NAME.py`: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    ROOT, fmt_duration, fmt_stat, machine_info, machine_line, markdown_table, rerun_command, run_cli, run_logged, shown,
    short_error, spacy_cmd, summarize, thread_env, write_results,
)
from bench.ner_runs import budget_overrides, resolve_encoder  # noqa: E402

sys.path.insert(0, str(ROOT / "scripts"))
from convert_bbc import convert  # noqa: E402

from spacy_spanbert.cpu import has_native_bf16  # noqa: E402

BENCH = Path(__file__).resolve().parent
SYSTEMS: Dict[str, Dict[str, Any]] = {
    "spanbert_textcat": {"config": ROOT / "configs" / "textcat.cfg", "label": "textcat on SpanBERT (ours)"},
    "trf_textcat": {"config": BENCH / "configs" / "trf_textcat.cfg", "label": "textcat on spacy-transformers"},
    "cnn_textcat": {"config": BENCH / "configs" / "cnn_textcat.cfg", "label": "spaCy CNN + bag-of-words ensemble"},
}
TRANSFORMERS = ("spanbert_textcat", "trf_textcat")
# --quick: 32-token windows, which fit a tiny test encoder's 128 positions
QUICK_WINDOW = ["--components.transformer.model.get_spans.window", "32",
                "--components.transformer.model.get_spans.stride", "24"]


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bbc-dir", type=Path, default=ROOT / "assets" / "news" / "bbc", help="<topic>/*.txt articles")
    p.add_argument("--encoder", default=None, help="HF encoder dir (default: the MiniLM-L6 asset or package)")
    p.add_argument("--systems", nargs="+", choices=list(SYSTEMS), default=list(SYSTEMS))
    p.add_argument("--seeds", nargs="+", type=int, default=[1], help="training seeds (the split's is --split-seed)")
    p.add_argument("--split-seed", type=int, default=0)
    p.add_argument("--max-steps", type=int, default=None, help="default: configs/textcat.cfg's (quick: 6)")
    p.add_argument("--eval-frequency", type=int, default=None, help="dev evaluation every N steps")
    p.add_argument("--batch-words", type=int, default=None, help="words per batch (default: the config's)")
    p.add_argument("--dev-docs", type=int, default=0, help="evaluate on the first N dev docs while training (0 = all)")
    p.add_argument("--threads", type=int, default=None, help="pin OMP/MKL/torch threads of every run")
    p.add_argument("--quick", action="store_true", help="a handful of steps and 32-token windows (a tiny encoder)")
    p.add_argument("--reuse", action="store_true",
                   help="score, quantize and time the pipelines an earlier run trained in --work-dir, without training")
    p.add_argument("--work-dir", type=Path, default=None, help="default bench/work/textcat[-quick]")
    p.add_argument("--output", type=Path, default=None, help="JSON (default bench/results/textcat[-quick].json)")
    args = p.parse_args(argv)
    from spacy.util import load_config

    suffix = "-quick" if args.quick else ""
    args.work_dir = (args.work_dir or BENCH / "work" / f"textcat{suffix}").resolve()
    args.output = args.output or BENCH / "results" / f"textcat{suffix}.json"
    if args.reuse:
        reuse_args(p, args)
        return args
    training = load_config(SYSTEMS["spanbert_textcat"]["config"], interpolate=False)["training"]
    args.max_steps = args.max_steps or (6 if args.quick else int(training["max_steps"]))
    args.eval_frequency = args.eval_frequency or (3 if args.quick else int(training["eval_frequency"]))
    args.batch_words = args.batch_words or (300 if args.quick else int(training["batcher"]["size"]))
    if min(args.max_steps, args.eval_frequency, args.batch_words) < 1 or args.dev_docs < 0:
        p.error("--max-steps, --eval-frequency and --batch-words must be at least 1, --dev-docs at least 0")
    return args


def reuse_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """--reuse: the earlier run's pipelines and split, checked before any work; the budget, dev docs and encoder
    reported are the ones the pipelines were trained with (read from their configs), never the command line's."""
    from spacy.util import load_config

    given = [flag for flag, value in (("--max-steps", args.max_steps), ("--eval-frequency", args.eval_frequency),
                                      ("--batch-words", args.batch_words), ("--encoder", args.encoder))
             if value is not None]
    given += [flag for flag, value in (("--dev-docs", args.dev_docs), ("--split-seed", args.split_seed)) if value]
    if given:
        p.error(f"--reuse takes the training settings from the pipelines' own configs: drop {' '.join(given)}")
    models = {name: [trained_model(args.work_dir, name, seed) for seed in args.seeds] for name in args.systems}
    missing = [model for paths in models.values() for model in paths if not (model / "config.cfg").is_file()]
    missing += [path for path in corpus_paths(args.work_dir).values() if not path.is_file()]
    if missing:
        p.error(f"--reuse: {missing[0]} not found; run without --reuse (or pass the --work-dir, --systems and "
                f"--seeds of the run that trained them)")
    budgets, encoders = set(), []
    for name, paths in models.items():
        for model in paths:
            config = load_config(model / "config.cfg", interpolate=False)
            training = config["training"]
            budgets.add((int(training["max_steps"]), int(training["eval_frequency"]),
                         int(training["batcher"]["size"]), int(config["corpora"]["dev"]["limit"])))
            encoders += [config["paths"]["init_model"]] if name in TRANSFORMERS else []
    if len(budgets) > 1:
        p.error(f"--reuse: the pipelines were trained with different budgets {sorted(budgets)}; reuse one run's")
    (args.max_steps, args.eval_frequency, args.batch_words, args.dev_docs), = budgets
    args.encoder = encoders[0] if encoders else None  # reported as the one they were trained from


def corpus_paths(work_dir: Path) -> Dict[str, Path]:
    return {split: work_dir / "corpus" / f"textcat_{split}.spacy" for split in ("train", "dev", "test")}


def trained_model(work_dir: Path, name: str, seed: int) -> Path:
    """Where `train` leaves a system's best pipeline for one seed."""
    return work_dir / name / f"seed{seed}" / "model" / "model-best"


def prepare(args: argparse.Namespace) -> Dict[str, Any]:
    """The split and the encoder: checked before any training. --reuse keeps the earlier run's split and reports
    the encoder its pipelines were trained from."""
    if args.reuse:
        return reused_data(args)
    encoder = resolve_encoder(args.encoder) if any(s in TRANSFORMERS for s in args.systems) else None
    counts = convert(args.bbc_dir, args.work_dir / "corpus", seed=args.split_seed)
    return {"bbc": args.bbc_dir, "encoder": encoder, "paths": corpus_paths(args.work_dir), "counts": counts}


def reused_data(args: argparse.Namespace) -> Dict[str, Any]:
    from spacy.tokens import DocBin
    from spacy.vocab import Vocab

    paths = corpus_paths(args.work_dir)
    counts = {}
    for split, path in paths.items():
        counts[split] = {}
        for doc in DocBin().from_disk(path).get_docs(Vocab()):
            label = max(doc.cats, key=doc.cats.get)
            counts[split][label] = counts[split].get(label, 0) + 1
    args.split_seed = None  # the earlier run's split, whichever seed made it
    return {"bbc": args.work_dir / "corpus", "encoder": args.encoder, "paths": paths, "counts": counts}


def train(name: str, seed: int, data: Dict[str, Any], args: argparse.Namespace) -> Dict[str, Any]:
    """`spacy train` of one system and seed; a record with the model path, or the failure."""
    run_dir = args.work_dir / name / f"seed{seed}"
    shutil.rmtree(run_dir, ignore_errors=True)
    overrides = ["--paths.train", data["paths"]["train"], "--paths.dev", data["paths"]["dev"],
                 *budget_overrides(args.max_steps, args.eval_frequency),
                 "--training.optimizer.learn_rate.warmup_steps", max(1, args.max_steps // 10),
                 "--training.batcher.size", args.batch_words, "--corpora.dev.limit", args.dev_docs,
                 "--system.seed", seed]
    if name in TRANSFORMERS:
        overrides += ["--paths.init_model", data["encoder"], *(QUICK_WINDOW if args.quick else [])]
    cmd = spacy_cmd("train", SYSTEMS[name]["config"], "--output", run_dir / "model", *overrides)
    done = run_logged(cmd, run_dir / "train.log", env=thread_env(args.threads), prefix=f"[{name} seed {seed}] ")
    record: Dict[str, Any] = {"seed": seed, "train_wall_s": done.wall_s, "command": shown(" ".join(done.cmd))}
    if not done.ok:
        return {**record, "status": "failed", "error": short_error(done.tail)}
    return {**record, "status": "ok", "model": str(trained_model(args.work_dir, name, seed))}


def reused(name: str, seed: int, args: argparse.Namespace) -> Dict[str, Any]:
    """An earlier run's pipeline for one system and seed (--reuse): no training, so no train time."""
    return {"seed": seed, "train_wall_s": None, "status": "ok", "reused": True,
            "model": str(trained_model(args.work_dir, name, seed))}


def quantize(model: str, args: argparse.Namespace) -> Dict[str, Any]:
    """`spacy spanbert-quantize` of a trained pipeline of ours into a fresh directory."""
    out = Path(model).parent.parent / "int8"
    shutil.rmtree(out, ignore_errors=True)
    done = run_logged(spacy_cmd("spanbert-quantize", model, out), out.parent / "quantize.log",
                      env=thread_env(args.threads), prefix="[spanbert-quantize] ")
    if not done.ok:
        return {"status": "failed", "error": short_error(done.tail)}
    return {"status": "ok", "model": str(out)}


# ours loaded in float32 on a CPU where cpu_bf16 = "auto" would choose bfloat16: int8's comparison on every CPU
FLOAT32 = {"components": {"transformer": {"model": {"cpu_bf16": False}}}}


def score(model: str, test_path: Path, config: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Predict the test split with `nlp.pipe(batch_size=32)`: accuracy, macro F, per-class F and words/s."""
    import spacy
    from spacy.scorer import Scorer
    from spacy.tokens import DocBin
    from spacy.training import Example

    nlp = spacy.load(model, config=config or {})
    gold = list(DocBin().from_disk(test_path).get_docs(nlp.vocab))
    texts = [doc.text for doc in gold]
    list(nlp.pipe(texts[:4], batch_size=32))  # first-call allocations stay out of the timing
    start = time.perf_counter()
    predicted = list(nlp.pipe(texts, batch_size=32))
    wall = time.perf_counter() - start
    labels = sorted(gold[0].cats)
    scores = Scorer.score_cats([Example(p, g) for p, g in zip(predicted, gold)], "cats", labels=labels,
                               multi_label=False)
    top = [(max(g.cats, key=g.cats.get), max(p.cats, key=p.cats.get)) for p, g in zip(predicted, gold)]
    errors = [{"index": i, "gold": want, "predicted": got, "title": gold[i].text.split("\n", 1)[0].strip()[:80]}
              for i, (want, got) in enumerate(top) if want != got]
    return {"accuracy": 1 - len(errors) / len(gold), "macro_f": scores["cats_macro_f"], "errors": errors,
            "per_class_f": {label: scores["cats_f_per_type"][label]["f"] for label in labels},
            "words_per_s": sum(len(doc) for doc in predicted) / wall, "predict_wall_s": round(wall, 2)}


def summarise(runs: List[Dict[str, Any]]) -> Dict[str, Any]:
    ok = [r for r in runs if r["status"] == "ok"]
    labels = sorted({label for r in ok for label in r["per_class_f"]})
    return {"n_ok": len(ok), **{key: summarize([r[key] for r in ok if r.get(key) is not None])
                                for key in ("accuracy", "macro_f", "train_wall_s", "words_per_s")},
            "per_class_f": {label: summarize([r["per_class_f"][label] for r in ok]) for label in labels},
            "missed_by_every_seed": missed_by_all(ok)}


def missed_by_all(runs: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The test articles every run got wrong (as the first run predicted them); none when no run has errors."""
    if not runs or any("errors" not in r for r in runs):
        return []
    common = set.intersection(*({e["index"] for e in r["errors"]} for r in runs))
    return [e for e in runs[0]["errors"] if e["index"] in common]


REUSED = ("; the pipelines are not retrained here (`--reuse`): those of a run with the same settings, scored, "
          "quantized and timed again")


def train_time(sys_res: Dict[str, Any], summ: Dict[str, Any]) -> str:
    if not sys_res.get("trained", True):
        return "(the model above)"
    if any(r.get("reused") for r in sys_res["runs"]):
        return "(not retrained)"
    return fmt_duration((summ.get("train_wall_s") or {}).get("mean"))


def int8_line(result: Dict[str, Any]) -> List[str]:
    """'int8 / float32 words/s (ours): 1.44x' against ours in float32 (the float32 row, else ours as shipped), over
    the seeds both scored; nothing when there are none."""
    systems = result["systems"]
    fp32 = systems.get("spanbert_textcat_fp32") or systems.get("spanbert_textcat")
    pair = (systems.get("spanbert_textcat_int8"), fp32)
    if not all(pair):
        return []
    speeds = [{r["seed"]: r["words_per_s"] for r in system["runs"] if r["status"] == "ok"} for system in pair]
    seeds = set(speeds[0]) & set(speeds[1])
    if not seeds:
        return []
    ratio = sum(speeds[0][seed] for seed in seeds) / sum(speeds[1][seed] for seed in seeds)
    return [f"int8 / float32 words/s (ours): {ratio:.2f}x.", ""]


def missed_lines(result: Dict[str, Any]) -> List[str]:
    """Per transformer system, the test articles every seed misclassified (first line, gold -> predicted topic)."""
    lines = []
    for name in TRANSFORMERS:
        system = result["systems"].get(name, {})
        missed = system.get("summary", {}).get("missed_by_every_seed")
        if missed:
            scored = system["summary"]["n_ok"]
            total = len(system["runs"])
            seeds = "every seed" if scored == total else f"every scored seed ({scored} of {total})"
            articles = "; ".join(f"“{e['title']}” ({e['gold']} → {e['predicted']})" for e in missed)
            lines.append(f"Missed by {seeds}, {system['label']}: {len(missed)} "
                         f"article{'s' * (len(missed) != 1)}: {articles}.")
    return [*lines, ""] if lines else []


def render_markdown(result: Dict[str, Any]) -> str:
    s = result["settings"]
    labels = sorted({label for sys_res in result["systems"].values()
                     for label in sys_res.get("summary", {}).get("per_class_f", {})})
    rows = []
    for sys_res in result["systems"].values():
        summ = sys_res.get("summary", {})
        speed = summ.get("words_per_s")
        failed = [r.get("error", "") for r in sys_res["runs"] if r["status"] != "ok"]
        rows.append([sys_res["label"], fmt_stat(summ.get("accuracy")), fmt_stat(summ.get("macro_f")),
                     *[fmt_stat(summ.get("per_class_f", {}).get(label)) for label in labels],
                     train_time(sys_res, summ), f"{speed['mean']:,.0f}" if speed else "–", summ.get("n_ok", 0),
                     "ok" if not failed else f"failed: {failed[0]}"])
    table = markdown_table(["system", "accuracy", "macro F", *[f"F {label}" for label in labels], "train time",
                            "words/s", "seeds", "status"], rows)
    split = ", ".join(f"{name} {sum(c.values())}" for name, c in s["split"].items())
    dev = f"first {s['dev_docs']} dev docs" if s["dev_docs"] else "all dev docs"
    split_made = "the reused pipelines' own" if s["split_seed"] is None else f"seed {s['split_seed']}"
    title = "BBC News topic classification (5 topics), test split"
    title += " (QUICK sanity run, not a result)" if s["quick"] else ""
    return "\n".join([
        f"### {title}", "",
        f"Encoder `{Path(s['encoder']).name if s['encoder'] else '–'}` for the transformer systems (the CNN has none); "
        f"{s['max_steps']} steps of ~{s['batch_words']} words, dev evaluation every {s['eval_frequency']} steps "
        f"({dev}), model-best; seeds {s['seeds']}; split {split} (stratified, {split_made}). "
        "Scores in %, mean ± sample std over seeds. Train time is the wall time of `spacy train` (start-up and dev "
        f"evaluations included){REUSED if s.get('reuse') else ''}; words/s is `nlp.pipe(batch_size=32)` over the "
        "test split in one process, spaCy tokens counted (whitespace tokens included). Ours runs with "
        "`cpu_bf16 = \"auto\"` as configs/textcat.cfg ships it; the int8 row is ours after "
        "`spacy spanbert-quantize` (which turns bf16 off)" + (
            "; the float32 row is ours loaded with `cpu_bf16 = false`, since this CPU runs bfloat16 natively."
            if "spanbert_textcat_fp32" in result["systems"] else "."),
        "", table, "", *int8_line(result), *missed_lines(result),
        f"Total wall time {fmt_duration(result['wall_s'])}. {machine_line(result['machine'])}",
        f"Rerun: `{result['command']}`",
    ])


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    started = time.perf_counter()
    data = prepare(args)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    result: Dict[str, Any] = {
        "benchmark": "textcat",
        "command": rerun_command("bench/textcat.py", sys.argv[1:] if argv is None else argv),
        "settings": {"quick": args.quick, "bbc_dir": shown(str(data["bbc"])), "encoder": data["encoder"],
                     "seeds": args.seeds, "split_seed": args.split_seed, "max_steps": args.max_steps,
                     "eval_frequency": args.eval_frequency, "batch_words": args.batch_words,
                     "dev_docs": args.dev_docs, "split": data["counts"], "reuse": args.reuse},
        "machine": machine_info(-1, args.threads), "systems": {},
    }
    int8_runs: List[Dict[str, Any]] = []
    fp32_runs: List[Dict[str, Any]] = []
    bf16 = has_native_bf16()
    for name in args.systems:
        runs = []
        for seed in args.seeds:
            run = reused(name, seed, args) if args.reuse else train(name, seed, data, args)
            if run["status"] == "ok":
                run.update(score(run["model"], data["paths"]["test"]))
                if name == "spanbert_textcat":
                    if bf16:
                        fp32_runs.append({**run, **score(run["model"], data["paths"]["test"], FLOAT32)})
                    int8 = quantize(run["model"], args)
                    if int8["status"] == "ok":
                        int8.update(score(int8["model"], data["paths"]["test"]))
                    int8_runs.append({"seed": seed, **int8})
            runs.append(run)
        result["systems"][name] = {"label": SYSTEMS[name]["label"], "runs": runs, "summary": summarise(runs)}
        if name == "spanbert_textcat":
            if fp32_runs:
                result["systems"]["spanbert_textcat_fp32"] = {"label": "ours, float32 (cpu_bf16 = false)",
                                                              "trained": False, "runs": fp32_runs,
                                                              "summary": summarise(fp32_runs)}
            result["systems"]["spanbert_textcat_int8"] = {"label": "ours, int8 (spanbert-quantize)", "trained": False,
                                                          "runs": int8_runs, "summary": summarise(int8_runs)}
    result["wall_s"] = round(time.perf_counter() - started, 1)
    write_results(args.output, result, render_markdown(result))
    return result


if __name__ == "__main__":
    run_cli(main)
