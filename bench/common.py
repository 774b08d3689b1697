"""Shared helpers of the benchmarks: machine facts, a logged subprocess runner, statistics, formatting, result files.

Why: every number must say where and with what it was measured, and one system that fails must not stop the
others, so each training run is a subprocess whose exit code, wall time and last lines of output are recorded.
"""
import json
import math
import os
import platform
import shlex
import signal
import subprocess
import sys
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "bench" / "results"
PACKAGES = ("torch", "spacy", "thinc", "transformers", "spacy-transformers", "spacy-spanbert", "span-marker")
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def cli_overrides(overrides: Dict[str, Any]) -> List[str]:
    """Config overrides as `spacy train` arguments (`--a.b value`; other than strings, values as JSON, as spaCy's
    CLI parses them: true, null, 0.5)."""
    return [arg for key, value in overrides.items()
            for arg in (f"--{key}", value if isinstance(value, str) else json.dumps(value))]


# ---------------------------------------------------------------- machine


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else what `platform` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_versions(names: Iterable[str] = PACKAGES) -> Dict[str, Optional[str]]:
    """Installed versions by distribution name (None when absent), read from metadata without importing."""
    out: Dict[str, Optional[str]] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def gpu_info(gpu_id: int) -> Optional[Dict[str, Any]]:
    """Name and memory of the GPU a run uses, or None on CPU (torch is imported only when a GPU is asked for)."""
    if gpu_id < 0:
        return None
    try:
        import torch

        if not torch.cuda.is_available():
            return {"error": "no CUDA device visible to torch"}
        props = torch.cuda.get_device_properties(gpu_id)
        return {"id": gpu_id, "name": props.name, "memory_gb": round(props.total_memory / 2**30, 1)}
    except Exception as err:  # a broken driver must not stop the benchmark
        return {"error": str(err)}


def git_commit() -> Optional[str]:
    """The commit measured, with "-dirty" when tracked files differ from it (the measured code may not be its)."""
    try:
        out = subprocess.run(["git", "rev-parse", "--short=7", "HEAD"], cwd=ROOT, capture_output=True, text=True)
        changed = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=ROOT, capture_output=True).returncode == 1
        return (out.stdout.strip() + ("-dirty" if changed else "")) or None
    except OSError:
        return None


def torch_threads() -> Optional[int]:
    try:
        import torch
    except ImportError:
        return None
    return torch.get_num_threads()


def cpu_features() -> Dict[str, Any]:
    """What decides CPU speed here: PyTorch's kernel level, native bf16 and int8 VNNI, and any emulation settings."""
    try:
        from spacy_spanbert import cpu
    except ImportError:
        return {}
    return cpu.describe()


def machine_info(gpu_id: int = -1, threads: Optional[int] = None) -> Dict[str, Any]:
    """Everything a reader needs to compare our numbers with theirs: CPU, cores, threads, GPU, versions."""
    return {
        "cpu": cpu_model(),
        "cpu_features": cpu_features(),
        "cpu_count": os.cpu_count(),
        "torch_threads": threads or torch_threads(),  # what a child torch process uses (OMP_NUM_THREADS at start-up)
        "threads": threads if threads else {k: os.environ.get(k) for k in THREAD_VARS if os.environ.get(k)} or "default",
        "gpu": gpu_info(gpu_id),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": package_versions(),
        "git_commit": git_commit(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }


def features_text(features: Dict[str, Any]) -> str:
    """'AVX512, bf16 native, VNNI' style summary of `cpu_features` (empty for results recorded without it)."""
    if not features:
        return ""
    parts = [str(features.get("kernel_capability")), "bf16 native" if features.get("native_bf16") else "no native bf16",
             "int8 VNNI" if features.get("int8_vnni") else "no int8 VNNI"]
    if features.get("emulation"):
        parts.append("emulated: " + " ".join(f"{k}={v}" for k, v in features["emulation"].items()))
    return ", ".join(parts)


def machine_line(machine: Dict[str, Any]) -> str:
    """One Markdown line describing the machine, for the foot of each results table."""
    gpu = machine.get("gpu")
    device = gpu.get("name", gpu.get("error")) if isinstance(gpu, dict) else "CPU only"
    threads = machine.get("threads")
    if isinstance(threads, dict):
        threads = ", ".join(f"{k}={v}" for k, v in threads.items())
    vers = ", ".join(f"{k} {v}" for k, v in machine.get("versions", {}).items() if v)
    return (
        f"Machine: {machine.get('cpu')} [{features_text(machine.get('cpu_features') or {}) or 'CPU features not recorded'}] "
        f"({machine.get('cpu_count')} logical cores, torch threads {machine.get('torch_threads')}, env: {threads}); "
        f"device: {device}; Python {machine.get('python')}; {vers}; commit {machine.get('git_commit')}; "
        f"{machine.get('date')}."
    )


def thread_env(threads: Optional[int]) -> Dict[str, str]:
    """Environment for child runs: pins BLAS/OpenMP threads when asked, so runs on shared machines are comparable."""
    env = dict(os.environ)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    if threads:
        env.update({var: str(threads) for var in THREAD_VARS})
    return env


# ---------------------------------------------------------------- subprocesses


@dataclass
class RunResult:
    cmd: List[str]
    returncode: int
    wall_s: float
    tail: str
    log_path: Optional[str]

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def run_logged(cmd: Sequence[Any], log_path: Optional[Path] = None, *, env: Optional[Dict[str, str]] = None,
               cwd: Path = ROOT, prefix: str = "", tail_lines: int = 30) -> RunResult:
    """Run `cmd`, echo its output live (prefixed), save it to `log_path`, keep the last lines for failure reports.
    Interrupted (Ctrl-C), it takes the command's whole process group with it."""
    cmd = [str(c) for c in cmd]
    tail: deque = deque(maxlen=tail_lines)
    log_name = str(log_path) if log_path else None
    if log_path is not None:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with open(log_path or os.devnull, "w", encoding="utf8") as log:
        log.write("$ " + " ".join(cmd) + "\n")
        try:
            proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    text=True, errors="replace", bufsize=1, start_new_session=True)
        except OSError as err:
            return RunResult(cmd, 127, 0.0, f"could not start {cmd[0]}: {err}", log_name)
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                sys.stdout.write(prefix + line)
                sys.stdout.flush()
                tail.append(line.rstrip("\n"))
                log.write(line)
            proc.wait()
        except KeyboardInterrupt:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            raise
    return RunResult(cmd, proc.returncode, round(time.perf_counter() - start, 2), "\n".join(tail), log_name)


