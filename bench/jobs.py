"""A small job pool for the benchmarks: subprocess jobs N at a time, in order, as their dependencies finish.

Why: on a shared 2-core machine the long benchmarks run two 1-thread jobs side by side, must not start a job that
would end after the machine is needed back, and must write their results after every finished job.
"""
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from bench.common import fmt_duration

@dataclass
class Job:
    """One subprocess job: runs when its dependencies finished, records its result through `done`."""
    key: str
    run: Callable[[], Dict[str, Any]]
    done: Callable[[Dict[str, Any]], None]
    deps: Tuple[str, ...] = ()
    estimate_s: Callable[[], Optional[float]] = field(default=lambda: None)


def run_jobs(jobs: List[Job], parallel: int, deadline: Optional[float], publish: Callable[[], None],
             skipped: Callable[[Job, str], None]) -> None:
    """Run jobs `parallel` at a time in list order as their dependencies finish; publish after each one.

    A job whose dependency failed is skipped; past the deadline (or when its estimate would cross it) a job is not
    started. Results are handled in this thread only.
    """
    ok: Dict[str, bool] = {}
    pending = list(jobs)
    running: Dict[Future, Job] = {}
    with ThreadPoolExecutor(max_workers=parallel) as pool:
        while pending or running:
            for job in list(pending):
                if len(running) >= parallel:
                    break
                if any(ok.get(d) is False for d in job.deps):
                    pending.remove(job)
                    ok[job.key] = False
                    skipped(job, "not run: a job it needs failed or did not run")
                    continue
                if not all(ok.get(d) for d in job.deps):
                    continue
                est = job.estimate_s() or 0.0
                if deadline is not None and time.time() + est > deadline:
                    pending.remove(job)
                    ok[job.key] = False
                    skipped(job, f"not run: would end after the deadline (estimate {fmt_duration(est)})")
                    continue
                pending.remove(job)
                running[pool.submit(job.run)] = job
            if not running:
                if pending and not any(all(ok.get(d) for d in j.deps) for j in pending):
                    for job in pending:
                        skipped(job, "not run: a job it needs did not run")
                    return
                continue
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
