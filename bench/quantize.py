"""int8 against fp32 `spanbert_ner`: size on disk and CoNLL-2003 test P/R/F, and (--speed) words/s from
`spacy benchmark speed` beside spacy-transformers + `ner`.

Why: int8 inference is worth having only if it is smaller and faster at (almost) the same accuracy; the goal is at
most 0.5 F lost and 1.7x the fp32 words/s on 2 cores. Every pipeline is quantized with the shipped command
(`spacy spanbert-quantize`) and measured with spaCy's own commands (`spacy evaluate`, `spacy benchmark speed`), each
in a fresh process, so the figures are what a user gets. Results: bench/results/quantize.{json,md}; each part keeps
the other's section of the JSON.

    # accuracy and size: one thread, so a busy machine changes only the wall time
    OMP_NUM_THREADS=1 .venv/bin/python bench/quantize.py --model training/model-best [--seven-bit]
    # speed: on a quiet machine, 2 threads, beside a spacy-transformers + ner pipeline on the same encoder
    # (`bench/accuracy.py --systems trf_ner` trains one under bench/work/accuracy/trf_ner/)
    .venv/bin/python bench/quantize.py --speed --model training/model-best --baseline DIR --threads 2
"""
import argparse
import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

if __package__ in (None, ""):  # run by path: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (RESULTS_DIR, ROOT, machine_info, machine_line, markdown_table, run_logged, shown,
                          spacy_cmd, thread_env, write_results)
from bench.ner_runs import ner_scores
from spacy_spanbert.cli.quantize import dir_size  # noqa: E402

WORK = ROOT / "bench" / "work" / "quantize"
OUTPUT = RESULTS_DIR / "quantize.json"
MEAN = re.compile(r"Mean: ([\d.]+) words/s \(95% CI: -?([\d.]+) \+([\d.]+)\)")
OUTLIERS = re.compile(r"Outliers: ([\d.]+)%")


def dir_mb(path: Path) -> float:
    return round(dir_size(Path(path)) / 1e6, 1)


def provenance(model: Path) -> Dict[str, Any]:
    """Where the fp32 pipeline came from: its path, training budget and dev score (from config.cfg and meta.json)."""
    from spacy.util import load_config

    meta = json.loads((model / "meta.json").read_text())
    dev_f = (meta.get("performance") or {}).get("ents_f")
    if dev_f is None:  # not made by `spacy train`: its config's budget was never used
        return {"path": shown(str(model)), "max_steps": None, "dev_ents_f": None}
    training = load_config(model / "config.cfg", interpolate=False).get("training", {})
    return {"path": shown(str(model)), "max_steps": training.get("max_steps"), "dev_ents_f": dev_f}


def fp32_model(args: argparse.Namespace) -> Path:
    """The trained fp32 pipeline: --model, else training/model-best."""
    model = Path(args.model) if args.model else ROOT / "training" / "model-best"
    if not (model / "config.cfg").is_file():
        raise SystemExit(f"✘ no trained pipeline at {model}: pass --model DIR (a spanbert_ner pipeline such as "
                         f"training/model-best, or one of bench/accuracy.py's)")
    return model.resolve()


def quantize(fp32: Path, scheme: str, args: argparse.Namespace, env: Dict[str, str]) -> Path:
    """`spacy spanbert-quantize` into a fresh directory of our own work dir."""
    out = args.work_dir / scheme
    if out.exists():
        shutil.rmtree(out)
    done = run_logged(spacy_cmd("spanbert-quantize", fp32, out, "--scheme", scheme), args.work_dir / f"{scheme}.log",
                      env=env, prefix=f"[{scheme}] ")
    if not done.ok:
        raise SystemExit(f"✘ spanbert-quantize --scheme {scheme} failed: {done.tail.splitlines()[-1:]}")
    return out


def evaluate(model: Path, name: str, args: argparse.Namespace, env: Dict[str, str]) -> Dict[str, Any]:
    metrics = args.work_dir / f"{name}.metrics.json"
    done = run_logged(spacy_cmd("evaluate", model, args.test, "--output", metrics), args.work_dir / f"{name}.eval.log",
                      env=env, prefix=f"[{name}] ")
    if not done.ok:
        raise SystemExit(f"✘ spacy evaluate {model} failed: {done.tail.splitlines()[-1:]}")
    scores = ner_scores(json.loads(metrics.read_text()))
    scores.pop("words_per_s")  # timed beside whatever else ran: the speed part measures speed
    return {"pipeline": name, "path": shown(str(model)), "size_mb": dir_mb(model),
            "transformer_mb": dir_mb(model / "transformer"), "eval_wall_s": done.wall_s, **scores}


