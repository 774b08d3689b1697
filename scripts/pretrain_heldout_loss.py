"""Measure the pretrained encoder's masked-LM and SBO loss on the held-out news documents.

The training loss of continued pretraining is measured on text the model is fitting; the held-out loss (fixed,
seeded masks) tells whether the encoder learned the domain, and compares masking schemes on equal terms.
The held-out text is masked with the run's own [masking] settings (span lengths, geometric_p, ratios), read from
the config.cfg that spanbert-pretrain saves in the run directory; `--scheme` only swaps the scheme.

Usage: python scripts/pretrain_heldout_loss.py ENCODER_DIR HELDOUT.txt --output metrics/pretrain_heldout.json
    [--config RUN_DIR/config.cfg] [--scheme span] [--max-length 128] [--max-blocks 200] [--seed 0]
"""
import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import List, Optional, Tuple

from project_io import write_atomic


def run_config_path(encoder: Path) -> Optional[Path]:
    """config.cfg of the run an encoder came from: OUTPUT_DIR/encoder or OUTPUT_DIR/checkpoints/step-N/encoder."""
    for run_dir in (encoder.parent, *encoder.parents[1:3]):
        if (run_dir / "config.cfg").exists():
            return run_dir / "config.cfg"
    return None


def masking_of_run(config: Optional[Path], scheme: Optional[str]) -> Tuple[object, str]:
    """The MaskingConfig to evaluate with, and where it came from."""
    from spacy.util import load_config, registry

    from spacy_spanbert.pretraining.masking import MaskingConfig

    if config is None:
        return MaskingConfig(scheme=scheme or "span"), "defaults (no run config found)"
    cfg = load_config(config, interpolate=True)
    if "masking" not in cfg:
        raise ValueError(f"{config} has no [masking] section: pass --config the config.cfg of the pretraining run")
    masking = registry.resolve({"masking": cfg["masking"]})["masking"]
    if scheme and scheme != masking.scheme:
        return dataclasses.replace(masking, scheme=scheme), f"{config} with scheme {scheme}"
    return masking, str(config)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("encoder", type=Path, help="OUTPUT_DIR/encoder of a spanbert-pretrain run")
    parser.add_argument("heldout", type=Path, help="held-out corpus (.txt, blank line between documents)")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--config", type=Path, help="the run's config.cfg (default: found next to the encoder)")
    parser.add_argument("--scheme", default=None, help="evaluate with this scheme instead of the run's own")
    parser.add_argument("--max-length", type=int, default=128, help="wordpieces per packed block")
    parser.add_argument("--max-blocks", type=int, default=200, help="evaluate at most this many blocks (0 = all)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for path in (args.encoder, args.heldout, args.config):
        if path is not None and not path.exists():
            sys.exit(f"pretrain_heldout_loss: {path}: not found; run `spacy project run corpus` and `pretrain` first")
    if not args.heldout.read_text(encoding="utf8").strip():
        print(f"{args.heldout} is empty (pretrain_heldout_docs = 0): no held-out loss measured")
        write_atomic(args.output, json.dumps({"heldout": str(args.heldout), "n_blocks": 0}, indent=2) + "\n")
        return
    from spacy_spanbert.pretraining.evaluate import heldout_mlm_loss

    try:
        masking, source = masking_of_run(args.config or run_config_path(args.encoder), args.scheme)
        scores = heldout_mlm_loss(args.encoder, args.heldout, masking=masking, max_length=args.max_length,
                                  seed=args.seed, max_blocks=args.max_blocks or None)
    except (ValueError, FileNotFoundError) as err:
        sys.exit(f"pretrain_heldout_loss: {str(err).splitlines()[0]}")
    result = {"encoder": str(args.encoder), "heldout": str(args.heldout), "scheme": masking.scheme,
              "masking": dataclasses.asdict(masking), "masking_from": source, **scores}
    write_atomic(args.output, json.dumps(result, indent=2) + "\n")
    print(f"held-out loss of {args.encoder} on {args.heldout} ({scores['n_blocks']} blocks of {args.max_length}, "
          f"masking from {source}): MLM {scores['mlm_loss']:.3f}, SBO {scores['sbo_loss']:.3f}")


if __name__ == "__main__":
    main()
