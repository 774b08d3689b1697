"""Put CoNLL04 (entities and relations; train / valid / test JSON) into a directory, checked by sha256.

CoNLL04 is in no package registry. Where `--from DIR` holds the three files they are copied from there (offline
machines); otherwise they are downloaded from the public repository that SpERT-style papers' "unified" files come
from. Either way each file must match its pinned sha256, and the directory is filled through a temporary one, so
a failed fetch leaves nothing half-done. A rerun with matching files does nothing.

Usage: python scripts/fetch_conll04.py DEST_DIR [--from LOCAL_DIR]
"""
import argparse
import hashlib
import shutil
import sys
import tempfile
import urllib.request
from pathlib import Path
from typing import Dict, List, Optional

URL = ("https://raw.githubusercontent.com/LorrinWWW/two-are-better-than-one/"
       "a75de25e436a02f58bc512de2f841d621be40daa/datasets/unified/{split}.CoNLL04.json")
SHA256: Dict[str, str] = {
    "train": "771c33e445a258bac1cc7d311fb2ca2a953dc62cb3f204c0d13680ab79df5607",
    "valid": "2f51f3a1ff949432b137d2e488d489c38247625f29dac6864e72fa526e9a665d",
    "test": "caf6dc66c50545f384ffda9cdda940c522a7818314be247854229dae9924815a",
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch(dest: Path, local: Optional[Path]) -> List[str]:
    """Fill `dest` with train.json, valid.json and test.json; RETURNS what was done per file."""
    if all((dest / f"{split}.json").is_file() and sha256(dest / f"{split}.json") == digest
           for split, digest in SHA256.items()):
        return [f"{dest}: up to date"]
    dest.parent.mkdir(parents=True, exist_ok=True)
    done = []
    with tempfile.TemporaryDirectory(dir=dest.parent) as tmp:
        for split, digest in SHA256.items():
            target = Path(tmp) / f"{split}.json"
            if local is not None:
                shutil.copyfile(local / f"{split}.json", target)
                done.append(f"{split}.json copied from {local}")
            else:
                with urllib.request.urlopen(URL.format(split=split), timeout=60) as response, open(target, "wb") as f:
                    shutil.copyfileobj(response, f)
                done.append(f"{split}.json downloaded")
            if sha256(target) != digest:
                raise ValueError(f"{split}.json: sha256 mismatch (expected {digest}, got {sha256(target)}): the "
                                 f"source is not the published CoNLL04 split; fetch it again or point --from at a "
                                 f"good copy")
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(tmp, dest)
    return done


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("dest", type=Path, help="directory to fill (e.g. assets/conll04)")
    p.add_argument("--from", dest="local", default="", help="local directory with train/valid/test.json ('' = download)")
    args = p.parse_args(argv)
    local = Path(args.local) if args.local else None
    if local is not None and not all((local / f"{split}.json").is_file() for split in SHA256):
        print(f"fetch_conll04: {local} does not hold train.json, valid.json and test.json: downloading instead")
        local = None
    try:
        for line in fetch(args.dest, local):
            print(line)
    except (ValueError, OSError) as err:
        print(f"fetch_conll04: {err} (offline? point --from, project var conll04_local, at a copy of CoNLL04)",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
