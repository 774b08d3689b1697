"""Masking-scheme ablation: continued pretraining of one encoder at equal compute, then identical spanbert_ner tuning.

Why: SpanBERT's claim (Joshi et al., TACL 2020, Tables 6 and 7) is that random span masking beats token and
linguistically informed masking, and that the Span Boundary Objective adds to it. Here every scheme continues
pretraining the same encoder on the same news text with the same steps, batch and sequence length (so the same
tokens), then spanbert_ner is fine-tuned identically on CoNLL-2003. The result says, computed from the numbers,
whether the paper's ordering holds at this scale.

    python bench/ablation.py --quick --encoder DIR                  # minutes: plumbing check
    python bench/ablation.py --gpu-id 0 --seeds 1 2 3               # the real ablation
"""
import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

if __package__ in (None, ""):  # run as `python bench/NAME.py`: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    ROOT, fmt_duration, fmt_stat, machine_info, machine_line, markdown_table, run_cli, run_logged, shown, short_error,
    spacy_cmd, thread_env, write_json, write_text,
)
from bench.ner_runs import (  # noqa: E402
    failed_record, prepare_corpus, resolve_encoder, set_budget, summarize_runs, train_and_evaluate, warmup_overrides,
)
from bench.report import publish  # noqa: E402

BENCH = Path(__file__).resolve().parent
# scheme name -> (masking.scheme, objective.sbo_weight); None = no continued pretraining.
# Masking-only rows use sbo_weight 0 so only the masking differs; span_sbo adds SBO (paper Table 7).
SCHEMES: Dict[str, Optional[Tuple[str, float]]] = {
    "none": None,
    "subword": ("subword", 0.0),
    "whole_word": ("whole_word", 0.0),
    "span": ("span", 0.0),
    "span_sbo": ("span", 1.0),
    "named_entity": ("named_entity", 0.0),
    "noun_phrase": ("noun_phrase", 0.0),
}
NEEDS_PIPELINE = {"named_entity": "ner", "noun_phrase": "a parser (noun_chunks)"}
# (better, worse, claim): the orderings the paper reports, checked on mean test F1
PAPER_ORDER = [
    ("span_sbo", "span", "SBO on top of span masking helps (Table 7)"),
    ("span", "subword", "span masking beats subword masking (Table 6)"),
    ("span", "whole_word", "span masking beats whole-word masking (Table 6)"),
    ("span", "named_entity", "random spans beat named-entity masking (Table 6)"),
    ("span", "noun_phrase", "random spans beat noun-phrase masking (Table 6)"),
    ("span_sbo", "none", "continued span+SBO pretraining beats none (issue 5)"),
]
QUICK_TEXT_DOCS = 60
TIE = 0.0005  # F differences below 0.05 points are ties (spaCy reports F to 4 decimals of a fraction)


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--corpus-dir", type=Path, default=ROOT / "corpus", help="holds train/dev/test .spacy")
    p.add_argument("--raw-text", type=Path, default=ROOT / "corpus" / "pretrain.txt", help="pretraining text")
    p.add_argument("--heldout", type=Path, default=ROOT / "corpus" / "pretrain_heldout.txt", help="held-out text")
    p.add_argument("--encoder", default=None, help="HF encoder dir or name (default: the MiniLM-L6 package)")
    p.add_argument("--schemes", nargs="+", choices=list(SCHEMES), default=list(SCHEMES))
    p.add_argument("--spacy-model", default=None, help="pipeline for named_entity/noun_phrase spans")
    p.add_argument("--pretrain-config", type=Path, default=ROOT / "configs" / "pretrain.cfg")
    p.add_argument("--pretrain-steps", type=int, default=None, help="default 1000 (quick 4)")
    p.add_argument("--pretrain-batch-size", type=int, default=None, help="default 8 (quick 2)")
    p.add_argument("--pretrain-max-length", type=int, default=None, help="default 128 (quick 32)")
    p.add_argument("--pretrain-lr", type=float, default=5e-5)
    p.add_argument("--pretrain-seed", type=int, default=0)
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="fine-tuning seeds (default 1 2 3, quick 1)")
    p.add_argument("--max-steps", type=int, default=None, help="fine-tuning steps (default: configs/ner.cfg's; quick 12)")
    p.add_argument("--eval-frequency", type=int, default=None)
    p.add_argument("--warmup-steps", type=int, default=None,
                   help="fine-tuning warmup (default: the NER config's; quick: a fifth of the steps)")
    p.add_argument("--ner-config", type=Path, default=ROOT / "configs" / "ner.cfg")
    p.add_argument("--gpu-id", type=int, default=-1)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--timeout", type=float, default=None, help="seconds per pretrain/train/evaluate call")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--work-dir", type=Path, default=None)
    p.add_argument("--output", type=Path, default=None)
    p.add_argument("--heldout-schemes", nargs="+", default=["subword", "span"], choices=["subword", "whole_word", "span"],
                   help="masking of the held-out text (same seeded masks for every model); the first is plotted")
    p.add_argument("--heldout-job", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    q = args.quick
    suffix = "-quick" if q else ""
    args.seeds = args.seeds or ([1] if q else [1, 2, 3])
    args.pretrain_steps = args.pretrain_steps or (4 if q else 1000)
    args.pretrain_batch_size = args.pretrain_batch_size or (2 if q else 8)
    args.pretrain_max_length = args.pretrain_max_length or (32 if q else 128)
    set_budget(args)
    args.work_dir = (args.work_dir or BENCH / "work" / f"ablation{suffix}").resolve()
    args.output = args.output or BENCH / "results" / f"ablation{suffix}.json"
    return args


def prepare_text(args: argparse.Namespace) -> Dict[str, Path]:
    """Pretraining and held-out text, checked before any work (and cut to a few documents with --quick)."""
    out = {}
    for key, path in (("raw_text", args.raw_text), ("heldout", args.heldout)):
        if not Path(path).exists():
            raise FileNotFoundError(f"{path} does not exist: run `spacy project run corpus` or pass --{key.replace('_', '-')}")
        out[key] = Path(path).resolve()
        if args.quick and out[key].suffix == ".txt":
            docs = [d for d in out[key].read_text(encoding="utf8").split("\n\n") if d.strip()]
            out[key] = args.work_dir / "text" / f"{key}.txt"
            write_text(out[key], "\n\n".join(docs[: QUICK_TEXT_DOCS if key == "raw_text" else 10]))
    return out


def pretrain(name: str, args: argparse.Namespace, text: Dict[str, Path], encoder: str, env) -> Dict[str, Any]:
    """Continued pretraining with one scheme through `spacy spanbert-pretrain`; the encoder dir or the failure."""
    scheme, sbo = SCHEMES[name]  # type: ignore[misc]
    out_dir = args.work_dir / name / "pretrain"
    shutil.rmtree(out_dir, ignore_errors=True)  # a rerun starts clean: the command refuses a dir holding another run
    cmd = spacy_cmd(
        "spanbert-pretrain", args.pretrain_config.resolve(), out_dir, "--paths.raw_text", text["raw_text"],
        "--paths.init_model", encoder, "--training.max_steps", args.pretrain_steps,
        "--training.batch_size", args.pretrain_batch_size, "--training.max_length", args.pretrain_max_length,
        "--training.learning_rate", args.pretrain_lr, "--masking.scheme", scheme, "--objective.sbo_weight", sbo,
        "--training.warmup_steps", max(1, args.pretrain_steps // 10),
        "--training.logging_steps", max(1, args.pretrain_steps // 50), "--training.save_steps", args.pretrain_steps,
        "--system.seed", args.pretrain_seed, "--gpu-id", args.gpu_id,
        *(["--paths.spacy_model", args.spacy_model] if args.spacy_model and name in NEEDS_PIPELINE else []),
    )
    done = run_logged(cmd, args.work_dir / name / "pretrain.log", env=env, timeout=args.timeout, prefix=f"[{name}] ")
    record: Dict[str, Any] = {"status": "ok", "command": " ".join(map(str, cmd)), "wall_s": done.wall_s,
                              "scheme": scheme, "sbo_weight": sbo, "dir": str(out_dir)}
    if not done.ok:
        return failed_record(record, "pretrain", done)
    if not (out_dir / "encoder" / "config.json").exists():
        record.update(status="failed", stage="pretrain", error=f"{out_dir}/encoder/config.json was not written")
        return record
    record["log_last"] = last_log_entry(out_dir / "log.jsonl")
    return record


def last_log_entry(path: Path) -> Optional[Dict[str, Any]]:
    """The final JSONL log record of a pretraining run (losses, tokens/s), or None if there is none."""
    if not path.exists():
        return None
    lines = [ln for ln in path.read_text(encoding="utf8").splitlines() if ln.strip()]
    return json.loads(lines[-1]) if lines else None


def heldout_loss(name: str, args, text, pre: Dict[str, Any], env) -> Dict[str, Any]:
    """Held-out masked-LM loss of one pretrained model under each of --heldout-schemes (same seeded masks for all)."""
    job = {"encoder_dir": str(Path(pre["dir"]) / "encoder"), "corpus": str(text["heldout"]),
           "schemes": args.heldout_schemes, "max_length": args.pretrain_max_length, "seed": args.pretrain_seed,
           "out": str(args.work_dir / name / "heldout.json")}
    job_path = args.work_dir / name / "heldout_job.json"
    write_json(job_path, job)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--heldout-job", str(job_path)]
    done = run_logged(cmd, args.work_dir / name / "heldout.log", env=env, timeout=args.timeout, prefix=f"[{name}] ")
    if not done.ok or not Path(job["out"]).exists():
        return {"heldout_mlm_loss": None, "heldout_error": short_error(done.tail)}
    return json.loads(Path(job["out"]).read_text())


def heldout_job(job_path: Path) -> None:
    """Child process: spacy_spanbert.pretraining.evaluate.heldout_mlm_loss for each masking scheme."""
    job = json.loads(Path(job_path).read_text())
    try:
        from spacy_spanbert.pretraining.evaluate import heldout_mlm_loss
    except ImportError:
        raise SystemExit("spacy_spanbert.pretraining.evaluate.heldout_mlm_loss is not available in this version")
    detail = {s: heldout_mlm_loss(job["encoder_dir"], job["corpus"], scheme=s, max_length=job["max_length"],
                                  seed=job["seed"]) for s in job["schemes"]}
    write_json(Path(job["out"]), {"heldout_mlm_loss": detail[job["schemes"][0]]["mlm_loss"],
                                  "heldout_by_scheme": detail})


def run_scheme(name: str, args, text, corpus, encoder: str, env) -> Dict[str, Any]:
    """Pretrain (unless `none`), measure held-out MLM loss, fine-tune spanbert_ner per seed; never raises."""
    result: Dict[str, Any] = {"status": "ok", "runs": []}
    if name in NEEDS_PIPELINE and not args.spacy_model:
        result.update(status="not run", reason=f"needs --spacy-model, a spaCy pipeline with {NEEDS_PIPELINE[name]}")
        return result
    pre = None
    if SCHEMES[name] is not None:
        pre = pretrain(name, args, text, encoder, env)
        result["pretrain"] = pre
        if pre["status"] != "ok":
            result.update(status="failed", reason=f"pretraining: {pre.get('error')}")
            return result
    if pre:  # `none` has no pretraining heads to score (MiniLM ships no MLM head), so no held-out loss
        result.update(heldout_loss(name, args, text, pre, env))
    init = str(Path(pre["dir"]) / "encoder") if pre else encoder
    for seed in args.seeds:
        result["runs"].append(train_and_evaluate(
            args.ner_config, args.work_dir / name / f"ner_seed{seed}", corpus, seed=seed, max_steps=args.max_steps,
            eval_frequency=args.eval_frequency, gpu_id=args.gpu_id, init_model=init, overrides=warmup_overrides(args), env=env,
            timeout=args.timeout, label=f"{name} ner seed {seed}",
        ))
    result["summary"] = summarize_runs(result["runs"])
    if result["summary"]["n_ok"] == 0:
        result.update(status="failed", reason=f"fine-tuning: {result['runs'][0].get('error')}")
    return result


def paper_ordering(schemes: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    """Check each of the paper's pairwise orderings on mean test F1; the statement is built from the numbers."""
    comparisons: List[Dict[str, Any]] = []
    for better, worse, claim in PAPER_ORDER:
        a = (schemes.get(better) or {}).get("summary", {}).get("f")
        b = (schemes.get(worse) or {}).get("summary", {}).get("f")
        if not a or not b:
            continue
        diff = a["mean"] - b["mean"]
        comparisons.append({
            "claim": claim, "better": better, "worse": worse, "holds": diff > TIE, "tie": abs(diff) <= TIE,
            "diff_f": diff,
            "beyond_spread": abs(diff) > a["std"] + b["std"] if min(a["n"], b["n"]) > 1 else None,
        })
    if not comparisons:
        return {"holds": None, "comparisons": [], "statement": "The paper's ordering cannot be judged: "
                "no pair of schemes it compares finished fine-tuning."}
    broken = [c for c in comparisons if not c["holds"]]
    noise = "" if all(c["beyond_spread"] is not None for c in comparisons) else \
        " With one fine-tuning seed per scheme, differences within seed noise cannot be excluded."
    if not broken:
        text = f"The paper's ordering holds at this scale: all {len(comparisons)} checked comparisons go its way."
    else:
        detail = "; ".join(f"{c['better']} = {c['worse']} (tie)" if c["tie"] else
                           f"{c['better']} {100 * c['diff_f']:+.1f} F vs {c['worse']}" for c in broken)
        text = (f"The paper's ordering does not hold at this scale: {len(broken)} of {len(comparisons)} checked "
                f"comparisons are ties or go the other way ({detail}).")
    return {"holds": not broken, "comparisons": comparisons, "statement": text + noise}


def render_markdown(result: Dict[str, Any]) -> str:
    s = result["settings"]
    rows = []
    for name, r in result["schemes"].items():
        summ = r.get("summary") or {}
        pre = r.get("pretrain") or {}
        losses = r.get("heldout_by_scheme") or {}
        status = r["status"] if r["status"] == "ok" else f"{r['status']}: {r.get('reason', '')}"
        rows.append([
            name, "–" if SCHEMES[name] is None else f"{SCHEMES[name][0]}, SBO {SCHEMES[name][1]:g}",
            fmt_stat(summ.get("f")), fmt_stat(summ.get("p")), fmt_stat(summ.get("r")),
            *[f"{losses[h]['mlm_loss']:.3f}" if h in losses else "–" for h in s["heldout_schemes"]],
            fmt_duration(pre.get("wall_s")), fmt_duration((summ.get("train_wall_s") or {}).get("mean")),
            summ.get("n_ok", 0), status,
        ])
    table = markdown_table(["scheme", "masking", "test F", "P", "R",
                            *[f"held-out MLM loss ({h} masks)" for h in s["heldout_schemes"]],
                            "pretrain time", "fine-tune time", "seeds", "status"], rows)
    title = "Masking ablation: continued pretraining, then spanbert_ner on CoNLL-2003" + (
        " (QUICK sanity run: tiny subset, not a result)" if s["quick"] else "")
    title += "" if result.get("finished", True) else " (in progress: schemes not listed have not run yet)"
    lines = [
        f"### {title}", "",
        f"Encoder `{Path(s['encoder']).name}`; each scheme: {s['pretrain_steps']} pretraining steps × "
        f"{s['pretrain_batch_size']} sequences × {s['pretrain_max_length']} tokens (≤ {s['pretrain_tokens']:,} tokens), "
        f"lr {s['pretrain_lr']:g}, seed {s['pretrain_seed']}; then {s['max_steps']} spanbert_ner steps, seeds "
        f"{s['seeds']}. Scores in %, mean ± sample std over fine-tuning seeds. Masking-only rows train without SBO "
        "(weight 0) so that only the masking differs. Held-out loss: the same seeded masks for every model; `none` "
        "has no pretraining heads to score.", "", table, "",
        f"**{result['ordering']['statement']}**", "",
        *sorted({f"Held-out MLM loss not measured: {r['heldout_error']}" for r in result["schemes"].values()
                 if r.get("heldout_error")}),
        f"Total wall time {fmt_duration(result['wall_s'])}. {machine_line(result['machine'])}",
        f"Rerun: `{shown(result['command'])}`",
    ]
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = parse_args(argv)
    if args.heldout_job:
        heldout_job(args.heldout_job)
        return {}
    started = time.perf_counter()
    for cfg in (args.pretrain_config, args.ner_config):
        if not Path(cfg).exists():
            raise FileNotFoundError(f"{cfg} not found: pass --pretrain-config/--ner-config or pull the configs")
    encoder = resolve_encoder(args.encoder)
    corpus = prepare_corpus(args)
    text = prepare_text(args)
    env = thread_env(args.threads)
    settings = {k: getattr(args, k) for k in ("quick", "seeds", "pretrain_steps", "pretrain_batch_size", "heldout_schemes",
                                                "pretrain_max_length", "pretrain_lr", "pretrain_seed", "max_steps",
                                                "eval_frequency", "gpu_id", "spacy_model")}
    settings.update(encoder=encoder, pretrain_tokens=args.pretrain_steps * args.pretrain_batch_size *
                    args.pretrain_max_length, raw_text=str(text["raw_text"]), heldout=str(text["heldout"]),
                    corpus={k: str(v) for k, v in corpus.items()})
    result: Dict[str, Any] = {
        "benchmark": "ablation",
        "command": "python bench/ablation.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "settings": settings, "machine": machine_info(args.gpu_id, args.threads), "schemes": {},
    }
    for i, name in enumerate(args.schemes, 1):
        result["schemes"][name] = run_scheme(name, args, text, corpus, encoder, env)
        # published after every scheme, so an interrupted long run keeps what it finished
        result.update(ordering=paper_ordering(result["schemes"]), wall_s=round(time.perf_counter() - started, 1),
                      finished=i == len(args.schemes))
        publish(result, args.output, render_markdown(result))
    return result


if __name__ == "__main__":
    run_cli(main)
