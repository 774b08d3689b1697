"""Measure the pretrained encoder's masked-LM and SBO loss on the held-out news documents.

The training loss of continued pretraining is measured on text the model is fitting; the held-out loss (fixed,
seeded masks) tells whether the encoder learned the domain, and compares masking schemes on equal terms.

Usage: python scripts/pretrain_heldout_loss.py ENCODER_DIR HELDOUT.txt --output metrics/pretrain_heldout.json
    [--scheme span] [--max-length 128] [--max-blocks 200] [--seed 0]
"""
import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional

from project_io import write_atomic


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("encoder", type=Path, help="OUTPUT_DIR/encoder of a spanbert-pretrain run")
    parser.add_argument("heldout", type=Path, help="held-out corpus (.txt, blank line between documents)")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--scheme", default="span", help="masking scheme of the held-out masks")
    parser.add_argument("--max-length", type=int, default=128, help="wordpieces per packed block")
    parser.add_argument("--max-blocks", type=int, default=200, help="evaluate at most this many blocks (0 = all)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for path in (args.encoder, args.heldout):
        if not path.exists():
            sys.exit(f"pretrain_heldout_loss: {path}: not found; run `spacy project run corpus` and `pretrain` first")
    if not args.heldout.read_text(encoding="utf8").strip():
        print(f"{args.heldout} is empty (pretrain_heldout_docs = 0): no held-out loss measured")
        write_atomic(args.output, json.dumps({"heldout": str(args.heldout), "n_blocks": 0}, indent=2) + "\n")
        return
    from spacy_spanbert.pretraining.evaluate import heldout_mlm_loss

    try:
        scores = heldout_mlm_loss(args.encoder, args.heldout, scheme=args.scheme, max_length=args.max_length,
                                  seed=args.seed, max_blocks=args.max_blocks or None)
    except (ValueError, FileNotFoundError) as err:
        sys.exit(f"pretrain_heldout_loss: {str(err).splitlines()[0]}")
    result = {"encoder": str(args.encoder), "heldout": str(args.heldout), "scheme": args.scheme, **scores}
    write_atomic(args.output, json.dumps(result, indent=2) + "\n")
    print(f"held-out loss of {args.encoder} on {args.heldout} ({scores['n_blocks']} blocks of {args.max_length}): "
          f"MLM {scores['mlm_loss']:.3f}, SBO {scores['sbo_loss']:.3f}")


if __name__ == "__main__":
    main()
