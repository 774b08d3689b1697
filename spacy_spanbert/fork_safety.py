"""Keep `nlp.pipe(texts, n_process=2)` from hanging in forked workers.

PyTorch's CPU wheels run intra-op parallelism on GNU OpenMP. Once the parent process has run a parallel op (any
`nlp(text)` through a transformer does), its OpenMP thread pool exists only in the parent; a child created by
`fork` (multiprocessing's default start method on Linux, which spaCy's `n_process` uses) inherits the pool's state
but not its threads, and its first parallel op waits for them forever (`futex_wait`). Running the child's torch
single-threaded never enters an OpenMP parallel region, so it cannot wait on the missing threads; with `n_process`
workers the processes are the parallelism. Installed when the package is imported (spaCy imports it through the
entry points of every component and architecture); torch itself is never imported here.
"""
import os
import sys

_INSTALLED = False


def _single_threaded_torch_in_child() -> None:
    """Runs in a freshly forked child: make torch single-threaded if the parent had torch loaded."""
    torch = sys.modules.get("torch")
    if torch is None or not hasattr(torch, "set_num_threads"):
        return  # torch never imported (or only half-imported): no OpenMP pool was inherited
    try:
        if torch.get_num_threads() > 1:
            torch.set_num_threads(1)
    except RuntimeError:  # never let a fork fail because of this
        pass


def install() -> None:
    """Register the at-fork handler once per process (a no-op where `os.register_at_fork` does not exist)."""
    global _INSTALLED
    if _INSTALLED or not hasattr(os, "register_at_fork"):
        return
    os.register_at_fork(after_in_child=_single_threaded_torch_in_child)
    _INSTALLED = True
