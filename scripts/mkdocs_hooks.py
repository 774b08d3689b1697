"""MkDocs hook: serve the benchmark plots from bench/results/ at bench/NAME.png, so the benchmarks page shows them
without a second copy of each image in docs/."""
from pathlib import Path

from mkdocs.structure.files import File

RESULTS = Path(__file__).resolve().parents[1] / "bench" / "results"


def on_files(files, config):
    for png in sorted(RESULTS.glob("*.png")):
        files.append(File.generated(config, f"bench/{png.name}", abs_src_path=str(png)))
    return files
