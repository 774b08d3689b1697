"""bench/workflow.py's report for each workflow: step times, total, and the test metrics the workflow wrote."""
from bench import workflow
from bench.common import machine_info


def _result(name, metrics):
    steps = [{"step": step, "wall_s": 1.0, "ok": True} for step in workflow.WORKFLOWS[name]]
    return {"workflow": name, "command": f"spacy project run {name}", "steps": steps, "skipped": [],
            "total_s": float(len(steps)), "test_metrics": metrics, "pretrain_heldout": None, "machine": machine_info()}


def test_the_textcat_report_has_each_step_and_the_per_topic_scores():
    metrics = {"accuracy": 0.981, "macro": {"p": 0.98, "r": 0.979, "f": 0.9795},
               "per_label": {"sport": {"p": 1.0, "r": 1.0, "f": 1.0}, "tech": {"p": 0.95, "r": 0.97, "f": 0.96}}}
    report = workflow.render(_result("textcat", metrics))
    for step in workflow.WORKFLOWS["textcat"]:
        assert f"| {step} |" in report
    assert "accuracy 98.1" in report and "| tech | 95.0 | 97.0 | 96.0 |" in report and "**98.0**" in report
    assert "Machine:" in report


def test_a_report_without_metrics_still_lists_the_steps():
    report = workflow.render(_result("rel", None))
    assert "| rel_train |" in report and "**total**" in report
