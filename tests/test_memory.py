"""release_free_memory: trims the glibc heap at most once per interval, and never when the user turned it off."""
import math
import platform
import sys

import pytest

from spacy_spanbert import memory


@pytest.fixture(autouse=True)
def fresh_clock(monkeypatch):
    monkeypatch.setattr(memory, "_last", -math.inf)
    monkeypatch.delenv("SPACY_SPANBERT_MALLOC_TRIM", raising=False)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="malloc_trim is glibc's")
def test_trims_then_waits_for_the_interval(monkeypatch):
    calls = []
    monkeypatch.setattr(memory, "_libc", type("Libc", (), {"malloc_trim": staticmethod(calls.append)})())
    assert memory.release_free_memory(min_interval_s=60) is True
    assert memory.release_free_memory(min_interval_s=60) is False
    assert memory.release_free_memory(min_interval_s=0) is True
    assert calls == [0, 0]


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
