"""Hand freed heap memory back to the operating system between batches (glibc only; a no-op elsewhere).

Transformer batches allocate activations of a new shape every time (sentence lengths vary). Once glibc's dynamic
mmap threshold has grown past those sizes it serves them from its heap and keeps the freed pages, so resident memory
climbs with every new shape although nothing stays alive: after 2,000 CoNLL sentences a pipeline held 960 MB
resident of which 522 MB were live. `malloc_trim(0)` returns the free pages.

Trimming has a price: the next batch faults the returned pages back in (a trim every second cost 10% of a training
step). So a trim runs only when resident memory has grown past what it was after the last trim by more than a margin
(the larger of `MIN_GROWTH_MB` and `GROWTH_SHARE` of it): a steady working set keeps its pages, and creep is cut off.
Set SPACY_SPANBERT_MALLOC_TRIM=0 to turn it off.
"""
import ctypes
import ctypes.util
import math
import os
import sys
import time
from typing import Any, Optional

MIN_INTERVAL_S = 1.0
MIN_GROWTH_MB = 256.0
GROWTH_SHARE = 0.25
_libc: Optional[Any] = None
_last = -math.inf
_floor: Optional[int] = None  # resident bytes right after the last trim
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _load_libc() -> Optional[Any]:
    global _libc
    if _libc is None:
        _libc = False
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                _libc = libc if hasattr(libc, "malloc_trim") else False  # musl has no malloc_trim
            except OSError:
                pass
    return _libc or None


def resident_bytes() -> Optional[int]:
    """This process's resident set size from /proc (one small read), or None where there is no /proc."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def release_free_memory(min_interval_s: float = MIN_INTERVAL_S) -> bool:
    """Trim the C heap if resident memory grew past the margin since the last trim, at most once per interval,
    unless the user turned it off.

    RETURNS (bool): Whether a trim ran.
    """
    global _last, _floor
    if os.environ.get("SPACY_SPANBERT_MALLOC_TRIM", "1") == "0":
        return False
    now = time.monotonic()
    if now - _last < min_interval_s:
        return False
    libc = _load_libc()
    if libc is None:
        return False
    _last = now
    rss = resident_bytes()
    if rss is not None and _floor is not None:
        margin = max(MIN_GROWTH_MB * 2**20, GROWTH_SHARE * _floor)
        if rss < _floor + margin:
            _floor = min(_floor, rss)  # memory handed back otherwise (a big batch's mmap freed) lowers the floor
            return False
    libc.malloc_trim(0)
    _floor = resident_bytes()
    _last = time.monotonic()
    return True
