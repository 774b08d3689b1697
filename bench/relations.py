"""Relation extraction on CoNLL04: `spanbert_rel` against the spaCy tutorial's baseline, end to end and on gold
entities, with entity F, training time and prediction speed.

Why: the README's relation figures must come from a script anyone can rerun. Every system trains with
configs/rel.cfg or configs/rel_markers.cfg (transformer + spanbert_ner + spanbert_rel, the same encoder, steps,
batches and seeds); only the relation model differs:
  - spanbert_rel: the shipped model (argument boundaries, widths and entity types, pooled context, distance; softmax
    over labels + "no relation"), whose listener passes a tenth of its gradient into the shared transformer;
  - full_gradient: the same with the relation listener's whole gradient reaching the transformer (grad_factor 1.0);
  - typed_markers: configs/rel_markers.cfg, PURE's approximation model: an encoder of its own reads each pair marked
    in its sentence with typed levitated markers (`MarkerRelationModel.v1`);
  - tutorial_baseline: the pair model of spaCy's relation-extraction tutorial: the mean of each argument's token
    vectors, concatenated, one Linear layer, a sigmoid per label with threshold 0.5, on the same shared transformer
    and listener settings as spanbert_rel (grad_factor 0.1), so only the pair model differs.
Each trained pipeline is scored on CoNLL04 test end to end (relations between the entities spanbert_ner predicted;
strict: label, both arguments' boundaries and types) and with the gold entities given (spanbert_ner off). Speed:
nlp.pipe words/s of the whole pipeline and of the same pipeline without spanbert_rel, side by side.

Usage: python bench/relations.py --conll04-dir ../shared/data/conll04 [--seeds 1 2 3] [--steps 600]
       [--systems spanbert_rel tutorial_baseline] [--output bench/results/relations.json] [--quick]
"""
import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

if __package__ in (None, ""):  # run as `python bench/relations.py`: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    RESULTS_DIR, ROOT, cli_overrides, fmt_duration, fmt_stat, machine_info, machine_line, markdown_table,
    rerun_command, run_cli, run_logged, shown, spacy_cmd, summarize, thread_env, write_results,
)

SYSTEMS: Dict[str, Dict[str, Any]] = {  # config file and overrides
    "spanbert_rel": {"config": "rel.cfg", "overrides": {}},
    "full_gradient": {"config": "rel.cfg", "overrides": {"components.spanbert_rel.model.tok2vec.grad_factor": 1.0}},
    "typed_markers": {"config": "rel_markers.cfg", "overrides": {}},
    "tutorial_baseline": {"config": "rel.cfg",
                          "overrides": {"components.spanbert_rel.model.representation": "mean_pooled",
                                        "components.spanbert_rel.multi_label": True}},
}
SPERT = {"entities_f": 88.94, "relations_f": 71.47}  # SpERT, BERT-base cased, CoNLL04 test (Eberts and Ulges 2020)
QUICK_RECORDS = {"train": 24, "valid": 6, "test": 6}
SPEED_PASSES = 5  # timed passes over CoNLL04 test per pipeline, with and without spanbert_rel alternating


