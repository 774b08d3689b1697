"""Try every bad input we know of, as a user meets it (a command in a fresh process), and count the clear errors.

Each case passes when the command stops with exit code != 0, prints no traceback and exactly one `✘` line that
names the problem (or, for the recovery cases, when the retry succeeds). `spacy train` prints spaCy's own
traceback for errors raised inside the pipeline: there the case passes as "last line" when the final line names the
problem. Writes bench/results/reliability.{json,md}. Run: `python scripts/reliability_check.py` (a few minutes).
"""
import argparse
import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Callable, Dict, List

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.fixtures.tiny_bert import DETERMINERS, NOUNS, VERBS, build_tiny_bert  # noqa: E402

PRETRAIN = [sys.executable, "-m", "spacy", "spanbert-pretrain", str(ROOT / "configs" / "pretrain.cfg")]
SMALL = ["--training.max_length", "32", "--training.batch_size", "4", "--training.max_steps", "4",
         "--training.save_steps", "2", "--training.logging_steps", "1", "--training.warmup_steps", "1",
         "--training.progress_bar", "false"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
DISK_FULL = textwrap.dedent(f"""
    import errno, os, sys
    from spacy_spanbert.pretraining.trainer import SpanBertTrainer
    from spacy_spanbert.cli.pretrain import run_pretrain
    original, calls = SpanBertTrainer._save_optimizer_and_scheduler, []
    def fills_the_disk(self, output_dir):  # the second checkpoint meets a full disk
        calls.append(output_dir)
        if len(calls) == 2:
            raise OSError({errno.ENOSPC}, os.strerror({errno.ENOSPC}))
        return original(self, output_dir)
    SpanBertTrainer._save_optimizer_and_scheduler = fills_the_disk
    run_pretrain(sys.argv[1], sys.argv[2], sys.argv[3:])
""")


def write_corpus(path: Path, n_docs: int = 40) -> Path:
    """A small .txt corpus in the tiny BERT's words: a sentence per line, a blank line between documents."""
    import random

    rng = random.Random(0)
    phrase = lambda: f"{rng.choice(DETERMINERS)} {rng.choice(NOUNS)}"  # noqa: E731
    docs = ["\n".join(f"{phrase().capitalize()} {rng.choice(VERBS)} {phrase()}." for _ in range(5))
            for _ in range(n_docs)]
    path.write_text("\n\n".join(docs) + "\n", encoding="utf8")
    return path


def run(cmd: List[str], timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)


def judge(res: subprocess.CompletedProcess, expect: str) -> Dict[str, object]:
    """'one line', 'last line' (a traceback whose last line names the problem) or 'unclear'."""
    out = res.stderr.strip().splitlines()
    errors = [line for line in out if line.startswith("✘")]
    if res.returncode == 0:
        verdict = "no error"
    elif "Traceback" not in res.stderr and len(errors) == 1 and expect in errors[0]:
        verdict = "one line"
    elif out and expect in out[-1]:
        verdict = "last line"
    else:
        verdict = "unclear"
    return {"verdict": verdict, "exit": res.returncode, "message": (errors or out or [""])[-1][:300],
            "stderr_lines": len(out)}


def cases(work: Path, bert: Path, corpus: Path) -> Dict[str, Callable[[], Dict[str, object]]]:
    """Each case builds its bad input in `work` and returns its verdict."""
    def bare_encoder() -> Path:
        bare = work / "bare-encoder"
        if not bare.exists():
            shutil.copytree(bert, bare)
            for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
                (bare / name).unlink(missing_ok=True)
        return bare

    def pretrain(out: Path, *extra, model=bert, text=corpus):
        return run([*PRETRAIN, out, "--paths.raw_text", text, "--paths.init_model", model, *SMALL, *extra])

    def no_tokenizer():
        return judge(pretrain(work / "a", model=bare_encoder()), "no tokenizer files")

    def output_is_a_file():
        (work / "b").write_text("a file")
        return judge(pretrain(work / "b"), "is an existing file")

    def non_utf8():
        bad = work / "latin1.txt"
        bad.write_bytes("The man saw the dog.\nThe caf\u00e9 was red.\n".encode("latin-1"))
        return judge(pretrain(work / "c", text=bad), str(bad))

    def failed_start_then_retry():
        blank = work / "blank.txt"
        blank.write_text("\n\n   \n")
        first = judge(pretrain(work / "d", text=blank), "no text")
        retry = pretrain(work / "d")
        ok = first["verdict"] == "one line" and retry.returncode == 0
        return {**first, "verdict": "recovered" if ok else "blocked", "retry_exit": retry.returncode,
                "retry_message": retry.stderr.strip().splitlines()[-1:]}

    def truncated_optimizer():
        out = work / "e"
        pretrain(out, "--training.max_steps", "2")
        optimizer = out / "checkpoints" / "step-2" / "optimizer.pt"
        optimizer.write_bytes(optimizer.read_bytes()[: optimizer.stat().st_size // 2])
        return judge(pretrain(out, "--resume"), "optimizer.pt")

    def torn_log_line():
        out = work / "f"
        pretrain(out, "--training.max_steps", "2")
        log = out / "log.jsonl"
        log.write_text(log.read_text()[:-7])  # the last line cut short, as by a kill during a write
        res = pretrain(out, "--resume")
        return {**judge(res, "log.jsonl"), "verdict": "recovered" if res.returncode == 0 else "blocked"}

    def max_length_not_a_number():
        return judge(pretrain(work / "g", "--training.max_length", "abc"), "training.max_length")

    def disk_full():
        res = run([sys.executable, "-c", DISK_FULL, ROOT / "configs" / "pretrain.cfg", work / "h", "--paths.raw_text",
                   corpus, "--paths.init_model", bert, *SMALL])
        verdict = judge(res, "No space left on device")
        intact = (work / "h" / "checkpoints" / "step-2" / "optimizer.pt").exists()
        return {**verdict, "previous_checkpoint_intact": intact}

    def spacy_train(name: str, train: Path, model: Path, expect: str):
        res = run([sys.executable, "-m", "spacy", "train", ROOT / "configs" / "ner.cfg", "--output", work / name,
                   "--paths.train", train, "--paths.dev", train, "--paths.init_model", model,
                   "--training.max_steps", "2", "--training.optimizer.learn_rate.total_steps", "2",
                   "--components.transformer.model.get_spans.window", "32",
                   "--components.transformer.model.get_spans.stride", "24"])
        return judge(res, expect)

    def docbin(name: str, with_entities: bool) -> Path:
        import spacy
        from spacy.tokens import DocBin

        nlp, db = spacy.blank("en"), DocBin()
        for _ in range(20):
            doc = nlp.make_doc("John saw the big dog in London .")
            if with_entities:
                doc.ents = [doc.char_span(0, 4, label="PER")]
            db.add(doc)
        db.to_disk(work / f"{name}.spacy")
        return work / f"{name}.spacy"

    return {
        "pretrain: --paths.init_model without tokenizer files": no_tokenizer,
        "pretrain: OUTPUT_DIR is an existing file": output_is_a_file,
        "pretrain: non-UTF-8 corpus": non_utf8,
        "pretrain: a failed start, then the retry with a good corpus": failed_start_then_retry,
        "pretrain --resume: truncated optimizer.pt in the latest checkpoint": truncated_optimizer,
        "pretrain --resume: truncated last line of log.jsonl": torn_log_line,
        "pretrain: --training.max_length abc": max_length_not_a_number,
        "pretrain: disk full during a checkpoint save": disk_full,
        "spacy train: encoder directory without tokenizer files": lambda: spacy_train(
            "i", docbin("ents", True), bare_encoder(), "no tokenizer files"),
        "spacy train: training set without entities": lambda: spacy_train(
            "j", docbin("no-ents", False), bert, "no gold spans"),
    }


def markdown(report: Dict[str, object]) -> str:
    rows = report["cases"]
    good = sum(r["verdict"] in ("one line", "recovered") for r in rows.values())
    lines = ["### Bad inputs: does each end in one clear line?", "",
             f"{good} of {len(rows)} end in a one-line error before work starts (or recover, for the retry cases); "
             f"'last line': a traceback (spaCy's CLI) whose last line names the problem. "
             f"Rerun: `python scripts/reliability_check.py`.", "",
             "| case | verdict | message |", "|---|---|---|"]
    for name, r in rows.items():
        message = str(r["message"]).replace("|", "\\|")
        lines.append(f"| {name} | {r['verdict']} | {message} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "reliability")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bert = build_tiny_bert(work / "bert")
        corpus = write_corpus(work / "corpus.txt")
        results = {}
        for name, case in cases(work, bert, corpus).items():
            results[name] = case()
            print(f"{results[name]['verdict']:>10}  {name}", flush=True)
    report = {"cases": results, "one_line_or_recovered": sum(
        r["verdict"] in ("one line", "recovered") for r in results.values()), "total": len(results)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(report))
    print(f"{report['one_line_or_recovered']} of {report['total']}: {args.out}.md")


if __name__ == "__main__":
    main()
