"""Resident memory of `spacy train` every N steps: does training memory stay flat, or grow with the steps?

Why: on a 2-core, 24 GB machine spacy-transformers + `ner` training on CoNLL grew from 2.9 GB to 9.3 GB over 25
minutes (issue 3); a component that grows like that cannot train for long. This script runs `spacy train` as a
child process, reads its resident set size (VmRSS) and peak (VmHWM) from /proc whenever the training table prints
a row (every `--eval-frequency` steps), and samples RSS once a second for the overall maximum. Linux only.

    python bench/train_memory.py --systems spanbert_ner trf_ner --max-steps 400 --eval-frequency 100
"""
import argparse
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

if __package__ in (None, ""):  # run as `python bench/NAME.py`: make the `bench` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import (  # noqa: E402
    RESULTS_DIR, ROOT, machine_info, machine_line, markdown_table, spacy_cmd, write_json, write_text,
)
from bench.ner_runs import budget_overrides, corpus_paths  # noqa: E402

CONFIGS = {"spanbert_ner": ROOT / "configs" / "ner.cfg", "trf_ner": ROOT / "bench" / "configs" / "trf_ner.cfg"}
ROW = re.compile(r"^\s*(\d+)\s+(\d+)\s+[\d.]+")  # spaCy's console logger: epoch, step, losses, scores


def read_status_mb(pid: int) -> Dict[str, float]:
    """VmRSS and VmHWM of a live process in MB, from /proc/PID/status ({} once it has exited)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    out = {}
    for key in ("VmRSS", "VmHWM"):
        match = re.search(rf"^{key}:\s+(\d+) kB", text, flags=re.M)
        if match:
            out[key] = int(match.group(1)) / 1024
    return out


def measure(system: str, corpus: Dict[str, Path], encoder: str, max_steps: int, eval_frequency: int,
            work_dir: Path) -> Dict[str, Any]:
    """Train one system, recording memory at every logged step; returns the rows and the sampled maximum."""
    cmd = spacy_cmd("train", CONFIGS[system], "--output", work_dir / system, "--paths.train", corpus["train"],
                    "--paths.dev", corpus["dev"], "--paths.init_model", encoder,
                    *budget_overrides(max_steps, eval_frequency))
    start = time.perf_counter()
    proc = subprocess.Popen([str(c) for c in cmd], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1)
    peak = {"rss_mb": 0.0}

    def sample() -> None:
        while proc.poll() is None:
            peak["rss_mb"] = max(peak["rss_mb"], read_status_mb(proc.pid).get("VmRSS", 0.0))
            time.sleep(1.0)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    rows: List[Dict[str, Any]] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(f"[{system}] {line}")
        match = ROW.match(line)
        if match:
            mem = read_status_mb(proc.pid)
            rows.append({"step": int(match.group(2)), "wall_s": round(time.perf_counter() - start, 1),
                         "rss_mb": round(mem.get("VmRSS", 0.0)), "peak_mb": round(mem.get("VmHWM", 0.0))})
    proc.wait()
    sampler.join()
    return {"returncode": proc.returncode, "rows": rows, "max_sampled_rss_mb": round(peak["rss_mb"]),
            "wall_s": round(time.perf_counter() - start, 1)}


def render(result: Dict[str, Any]) -> str:
    lines = ["### Training memory (`spacy train`, resident MB at each logged step)", "",
             f"Command: `{result['command']}`", ""]
    systems = result["systems"]
    steps = sorted({r["step"] for s in systems.values() for r in s["rows"]})
    by_step = {name: {r["step"]: r for r in s["rows"]} for name, s in systems.items()}
    rows = [[step, *(f"{by_step[n][step]['rss_mb']} (peak {by_step[n][step]['peak_mb']})" if step in by_step[n]
                     else "–" for n in systems)] for step in steps]
    lines.append(markdown_table(["step", *systems], rows))
    growth = []
    for name, s in systems.items():
        late = [r for r in s["rows"] if r["step"] > 0]
        if len(late) >= 2:
            growth.append(f"{name}: {late[-1]['rss_mb'] - late[0]['rss_mb']:+d} MB from step {late[0]['step']} to "
                          f"{late[-1]['step']}")
    if growth:
        lines += ["", "Growth after the first logged training step: " + "; ".join(growth) + "."]
    lines += ["", machine_line(result["machine"])]
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--systems", nargs="+", default=["spanbert_ner", "trf_ner"], choices=sorted(CONFIGS))
    p.add_argument("--corpus-dir", type=Path, default=ROOT / "corpus")
    p.add_argument("--encoder", default="assets/all-MiniLM-L6-v2")
    p.add_argument("--max-steps", type=int, default=400)
    p.add_argument("--eval-frequency", type=int, default=100)
    p.add_argument("--work-dir", type=Path, default=ROOT / "bench" / "work" / "train_memory")
    p.add_argument("--output", type=Path, default=RESULTS_DIR / "train_memory.json")
    args = p.parse_args(argv)
    if not Path("/proc/self/status").exists():
        p.error("this benchmark reads /proc/PID/status: run it on Linux")
    corpus = corpus_paths(args.corpus_dir)
    result: Dict[str, Any] = {"command": "python bench/train_memory.py " + " ".join(argv or sys.argv[1:]),
                              "machine": machine_info(), "systems": {}}
    for system in args.systems:
        result["systems"][system] = measure(system, corpus, args.encoder, args.max_steps, args.eval_frequency,
                                            args.work_dir)
    write_json(args.output, result)
    write_text(args.output.with_suffix(".md"), render(result))
    print(render(result))
    return 0 if all(s["returncode"] == 0 for s in result["systems"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
