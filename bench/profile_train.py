"""Where a training step's time goes: spanbert_ner against spacy-transformers + ner on the same encoder and batches.

Why: issue 14 asks for the breakdown of a `spacy train` step (encoder forward and backward, span enumeration, the span
scorer, the loss, the listener and the optimizer) before any speed work. The script builds each config's pipeline
in-process as `spacy train` does, then times every phase of `nlp.update` by wrapping the thinc layers' forward and
backprop callbacks and the components' methods (no profiler overhead on the torch work):

    encoder fwd / bwd   the transformer (TransformerModel) forward and its backprop
    spans               the suggester (spanbert_ner) - candidate enumeration
    head fwd / bwd      the span scorer (spanbert_ner) or the transition-based parser model (ner)
    loss                get_loss
    optimizer           every parameter update (the optimizer's calls from each component's finish_update)
    other               the rest of nlp.update (listener hand-over, case flags, alignment, glue; for spaCy's ner,
                        whose Cython update cannot be wrapped, also its loss)

    python bench/profile_train.py --steps 30 --warmup 5 --threads 2      # on a quiet machine
"""
import argparse
import hashlib
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence

if __package__ in (None, ""):  # run as `python bench/NAME.py`: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import CPU_BF16, RESULTS_DIR, ROOT, machine_info, machine_line, markdown_table, write_json, write_text  # noqa: E402
from bench.ner_runs import corpus_paths, resolve_encoder  # noqa: E402

CONFIGS = {"spanbert_ner": ROOT / "configs" / "ner.cfg", "trf_ner": ROOT / "bench" / "configs" / "trf_ner.cfg"}
PHASES = ("encoder fwd", "encoder bwd", "spans", "head fwd", "head bwd", "loss", "optimizer", "other")


class Clock:
    """Exclusive seconds per phase, summed over the timed steps (switched on after the warm-up): a phase that runs
    inside another (the encoder's backprop, called from the head's backprop through the listener) is subtracted
    from the outer one, so the phases add up to the step."""

    def __init__(self) -> None:
        self.on = False
        self.totals: Dict[str, float] = defaultdict(float)
        self._inner: List[float] = []  # time spent in nested timed calls, one slot per open call

    def timed(self, fn: Callable, phase: str) -> Callable:
        def call(*args: Any, **kwargs: Any) -> Any:
            self._inner.append(0.0)
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                inner = self._inner.pop()
                if self.on:
                    self.totals[phase] += elapsed - inner
                if self._inner:
                    self._inner[-1] += elapsed

        return call

    def timed_layer(self, model: Any, phase: str) -> None:
        """Time a thinc layer's forward as `PHASE fwd` and the backprop it returns as `PHASE bwd`."""
        forward = model._func

        def run_forward(m: Any, X: Any, is_train: bool) -> Any:
            return forward(m, X, is_train)

        timed_forward = self.timed(run_forward, f"{phase} fwd")

        def func(m: Any, X: Any, is_train: bool) -> Any:
            Y, backprop = timed_forward(m, X, is_train)
            return Y, self.timed(backprop, f"{phase} bwd")

        model._func = func


def instrument(nlp: Any, clock: Clock) -> None:
    """Wrap the transformer, the head, the suggester, the loss and the optimizer step of every component."""
    for name, pipe in nlp.pipeline:
        if name == "transformer":
            clock.timed_layer(pipe.model, "encoder")
        elif hasattr(pipe, "suggester"):  # spanbert_ner: the span scorer is its model's "scorer" ref
            clock.timed_layer(pipe.model.get_ref("scorer"), "head")
            pipe.suggester = clock.timed(pipe.suggester, "spans")
        else:  # spaCy's ner: the whole parser model is the head (its tok2vec is the listener)
            clock.timed_layer(pipe.model, "head")
        try:
            pipe.get_loss = clock.timed(pipe.get_loss, "loss")
        except AttributeError:  # spaCy's ner (Cython) computes its loss inside its update: counted in "other"
            pass


class TimedOptimizer:
    """The optimizer, with the time of every parameter update (its __call__) counted as "optimizer"."""

    def __init__(self, optimizer: Any, clock: Clock) -> None:
        self._optimizer, self._clock = optimizer, clock

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._clock.timed(self._optimizer, "optimizer")(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._optimizer, name)


def prepare(system: str, corpus: Dict[str, Path], encoder: str, steps: int, warmup: int, seed: int,
            cpu_bf16: bool = False) -> Dict[str, Any]:
    """Build `system`'s pipeline as `spacy train` does, instrumented, with its first warmup + steps batches drawn.

    cpu_bf16: spanbert_ner's transformer as SpanBERT.v2 with `cpu_bf16` (bfloat16 autocast on the CPU)."""
    from itertools import islice

    from spacy.schemas import ConfigSchemaTraining
    from spacy.training.initialize import init_nlp
    from spacy.util import fix_random_seed, load_config, registry, resolve_dot_names

    overrides = {"paths.train": str(corpus["train"]), "paths.dev": str(corpus["dev"]), "paths.init_model": encoder,
                 "system.seed": seed, "training.max_steps": steps + warmup,
                 "training.optimizer.learn_rate.total_steps": steps + warmup, **(CPU_BF16 if cpu_bf16 else {})}
    config = load_config(CONFIGS[system], overrides=overrides, interpolate=False)
    fix_random_seed(seed)
    nlp = init_nlp(config)
    resolved = nlp.config.interpolate()
    T = registry.resolve(resolved["training"], schema=ConfigSchemaTraining)
    (train_corpus,) = resolve_dot_names(resolved, [T["train_corpus"]])
    fix_random_seed(seed)  # initialisation draws differ between the systems: re-seed so the corpus shuffles alike
    batches = list(islice(T["batcher"](train_corpus(nlp)), warmup + steps))  # drawn now: interleaving can't change them
    if len(batches) <= warmup:
        raise ValueError(f"{corpus['train']} gave fewer than {warmup + 1} batches: lower --warmup or use more data")
    clock = Clock()
    optimizer = TimedOptimizer(T["optimizer"], clock)
    instrument(nlp, clock)
    return {"system": system + (" (cpu_bf16)" if cpu_bf16 else ""), "nlp": nlp, "batches": batches, "clock": clock,
            "optimizer": optimizer, "warmup": warmup, "step_times": [], "words": 0, "fingerprint": hashlib.sha1()}