def spacy_cmd(*args: Any) -> List[str]:
    """`python -m spacy ...` with this interpreter, so the plugin's entry points are the installed ones."""
    return [sys.executable, "-m", "spacy", *[str(a) for a in args]]


@contextmanager
def work_dir_lock(work_dir: Path, fix: str = "wait for it to finish or pass another --work-dir") -> Iterator[None]:
    """Hold WORK_DIR/run.pid while a benchmark writes there: a second run on the same directory would train into the
    same folders, so it stops with one line instead (a lock left by a process that is gone does not block)."""
    lock = Path(work_dir) / "run.pid"
    lock.parent.mkdir(parents=True, exist_ok=True)
    try:
        other = int(lock.read_text().strip())
        os.kill(other, 0)
        alive = other != os.getpid()
    except PermissionError:  # it exists, owned by someone else
        alive = True
    except (OSError, ValueError):  # no lock, a torn one, or its process is gone (ProcessLookupError)
        alive = False
    if alive:
        raise ValueError(f"{work_dir} is in use by another run (pid {other}): {fix}")
    write_text(lock, str(os.getpid()))
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def run_cli(main: Callable[[], Any]) -> None:
    """Run a benchmark's `main`; bad input (a missing file, a bad value) ends in one line, before any training."""
    try:
        main()
    except (FileNotFoundError, ValueError) as err:
        sys.exit(f"error: {err}")


# ---------------------------------------------------------------- statistics, formatting and files


def summarize(values: Sequence[float]) -> Optional[Dict[str, float]]:
    """Mean, sample standard deviation (0 for one value), min, max and count; None for no values."""
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not vals:
        return None
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return {"mean": mean, "std": std, "min": min(vals), "max": max(vals), "n": len(vals)}


def fmt_stat(stat: Optional[Dict[str, float]], scale: float = 100.0, digits: int = 1) -> str:
    """'85.9 ± 0.3' (mean ± sample std over seeds), '85.9' for one seed, '–' when missing."""
    if not stat:
        return "–"
    text = f"{stat['mean'] * scale:.{digits}f}"
    return text + (f" ± {stat['std'] * scale:.{digits}f}" if stat.get("n", 1) > 1 else "")


def reused_note(n_reused: int) -> str:
    """After a benchmark's total wall time: how many runs came from earlier invocations (--reuse), whose times that
    total leaves out; empty when none did."""
    return f" ({n_reused} run(s) reused from earlier invocations with --reuse, with their own times)" if n_reused else ""


def fmt_duration(seconds: Optional[float]) -> str:
    if seconds is None:
        return "–"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def rerun_command(script: str, argv: Sequence[str]) -> str:
    """The command line that reruns a benchmark, led by the CPU emulation settings it ran under (if any)."""
    emulation = (cpu_features().get("emulation") or {}).items()
    return shlex.join([*(f"{k}={v}" for k, v in emulation), "python", script, *(str(a) for a in argv)])


def shown(text: str) -> str:
    """Paths in a rerun command as a reader types them: relative to the repository root when inside it."""
    return str(text).replace(str(ROOT) + "/", "")


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub Markdown table; `|` inside cells is escaped so error text cannot break the layout."""

    def cell(v: Any) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows])


def short_error(tail: str, limit: int = 160) -> str:
    """The most telling line of a failure's output (the last non-empty one), cut to `limit` characters."""
    lines = [ln.strip() for ln in (tail or "").splitlines() if ln.strip()]
    text = lines[-1] if lines else "no output"
    return text if len(text) <= limit else text[: limit - 1] + "…"


def write_json(path: Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False))


def write_results(path: Path, result: Any, markdown: str) -> None:
    """A benchmark's JSON at `path`, its Markdown table beside it (same name, .md), and the table on stdout."""
    write_json(path, result)
    write_text(Path(path).with_suffix(".md"), markdown)
    print(markdown)


def write_text(path: Path, text: str) -> None:
    """Write through a temporary file and a rename, so a run killed mid-write never leaves a torn file behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text if text.endswith("\n") else text + "\n", encoding="utf8")
    os.replace(tmp, path)
