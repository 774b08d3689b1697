"""release_free_memory: trims the glibc heap when resident memory grew past the margin, at most once per interval,
and never when the user turned it off."""
import math
import platform
import sys

import pytest

from spacy_spanbert import memory


@pytest.fixture(autouse=True)
def fresh_clock(monkeypatch):
    monkeypatch.setattr(memory, "_last", -math.inf)
    monkeypatch.setattr(memory, "_floor", None)
    monkeypatch.delenv("SPACY_SPANBERT_MALLOC_TRIM", raising=False)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="malloc_trim is glibc's")
def test_trims_then_waits_for_the_interval(monkeypatch):
    """Where resident memory cannot be read, the interval alone limits trims."""
    calls = []
    monkeypatch.setattr(memory, "_libc", type("Libc", (), {"malloc_trim": staticmethod(calls.append)})())
    monkeypatch.setattr(memory, "resident_bytes", lambda: None)
    assert memory.release_free_memory(min_interval_s=60) is True
    assert memory.release_free_memory(min_interval_s=60) is False
    assert memory.release_free_memory(min_interval_s=0) is True
    assert calls == [0, 0]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="malloc_trim is glibc's")
def test_trims_only_after_resident_memory_grew_past_the_margin(monkeypatch):
    calls = []
    rss = {"now": 1000 * 2**20}
    monkeypatch.setattr(memory, "_libc", type("Libc", (), {"malloc_trim": staticmethod(calls.append)})())
    monkeypatch.setattr(memory, "resident_bytes", lambda: rss["now"])
    assert memory.release_free_memory(min_interval_s=0) is True  # the first call sets the floor: 1000 MB
    rss["now"] = 1200 * 2**20  # a steady working set above the floor keeps its pages (margin: 256 MB)
    assert memory.release_free_memory(min_interval_s=0) is False
    rss["now"] = 1300 * 2**20  # creep past floor + margin is cut off
    assert memory.release_free_memory(min_interval_s=0) is True
    assert calls == [0, 0]
    rss["now"] = 900 * 2**20  # memory handed back some other way lowers the floor: creep is measured from there
    assert memory.release_free_memory(min_interval_s=0) is False and memory._floor == 900 * 2**20
    rss["now"] = 4000 * 2**20  # the floor is now 4000 MB: the margin is a quarter of it (1000 MB)
    memory._floor = rss["now"]
    rss["now"] = 4900 * 2**20
    assert memory.release_free_memory(min_interval_s=0) is False
    rss["now"] = 5100 * 2**20
    assert memory.release_free_memory(min_interval_s=0) is True


def test_resident_bytes_reads_this_process():
    rss = memory.resident_bytes()
    if sys.platform.startswith("linux"):
        assert rss is not None and 10 * 2**20 < rss < 64 * 2**30
    block = bytearray(200 * 2**20)  # touched: 200 MB more resident
    if rss is not None:
        assert memory.resident_bytes() - rss > 150 * 2**20
    del block


def test_env_var_turns_it_off(monkeypatch):
    calls = []
    monkeypatch.setattr(memory, "_libc", type("Libc", (), {"malloc_trim": staticmethod(calls.append)})())
    monkeypatch.setenv("SPACY_SPANBERT_MALLOC_TRIM", "0")
    assert memory.release_free_memory(min_interval_s=0) is False
    assert calls == []


def test_real_libc_trims_on_glibc_and_does_nothing_elsewhere():
    on_glibc = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert memory.release_free_memory(min_interval_s=0) is on_glibc
    assert memory.release_free_memory(min_interval_s=60) is False  # within the interval (or no glibc): no trim