def step(run: Dict[str, Any], i: int) -> None:
    """Train `run` on its i-th batch, timing it once past the warm-up."""
    batch = run["batches"][i]
    run["clock"].on = i >= run["warmup"]
    run["fingerprint"].update(" ".join(eg.reference.text for eg in batch).encode("utf8"))
    start = time.perf_counter()
    run["nlp"].update(batch, sgd=run["optimizer"], losses={})
    if run["clock"].on:
        run["step_times"].append(time.perf_counter() - start)
        run["words"] += sum(len(eg.predicted) for eg in batch)


def summary(run: Dict[str, Any]) -> Dict[str, Any]:
    """ms per step by phase, step time and words/s of a finished run."""
    step_times, clock = run["step_times"], run["clock"]
    total = sum(step_times)
    ms = {phase: 1000 * clock.totals.get(phase, 0.0) / len(step_times) for phase in PHASES if phase != "other"}
    ms["other"] = 1000 * total / len(step_times) - sum(ms.values())
    return {"system": run["system"], "steps": len(step_times), "ms_per_step": ms,
            "step_ms": 1000 * total / len(step_times), "step_ms_median": 1000 * statistics.median(step_times),
            "train_words_per_s": run["words"] / total, "batches_sha1": run["fingerprint"].hexdigest()}


def profile_interleaved(runs: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """Step every run on batch i before any run takes batch i + 1: a machine whose speed drifts (a shared VM) then
    slows every system alike, and the ratios stay fair. RETURNS each run's summary."""
    for i in range(min(len(run["batches"]) for run in runs)):
        for run in runs:
            step(run, i)
    return [summary(run) for run in runs]


def render(results: Sequence[Dict[str, Any]], machine: Dict[str, Any], command: str) -> str:
    headers = ["phase"] + [f"{r['system']} ms/step (share)" for r in results]
    rows = []
    for phase in PHASES:
        rows.append([phase] + [f"{r['ms_per_step'][phase]:.0f} ({r['ms_per_step'][phase] / r['step_ms']:.0%})"
                               for r in results])
    rows.append(["**step**"] + [f"**{r['step_ms']:.0f}** (median {r['step_ms_median']:.0f})" for r in results])
    rows.append(["training words/s"] + [f"{r['train_words_per_s']:,.0f}" for r in results])
    ratio = ""
    base = next((r for r in results if r["system"] == "trf_ner"), None)
    for r in results if base else []:
        if r is base:
            continue
        same = r["batches_sha1"] == base["batches_sha1"]
        ratio += (f"\n{r['system']} trains at {r['train_words_per_s'] / base['train_words_per_s']:.2f}x the words/s of "
                  f"trf_ner on {'the same batches (identical texts, checked by hash)' if same else 'DIFFERENT batches'}.\n")
    fp32 = next((r for r in results if r["system"] == "spanbert_ner"), None)
    for r in results if fp32 else []:
        if r["system"].endswith("(cpu_bf16)"):
            ratio += (f"\n{r['system']} trains at {r['train_words_per_s'] / fp32['train_words_per_s']:.2f}x the words/s "
                      f"of spanbert_ner in float32.\n")
    return (f"### Where a training step's time goes (ms per step; rerun: `{command}`)\n\n"
            f"{results[0]['steps']} timed steps after warm-up, the configs' own batches (1,000 words); the systems "
            f"take turns batch by batch, so a drift in the machine's speed hits them alike.\n\n"
            + markdown_table(headers, rows) + "\n" + ratio + f"\n{machine_line(machine)}\n")


def main(argv: Optional[Sequence[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--systems", nargs="+", choices=list(CONFIGS), default=list(CONFIGS))
    p.add_argument("--corpus-dir", type=Path, default=ROOT / "corpus")
    p.add_argument("--encoder", default=None, help="HF encoder dir or name (default: the MiniLM-L6 package)")
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--cpu-bf16", action="store_true",
                   help="also profile spanbert_ner with SpanBERT.v2 cpu_bf16 (bfloat16 autocast), as a third column")
    p.add_argument("--output", type=Path, default=RESULTS_DIR / "profile_train.json")
    args = p.parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    encoder = resolve_encoder(args.encoder)
    corpus = corpus_paths(args.corpus_dir)
    runs = [prepare(s, corpus, encoder, args.steps, args.warmup, args.seed) for s in args.systems]
    if args.cpu_bf16:
        runs.append(prepare("spanbert_ner", corpus, encoder, args.steps, args.warmup, args.seed, cpu_bf16=True))
    results = profile_interleaved(runs)
    machine = machine_info(threads=args.threads)
    command = "python bench/profile_train.py " + " ".join(sys.argv[1:] if argv is None else argv)
    write_json(args.output, {"results": results, "machine": machine, "command": command})
    write_text(args.output.with_suffix(".md"), render(results, machine, command.strip()))
    print(render(results, machine, command.strip()))


if __name__ == "__main__":
    main()