def convert_splits(conll04_dir: Path, work: Path, limit: Optional[Dict[str, int]] = None) -> Dict[str, Path]:
    """CoNLL04 JSON -> .spacy in the work directory (the workflow's rel_convert, as a function)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    from convert_relations import convert

    paths = {}
    for split, name in (("train", "train"), ("dev", "valid"), ("test", "test")):
        src = Path(conll04_dir) / f"{name}.json"
        if not src.is_file():
            raise FileNotFoundError(f"{src} does not exist: pass --conll04-dir (a copy of CoNLL04: train/valid/test.json)")
        paths[split] = work / "corpus" / f"{split}.spacy"
        convert(src, paths[split], limit=(limit or {}).get(name, 0))
    return paths


def train(system: str, seed: int, corpus: Dict[str, Path], encoder: str, steps: int, work: Path,
          extra: Dict[str, Any], threads: Optional[int]) -> Dict[str, Any]:
    out = work / system / f"seed{seed}"
    overrides = {"paths.train": str(corpus["train"]), "paths.dev": str(corpus["dev"]), "paths.init_model": encoder,
                 "training.max_steps": steps, "training.optimizer.learn_rate.total_steps": steps,
                 "training.optimizer.learn_rate.warmup_steps": max(1, steps // 10),
                 "training.eval_frequency": max(1, steps // 6), "system.seed": seed,
                 "components.transformer.model.cpu_bf16": "auto", **SYSTEMS[system]["overrides"], **extra}
    cmd = spacy_cmd("train", ROOT / "configs" / SYSTEMS[system]["config"], "--output", out, *cli_overrides(overrides))
    result = run_logged(cmd, out / "train.log", prefix=f"[{system} seed {seed}] ", env=thread_env(threads))
    if not result.ok:
        raise RuntimeError(f"{system} seed {seed}: spacy train failed; see {out / 'train.log'}")
    return {"model": out / "model-best", "train_s": result.wall_s}


def reused_runs(output: Path, runs: List[Any], work: Path) -> List[Dict[str, Any]]:
    """The pipelines and train times of an earlier run of the same benchmark (--reuse), checked up front."""
    if not Path(output).is_file():
        raise FileNotFoundError(f"{output}: no earlier result to reuse; run without --reuse")
    earlier = json.loads(Path(output).read_text())
    times = {(system, r["seed"]): r["train_s"] for system, rs in earlier["systems"].items() for r in rs}
    trained = []
    for system, seed in runs:
        model = work / system / f"seed{seed}" / "model-best"
        if (system, seed) not in times or not model.is_dir():
            raise FileNotFoundError(f"{model}: not trained by the earlier run; run without --reuse")
        trained.append({"model": model, "train_s": times[(system, seed)]})
    return trained


def gold_entity_scores(nlp: Any, examples: List[Any]) -> Dict[str, float]:
    """Relations scored with the gold entities given: the entity components off, each doc carrying the reference's
    entities with their labels."""
    from spacy.tokens import Doc, Span
    from spacy.training import Example

    from spacy_spanbert.pipeline.relation_scoring import score_relations

    docs = []
    for eg in examples:
        doc = Doc(nlp.vocab, words=[t.text for t in eg.reference])
        doc.ents = [Span(doc, e.start, e.end, label=e.label_) for e in eg.reference.ents]
        docs.append(doc)
    entity_writers = [name for name in nlp.pipe_names if "doc.ents" in nlp.get_pipe_meta(name).assigns]
    with nlp.select_pipes(disable=entity_writers):
        predicted = list(nlp.pipe(docs))
    return score_relations([Example(p, eg.reference) for p, eg in zip(predicted, examples)])


def pipeline_speed(nlp: Any, texts: List[str], without: str,
                   passes: int = SPEED_PASSES) -> Dict[str, float]:
    """Median nlp.pipe words/s of the whole pipeline and of the pipeline without the component `without`, over
    `passes` passes each, alternating, so a slow spell of the machine hits both alike (one pass over CoNLL04 test
    takes about a second)."""
    n_words = sum(len(t.split()) for t in texts)
    timings: Dict[str, List[float]] = {"wps": [], "wps_without_rel": []}
    list(nlp.pipe(texts[:32], batch_size=32))  # warm-up
    for _ in range(passes):
        for key, disable in (("wps", []), ("wps_without_rel", [without])):
            with nlp.select_pipes(disable=disable):
                start = time.perf_counter()
                list(nlp.pipe(texts, batch_size=32))
            timings[key].append(n_words / (time.perf_counter() - start))
    return {key: float(statistics.median(values)) for key, values in timings.items()}


def evaluate(model: Path, test: Path) -> Dict[str, Any]:
    import spacy
    from spacy.training import Corpus

    nlp = spacy.load(model)
    examples = list(Corpus(str(test))(nlp))
    scores = nlp.evaluate(examples)
    gold = gold_entity_scores(nlp, examples)
    texts = [eg.reference.text for eg in examples]
    return {"rel_f": scores["rel_micro_f"], "rel_p": scores["rel_micro_p"], "rel_r": scores["rel_micro_r"],
            "rel_boundaries_f": scores["rel_boundaries_f"], "ents_f": scores["ents_f"],
            "rel_f_gold_entities": gold["rel_micro_f"], "rel_per_label": scores["rel_per_label"],
            **pipeline_speed(nlp, texts, "spanbert_rel")}


def render(result: Dict[str, Any]) -> str:
    rows = []
    for system, runs in result["systems"].items():
        stat = {key: summarize([r[key] for r in runs]) for key in runs[0] if isinstance(runs[0][key], float)}
        ratio = summarize([r["wps"] / r["wps_without_rel"] for r in runs])
        rows.append([system, fmt_stat(stat["rel_f"]), fmt_stat(stat["rel_boundaries_f"]), fmt_stat(stat["ents_f"]),
                     fmt_stat(stat["rel_f_gold_entities"]), fmt_duration(stat["train_s"]["mean"]),
                     f"{stat['wps']['mean']:.0f}", f"{ratio['mean']:.2f}x"])
    rows.append(["SpERT (BERT-base, published)", f"{SPERT['relations_f']:.1f}", "", f"{SPERT['entities_f']:.1f}",
                 "", "", "", ""])
    seeds = ", ".join(map(str, result["seeds"]))
    n_passes = result.get("speed_passes", 1)
    passes = f"the median of {n_passes} passes" if n_passes > 1 else "one pass"
    settings = []
    for system, how in result.get("system_settings", {}).items():
        extra = ", ".join(f"`{k} = {json.dumps(v)}`" for k, v in how["overrides"].items())
        settings.append(f"- {system}: configs/{how['config']}" + (f" with {extra}" if extra else ""))
    settings += [""] if settings else []
    lines = [
        "### Relation extraction on CoNLL04 test", "",
        f"{result['steps']} training steps from `{shown(result['encoder'])}`, seeds {seeds} (mean ± sd); "
        "strict relation F: label and both arguments' boundaries and types right, between predicted entities. "
        + (f"Trainings ran {result['jobs']} side by side at {result['train_threads']} thread(s) each; "
           if result.get("jobs", 1) > 1 else "")
        + f"scores and words/s (nlp.pipe, batch 32, CoNLL04 test, {passes}) were measured one pipeline at a time"
        + (" (by --reuse, on the pipelines an earlier run trained; train times are that run's)." if result.get("reused")
           else "."), "",
        markdown_table(["system", "relations F (strict)", "relations F (boundaries)", "entities F",
                        "relations F, gold entities", "train time", "words/s", "speed vs without spanbert_rel"], rows),
        "", *settings, f"Command: `{result['command']}`", "", machine_line(result["machine"]),
    ]
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--conll04-dir", type=Path, default=ROOT / "assets" / "conll04")
    p.add_argument("--encoder", default=str(ROOT / "assets" / "all-MiniLM-L6-v2"))
    p.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=list(SYSTEMS))
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--work-dir", type=Path, default=ROOT / "bench" / "work" / "relations")
    p.add_argument("--output", type=Path, default=RESULTS_DIR / "relations.json")
    p.add_argument("--jobs", type=int, default=1,
                   help="trainings side by side, each on cores / jobs threads (evaluation and speed run alone after)")
    p.add_argument("--reuse", action="store_true",
                   help="score the pipelines an earlier run trained (its --output JSON holds their train times)")
    p.add_argument("--quick", action="store_true", help="a few records and steps (with --encoder a tiny BERT)")
    args = p.parse_args(argv)
    if not Path(args.encoder).is_dir():
        raise FileNotFoundError(f"{args.encoder}: no encoder directory; run `spacy project run rel_fetch` or pass "
                                f"--encoder")
    corpus = convert_splits(args.conll04_dir, args.work_dir, QUICK_RECORDS if args.quick else None)
    extra = ({"components.transformer.model.get_spans.window": 32, "components.transformer.model.get_spans.stride": 24,
              "training.batcher.size": 200} if args.quick else {})
    threads = max(1, (os.cpu_count() or 1) // args.jobs) if args.jobs > 1 else None
    runs = [(system, seed) for system in args.systems for seed in args.seeds]
    if args.reuse:
        trained = reused_runs(args.output, runs, args.work_dir)
    else:
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:  # trainings side by side: each its own process
            trained = list(pool.map(lambda run: train(*run, corpus, args.encoder, args.steps, args.work_dir, extra,
                                                      threads), runs))
    systems: Dict[str, List[Dict[str, Any]]] = {}
    for (system, seed), done in zip(runs, trained):  # then one at a time, alone on the machine: scores and speed
        systems.setdefault(system, []).append({"seed": seed, "train_s": float(done["train_s"]),
                                               **evaluate(done["model"], corpus["test"])})
    result = {"command": rerun_command("bench/relations.py", argv if argv is not None else sys.argv[1:]),
              "encoder": args.encoder, "steps": args.steps, "seeds": args.seeds, "jobs": args.jobs,
              "reused": args.reuse, "train_threads": threads, "speed_passes": SPEED_PASSES,
              "system_settings": {system: SYSTEMS[system] for system in args.systems}, "systems": systems,
              "machine": machine_info()}
    write_results(args.output, result, render(result))


if __name__ == "__main__":
    run_cli(main)
