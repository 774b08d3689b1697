"""Held-out masked-LM (and SBO) loss of a pretrained encoder: the yardstick of the masking ablations."""
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Tuple, Union

from .masking import MaskingConfig


def heldout_mlm_loss(
    encoder_dir: Union[str, Path],
    corpus: Union[str, Path],
    scheme: str = "span",
    max_length: int = 128,
    batch_size: int = 8,
    seed: int = 0,
    max_blocks: Optional[int] = None,
    masking: Optional[MaskingConfig] = None,
) -> Dict[str, float]:
    """Mean MLM and SBO cross-entropy over the masked tokens of a held-out corpus, with fixed seeded masks.

    encoder_dir: OUTPUT_DIR/encoder (or a checkpoint's encoder/ with heads.safetensors one level up).
    scheme / masking: how the held-out text is masked; keep it the same across the models you compare.
    RETURNS (dict): mlm_loss, sbo_loss (token-weighted means), n_mlm_targets, n_sbo_targets, n_blocks.
    """
    from .collator import SpanMaskingCollator
    from .data import PackedBlocks, pack_corpus

    model, tokenizer = load_trained(encoder_dir)
    model.eval()
    masking = masking or MaskingConfig(scheme=scheme)
    collator = SpanMaskingCollator.from_tokenizer(tokenizer, masking=masking, seed=seed,
                                                  max_sbo_targets=model.sbo_head.max_targets)
    with tempfile.TemporaryDirectory() as tmp:
        blocks = PackedBlocks(pack_corpus(Path(corpus), tokenizer, max_length, Path(tmp)))
        n = len(blocks) if max_blocks is None else min(max_blocks, len(blocks))
        batches = (collator([blocks[i] for i in range(start, min(start + batch_size, n))])
                   for start in range(0, n, batch_size))
        return {**heldout_losses(model, batches), "n_blocks": n}


def load_trained(encoder_dir: Union[str, Path]) -> Tuple[Any, Any]:
    """The encoder of a spanbert-pretrain run (OUTPUT_DIR/encoder or a checkpoint's) with its trained MLM and SBO
    heads, and its tokenizer."""
    import json

    from transformers import AutoModel, AutoTokenizer

    from .model import HEADS_CONFIG, HEADS_FILE, SpanBertForPretraining

    encoder_dir = Path(encoder_dir)
    heads_dir = next((d for d in (encoder_dir, encoder_dir.parent) if (d / HEADS_FILE).exists()), None)
    if heads_dir is None:
        raise ValueError(f"{encoder_dir} has no {HEADS_FILE}: evaluate the encoder/ of a spanbert-pretrain run.")
    heads_cfg = json.loads((heads_dir / HEADS_CONFIG).read_text())
    # the trained heads are loaded right below, so skip from_pretrained's "no MLM head" search and warning
    model = SpanBertForPretraining(AutoModel.from_pretrained(str(encoder_dir)),
                                   max_sbo_targets=heads_cfg["max_sbo_targets"],
                                   sbo_position_size=heads_cfg["sbo_position_size"],
                                   sbo_weight=heads_cfg.get("sbo_weight", 1.0))
    model.load_heads(heads_dir)
    return model, AutoTokenizer.from_pretrained(str(encoder_dir))


def heldout_losses(model: Any, batches: Iterable[Dict[str, Any]]) -> Dict[str, Any]:
    """Token-weighted MLM and SBO loss of `model` over collated batches (no gradients; the model's mode is kept).

    RETURNS (Dict[str, Any]): mlm_loss, sbo_loss and the numbers of MLM and SBO targets they average over.
    """
    import torch

    totals = {"mlm": 0.0, "sbo": 0.0, "n_mlm": 0, "n_sbo": 0}
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for batch in batches:
            batch = {key: value for key, value in batch.items() if key != "mask_stats"}
            out = model(**batch)
            n_mlm, n_sbo = int((batch["labels"] != -100).sum()), len(batch["sbo_labels"])
            totals["mlm"] += out["mlm_loss"].item() * n_mlm
            totals["sbo"] += out["sbo_loss"].item() * n_sbo
            totals["n_mlm"] += n_mlm
            totals["n_sbo"] += n_sbo
    model.train(was_training)
    return {"mlm_loss": totals["mlm"] / max(totals["n_mlm"], 1), "sbo_loss": totals["sbo"] / max(totals["n_sbo"], 1),
            "n_mlm_targets": totals["n_mlm"], "n_sbo_targets": totals["n_sbo"]}