def accuracy(args: argparse.Namespace) -> Dict[str, Any]:
    from spacy_spanbert.models.quantize import REDUCE_RANGE_ENV, activation_bits

    env = thread_env(args.threads or 1)
    fp32 = fp32_model(args)
    rows = [evaluate(fp32, "fp32", args, env)]
    for scheme in args.schemes:
        int8 = quantize(fp32, scheme, args, env)
        rows.append({**evaluate(int8, scheme, args, env), "scheme": scheme, "activation_bits": activation_bits()})
        if args.seven_bit:  # the same weights with PyTorch's 7-bit activations: what the VNNI path buys
            seven = evaluate(int8, f"{scheme}_7bit", args, {**env, REDUCE_RANGE_ENV: "1"})
            rows.append({**seven, "scheme": scheme, "activation_bits": 7})
    return {"machine": machine_info(threads=args.threads or 1), "model": provenance(fp32), "test": shown(str(args.test)),
            "activation_bits": activation_bits(), "rows": rows}


def benchmark_speed(model: Path, name: str, args: argparse.Namespace, env: Dict[str, str]) -> Dict[str, Any]:
    """One `spacy benchmark speed` run: mean words/s and its bootstrap 95% interval, as spaCy prints them."""
    cmd = spacy_cmd("benchmark", "speed", model, args.data, "--batch-size", args.batch_size, "--batches",
                    args.batches, "--warmup", args.warmup)
    done = run_logged(cmd, args.work_dir / f"{name}.speed.log", env=env, prefix=f"[{name}] ")
    found = MEAN.search(done.tail)
    if not done.ok or not found:
        return {"pipeline": name, "path": shown(str(model)), "error": done.tail.splitlines()[-1:]}
    mean, minus, plus = (float(x) for x in found.groups())
    outliers = OUTLIERS.search(done.tail)
    return {"pipeline": name, "path": shown(str(model)), "words_per_s": mean, "ci95": [mean - minus, mean + plus],
            "outliers_pct": float(outliers.group(1)) if outliers else None, "wall_s": done.wall_s,
            "command": " ".join(shown(c) for c in done.cmd)}


def speed(args: argparse.Namespace) -> Dict[str, Any]:
    from spacy_spanbert.models.quantize import activation_bits

    env = thread_env(args.threads or 2)
    fp32 = fp32_model(args)
    models = {"fp32": fp32, "int8": quantize(fp32, "int8", args, env)}
    if args.baseline:
        models["trf_ner"] = Path(args.baseline).resolve()
    runs: List[Dict[str, Any]] = []
    for repeat in range(args.repeats):  # interleaved, so a slow spell of the machine hits every pipeline alike
        for name, model in models.items():
            runs.append({**benchmark_speed(model, name, args, env), "repeat": repeat})
    return {"machine": machine_info(threads=args.threads or 2), "data": shown(str(args.data)),
            "batch_size": args.batch_size, "batches": args.batches, "warmup": args.warmup,
            "activation_bits": activation_bits(), "runs": runs}


def _mean_wps(section: Dict[str, Any], name: str) -> Optional[float]:
    values = [r["words_per_s"] for r in section.get("runs", []) if r["pipeline"] == name and "words_per_s" in r]
    return sum(values) / len(values) if values else None


