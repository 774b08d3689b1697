"""Keep `nlp.pipe(texts, n_process=2)` from hanging in forked workers, without touching anyone else's processes.

PyTorch's CPU wheels run intra-op parallelism on GNU OpenMP. Once a process has run a parallel op (any `nlp(text)`
through a transformer does), its OpenMP thread pool exists only in that process; a child created by `fork`
(multiprocessing's default start method on Linux, which spaCy's `n_process` uses) inherits the pool's state but not
its threads, and its first parallel op waits for them forever (`futex_wait`). Running the child's torch
single-threaded never enters an OpenMP parallel region, so it cannot wait on the missing threads; with `n_process`
workers the processes are the parallelism.

Nothing happens at import: importing the package (spaCy does it through entry points for every pipeline) changes
no global state. Our transformer and components call `guard()` before their torch work; only there, and only in a
process forked from the one that imported the package, is torch made single-threaded, once. A forked worker of an
app that never runs a spacy-spanbert component keeps its threads. SPACY_SPANBERT_FORK_SAFETY=0 turns it off.
"""
import os
import sys
from typing import Optional

ENV = "SPACY_SPANBERT_FORK_SAFETY"
_IMPORT_PID = os.getpid()  # the process that imported the package (a forked child inherits the value)
_CHECKED_PID: Optional[int] = None


def guard() -> bool:
    """Where a spacy-spanbert component is about to run torch: in a forked child, make torch single-threaded once.

    RETURNS (bool): Whether this call changed torch's thread count."""
    global _CHECKED_PID
    pid = os.getpid()
    if pid == _CHECKED_PID:
        return False
    _CHECKED_PID = pid
    if pid == _IMPORT_PID or os.environ.get(ENV, "1") == "0":
        return False
    torch = sys.modules.get("torch")
    if torch is None or not hasattr(torch, "set_num_threads"):
        return False  # torch never imported in the parent: no OpenMP pool was inherited
    try:
        if torch.get_num_threads() > 1:
            torch.set_num_threads(1)
            return True
    except RuntimeError:
        pass
    return False
