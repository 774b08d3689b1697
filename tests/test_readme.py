"""README's two opening commands are the ones CI and users run: keep them in sync with .ci/run and project.yml."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands() -> list:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```(?:bash|sh)\n(.*?)\n```", text, flags=re.S)[:2]


def test_readme_opens_with_two_commands():
    main_cmd, test_cmd = _readme_commands()
    assert "scripts/setup.sh" in main_cmd and "spacy project run all" in main_cmd
    assert "scripts/setup.sh" in test_cmd and "pytest" in test_cmd


def test_ci_runs_readme_test_command():
    _, test_cmd = _readme_commands()
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_cmd.strip() in ci