def to_markdown(result: Dict[str, Any]) -> str:
    lines = ["### int8 against fp32 `spanbert_ner`", ""]
    acc = result.get("accuracy")
    if acc:
        model = acc["model"]
        fp32 = acc["rows"][0]
        trained = ("not trained with `spacy train`" if model["dev_ents_f"] is None else
                   f"{model['max_steps']} training steps, dev F {model['dev_ents_f'] * 100:.2f}")
        lines += [f"Pipeline: `{model['path']}` ({trained}); test data `{acc['test']}`; `spacy evaluate`, each "
                  f"pipeline in a fresh process; activations quantized to {acc['activation_bits']} bits on this CPU.", ""]
        rows = [[r["pipeline"], f"{r['size_mb']:.1f}", f"{r['transformer_mb']:.1f}", f"{r['p'] * 100:.2f}",
                 f"{r['r'] * 100:.2f}", f"{r['f'] * 100:.2f}",
                 "–" if r is fp32 else f"{(r['f'] - fp32['f']) * 100:+.2f}"] for r in acc["rows"]]
        lines += [markdown_table(["pipeline", "size on disk (MB)", "transformer/ (MB)", "P", "R", "F", "F vs fp32"],
                                 rows), "", "int8 = per-channel weight scales (the `spanbert-quantize` default); "
                  "int8_per_tensor = one scale per matrix (PyTorch's BERT tutorial); *_7bit = the same weights with "
                  "PyTorch's 7-bit activations (`SPACY_SPANBERT_INT8_REDUCE_RANGE=1`, what a CPU without VNNI gets).",
                  "",
                  machine_line(acc["machine"]), ""]
    spd = result.get("speed")
    if spd:
        lines += [f"#### Speed: `spacy benchmark speed`, {spd['batches']} batches of {spd['batch_size']} docs from "
                  f"`{spd['data']}`, {spd['warmup']} warm-up passes", ""]
        fp32 = _mean_wps(spd, "fp32")
        rows = []
        for r in spd["runs"]:
            if "words_per_s" not in r:
                rows.append([r["pipeline"], r["repeat"], "failed", "", "", str(r.get("error"))])
                continue
            low, high = r["ci95"]
            rows.append([r["pipeline"], r["repeat"], f"{r['words_per_s']:,.0f}", f"{low:,.0f} – {high:,.0f}",
                         f"{r['words_per_s'] / fp32:.2f}x" if fp32 else "–",
                         "–" if r.get("outliers_pct") is None else r["outliers_pct"]])
        lines += [markdown_table(["pipeline", "run", "words/s", "95% CI", "vs fp32 spanbert_ner", "outliers %"],
                                 rows), ""]
        int8, trf = _mean_wps(spd, "int8"), _mean_wps(spd, "trf_ner")
        if fp32 and int8:
            lines.append(f"int8 / fp32: {int8 / fp32:.2f}x" + (f"; fp32 / transformer + ner: {fp32 / trf:.2f}x; "
                                                                 f"int8 / transformer + ner: {int8 / trf:.2f}x" if trf
                                                                 else "") + ".")
        lines += ["", machine_line(spd["machine"]), ""]
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="trained fp32 spanbert_ner pipeline (default: training/model-best)")
    parser.add_argument("--speed", action="store_true", help="measure words/s instead of accuracy (a quiet machine!)")
    parser.add_argument("--schemes", nargs="+", default=["int8", "int8_per_tensor"], help="quantize settings to score")
    parser.add_argument("--seven-bit", action="store_true",
                        help="also score each int8 pipeline with PyTorch's 7-bit activations (SPACY_SPANBERT_INT8_REDUCE_RANGE=1)")
    parser.add_argument("--baseline", help="trained spacy-transformers + ner pipeline for --speed (else no such row)")
    parser.add_argument("--threads", type=int, help="threads per run (default: 1 for accuracy, 2 for --speed)")
    parser.add_argument("--batch-size", type=int, default=32, help="docs per batch for --speed (the configs' 32)")
    parser.add_argument("--batches", type=int, default=50, help="batches per `benchmark speed` run (spaCy's 50)")
    parser.add_argument("--warmup", type=int, default=3, help="warm-up passes over the data (spaCy's 3)")
    parser.add_argument("--repeats", type=int, default=1, help="interleaved `benchmark speed` runs per pipeline")
    parser.add_argument("--corpus-dir", type=Path, default=ROOT / "corpus", help="holds test.spacy")
    parser.add_argument("--work-dir", type=Path, default=WORK)
    parser.add_argument("--output", type=Path, help="results JSON (default bench/results/quantize.json)")
    args = parser.parse_args(argv)
    args.output = args.output or OUTPUT
    args.work_dir = args.work_dir.resolve()
    args.work_dir.mkdir(parents=True, exist_ok=True)
    args.test = args.data = args.corpus_dir / "test.spacy"
    if args.baseline and not (Path(args.baseline) / "config.cfg").is_file():
        raise SystemExit(f"✘ no trained pipeline at --baseline {args.baseline}")
    if not args.test.is_file():
        raise SystemExit(f"✘ {args.test} not found: run `spacy project run convert` or pass --corpus-dir DIR")
    result = json.loads(args.output.read_text()) if args.output.is_file() else {}
    result["speed" if args.speed else "accuracy"] = speed(args) if args.speed else accuracy(args)
    write_results(args.output, result, to_markdown(result))


if __name__ == "__main__":
    main()
