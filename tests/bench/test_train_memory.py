"""The training-memory benchmark reads spaCy's training table and /proc correctly (no training here)."""
import os

from bench import train_memory


def test_row_pattern_matches_score_rows_only():
    assert train_memory.ROW.match("  1     300           0.00           0.79   91.74   92.74   90.76    0.92")
    assert train_memory.ROW.match("  0       0           0.00           0.14    0.00    0.00    0.00    0.00")
    assert not train_memory.ROW.match("E    #       LOSS TRANS...  LOSS SPANB...  ENTS_F  ENTS_P  ENTS_R  SCORE ")
    assert not train_memory.ROW.match("---  ------  -------------  -------------  ------  ------  ------  ------")


def test_reads_own_memory_and_nothing_for_a_dead_pid():
    mem = train_memory.read_status_mb(os.getpid())
    assert mem["VmRSS"] > 1 and mem["VmHWM"] >= mem["VmRSS"]
    assert train_memory.read_status_mb(2**22 + 12345) == {}


def test_render_reports_growth_per_system():
    rows = [{"step": s, "wall_s": s, "rss_mb": 1000 + s, "peak_mb": 1100 + s} for s in (0, 100, 200)]
    result = {"command": "python bench/train_memory.py", "machine": {"cpu": "x", "versions": {}},
              "systems": {"spanbert_ner": {"rows": rows}}}
    text = train_memory.render(result)
    assert "| 200 | 1200 (peak 1300) |" in text
    assert "spanbert_ner: +100 MB from step 100 to 200" in text
