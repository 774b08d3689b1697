"""Open the built docs site in a real headless browser, as a user would, and check that its pages render.

Builds the site (`mkdocs build --strict`), serves it on 127.0.0.1, and has Chromium render the home page, the
quickstart and the reference: each page's DOM must hold its title and headings once the browser has run the theme's
scripts, and a screenshot of each is saved (`--screenshots DIR`) for a person to look at. Needs Chromium
(`apt-get install chromium`); `mkdocs serve` is the way to browse the site while writing.

Usage: python scripts/check_docs_site.py [--screenshots docs-screenshots] [--chromium /usr/bin/chromium]
"""
import argparse
import functools
import http.server
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import List, Optional

ROOT = Path(__file__).resolve().parents[1]
PAGES = {"home": ("", "spacy-spanbert"), "quickstart": ("quickstart/", "Quickstart"),
         "reference": ("reference/", "Registered names and settings")}
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def render(chromium: str, url: str, profile: Path, screenshot: Optional[Path]) -> str:
    """The page's DOM after Chromium ran its scripts (and a 1280 x 900 screenshot when asked)."""
    base = [chromium, *FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=3000"]
    if screenshot is not None:
        subprocess.run([*base, "--window-size=1280,900", f"--screenshot={screenshot}", url], check=True,
                       capture_output=True, timeout=120)
    return subprocess.run([*base, "--dump-dom", url], check=True, capture_output=True, text=True, timeout=120).stdout


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--screenshots", type=Path, default=ROOT / "docs-screenshots")
    p.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser") or "")
    args = p.parse_args(argv)
    if not args.chromium:
        print("check_docs_site: no Chromium found: apt-get install chromium, or pass --chromium PATH", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site"
        subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(site)], cwd=ROOT,
                       check=True)
        handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        args.screenshots.mkdir(parents=True, exist_ok=True)
        failures = []
        try:
            for name, (path, title) in PAGES.items():
                url = f"http://127.0.0.1:{server.server_address[1]}/{path}"
                dom = render(args.chromium, url, Path(tmp) / "profile", args.screenshots / f"{name}.png")
                shot = args.screenshots / f"{name}.png"
                ok = title in dom and "<h1" in dom and shot.is_file() and shot.stat().st_size > 10_000
                print(f"{name}: {'ok' if ok else 'FAILED'} ({url}, screenshot {shot})")
                if not ok:
                    failures.append(name)
        finally:
            server.shutdown()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
